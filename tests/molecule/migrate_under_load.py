# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The TGI -> vLLM migration under load (Molecule tgi, verify_migration.yml runs it on the controller).

A steady open-loop load through the door (tests/integration/rolling_load.py: llm_benchmark's client, streamed chat,
Poisson arrivals, a connection per request) with the client's URL, key and model name fixed, while
``ansible-playbook playbooks/migrate_tgi_to_vllm.yml`` runs against the scenario's host; then the load's report
(before / during / after, 5-second windows). Exit 0 only when the playbook passed and no request failed.

  migrate_under_load.py --url https://HOST:8445 --model tgi --out DIR -- ansible-playbook ARGS...
The key is read from the environment (MIGRATE_LOAD_KEY), never from the command line."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import rolling_load  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds of load before and after the playbook")
    parser.add_argument("--out", required=True, help="directory for playbook.log and report.json")
    parser.add_argument("playbook", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.playbook[1:] if args.playbook[:1] == ["--"] else args.playbook
    os.makedirs(args.out, exist_ok=True)
    load = rolling_load.Load(args.url, os.environ["MIGRATE_LOAD_KEY"], None, args.model, args.rate, validate_certs=False).start()
    time.sleep(args.settle)
    t_start = time.perf_counter()
    with open(os.path.join(args.out, "playbook.log"), "w") as log:
        rc = subprocess.call(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    t_end = time.perf_counter()
    time.sleep(args.settle)
    records = load.stop()
    rep = rolling_load.report(records, t_start, t_end)
    rep["playbook_rc"] = rc
    rep["load_errors"] = load.errors
    with open(os.path.join(args.out, "report.json"), "w") as handle:
        json.dump(rep, handle, indent=1)
    print("\n".join(rolling_load.lines("migrate_tgi_to_vllm.yml under %.1f requests/s" % args.rate, rep)))
    print("playbook rc %d; load client errors: %s" % (rc, load.errors or "none"))
    return 0 if rc == 0 and rep["all"]["failed"] == 0 and rep["all"]["requests"] > 0 and not load.errors else 1


if __name__ == "__main__":
    sys.exit(main())
