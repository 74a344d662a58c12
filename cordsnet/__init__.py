"""cordsnet model family (see README): CordsNet, a continuous-time convolutional RNN of the
visual system (``model``), its equivalent feed-forward CNN and batch-norm folding (``cnn``),
and its typed config (``config``)."""
