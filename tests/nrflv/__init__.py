"""Tests of the nrflv family, laid out like the package."""
