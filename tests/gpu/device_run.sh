#!/usr/bin/env bash
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# The gpu_health proof, benchmark and probes on a GPU machine, from the repository root.
# ansible-core travels as wheels in .whl/ (see tests/gpu/README.md); results go to $OUT.
# Read-only on the GPU: nothing here changes persistence, clocks, power limits, compute or
# MIG modes, and nothing resets a GPU.
set -u
OUT=${OUT:-/tmp/gpu_health_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
{
    date -u
    uname -a
    nvidia-smi --version
    python3 -c 'import sys; from importlib.metadata import version as v; print(sys.executable, sys.version.split()[0], "ansible-core", v("ansible-core"), "nvidia-ml-py", v("nvidia-ml-py"))'
} 2>&1 | tee "$OUT/env.txt"
python3 tests/gpu/prove_gpu_health.py --out "$OUT" "$@" > /tmp/gpu_health_prove.log 2>&1
prove_rc=$?
cat /tmp/gpu_health_prove.log
python3 tests/gpu/bench_gpu_health.py --rounds 50 --out "$OUT" 2>&1 | tee "$OUT/bench.txt"
# nvidia-smi's bytes->MiB rule, and where the first-read-after-nvmlInit time goes
python3 tests/gpu/probe_mib_rounding.py --out "$OUT" 2>&1 | tee "$OUT/mib.txt"
python3 tests/gpu/probe_first_read.py --rounds 20 2>&1 | tee "$OUT/first_read.txt"
nvidia-smi topo -m 2>&1 | sed 's/\x1b\[[0-9;]*m//g' > "$OUT/topo.txt"
echo "prove rc=$prove_rc"
exit $prove_rc
