"""Tests of the storage layer: the engine through its bindings, the file fuzz."""
