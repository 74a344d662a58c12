#!/usr/bin/env bash
# The GPU checks in prepared commands, for a GPU machine whose python3 already holds torch (a lent
# device machine, or a cluster node with a PyTorch module loaded) but not this project's
# environment.
#
#   bash bench/gpu_device_run.sh report [ARGS]   # bench/gpu_report.py --device cuda [ARGS]
#   bash bench/gpu_device_run.sh tests  [ARGS]   # the gpu-marked tests: pytest -m gpu [ARGS]
#
# Beyond torch, numpy, pyyaml, pandas, matplotlib, scikit-learn, scikit-image and pytest, the
# report needs zuko (the dsn family; pure Python) and the tests need zarr (the recording store).
# Where pip cannot reach PyPI, bring their wheels in .whl/ (the script installs what it finds
# there); for a Python 3.12 machine:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl zuko==1.6.0 zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
#
# WHEELS names another folder of wheels than .whl. Written into $OUT (default ./gpu_report_out):
# nvidia_smi.csv (the GPU, its memory, driver and clocks; the Python, torch and CUDA versions); for
# `report`: gpu_report/report.{csv,md} (rewritten after every family, so a run cut short keeps
# what it measured) and gpu_report.log; for `tests`: gpu_tests.log. LIMIT (seconds; default 540
# for the report, 240 for the tests) stops the command; BUDGET (minutes, default 7) is the
# report's --budget_min: no family starts after it.
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-report}
[ $# -gt 0 ] && shift
case "$mode" in report|tests) ;; *) echo "usage: $0 report|tests [ARGS]" >&2; exit 2 ;; esac
out=${OUT:-gpu_report_out}
mkdir -p "$out"
wheels=${WHEELS:-.whl}
if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_report_site \
        "$wheels"/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu_report_site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
    > "$out/nvidia_smi.csv" 2>&1 || true
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$out/nvidia_smi.csv"
export PYTHONUNBUFFERED=1
if [ "$mode" = tests ]; then
    limit=${LIMIT:-240}
    timeout "$limit" python3 -m pytest -m gpu -q -rs --continue-on-collection-errors "$@" 2>&1 | tee "$out/gpu_tests.log"
    status=${PIPESTATUS[0]}
    log=$out/gpu_tests.log
else
    limit=${LIMIT:-540}
    timeout "$limit" python3 bench/gpu_report.py --device cuda --out "$out/gpu_report" \
        --budget_min "${BUDGET:-7}" "$@" 2>&1 | tee "$out/gpu_report.log"
    status=${PIPESTATUS[0]}
    log=$out/gpu_report.log
fi
[ "$status" = 124 ] && echo "stopped after $limit s (LIMIT); what finished is in $out" | tee -a "$log"
exit "$status"
