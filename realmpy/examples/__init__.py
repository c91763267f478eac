"""Small runnable examples: ``python -m realmpy.examples.<name>``."""
