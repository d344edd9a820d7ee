"""The GEARS H predictor: irreps layouts, model graphs, targets, configuration, scale-shift
statistics, the flax/e3x network (`nn/`), the network as pure functions that training,
inference and the band route share (`kernel`) and the trained-model container (`predictor`)."""
