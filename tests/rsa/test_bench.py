"""bench/bench_rsa.py at a tiny size: a float32 ssyrk baseline, interleaved rounds with their
spread, and --threads reaching the BLAS of every child process."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_interleaves_against_ssyrk_and_sets_child_threads():
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_rsa.py"), "--stimuli", "60", "--neurons",
                          "300", "--chunk", "128", "--repeats", "2", "--threads", "1", "--skip", "numpy64",
                          "rsatoolbox"], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    rounds = re.findall(r"round (\d) (\w+)", text)
    assert [r for r, _ in rounds] == ["1", "1", "2", "2"]                 # each method once per round
    assert {m for _, m in rounds[:2]} == {m for _, m in rounds[2:]} == {"toolkit", "ssyrk"}
    assert rounds[0][1] != rounds[2][1]                                     # order rotated: A B, B A
    table = {line.split()[0]: line for line in text.splitlines() if re.match(r"(toolkit|ssyrk) +\d", line)}
    assert "openblas 1" in table["ssyrk"] and "torch 1" in table["toolkit"]  # --threads, not the inherited 2
    assert re.search(r"\d+\.\d+- *\d+\.\d+ s", table["toolkit"])             # min-max spread
    m = re.search(r"ssyrk \(baseline\) time / toolkit time: median [\d.]+x \(rounds [\d.]+-[\d.]+x\), "
                  r"max \|RDM difference\| ([\d.e+-]+)", text)
    assert m, text
    assert float(m.group(1)) < 1e-5                                         # the same RDM
