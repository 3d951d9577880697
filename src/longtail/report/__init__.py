"""Reports: Markdown/JSON/CSV writers and matplotlib plots."""
