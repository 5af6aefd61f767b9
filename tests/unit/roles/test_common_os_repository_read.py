# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The common role reads, in one call, whether this repository's copy on the host was verified, which copies of older
repositories to remove, and whether apt's lists already index this copy (then a re-run skips apt-get update): the
script of roles/common/tasks/os_repository.yml, run as the task runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
TASK = "Read the copies of the repository on the host and apt's lists of them"


def read_script():
    with open(os.path.join(ROOT, "roles", "common", "tasks", "os_repository.yml"), encoding="utf-8") as handle:
        for block in yaml.safe_load(handle):
            for task in block.get("block", []):
                if task.get("name") == TASK:
                    argv = task["ansible.builtin.command"]["argv"]
                    assert argv[:2] == ["python3", "-c"] and len(argv) == 7
                    return argv[2]
    raise AssertionError("no task %r in roles/common/tasks/os_repository.yml" % TASK)


def read(tmp_path, name="debian-12-0123456789abcdef"):
    parent, lists = tmp_path / "os-repository", tmp_path / "lists"
    out = subprocess.run([sys.executable, "-c", read_script(), str(parent / name), str(parent), "debian-12", str(lists)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_a_fresh_host_has_nothing(tmp_path):
    assert read(tmp_path) == {"verified": False, "older": [], "indexed": False}


def test_a_verified_indexed_copy_and_the_older_copies_to_remove(tmp_path):
    parent, lists = tmp_path / "os-repository", tmp_path / "lists"
    (parent / "debian-12-0123456789abcdef").mkdir(parents=True)
    (parent / "debian-12-0123456789abcdef" / ".verified").write_text("")
    for other in ("debian-12-00000000000000aa", "debian-12-00000000000000bb"):
        (parent / other).mkdir()
    (parent / "debian-11-00000000000000cc").mkdir()              # another release's copy is not this one's to remove
    (parent / "debian-12-notes").write_text("")                     # nor a file
    (parent / "debian-12-link").symlink_to("debian-12-00000000000000aa")
    lists.mkdir()
    mangled = str(parent / "debian-12-0123456789abcdef").strip("/").replace("/", "_")
    (lists / ("_%s_._InRelease" % mangled)).write_text("")
    found = read(tmp_path)
    assert found["verified"] is True and found["indexed"] is False   # signed index without its Packages: update again
    (lists / ("_%s_._Packages" % mangled)).write_text("")
    found = read(tmp_path)
    assert found == {"verified": True, "indexed": True,
                     "older": [str(parent / "debian-12-00000000000000aa"), str(parent / "debian-12-00000000000000bb")]}


def test_lists_of_an_older_copy_do_not_count(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    for suffix in ("InRelease", "Packages"):
        (lists / ("_var_lib_onprem-llm_os-repository_debian-12-00000000000000aa_._%s" % suffix)).write_text("")
    assert read(tmp_path)["indexed"] is False
