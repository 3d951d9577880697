"""Strategies (sampler + loss) by name, and the runner that compares them."""

__all__: list[str] = []
