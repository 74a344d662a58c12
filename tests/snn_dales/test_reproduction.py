"""Reproduction of the source's numbers through the real pipeline (slow: ~20 min on 2 CPU cores).

Bands (source document, chance 8.3%): with the source's settings (per-dataset offset,
`first` signs, IE 0.5) test accuracy 75-84%; per-sample offsets about 83% +- 1; IE 0.2
about 70%; inhibitory inputs ablated -> about chance; all-excitatory 43-55%;
all-inhibitory at chance; hidden rates near 180 Hz at IE 0.5. The bands below are
those figures widened by the spread of a few seeds and shorter sweeps.
"""
import pandas as pd
import pytest

SWEEP = ["--sweep_ratios", "[0.2,0.5,1.0]", "--sweep_seeds", "3", "--test_sets", "5"]


def _summary(run):
    table = pd.read_csv(run / "tables/analysis/summary.csv")
    return {f"{a}/{q}": v for a, q, v in table.itertuples(index=False)}


@pytest.mark.slow
def test_source_settings_reproduce_the_reported_bands(run_main, tmp_path):
    rc, err = run_main("--config", "configs/snn_dales_paper.yaml", *SWEEP, "--analyze", "--run_name", "paper")
    assert rc == 0, err
    s = _summary(tmp_path / "runs/paper")
    print({k: round(v, 1) for k, v in s.items()})
    assert 72 <= s["accuracy/test_acc_pct"] <= 88                   # source: 75-84%
    assert s["ablation/acc_no_inhibitory_inputs"] <= 15             # about chance (8.3%)
    assert 120 <= s["tuning/mean_rate_hz"] <= 260                    # source: ~180 Hz
    assert 55 <= s["ie_sweep/acc_ie_0.2"] <= 82                      # source: ~70%
    assert s["ie_sweep/acc_ie_1"] <= 10                              # all inhibitory: chance
    assert 30 <= s["inhibition_site/acc_all-excitatory"] <= 62       # source: 43-55%
    assert s["inhibition_site/acc_all-excitatory"] < s["inhibition_site/acc_mixed"]


@pytest.mark.slow
def test_per_sample_offsets_reproduce_83_percent(run_main, tmp_path):
    rc, err = run_main("--config", "configs/snn_dales_paper.yaml", "--phase_offset", "per_sample",
                       "--test_sets", "5", "--analyze", "--only", "accuracy", "--run_name", "per_sample")
    assert rc == 0, err
    s = _summary(tmp_path / "runs/per_sample")
    print({k: round(v, 1) for k, v in s.items()})
    assert 78 <= s["accuracy/test_acc_pct"] <= 88                   # source: ~83% +- 1
