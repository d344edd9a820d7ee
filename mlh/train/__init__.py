"""Training of the GEARS H predictor: samples and batches, augmented partitioning, dataset
statistics, loss, optimizer, checkpoints and the epoch loop (`mlh.train.loop.train`)."""
