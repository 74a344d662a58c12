"""cordsnet model family (see README)."""
