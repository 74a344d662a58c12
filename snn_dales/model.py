"""The sound-localisation network: input -> hidden LIF -> leaky readout, for M networks at once.

Parameters are stacked along a leading model dimension ``M`` so that many independent
networks (seeds, E/I ratios, sign layouts) train in one batched forward; the toolkit's
single-network training simply uses ``M = 1``. Gradients of a sum of per-model losses are
the per-model gradients, and Adam acts element-wise, so M networks trained together follow
exactly the trajectories they would follow alone.

Classification: the readout's time-summed membrane ``m = sum_t v_t`` ``(B, M, C)`` scaled by
``readout_scale`` (0.01) gives logits; the loss is the negative log-likelihood of their
log-softmax (cross-entropy); the estimate is ``argmax_c m``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from snn_dales.dale import signed_weights, uniform_init
from snn_dales.network import decay, snn_forward


class DaleSNN(nn.Module):
    """M spiking networks with optional Dale's law on the input (W1) and hidden (W2) layers.

    ``sign1``: ``(M, n_inputs)`` and ``sign2``: ``(M, n_hidden)`` of +-1 (fixed buffers).
    ``w1``: ``(M, n_inputs, n_hidden)``; ``w2``: ``(M, n_hidden, n_classes)`` trainable.
    """

    def __init__(self, sign1: torch.Tensor, sign2: torch.Tensor, n_classes: int, *,
                 dale_w1: bool = True, dale_w2: bool = True, tau: float = 5e-3, dt: float = 1e-3,
                 beta: float = 5.0, readout_scale: float = 0.01, fused: bool = True, compiled: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        n_m, n_i = sign1.shape
        n_h = sign2.shape[1]
        dev = sign1.device
        self.w1 = nn.Parameter(uniform_init((n_m, n_i, n_h), generator, dev))
        self.w2 = nn.Parameter(uniform_init((n_m, n_h, n_classes), generator, dev))
        self.register_buffer("sign1", sign1.float().clone())
        self.register_buffer("sign2", sign2.float().clone())
        self.dale_w1, self.dale_w2 = dale_w1, dale_w2
        self.alpha, self.beta = decay(dt, tau), beta
        self.readout_scale, self.fused, self.compiled = readout_scale, fused, compiled

    @property
    def n_models(self) -> int:
        return self.w1.shape[0]

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed weights ``W1 (M, I, H)``, ``W2 (M, H, C)`` actually used by the dynamics."""
        w1 = signed_weights(self.w1, self.sign1) if self.dale_w1 else self.w1
        w2 = signed_weights(self.w2, self.sign2) if self.dale_w2 else self.w2
        return w1, w2

    def forward(self, x: torch.Tensor, weights: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: spikes ``(B, T, I)`` -> logits ``(M, B, C)`` and hidden spikes ``(T, B, M, H)``.

        ``weights`` replaces the effective weights (used by ablations).
        """
        w1, w2 = weights if weights is not None else self.effective_weights()
        m, s = snn_forward(x.transpose(0, 1), w1, w2, self.alpha, self.beta, fused=self.fused,
                           compiled=self.compiled)
        return self.readout_scale * m.permute(1, 0, 2), s


def nll_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over models of the mean NLL of log-softmax. ``logits (M, B, C)``, ``labels (B,)``."""
    n_m, n_b, n_c = logits.shape
    per = F.cross_entropy(logits.reshape(n_m * n_b, n_c), labels.repeat(n_m), reduction="none")
    return per.view(n_m, n_b).mean(1).sum()


@torch.no_grad()
def predict(model: DaleSNN, x: torch.Tensor, chunk: int = 512,
            weights: tuple[torch.Tensor, torch.Tensor] | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Class estimates ``(M, N)`` and mean hidden rates per sample ``(M, N, H)`` (spikes/step).

    ``x``: ``(N, T, I)``, processed in chunks of ``chunk`` samples.
    """
    est, rates = [], []
    for start in range(0, x.shape[0], chunk):
        logits, s = model(x[start:start + chunk], weights)
        est.append(logits.argmax(-1))
        rates.append(s.mean(0).permute(1, 0, 2))
    return torch.cat(est, 1), torch.cat(rates, 1)


@torch.no_grad()
def evaluate_logits(model: DaleSNN, x: torch.Tensor, chunk: int = 512,
                    weights: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits ``(M, N, C)`` for all samples of ``x`` ``(N, T, I)``."""
    return torch.cat([model(x[s:s + chunk], weights)[0] for s in range(0, x.shape[0], chunk)], 1)
