"""The package version: its own module so that any layer can name it without
importing the package façade (``realmpy/__init__.py`` loads the sync layer)."""

__version__ = "0.1.0.dev0"
