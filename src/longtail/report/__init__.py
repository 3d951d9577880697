"""Reports: Markdown/JSON/CSV writers and matplotlib plots."""

__all__: list[str] = []
