#!/usr/bin/env bash
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
#
# On a host with several GPUs (issue 15), after tests/gpu/device_run.sh installed ansible-core into /tmp/site:
#  1. the expected_gpu_count gate passes with the real count and refuses one more, naming the count;
#  2. the vllm role's TP x PP <= GPUs preflight, fed by gpu_health's real count (vllm_gpu_count null), accepts
#     tensor_parallel_size = N and refuses N x 2 with its message.
# Read-only on the GPUs. Results go to $OUT.
set -u
OUT=${OUT:-/tmp/gpu_health_out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=ansible.builtin.default ANSIBLE_CALLBACK_RESULT_FORMAT=json
tmp=$(mktemp -d)
mkdir -p "$tmp/ansible_collections/onprem"
ln -s "$PWD" "$tmp/ansible_collections/onprem/llm_serving"
export ANSIBLE_COLLECTIONS_PATH=$tmp
n=$(nvidia-smi -L | grep -c '^GPU ')
echo "GPUs: $n" | tee "$OUT/multi_gpu.txt"
gate() {
    python3 -m ansible adhoc localhost -i localhost, -c local -e ansible_python_interpreter=python3 -m onprem.llm_serving.gpu_health \
        -a "expected_gpu_count=$1 fail_on_unhealthy=true min_compute_capability=9.0" 2>&1
}
gate "$n" > "$OUT/gate_pass.txt"; pass_rc=$?
gate $((n + 1)) > "$OUT/gate_fail.txt"; fail_rc=$?
echo "gate expected_gpu_count=$n rc=$pass_rc (want 0); expected_gpu_count=$((n + 1)) rc=$fail_rc (want non-zero)" | tee -a "$OUT/multi_gpu.txt"
grep -o '"msg": "[^"]*' "$OUT/gate_fail.txt" | head -1 | tee -a "$OUT/multi_gpu.txt"
cat > "$tmp/play.yml" <<'PLAY'
- hosts: localhost
  gather_facts: false
  roles:
    - role: onprem.llm_serving.vllm
PLAY
sizing() {
    python3 -m ansible playbook -i localhost, -c local "$tmp/play.yml" --tags vllm_preflight \
        -e ansible_python_interpreter=python3 -e vllm_gpu=true -e vllm_package=vllm \
        -e "{\"vllm_instances\": [{\"name\": \"tp\", \"model\": \"/srv/llm/models/x\", \"tensor_parallel_size\": $1, \"pipeline_parallel_size\": $2}]}" 2>&1
}
sizing "$n" 1 > "$OUT/sizing_fit.txt"
sizing "$n" 2 > "$OUT/sizing_refused.txt"
fit=$(grep -A2 'Check tensor x pipeline parallel fits the GPUs' "$OUT/sizing_fit.txt" | grep -c '^ok:')
refused=$(grep -c "asks for tensor_parallel_size $n x pipeline_parallel_size 2 = $((n * 2)) GPUs, the host has $n (counted by gpu_health)" "$OUT/sizing_refused.txt")
echo "sizing: TP=$n PP=1 passes the GPU check: $fit (want 1); TP=$n PP=2 refused with the count from gpu_health: $refused (want >= 1)" | tee -a "$OUT/multi_gpu.txt"
rm -rf "$tmp"
[ "$pass_rc" = 0 ] && [ "$fail_rc" != 0 ] && [ "$fit" = 1 ] && [ "$refused" -ge 1 ]
