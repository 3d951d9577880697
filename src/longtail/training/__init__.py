"""Training: models, the training loop, checkpoints."""

__all__: list[str] = []
