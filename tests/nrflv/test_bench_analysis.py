"""bench/bench_nrflv_analysis.py at a tiny size: the toolkit and the baseline agree on the same
quantities (and find the lag built into the synthetic momentum), sizes, interleaved timings with
their spread and ratios, and the thesis-scale projection (closed-form sizes) are all printed.
No timing is asserted."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MS_PER_STEP = 70.0 / 17.0


def number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in:\n{text}"
    return float(m.group(1).replace(",", ""))


def test_bench_analysis_tiny_prints_its_lines(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_nrflv_analysis.py"), "--steps", "270",
                          "--sets", "just_angle,contrast_and_angle", "--baseline_layer_hw", "8", "--rounds", "1",
                          "--threads", "1", "--workdir", str(tmp_path / "work")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "threads 1" in text and "32 trials (just_angle 16, contrast_and_angle 16) x 270 steps" in text
    assert "burn-in 10 / blank 100 / stimulus 100 / blank 60" in text          # 100/1000/1000/600 scaled
    # the same quantities agree (the same float32 values on both sides)
    assert number(r"max \|d pref\. orientation\| ([\d.e+-]+) deg", text) < 1e-4
    assert number(r"max \|d R\^2\| ([\d.e+-]+)", text) < 1e-6
    assert "tuned flags equal 32/32" in text
    assert number(r"spectra \(stimulus, 16 trials\): max \|d peak\| ([\d.e+-]+) Hz", text) == 0.0
    assert number(r"spectra \(stimulus.*max rel\. \|d peak power\| ([\d.e+-]+)", text) < 1e-6
    assert number(r"ei_lag \(.*\): max \|d lag\| ([\d.e+-]+) ms", text) < 1e-6
    assert "NaN lags" not in text
    # ground truth: -p is s delayed by one step; the oscillation sits at 35 + 5 x contrast Hz
    assert abs(number(r"mean lag ([\d.e+-]+) ms", text) - MS_PER_STEP) < 0.3 * MS_PER_STEP
    assert 35.0 <= number(r"spectra \(stimulus.*median peak ([\d.]+) Hz", text) <= 50.0
    # sizes: float16 store within its uncompressed bound; baseline files exactly (trials, 32, 8, 8) float32
    per = number(r"toolkit store: .*\((\d+) B per trial-step", text)
    assert 0 < per <= 2304
    assert number(r"baseline files: ([\d,]+) float32 \.npy", text) == 2 * 2 * 270          # sets x variables x steps
    assert number(r"layer 32 x 8 x 8: .*\(([\d,]+) B per trial-step\)", text) == 2 * (128 + 4 * 16 * 32 * 64) / 16
    # timings: medians (min-max) and per-round ratios, for the battery and each quantity
    assert re.search(r"toolkit battery \(every analysis.*\) [\d.]+ \([\d.]+-[\d.]+\) s; with the analyses' "
                     r"figures stubbed out [\d.]+ \([\d.]+-[\d.]+\) s", text), text
    assert "synchrony: " in text                                                # skipped without its sets
    for q in ("tuning", "spectra", "ei_lag"):
        assert re.search(rf"{q} +toolkit +[\d.]+ \([\d.]+-[\d.]+\) s +baseline +[\d.]+ \([\d.]+-[\d.]+\) s +"
                         rf"speed-up [\d.]+x \([\d.]+-[\d.]+\)", text), text
    # projection: closed-form sizes of the thesis scale
    assert "5 sets x 128 trials x 2,700 steps = 1,728,000 trial-steps" in text
    assert "524,288 B/trial-step x 1,728,000 = 843.75 GiB (168.75 GiB per set)" in text
    assert re.search(r"us/trial-step x 1,728,000 \+ [\d.]+ s = ", text)
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())   # cleaned up
