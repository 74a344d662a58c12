"""The reference analysis' marginals figure: the dual's weighted histogram is a density."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dsn.plots import plot_marginals, weighted_histogram  # noqa: E402


def test_weighted_uniform_draws_give_the_tilted_density():
    """Uniform draws on [0, 4] weighted by exp(-z) estimate the truncated exponential's density."""
    rng = np.random.default_rng(0)
    u = rng.uniform(0, 4, 400_000)
    edges = np.linspace(0, 4, 21)
    dens = weighted_histogram(u, np.exp(-u), edges)
    mid = (edges[:-1] + edges[1:]) / 2
    exact = np.exp(-mid) / (1 - np.exp(-4.0))
    # bin average of exp(-z) differs from its midpoint value by ~h^2/24 relative (h = 0.2)
    np.testing.assert_allclose(dens, exact, rtol=0.03)
    assert abs(np.sum(dens * np.diff(edges)) - 1) < 1e-12


def test_marginals_figure_draws_both_densities_and_the_joint_for_two_dimensions():
    g = torch.Generator().manual_seed(0)
    z_ref = torch.rand(5000, 2, generator=g) * 4
    w = torch.exp(-z_ref.sum(1))
    z_flow = torch.rand(1000, 2, generator=g) * 4
    fig = plot_marginals(z_flow, z_ref, w, ["a", "b"], torch.zeros(2), torch.full((2,), 4.0), title="t")
    axes = fig.axes
    assert len(axes) == 5  # two marginals, two joints, one colour bar
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["max-entropy dual", "flow q"]
    plt.close(fig)
    fig = plot_marginals(torch.rand(100, 3), torch.rand(200, 3), torch.ones(200), ["a", "b", "c"],
                         torch.zeros(3), torch.ones(3))
    assert len(fig.axes) == 3  # marginals only beyond two dimensions
    plt.close(fig)
