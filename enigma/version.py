"""The version of the enigma distribution (pyproject.toml's `version`), importable without importing
the whole package (modules that print or hash it must not import `enigma` itself: an import cycle)."""
__version__ = "0.1.0"
