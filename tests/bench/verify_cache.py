# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): what a re-run's model and bundle check costs, with and without the
stat cache of onprem.llm_serving.manifest_verify (issue 14: re-runs in seconds, whatever the models weigh).

A synthetic model of --gib GiB (4 shards of random bytes, so nothing is sparse or compressible) is written under
--dir, its SHA256SUMS pinned, then checked the ways the roles check it:

- full:      every shard hashed (what every re-run did before the stat cache, on the controller for the bundle and
             on each host for each model revision);
- first:     the first check with the cache (hashes, records each file's signature);
- cached:    the re-run (reads stat only);
- after one shard is rewritten: that shard alone is hashed again.

Each is timed with the page cache as it is (the files were just written: the best case for `full`, which on a real
site often reads from disk). Run from the repository root:
    .venv/bin/python tests/bench/verify_cache.py [--gib 4] [--dir /var/tmp]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from ansible_collections.onprem.llm_serving.plugins.module_utils import _bundle  # noqa: E402  pylint: disable=wrong-import-position


def timed(fn):
    start = time.monotonic()
    value = fn()
    return time.monotonic() - start, value


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=4.0)
    parser.add_argument("--dir", default="/var/tmp")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="verify-cache-bench-", dir=args.dir)
    try:
        shard = int(args.gib * (1 << 30) / 4)
        block = os.urandom(1 << 20)
        for i in range(4):
            with open(os.path.join(work, "model-%05d-of-00004.safetensors" % (i + 1)), "wb") as handle:
                written = 0
                while written < shard:
                    handle.write(block[: min(len(block), shard - written)])
                    written += min(len(block), shard - written)
                    block = block[1:] + block[:1]
        entries = {rel: _bundle.sha256_file(os.path.join(work, rel)) for rel in _bundle.list_files(work)}
        total = sum(os.path.getsize(os.path.join(work, rel)) for rel in entries)
        load = open("/proc/loadavg").read().split()[0]
        print("synthetic model: %d shards, %.2f GiB, in %s (load %s)" % (len(entries), total / (1 << 30), work, load))

        def check(cache):
            stats = _bundle.VerifyStats()
            bad = _bundle.verify_entries(work, entries, cache, stats)
            assert not bad, bad
            return stats

        rows = []
        secs, stats = timed(lambda: check(None))
        rows.append(("full (no cache: every re-run before)", secs, stats))
        cache = {}
        secs, stats = timed(lambda: check(cache))
        rows.append(("first check with the cache (records)", secs, stats))
        secs, stats = timed(lambda: check(cache))
        rows.append(("re-run with the cache (stat only)", secs, stats))
        first = os.path.join(work, sorted(entries)[0])
        data = open(first, "rb").read()
        os.unlink(first)
        with open(first, "wb") as handle:
            handle.write(data)
        secs, stats = timed(lambda: check(cache))
        rows.append(("after one shard was rewritten", secs, stats))
        for label, secs, stats in rows:
            print("  %-40s %8.3f s  hashed %d file(s), %.2f GiB; from the cache %d" % (
                label, secs, stats.hashed_files, stats.hashed_bytes / (1 << 30), stats.cached_files))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
