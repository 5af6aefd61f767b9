#!/usr/bin/env python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role's GPU textfile probe on a real GPU (run on the device machine, from the repository root).

Runs roles/monitoring/files/onprem_llm_probe.py `gpu` exactly as its systemd timer does (the script, a lib/ directory
holding the collection's module_utils, a probe.json), twice (the XID totals persist across runs), then compares the
textfile it wrote with `nvidia-smi`: GPU count, temperature (within 3 C: read a moment apart), PCIe link width and
generation (current and max), volatile uncorrected ECC errors, retired pages / remapped rows, and checks the state
line and that every sample line is in Prometheus' text format. Read-only on the GPU. Prints each comparison and writes
the textfile and the report to --out; exit 1 on a mismatch.

    OUT=/tmp/out python3 tests/gpu/prove_gpu_probe.py --out "$OUT"
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="(\\.|[^"\\])*",?)*\})? -?([0-9.e+-]+|NaN|\+Inf|-Inf)$')


def smi(fields):
    out = subprocess.run(["nvidia-smi", "--query-gpu=" + ",".join(fields), "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, check=True).stdout
    return [dict(zip(fields, [v.strip() for v in line.split(",")])) for line in out.strip().splitlines()]


def metrics(text):
    """{(name, frozenset(labels)): value} of the sample lines."""
    found = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        assert SAMPLE.match(line), "not Prometheus text format: %r" % line
        head, value = line.rsplit(" ", 1)
        name, _brace, rest = head.partition("{")
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"', rest))
        found[(name, labels)] = float(value)
    return found


def value(found, name, **labels):
    hits = [v for (n, ls), v in found.items() if n == name and all((k, str(w)) in ls for k, w in labels.items())]
    return hits[0] if len(hits) == 1 else (None if not hits else hits)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "/tmp/gpu_probe_out"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="gpu-probe-")
    # the layout the role installs: the script, lib/ansible_collections/onprem/llm_serving/plugins/module_utils
    lib = os.path.join(work, "lib", "ansible_collections", "onprem", "llm_serving", "plugins")
    os.makedirs(lib)
    shutil.copytree(os.path.join(REPO, "plugins", "module_utils"), os.path.join(lib, "module_utils"))
    shutil.copy(os.path.join(REPO, "roles", "monitoring", "files", "onprem_llm_probe.py"), work)
    config = {"textfile_dir": os.path.join(work, "textfile"), "state_dir": os.path.join(work, "state"), "timeout": 30,
              "endpoints": [], "gpu": {"expected": True, "xid_watch_seconds": 2}}
    os.makedirs(config["textfile_dir"])
    os.makedirs(config["state_dir"])
    with open(os.path.join(work, "probe.json"), "w") as f:
        json.dump(config, f)
    report, failures = [], []
    for run in (1, 2):
        started = time.monotonic()
        proc = subprocess.run([sys.executable, os.path.join(work, "onprem_llm_probe.py"), "gpu", "--config", os.path.join(work, "probe.json")],
                              capture_output=True, text=True, check=False)
        report.append("run %d: rc %d in %.2f s: %s%s" % (run, proc.returncode, time.monotonic() - started, proc.stdout.strip(),
                                                         proc.stderr.strip()))
        if proc.returncode != 0:
            failures.append("probe run %d failed" % run)
    files = os.listdir(config["textfile_dir"])
    report.append("textfile dir: %s" % files)
    text = open(os.path.join(config["textfile_dir"], files[0])).read() if files else ""
    with open(os.path.join(args.out, "gpu_probe.prom"), "w") as f:
        f.write(text)
    found = metrics(text)
    rows = smi(["index", "pci.bus_id", "temperature.gpu", "pcie.link.width.current", "pcie.link.width.max", "pcie.link.gen.current",
                "pcie.link.gen.max", "ecc.errors.uncorrected.volatile.total", "retired_pages.pending"])

    def check(what, ok, detail):
        report.append("%-4s %s: %s" % ("ok" if ok else "FAIL", what, detail))
        if not ok:
            failures.append(what)

    check("state", value(found, "onprem_gpu_probe_state", state="ok") == 1,
          {dict(ls).get("state"): v for (n, ls), v in found.items() if n == "onprem_gpu_probe_state"})
    check("GPU count", value(found, "onprem_gpu_probe_gpus") == len(rows), "%s vs nvidia-smi %d" % (value(found, "onprem_gpu_probe_gpus"), len(rows)))
    for row in rows:
        idx = row["index"]
        temp = value(found, "onprem_gpu_temperature_celsius", gpu=idx)
        check("GPU %s temperature" % idx, temp is not None and abs(temp - float(row["temperature.gpu"])) <= 3,
              "%s vs nvidia-smi %s" % (temp, row["temperature.gpu"]))
        widths = {dict(ls).get("link", "?"): v for (n, ls), v in found.items() if n == "onprem_gpu_pcie_link_width" and ("gpu", idx) in ls}
        gens = {dict(ls).get("link", "?"): v for (n, ls), v in found.items() if n == "onprem_gpu_pcie_link_gen" and ("gpu", idx) in ls}
        check("GPU %s PCIe width" % idx, widths == {"current": float(row["pcie.link.width.current"]), "max": float(row["pcie.link.width.max"])},
              "%s vs nvidia-smi current %s max %s" % (widths, row["pcie.link.width.current"], row["pcie.link.width.max"]))
        check("GPU %s PCIe gen" % idx, gens.get("max") == float(row["pcie.link.gen.max"]) and gens.get("current") is not None,
              "%s vs nvidia-smi current %s max %s" % (gens, row["pcie.link.gen.current"], row["pcie.link.gen.max"]))
        ecc = {tuple(sorted(dict(ls).items())): v for (n, ls), v in found.items() if n == "onprem_gpu_ecc_errors" and ("gpu", idx) in ls}
        want = row["ecc.errors.uncorrected.volatile.total"]
        volatile_unc = [v for k, v in ecc.items() if ("scope", "volatile") in k and ("kind", "uncorrected") in k]
        check("GPU %s volatile uncorrected ECC" % idx, want in ("[N/A]", "N/A") or volatile_unc == [float(want)],
              "%s vs nvidia-smi %s" % (volatile_unc, want))
        check("GPU %s XID counter" % idx, value(found, "onprem_gpu_xid_events_total", gpu=idx) is not None,
              value(found, "onprem_gpu_xid_events_total", gpu=idx))
    report.append("%d sample lines, %d metric names" % (len(found), len({n for n, _ls in found})))
    with open(os.path.join(args.out, "gpu_probe_report.txt"), "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))
    print("\n".join(line for line in text.splitlines() if not line.startswith("#"))[:6000])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
