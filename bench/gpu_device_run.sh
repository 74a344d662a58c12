#!/usr/bin/env bash
# The GPU report in one prepared command, for a GPU machine whose python3 already holds torch
# (a lent device machine, or a cluster node with a PyTorch module loaded) but not this project's
# environment. The report's imports beyond torch, numpy, pyyaml, pandas and matplotlib: zuko
# (the dsn family; pure Python). Where pip cannot reach PyPI, bring its wheel in .whl/:
#
#   here:   echo /.whl/ >> .git/info/exclude
#           python3 -m pip download --no-deps --only-binary=:all: -d .whl zuko==1.6.0
#   there:  bash bench/gpu_device_run.sh                  # writes into $OUT (default ./gpu_report_out)
#           bash bench/gpu_device_run.sh --no_compile     # extra arguments go to bench/gpu_report.py
#
# Written: OUT/gpu_report/report.{csv,md} (rewritten after every family, so a run cut short keeps
# what it measured), OUT/gpu_report.log (everything printed) and OUT/nvidia_smi.csv (the GPU, its
# memory, driver and clocks). LIMIT (seconds, default 540) stops the whole run; BUDGET (minutes,
# default 7) is the report's --budget_min: no family starts after it.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_report_out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu_report_site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/gpu_report_site${PYTHONPATH:+:$PYTHONPATH}
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv \
    > "$out/nvidia_smi.csv" 2>&1 || true
python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$out/nvidia_smi.csv"
export PYTHONUNBUFFERED=1
timeout "${LIMIT:-540}" python3 bench/gpu_report.py --device cuda --out "$out/gpu_report" \
    --budget_min "${BUDGET:-7}" "$@" 2>&1 | tee "$out/gpu_report.log"
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "stopped after ${LIMIT:-540} s: $out/gpu_report/report.md holds the families finished" \
    | tee -a "$out/gpu_report.log"
exit "$status"
