"""longtail inside other frameworks; each module needs its extra (``pip install 'longtail[NAME]'``)."""


def require(module: str, extra: str) -> None:
    """Import ``module`` or raise ``ImportError`` naming the extra that installs it."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this needs {module}: pip install 'longtail[{extra}]'") from None


__all__ = [
    "require",
]
