"""Two-dimensional embeddings of population responses: PCA to ``n_pcs`` dims, then t-SNE.

As in the tutorial, PCA (20 components) first makes t-SNE fast and denoises; t-SNE then
maps each stimulus's population vector to a point in 2-D, so that stimuli with similar
responses lie close together.
"""
from __future__ import annotations

import numpy as np
import torch


def pca_tsne(resp, n_pcs: int = 20, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``resp (S, N)`` -> ``(S, 2)`` t-SNE coordinates of its first ``n_pcs`` principal components.

    ``perplexity`` is capped at ``(S - 1) / 3`` so small stimulus sets work too.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = resp.detach().cpu().numpy() if isinstance(resp, torch.Tensor) else np.asarray(resp)
    x = x.astype(np.float64)
    S = x.shape[0]
    if S < 5:
        raise ValueError(f"t-SNE needs at least 5 stimuli, got {S}")
    k = int(min(n_pcs, x.shape[1], S))
    low = PCA(n_components=k, random_state=seed).fit_transform(x)
    perp = float(min(perplexity, (S - 1) / 3))
    return TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed).fit_transform(low)
