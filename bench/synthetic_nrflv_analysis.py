"""The synthetic NRFLV experiment of ``bench/bench_nrflv_analysis.py``: a design, a protocol and an
activity function with something for every analysis of the battery to find.

During the stimulus each unit's state rises by a contrast- and orientation-tuned level (von Mises
in orientation around the channel's preferred orientation, channel c preferring ``-90 + 180 c / C``
degrees) with an onset overshoot, plus a tuned oscillation at ``35 + 5 x contrast`` Hz whose phase
is random per trial and shared by the channels and, except orthogonal pairs, by the two sites;
Gaussian noise everywhere; the momentum is ``p[t] = -s[t - LAG_STEPS]`` plus a little noise, so
``-p`` lags the state by one step. :func:`nrflv.battery.synthetic.synthetic_recording` writes it
in the layout ``--experiment`` writes.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

#: the thesis protocol (steps) and recording
THESIS_PHASES = (100, 1000, 1000, 600)
THESIS_STEPS = sum(THESIS_PHASES)
#: the stimulus images and the recorded variables
IMAGE_HW = (32, 32)
VARIABLES = ("state", "momentum")
LAG_STEPS = 1        # -p is s delayed by this many steps
ONSET_TAU_STEPS = 12.0


def scaled_protocol(steps: int):
    """The thesis protocol's phases scaled to ``steps`` in all (rounded; the rest to the last blank)."""
    from nrflv.experiment import Protocol

    burn, before, stim = (round(n * steps / THESIS_STEPS) for n in THESIS_PHASES[:3])
    return Protocol(burn, before, stim, steps - burn - before - stim)


def bench_design(trials_per_set: int):
    """A :class:`nrflv.stimuli.GaborDesign` with ``trials_per_set`` trials in every set (a multiple of
    16): just_angle n directions; contrast_and_angle 4 contrasts (8 from 64 trials) x n/4 (n/8)
    directions; few_angles and long_bars 8 directions x n/8 repeats; pairs 2 (4 from 32 trials)
    displacements x n/(4 d) distances (at most 4) x 2 relations x 2 (4 from 128 trials) repeats."""
    from nrflv.stimuli import GaborDesign

    n = trials_per_set
    contrasts = (0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8) if n >= 64 else (0.0, 0.8, 1.6, 2.4)
    pair_dirs, pair_reps = (4 if n >= 32 else 2), (4 if n >= 128 else 2)
    n_dist = min(4, n // (pair_dirs * 2 * pair_reps))
    return GaborDesign(just_angle_directions=n, contrasts=contrasts, contrast_directions=n // len(contrasts),
                       few_angles_directions=8, few_angles_repeats=n // 8, long_bars_directions=8,
                       long_bars_repeats=n // 8, pair_directions=pair_dirs, pair_distances=(3, 5, 7, 10)[:n_dist],
                       pair_repeats=pair_reps)


def preferred_orientations(channels: int):
    """``(C,)`` degrees: channel c prefers ``-90 + 180 c / C``."""
    import numpy as np

    return -90.0 + 180.0 * np.arange(channels) / channels


def orientation_gain(orientation, preferred, kappa: float = 2.0):
    """Von Mises gain in orientation: ``orientation (b,)`` and ``preferred (C,)`` degrees -> ``(b, C)``
    in (0, 1], 1 at the preferred orientation."""
    import numpy as np

    d = np.deg2rad(orientation[:, None] - preferred[None, :])
    return np.exp(kappa * (np.cos(2 * d) - 1))


def stimulus_envelope(t, protocol):
    """``(T,)`` sustained level with an onset overshoot (1 + exp decay) while the stimulus is on, an
    offset response after it, 0 before."""
    import numpy as np

    on = (t >= protocol.onset) & (t < protocol.offset)
    after = t >= protocol.offset
    env = np.where(on, 1.0 + np.exp(-(t - protocol.onset) / ONSET_TAU_STEPS), 0.0)
    return env + np.where(after, 0.5 * np.exp(-(t - protocol.offset) / ONSET_TAU_STEPS), 0.0)


def site_orientations(rows):
    """``(b, 2)`` orientation (degrees) of the stimulus at each site: a pair's second Gabor at site 1,
    else the single Gabor's."""
    import numpy as np
    from nrflv.stimuli import wrap_orientation

    o0 = rows["orientation"].to_numpy(float)
    pair = (rows["relation"] != "single").to_numpy()
    o1 = np.where(pair, wrap_orientation(np.nan_to_num(rows["direction2"].to_numpy(float))), o0)
    return np.stack([o0, o1], 1)


def site_phases(rows, rng):
    """``(b, 2)`` oscillation phase at each site: random per trial; site 1 shares it except in
    orthogonal pairs (random there)."""
    import numpy as np

    phi = rng.uniform(-np.pi, np.pi, len(rows))
    ortho = (rows["relation"] == "orthogonal").to_numpy()
    return np.stack([phi, np.where(ortho, rng.uniform(-np.pi, np.pi, len(rows)), phi)], 1)


def lagged_copy(x, lag: int):
    """``x (b, T, ...)`` delayed by ``lag`` steps along T (the first ``lag`` samples repeat x[:, 0])."""
    import numpy as np

    return np.concatenate([np.repeat(x[:, :1], lag, 1), x[:, :-lag]], 1) if lag else x


def oscillating_activity(protocol, fs: float, channels: int, seed: int, noise: float = 0.1,
                         level: float = 0.2, amplitude: float = 0.3) -> Callable:
    """``activity(rows, t) -> {"state", "momentum": (b, T, 2, C, 3, 3)}`` for ``synthetic_recording``
    (see the module doc); deterministic given ``seed`` and the rows' trial indices."""
    import numpy as np

    preferred = preferred_orientations(channels)
    profile = np.full((3, 3), 0.6)
    profile[1, 1] = 1.0

    def activity(rows, t):
        rng = np.random.default_rng([seed, int(rows["trial"].iloc[0])])
        contrast = rows["contrast"].to_numpy(float)
        gain = np.stack([orientation_gain(o, preferred) for o in site_orientations(rows).T], 1)  # (b, 2, C)
        gain = gain * np.array([1.0, 0.7])[None, :, None] * (contrast / 2.4)[:, None, None]
        freq = 35.0 + 5.0 * contrast                                                  # (b,) Hz
        on = ((t >= protocol.onset) & (t < protocol.offset)).astype(float)            # (T,)
        wave = np.cos(2 * np.pi * freq[:, None, None] * t[None, :, None] / fs
                      + site_phases(rows, rng)[:, None, :])                          # (b, T, 2)
        drive = level * stimulus_envelope(t, protocol)[None, :, None] + amplitude * on[None, :, None] * wave
        shape = (len(rows), len(t), 2, channels, 3, 3)
        state = (drive[..., None, None, None] * gain[:, None, :, :, None, None] * profile
                 + noise * rng.standard_normal(shape))
        momentum = -lagged_copy(state, LAG_STEPS) + 0.2 * noise * rng.standard_normal(shape)
        return {"state": state, "momentum": momentum}

    return activity
