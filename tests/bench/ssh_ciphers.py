# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): how fast a large file crosses the lab's SSH with each cipher, the
reason ansible.cfg lists AES-GCM first in `Ciphers` (README, "Deploy speed and fleets").

The file (default: the vLLM wheelhouse pack the vllm role copies, or --file) is streamed to a lab host through
`ssh -F .lab/ssh/config -c CIPHER HOST 'cat > /dev/null'` (a fresh connection each time, no ControlMaster), the
ciphers alternating, --rounds times; the median seconds and MB/s of each are printed. Run after `make lab`:
    .venv/bin/python tests/bench/ssh_ciphers.py [--host llm-lab-2] [--rounds 3] [--file PATH]
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CIPHERS = ["chacha20-poly1305@openssh.com", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="llm-lab-2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", default="")
    args = parser.parse_args()
    path = args.file or max(glob.glob(os.path.join(os.environ.get("TMPDIR", "/tmp"), "onprem-llm-serving",
                                                   "vllm-wheelhouse-*.tar")), key=os.path.getmtime)
    size = os.path.getsize(path)
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        load = loadavg.read().split()[0]
    print("# %s (%d MB) to %s, %d rounds, load %s" % (os.path.basename(path), size // 10**6, args.host, args.rounds, load))
    times = {c: [] for c in CIPHERS}
    for _round in range(args.rounds):
        for cipher in CIPHERS:
            with open(path, "rb") as data:
                start = time.monotonic()
                subprocess.run(["ssh", "-F", os.path.join(ROOT, ".lab", "ssh", "config"), "-o", "ControlMaster=no",
                                "-o", "ControlPath=none", "-c", cipher, args.host, "cat > /dev/null"],
                               stdin=data, check=True)
                times[cipher].append(time.monotonic() - start)
    for cipher in CIPHERS:
        median = statistics.median(times[cipher])
        shown = ", ".join("%.2f" % t for t in times[cipher])
        print("%-32s %s s; median %.2f s, %.0f MB/s" % (cipher, shown, median, size / median / 10**6))


if __name__ == "__main__":
    main()
