"""Shared machinery for every model family: configuration, runtime (device, seeds,
distributed), run directories, checkpoints, recording stores, data sets and logging.

Nothing in here knows about a particular model; model packages plug in through
:class:`core.suite.ModelSuite`.
"""
