# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every file or directory of this repository that the README names (in backticks) exists: the measurements it quotes
point at their result files, the behaviours at their tests and code. A rename or a removed file fails here, not when a
reader follows the link."""
from __future__ import annotations

import os
import re

from conftest import ROOT

RESULTS = os.path.join("tests", "bench", "results")
# the repository's top-level directories whose paths the README names
TOP = ("roles", "tests", "plugins", "tools", "playbooks", "inventories", "docs", "requirements", ".ci")


def named_paths(text):
    """Repository paths in backticks: `roles/vllm/files/install_uv.py`, `tests/bench/results/x.txt`, `tools/lab.py up`
    (the command's first word), `tests/x.py::test_y` (the file); not placeholders (<...>) or globs."""
    found = set()
    for quoted in re.findall(r"`([^`\n]+)`", text):
        first = quoted.split()[0].split("::")[0].rstrip(".,;:)")
        if first.split("/")[0] in TOP and "/" in first and not re.search(r"[<>{}$*]", first):
            found.add(first)
    return found


def named_results(text):
    """Result files the README names by their file name alone (the deploy-speed table's cells and "Files:" lines):
    `site-vs-manual-2026-12-01.txt` is tests/bench/results/site-vs-manual-2026-12-01.txt."""
    return {os.path.join(RESULTS, name) for name in re.findall(r"`([^`\n/ ]+\.txt)`", text)}


def test_named_paths_are_found_in_a_sample():
    sample = "see `tests/bench/results/a.txt`, run `tools/lab.py up --hosts 2`, `roles/x/tests/t.py::test_y`, `<revision>/x`, `dist/y`"
    assert named_paths(sample) == {"tests/bench/results/a.txt", "tools/lab.py", "roles/x/tests/t.py"}
    assert named_results("files: `fleet-a.txt`, `b.txt`; not `tests/c.txt` or `d.txt more`") == {
        "tests/bench/results/fleet-a.txt", "tests/bench/results/b.txt"}


def test_every_path_the_readme_names_exists():
    text = open(os.path.join(ROOT, "README.md")).read()
    paths = named_paths(text)
    assert len(paths) > 50, sorted(paths)  # the README names its tests, results and code: the pattern still finds them
    paths |= named_results(text)
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(ROOT, p.rstrip("/"))))
    assert not missing, "README.md names paths this checkout does not have: %s" % missing
