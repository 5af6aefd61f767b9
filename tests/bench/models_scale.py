# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): how the models role's re-run grows with the number of models.

For each count of models (default 1, 10, 30), a converged host is laid out in a temporary directory on this machine
(each model's revision verified, its served symlink in place, its stat cache written by a first run), then the models
role runs again with nothing to change, `--rounds` times (default 3): the median wall time, the task results and
`changed=0` are printed. Connection local, so a round trip costs little here: what grows with the models is Ansible's
own work per task (over SSH each remote call adds its round trip on top).

`--tree DIR` runs the role of another checkout of the collection (for a before/after: `git worktree add /tmp/before
<commit>`), the default is this one. Run from the repository root:
    .venv/bin/python tests/bench/models_scale.py [--counts 1 10 30] [--rounds 3] [--tree DIR]
"""
from __future__ import annotations

import argparse
import grp
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILES = {"config.json": b"{}", "model.safetensors": b"weights" * 64, "tokenizer.json": b"tok"}


def layout(base, count):
    """count tiny hf models on the "controller" (with SHA256SUMS), and models_root; returns models_list."""
    models = []
    for i in range(count):
        src = os.path.join(base, "src", "m%02d" % i)
        os.makedirs(src)
        for rel, data in FILES.items():
            with open(os.path.join(src, rel), "wb") as handle:
                handle.write(data)
        with open(os.path.join(src, "SHA256SUMS"), "w", encoding="utf-8") as handle:
            handle.write("".join("%s  %s\n" % (hashlib.sha256(d).hexdigest(), r) for r, d in sorted(FILES.items())))
        models.append({"name": "m%02d" % i, "format": "hf", "revision": "r1", "src": src})
    return models


def run(base, tree, models):
    collections = os.path.join(base, "collections", "ansible_collections", "onprem")
    if not os.path.exists(collections):
        os.makedirs(collections)
        os.symlink(tree, os.path.join(collections, "llm_serving"))
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": {"ansible_python_interpreter": sys.executable, "models_root": os.path.join(base, "root"),
                      "models_list": models, "models_group": grp.getgrgid(os.getgid()).gr_name,
                      "models_in_use_globs": [os.path.join(base, "units", "*.service")]},
             "roles": [{"role": "onprem.llm_serving.models"}]}]
    with open(os.path.join(base, "play.yml"), "w", encoding="utf-8") as handle:
        json.dump(play, handle)
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=os.path.join(base, "collections"),
               ANSIBLE_NOCOLOR="1")
    start = time.monotonic()
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           os.path.join(base, "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    recap = re.search(r"localhost\s*: ok=(\d+)\s+changed=(\d+).*?skipped=(\d+)", proc.stdout)
    if proc.returncode != 0 or not recap:
        sys.exit("the models role failed (rc %d):\n%s" % (proc.returncode, (proc.stdout + proc.stderr)[-3000:]))
    ok, changed, skipped = (int(x) for x in recap.groups())
    return took, ok + skipped, changed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 30])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", default=ROOT, help="the collection's checkout whose models role runs (default: this one)")
    args = parser.parse_args()
    tree = os.path.abspath(args.tree)
    commit = subprocess.run(["git", "-C", tree, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    print("# models role re-run with nothing to change, connection local, tree %s (%s), %s, load %s"
          % (tree, commit or "?", time.strftime("%Y-%m-%d %H:%M", time.gmtime()), os.getloadavg()[0]))
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix="models-scale-") as base:
            models = layout(base, count)
            first, _tasks, first_changed = run(base, tree, models)       # stages every model, writes the stat caches
            times, tasks, changed = [], 0, []
            for _round in range(args.rounds):
                took, tasks, chg = run(base, tree, models)
                times.append(took)
                changed.append(chg)
            print("models %3d: first run %.1f s (changed=%d); re-runs %s s, median %.2f s; %d task results; changed=%s"
                  % (count, first, first_changed, ", ".join("%.2f" % t for t in times), statistics.median(times), tasks,
                     ",".join(str(c) for c in changed)))


if __name__ == "__main__":
    main()
