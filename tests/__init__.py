"""The test suite, by layer: storage/, objects/, sync/, server/ (and c/ for the C engine)."""
