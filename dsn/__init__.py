"""dsn model family (see README)."""
