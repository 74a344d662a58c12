"""Shared test fixtures: quiet threads, a helper to run main.py in-process."""
from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

TOY = "tests.toy_suite:ToySuite"


@pytest.fixture(autouse=True)
def _one_thread():
    """Every test on one torch thread, and the count restored after it (main.py sets a run's
    ``threads``): the tests' tensors are small, and a second thread only adds synchronisation,
    which costs a lot on a loaded 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _close_figures():
    """Figures a test made and did not close are closed after it (matplotlib keeps pyplot figures
    alive until closed; the suite would hold hundreds)."""
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


@pytest.fixture
def run_main(tmp_path, capsys):
    """Call ``main.main(argv)`` with ``--out_dir tmp_path/runs``; returns (rc, stderr)."""
    import main

    def call(*argv, out_dir=None):
        argv = list(argv)
        if "--resume" not in argv and "--out_dir" not in argv:
            argv += ["--out_dir", str(out_dir or tmp_path / "runs")]
        threads = torch.get_num_threads()
        try:
            rc = main.main(argv)
        finally:  # a family's `threads` key must not change the rest of the session
            torch.set_num_threads(threads)
        err = capsys.readouterr().err
        return rc, err
    return call
