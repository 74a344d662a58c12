"""bench/bench_nrflv.py at its --quick size: the trajectory check, interleaved timings with their
spread and ratios, memory per chain and the schedule projection are all printed."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick_prints_its_lines():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_nrflv.py"), "--quick", "--steps", "1",
                          "--reps", "2", "--check_steps", "2", "--check_batch", "2", "--threads", "1"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "nrflv_quick" in text and "batch 8" in text and "threads 1" in text
    diffs = re.findall(r"max \|state diff\| ([\d.e+-]+).*max \|momentum diff\| ([\d.e+-]+)", text)
    assert len(diffs) == 2                                     # both phases checked
    assert all(float(a) < 1e-5 and float(b) < 1e-5 for a, b in diffs), text   # same trajectory
    for phase in ("positive", "negative"):
        assert re.search(rf"{phase} original +[\d.]+ \([\d.]+-[\d.]+\) ms/step +[\d.]+ steps/s", text), text
        assert re.search(rf"{phase} toolkit .* steps/s  speed-up [\d.]+x \([\d.]+-[\d.]+\)", text), text
    assert re.search(r"both phases \(500 \+ 500 steps per update\) toolkit +speed-up [\d.]+x", text), text
    assert "replay buffer: 19,968 B per stored chain (4 x 4,992)" in text
    assert re.search(r"sampler state \(tau, g, v, p\) [\d,]+ B", text)
    assert "47,500 updates x (500 + 500) sampler steps" in text and "not measured here" in text
