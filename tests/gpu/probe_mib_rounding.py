# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Record NVML's bytes next to nvidia-smi's MiB, to find nvidia-smi's bytes->MiB rule.

    python3 tests/gpu/probe_mib_rounding.py --out DIR

For every GPU, in several memory states (idle, a CUDA context, a few allocations of odd sizes
held by a PyTorch helper process), reads in this order:
  1. NVML nvmlDeviceGetMemoryInfo_v2 (total, reserved, used, free, bytes) and the compute
     processes' usedGpuMemory (bytes),
  2. nvidia-smi --query-gpu=memory.total,memory.reserved,memory.used,memory.free (MiB) and
     --query-compute-apps=pid,used_memory (MiB),
  3. NVML again; a sample counts only when both NVML reads agree (nothing moved meanwhile).
Then prints, for each MiB field, which candidate rule (floor, ceil, round half up, round half
to even, and reserved derived as floor(total) - floor(used) - floor(free)) matches every
sample.  Writes mib_samples.json (source of tests/fixtures/nvml/*-mib-samples.json).
Read-only on the GPU apart from the helper's allocations.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MIB = 1024 * 1024

HOLDER = r"""
import sys, torch
keep = []
print("READY", flush=True)
for line in sys.stdin:
    n = int(line)
    if n == 0:
        torch.cuda.init(); torch.zeros(1, device="cuda"); torch.cuda.synchronize()
    else:
        keep.append(torch.empty(n, dtype=torch.uint8, device="cuda")); torch.cuda.synchronize()
    print("OK", flush=True)
"""

# bytes each step allocates in the helper (0: create the CUDA context only); odd sizes on purpose
STEPS = (0, 1, 3 * MIB + 12345, 100 * MIB + 1, 4096 * MIB, 777 * MIB + 4097)

RULES = {
    "floor": lambda b: b // MIB,
    "ceil": lambda b: -(-b // MIB),
    "round_half_up": lambda b: (b + MIB // 2) // MIB,
    "round_half_even": lambda b: round(b / MIB),
}


def nvml_read(nvml, handles):
    out = []
    for handle in handles:
        mem = nvml.nvmlDeviceGetMemoryInfo(handle, version=nvml.nvmlMemory_v2)
        try:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except nvml.NVMLError:
            procs = nvml.nvmlDeviceGetComputeRunningProcesses_v2(handle)
        out.append({
            "total": int(mem.total), "reserved": int(mem.reserved), "used": int(mem.used), "free": int(mem.free),
            "processes": sorted((int(p.pid), None if p.usedGpuMemory is None else int(p.usedGpuMemory)) for p in procs),
        })
    return out


def smi_read():
    gpus = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total,memory.reserved,memory.used,memory.free",
                           "--format=csv,noheader,nounits"], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    apps = subprocess.run(["nvidia-smi", "--query-compute-apps=gpu_bus_id,pid,used_memory", "--format=csv,noheader,nounits"],
                          stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    rows = []
    for line in gpus.strip().splitlines():
        idx, total, reserved, used, free = [int(x.strip()) for x in line.split(",")]
        rows.append({"index": idx, "total": total, "reserved": reserved, "used": used, "free": free})
    procs = []
    for line in apps.strip().splitlines():
        parts = [x.strip() for x in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit():
            procs.append({"bus_id": parts[0], "pid": int(parts[1]), "used_mib": int(parts[2]) if parts[2].isdigit() else None})
    return rows, procs


def sample(nvml, handles, bus_ids, state, samples):
    for _try in range(5):
        before = nvml_read(nvml, handles)
        rows, procs = smi_read()
        after = nvml_read(nvml, handles)
        if before == after:
            for index, raw in enumerate(before):
                smi = rows[index]
                apps = sorted((p["pid"], p["used_mib"]) for p in procs if p["bus_id"].lower() == bus_ids[index].lower())
                samples.append({"state": state, "gpu": index, "nvml_bytes": raw, "smi_mib": {
                    "total": smi["total"], "reserved": smi["reserved"], "used": smi["used"], "free": smi["free"],
                    "processes": apps}})
            return True
        time.sleep(0.2)
    print("state %s: NVML moved under every try, no sample" % state)
    return False


def judge(samples):
    lines = []
    for field in ("total", "reserved", "used", "free"):
        matches = [name for name, rule in RULES.items()
                   if all(rule(s["nvml_bytes"][field]) == s["smi_mib"][field] for s in samples)]
        fracs = sorted(set(s["nvml_bytes"][field] % MIB for s in samples))
        lines.append("memory.%-9s rules matching every sample: %-40s (fractions seen, bytes past a whole MiB: %s)"
                     % (field, ", ".join(matches) or "NONE", fracs[:8]))
    derived = all(s["nvml_bytes"]["total"] // MIB - s["nvml_bytes"]["used"] // MIB - s["nvml_bytes"]["free"] // MIB
                  == s["smi_mib"]["reserved"] for s in samples)
    lines.append("memory.reserved as floor(total) - floor(used) - floor(free): %s" % ("matches" if derived else "does not match"))
    pairs = [(b, m) for s in samples for (pid_b, b), (pid_m, m) in zip(s["nvml_bytes"]["processes"], s["smi_mib"]["processes"])
             if pid_b == pid_m and b is not None and m is not None]
    matches = [name for name, rule in RULES.items() if pairs and all(rule(b) == m for b, m in pairs)]
    lines.append("processes.used_memory rules matching every sample: %s (n=%d, fractions %s)"
                 % (", ".join(matches) or "NONE", len(pairs), sorted(set(b % MIB for b, _m in pairs))[:8]))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import pynvml as nvml  # pylint: disable=import-outside-toplevel
    nvml.nvmlInit()
    samples = []
    holder = None
    try:
        count = nvml.nvmlDeviceGetCount()
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        bus_ids = [nvml.nvmlDeviceGetPciInfo(h).busId for h in handles]
        bus_ids = [b.decode() if isinstance(b, bytes) else b for b in bus_ids]
        sample(nvml, handles, bus_ids, "idle", samples)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  universal_newlines=True, env=env)
        if holder.stdout.readline().strip() != "READY":
            raise SystemExit("helper did not start")
        for step in STEPS:
            holder.stdin.write("%d\n" % step)
            holder.stdin.flush()
            if holder.stdout.readline().strip() != "OK":
                raise SystemExit("helper failed at step %d" % step)
            time.sleep(0.5)
            sample(nvml, handles, bus_ids, "context" if step == 0 else "+%d bytes" % step, samples)
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        nvml.nvmlShutdown()
    for s in samples:
        b, m = s["nvml_bytes"], s["smi_mib"]
        print("%-22s gpu%d  " % (s["state"], s["gpu"]) + "  ".join(
            "%s %d B = %.4f MiB -> smi %d" % (k, b[k], b[k] / MIB, m[k]) for k in ("total", "reserved", "used", "free"))
            + "  procs %s -> smi %s" % (b["processes"], m["processes"]))
    verdict = judge(samples)
    for line in verdict:
        print(line)
    with open(os.path.join(args.out, "mib_samples.json"), "w") as handle:
        json.dump({"samples": samples, "verdict": verdict}, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
