"""The objectives of CordsNet's training pipeline, as pure functions of modules and a batch.

Phase 1 (``cnn``): cross-entropy of the equivalent CNN. Phase 1b (between 1 and 2): batch
norm folded into the CNN's convs (:func:`cordsnet.cnn.fold_batchnorm`) and the shared
layers copied into the RNN (:func:`carry_folded_weights`).

Phase 2 (``inversion``): per area, the linear RNN's fixed point
``r* = (I - R)^-1 (W a + c)`` should equal the folded CNN's pre-activation
``A (W a + b1) + b2``, i.e. ``R = I - A^-1`` and ``c = b1 + A^-1 b2``. With the CNN's own
activations as area inputs (teacher forcing), ``(I - R)^-1`` is truncated to
``I + R + R^2 + R^3``::

    s   = (I + R + R^2 + R^3)(W a + c)         (three Euler-free sweeps s <- R s + c + W a)
    err = mean (A (W a + b1) + b2 - s)^2
    pen = mean (R^3 (W a + c))^2               (the first dropped term, weight 10)

Phases 3-5: the RNN over its time course; the loss is the cross-entropy of the last
``n = loss_steps`` stimulus steps, weighted by ``logspace(-3, 0, n)`` and averaged, plus (4, 5)
``spont_weight`` times the mean squared distance of every area, over the last
``spont_steps`` post-stimulus steps, to the spontaneous state reached in the blank before.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from cordsnet.cnn import CordsCNN, FoldedCNN
from cordsnet.model import CordsNet, area_input

#: keys the RNN takes from the folded CNN (everything but R, the bias maps and b1)
CARRIED = ("inp_conv.", "inp_skip.", "area_area.", "skip_area.", "out_fc.")


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for integer ``(B,)`` or probability ``(B, K)`` targets."""
    return F.cross_entropy(logits, targets)


def correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Fraction of ``(..., B, K)`` logits whose argmax is the (argmax of the) target, per leading index."""
    hard = targets.argmax(-1) if targets.dim() == 2 else targets
    return (logits.argmax(-1) == hard).float().mean(-1)


def ramp(n: int, device=None, dtype=None) -> torch.Tensor:
    """Loss weights of the last ``n`` stimulus steps: ``logspace(-3, 0, n)``."""
    return torch.logspace(-3, 0, n, device=device, dtype=dtype)


@torch.no_grad()
def carry_folded_weights(rnn: CordsNet, folded: FoldedCNN) -> list[str]:
    """Copy the shared layers (input conv and skip, feed-forward convs, skips, readout) of the
    folded CNN into the RNN; R and the bias map c stay to be fitted. Returns the keys copied."""
    src = folded.state_dict()
    dst = rnn.state_dict()
    keys = [k for k in dst if k.startswith(CARRIED)]
    for k in keys:
        dst[k].copy_(src[k])
    return keys


class Inversion(NamedTuple):
    loss: torch.Tensor
    error: torch.Tensor    # (D,) per-area fixed-point error
    penalty: torch.Tensor  # (D,) per-area dropped Neumann term


def inversion_loss(rnn: CordsNet, folded: FoldedCNN, images: torch.Tensor, *, penalty: float = 10.0,
                   terms: int = 3, areas: Sequence[int] | None = None) -> Inversion:
    """Phase-2 objective (see the module docstring) summed over ``areas`` (default: all).

    Only ``rnn``'s recurrent convs and bias maps receive gradients; the CNN side is computed
    without a graph.
    """
    areas = list(range(rnn.depth)) if areas is None else list(areas)
    with torch.no_grad():
        p, p_skip = folded.input_layer(images)
        acts: list[torch.Tensor] = []
        inputs, targets = [], []
        for j in range(folded.depth):
            ff = folded.feedforward(j, acts, p, p_skip)
            pre = folded.pre_activation(j, ff)
            inputs.append(area_input(j, acts, p, p_skip, lambda i, x: folded.skip_area[i](x)))
            targets.append(pre)
            acts.append(F.relu(pre))
    w = rnn.weights()
    errors, penalties = [], []
    for j in areas:
        with torch.no_grad():
            drive = F.conv2d(inputs[j], w.ff[j], None, rnn.area_area[j].stride, rnn.area_area[j].padding)
        rec = rnn.area_conv[j]
        source = drive + rnn.conv_bias[j]
        s, tail = source, source
        for _ in range(terms):
            s = F.conv2d(s, w.rec[j], None, 1, rec.padding) + source
            tail = F.conv2d(tail, w.rec[j], None, 1, rec.padding)
        errors.append(((targets[j] - s) ** 2).mean())
        penalties.append((tail ** 2).mean())
    error, pen = torch.stack(errors), torch.stack(penalties)
    return Inversion(error.mean() + penalty * pen.mean(), error.detach(), pen.detach())


class CourseResult(NamedTuple):
    loss: torch.Tensor
    accuracy: torch.Tensor     # at the last stimulus step
    task: torch.Tensor         # the weighted cross-entropy
    spontaneous: torch.Tensor  # the spontaneous-state MSE (0 when not used)


def course_loss(rnn: CordsNet, images: torch.Tensor, targets: torch.Tensor, *, blank_steps: int,
                stimulus_steps: int, post_blank_steps: int, loss_steps: int, spont_steps: int = 0,
                spont_weight: float = 0.0) -> CourseResult:
    """Phases 3-5: blank (no gradient) -> stimulus -> post-stimulus blank, with the loss above.

    ``rnn.slope`` sets the within-area nonlinearity (1 linear, 0 relu). ``targets``: integer
    labels ``(B,)`` or probabilities ``(B, K)``.
    """
    state = rnn.rest_state(images.shape[0])
    blank = torch.zeros_like(images)
    with torch.no_grad():
        if blank_steps:
            state, _, _ = rnn.simulate(state, blank, blank_steps)
    spontaneous = [s.detach() for s in state]
    w = rnn.weights()
    drive = rnn.input_drive(images, w)
    logits = []
    for t in range(stimulus_steps):
        state = rnn.step(state, drive, w)
        if t >= stimulus_steps - loss_steps:
            logits.append(rnn.readout(state, w))
    logits = torch.stack(logits)                                      # (n, B, K)
    per_step = torch.stack([soft_cross_entropy(lg, targets) for lg in logits])
    task = (per_step * ramp(loss_steps, images.device, per_step.dtype)).mean()
    spont = torch.zeros((), device=images.device)
    if spont_weight > 0 and spont_steps > 0 and post_blank_steps > 0:
        bdrive = rnn.input_drive(blank, w)
        for t in range(post_blank_steps):
            state = rnn.step(state, bdrive, w)
            if t >= post_blank_steps - spont_steps:
                spont = spont + sum(((r - b) ** 2).mean() for r, b in zip(state, spontaneous)) \
                    / (rnn.depth * spont_steps)
    return CourseResult(task + spont_weight * spont, correct(logits[-1], targets), task.detach(), spont.detach())


def cnn_loss(cnn: CordsCNN, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase 1: cross-entropy and accuracy of the equivalent CNN."""
    logits = cnn(images)
    return soft_cross_entropy(logits, targets), correct(logits, targets)


def cnn_learning_rate(step: int, steps: int, base: float, warmup: int) -> float:
    """Phase 1's schedule: three equal stages at ``base``, ``base/10``, ``base/100``, each
    starting with a linear warm-up from a third of its rate over ``warmup`` steps."""
    stage_len = max(1, -(-steps // 3))
    stage, k = divmod(step, stage_len)
    lr = base / 10 ** min(stage, 2)
    if warmup and k < warmup:
        lr *= 1 / 3 + (2 / 3) * k / warmup
    return lr


def anneal_slope(step: int, steps: int, start: float, levels: int) -> float:
    """Phase 4's slope: ``levels`` equal stretches from ``start`` down to exactly 0
    (published: 20 epochs of 0.95, 0.90, ..., 0)."""
    if levels <= 1:
        return 0.0
    level = min(levels - 1, step * levels // max(steps, 1))
    return max(0.0, start * (1 - level / (levels - 1)))


def cnn_stage_starts(steps: int) -> tuple[int, ...]:
    """Phase steps at which phase 1's second and third learning-rate stages begin (where the
    published script makes a new SGD, its momentum reset; see :func:`cnn_learning_rate`)."""
    stage_len = max(1, -(-steps // 3))
    return tuple(s for s in (stage_len, 2 * stage_len) if s < steps)


def anneal_level_starts(steps: int, levels: int) -> tuple[int, ...]:
    """Phase steps at which phase 4's slope levels after the first begin (where the published
    script makes a new AdamW, its moments reset): the first step ``s`` of level ``L`` is the
    least with ``s * levels // steps >= L``, i.e. ``ceil(L * steps / levels)`` (see
    :func:`anneal_slope`)."""
    if levels <= 1:
        return ()
    return tuple(sorted({-(-lvl * steps // levels) for lvl in range(1, levels)} & set(range(1, steps))))
