"""The GEARS H predictor: irreps layouts, model graphs, targets, configuration, scale-shift
statistics, the flax/e3x network (`nn/`) and the trained-model container (`predictor`)."""
