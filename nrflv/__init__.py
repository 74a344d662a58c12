"""nrflv model family (see README)."""
