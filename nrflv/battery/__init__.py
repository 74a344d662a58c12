"""The NRFLV analysis battery: one small module per analysis family, each streaming the
experiment's recording (:mod:`nrflv.battery.reading`) block by block through the pure measures
of :mod:`nrflv.measures` and returning tables, figures and scalars."""
