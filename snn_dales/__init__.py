"""snn_dales model family (see README)."""
