"""Inference with a trained predictor: predicted records for structures (memory-bounded) and
accuracy metrics of a predicted record against a reference."""
