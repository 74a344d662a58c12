"""Tests of the snn_dales family."""
