"""rsa model family (see README)."""
