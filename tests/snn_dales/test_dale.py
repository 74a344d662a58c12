"""Dale's law: sign masks, signed weights, and signs after training."""
import torch

from snn_dales.dale import dale_sign_mask, n_inhibitory, sign_violations, signed_weights, uniform_init


def test_sign_masks_count_and_layout():
    assert n_inhibitory(200, 0.5) == 100 and n_inhibitory(30, 0.2) == 6 and n_inhibitory(30, 0.0) == 0
    first = dale_sign_mask(200, 0.5, "first")
    assert (first[:100] == -1).all() and (first[100:] == 1).all()  # one whole ear inhibitory
    g = torch.Generator().manual_seed(0)
    rnd = dale_sign_mask(200, 0.5, "random", g)
    assert (rnd == -1).sum() == 100
    assert (rnd[:100] == -1).sum() not in (0, 100)  # mixed within each ear
    assert (dale_sign_mask(10, 1.0, "random", g) == -1).all()


def test_signed_weights_follow_presynaptic_sign():
    torch.manual_seed(0)
    w = torch.randn(3, 6, 4)
    sign = torch.tensor([[1, -1, 1, -1, 1, 1.0]]).expand(3, -1)
    W = signed_weights(w, sign)
    assert sign_violations(W, sign) == 0
    assert torch.equal(W.abs(), w.abs())
    assert (W[:, 1] <= 0).all() and (W[:, 0] >= 0).all()


def test_uniform_init_bound_uses_second_dimension():
    g = torch.Generator().manual_seed(0)
    w = uniform_init((200, 30), g)
    bound = 1 / 30 ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
