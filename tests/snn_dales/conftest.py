"""snn_dales suites set torch's thread count (config key ``threads``): restore it after each
test so that the rest of the session keeps the thread count tests/conftest.py chose."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
