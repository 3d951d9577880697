"""Training: models, the training loop, checkpoints."""
