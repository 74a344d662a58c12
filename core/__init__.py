"""Shared machinery for every model family: configuration, runtime (device, seeds,
distributed), run directories and their resolution (:mod:`core.runplan`), checkpoints,
recording stores, the experiments stage, data sets, shared stimuli (gratings) and logging.

Nothing in here knows about a particular model; model packages plug in through
:class:`core.suite.ModelSuite`.
"""
