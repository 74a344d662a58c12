"""The recording protocol of the thesis's experiments, and where in the layer units are read.

Every trial sees, with the image layer clamped and the latent layers sampled by SGHMC::

    burn-in (held-out data image) -> blank (mean image) -> stimulus -> blank
    default 100 / 1000 / 1000 / 600 steps

The sampler is made once per block of trials and kept across the phases, as in the source: its
inverse mass adapts during the first ``num_burn_in_steps`` steps (the burn-in phase) and stays
fixed afterwards, and the momentum carries over each change of image.

At step ``t`` the recorder reads, *before* the update, the state ``s_t``, the momentum ``p_t``
(``-p`` is the "inhibitory" population of the thesis), and optionally ``dE/ds`` and the per-unit
energy at ``s_t`` -- so the four variables of one time index describe the same point of the
chain, and index 0 is the initial state (the initialiser's guess for the burn-in image).

Units are read in a ``P x P`` window (all channels) around each recording *site* of a trial
(by default the centre of each Gabor, or a flank point; see :mod:`nrflv.stimuli`), or the
whole layer. Sites are given in image pixels and mapped to the layer's grid by its stride.

Beside the windows, two small views of the *whole* recorded layer (for activity maps and
movies on any recording):

* ``layer_means`` ``(B, 4, C, H, W)``: the mean state of every unit over each phase (burn-in,
  blank, stimulus, blank after), over all of the phase's steps (float32);
* ``layer_movie`` ``(B, F, C, H, W)``: the state of every unit at every ``movie_every``-th step
  (frame ``f`` is step ``f * movie_every``), in the recording's dtype.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

VARIABLES = ("state", "momentum", "grad", "energy")


@dataclass(frozen=True)
class Protocol:
    """Phase lengths in sampler steps."""

    burn_in: int = 100
    blank_before: int = 1000
    stimulus: int = 1000
    blank_after: int = 600

    @property
    def total(self) -> int:
        return self.burn_in + self.blank_before + self.stimulus + self.blank_after

    @property
    def onset(self) -> int:
        """First step with the stimulus on."""
        return self.burn_in + self.blank_before

    @property
    def offset(self) -> int:
        """First step after the stimulus."""
        return self.onset + self.stimulus

    def phase_of_step(self) -> torch.Tensor:
        """``(total,)`` phase index per step: 0 burn-in, 1 blank, 2 stimulus, 3 blank."""
        lengths = torch.tensor([self.burn_in, self.blank_before, self.stimulus, self.blank_after])
        return torch.repeat_interleave(torch.arange(4), lengths)

    def as_dict(self) -> dict:
        return asdict(self)


def layer_sites(site_y: torch.Tensor, site_x: torch.Tensor, image_hw: Sequence[int],
                layer_hw: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-pixel sites ``(B, S)`` -> the layer's grid (floor of the scaled position)."""
    (ih, iw), (lh, lw) = image_hw, layer_hw
    return (site_y.long() * lh) // ih, (site_x.long() * lw) // iw


def window_index(site_y: torch.Tensor, site_x: torch.Tensor, patch: int, layer_hw: Sequence[int]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices ``(B, S, P, 1)`` and ``(B, S, 1, P)`` of the ``P x P`` window
    centred on each site; raises if a window leaves the layer."""
    half = patch // 2
    off = torch.arange(-half, half + 1, device=site_y.device)
    rows = site_y[..., None, None] + off[:, None]
    cols = site_x[..., None, None] + off[None, :]
    h, w = layer_hw
    if rows.numel() and (rows.min() < 0 or rows.max() >= h or cols.min() < 0 or cols.max() >= w):
        raise ValueError(f"a {patch}x{patch} window around a recording site leaves the {h}x{w} layer; "
                         "choose a smaller record_patch or move the sites inward")
    return rows, cols


class Recorder:
    """Collects the chosen variables of one layer at every ``every``-th step into
    ``(B, T, S, C, P, P)`` buffers (``S = 1`` and ``P x P`` the whole layer for all units)."""

    def __init__(self, variables: Sequence[str], n_steps: int, batch: int, channels: int,
                 rows: torch.Tensor | None, cols: torch.Tensor | None, layer_hw: Sequence[int],
                 dtype: torch.dtype, device: torch.device, every: int = 1, layer_means: bool = False,
                 movie_every: int = 0, n_phases: int = 4):
        bad = [v for v in variables if v not in VARIABLES]
        if bad:
            raise ValueError(f"unknown variables {bad}; choose from {VARIABLES}")
        self.variables, self.every, self.rows, self.cols = tuple(variables), int(every), rows, cols
        n_kept = -(-n_steps // self.every)
        if rows is None:
            shape = (batch, n_kept, 1, channels, *layer_hw)
        else:
            s, p = rows.shape[1], rows.shape[2]
            shape = (batch, n_kept, s, channels, p, p)
        self.buffers = {v: torch.empty(shape, dtype=dtype, device=device) for v in self.variables}
        self._b = torch.arange(batch, device=device)[:, None, None, None]
        full = (batch, channels, *layer_hw)
        self.movie_every = int(movie_every)
        if layer_means:
            self._sums = torch.zeros(batch, n_phases, *full[1:], dtype=torch.float32, device=device)
            self._counts = torch.zeros(n_phases, dtype=torch.float32, device=device)
        else:
            self._sums = None
        if self.movie_every:
            frames = -(-n_steps // self.movie_every)
            self.buffers["layer_movie"] = torch.empty(batch, frames, *full[1:], dtype=dtype, device=device)

    def observe(self, step: int, phase: int, state: torch.Tensor) -> None:
        """Every step: the whole layer's state ``(B, C, H, W)`` for ``layer_means`` and the movie."""
        if self._sums is not None:
            self._sums[:, phase] += state
            self._counts[phase] += 1
        if self.movie_every and step % self.movie_every == 0:
            self.buffers["layer_movie"][:, step // self.movie_every] = state

    def finish(self) -> dict[str, torch.Tensor]:
        """The buffers, with ``layer_means`` (phases never visited: NaN)."""
        if self._sums is not None:
            self.buffers["layer_means"] = self._sums / self._counts.view(1, -1, 1, 1, 1)
        return self.buffers

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows is None:
            return x.unsqueeze(1)                               # (B, 1, C, H, W)
        return x[self._b, :, self.rows, self.cols].permute(0, 1, 4, 2, 3)  # (B, S, P, P, C) -> (B, S, C, P, P)

    def wants(self, step: int) -> bool:
        return step % self.every == 0

    def __call__(self, step: int, values: dict[str, torch.Tensor]) -> None:
        k = step // self.every
        for v in self.variables:
            self.buffers[v][:, k] = self._read(values[v])


def run_protocol(protocol: Protocol, states: list[torch.Tensor], images: Sequence[torch.Tensor],
                 energy_and_grad: Callable, sampler, recorder: Recorder, layer: int,
                 unit_energy: Callable | None = None,
                 progress: Callable[[int], None] | None = None) -> dict[str, torch.Tensor]:
    """Run the protocol once for a block of trials.

    Args:
        protocol: phase lengths.
        states: per-layer tensors ``(B, ...)`` the sampler updates in place; ``states[0]`` is
            the clamped image layer, overwritten at each phase with ``images[phase]``.
        images: four ``(B, C, H, W)`` images, one per phase (burn-in, blank, stimulus, blank).
        energy_and_grad: ``states -> (energy, grads)`` over the latent layers.
        sampler: an :class:`nrflv.sghmc.SGHMC` over ``states`` with layer 0 fixed.
        recorder: where the chosen variables go.
        layer: the recorded layer.
        unit_energy: ``states -> (B, C, H, W)`` per-unit energy of ``layer`` (for ``energy``).
        progress: called with the number of steps done, now and then.
    Returns:
        the recorder's buffers ``{variable: (B, T, S, C, P, P)}`` (and ``layer_means``,
        ``layer_movie`` when the recorder keeps them).
    """
    phase = protocol.phase_of_step().tolist()
    current = -1
    want = set(recorder.variables)
    for t in range(protocol.total):
        if phase[t] != current:
            current = phase[t]
            states[0].copy_(images[current])
        _, grads = energy_and_grad(states)
        if recorder.wants(t):
            values = {"state": states[layer]}
            if "momentum" in want:
                values["momentum"] = sampler.momentum[layer]
            if "grad" in want:
                values["grad"] = grads[layer]
            if "energy" in want:
                with torch.no_grad():
                    values["energy"] = unit_energy(states)
            recorder(t, values)
        recorder.observe(t, current, states[layer])
        sampler.step(grads)
        if progress is not None and (t + 1) % 100 == 0:
            progress(100)
    return recorder.finish()
