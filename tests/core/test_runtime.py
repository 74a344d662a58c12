import sys

import pytest
import torch

from core.runtime import derive_seed, keep_freed_memory_mapped, reseed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_malloc_tuning_takes_effect_and_allocations_still_work():
    assert keep_freed_memory_mapped() is True
    a = torch.ones(4_000_000)
    del a
    b = torch.zeros(4_000_000)
    assert float(b.sum()) == 0.0


def test_reseed_reproduces_streams():
    reseed(derive_seed(1, "step", 3, 0), torch.device("cpu"))
    x = torch.rand(5)
    reseed(derive_seed(1, "step", 3, 0), torch.device("cpu"))
    assert torch.equal(x, torch.rand(5))
    assert derive_seed(1, "step", 3, 0) != derive_seed(1, "step", 4, 0)
