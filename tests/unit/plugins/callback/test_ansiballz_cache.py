# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_ansiballz_cache (the preload callback's kept module payloads): the fingerprint changes with any module or
module_utils file of ansible-core or of a collection, and with nothing else; only collection and ansible-core payloads
are kept; restore and save never overwrite and never leave a partial file; prune keeps the most recently used stores.
Then real ansible-playbook runs: the second starts with the payloads the first built; switched off, nothing is kept."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from ansible_collections.onprem.llm_serving.plugins.plugin_utils import _ansiballz_cache as ac

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))


def tree(tmp_path):
    """A fake ansible package (modules, module_utils) and a collection path with one collection."""
    ansible_dir = tmp_path / "ansible"
    for sub, name in (("modules", "stat.py"), ("module_utils", "basic.py")):
        (ansible_dir / sub).mkdir(parents=True)
        (ansible_dir / sub / name).write_text("# %s\n" % name)
    coll = tmp_path / "colls" / "ansible_collections" / "ns" / "coll" / "plugins"
    for sub, name in (("modules", "mod.py"), ("module_utils", "_util.py"), ("filter", "f.py")):
        (coll / sub).mkdir(parents=True)
        (coll / sub / name).write_text("# %s\n" % name)
    return str(ansible_dir), [str(tmp_path / "colls")], coll


def fp(version, ansible_dir, paths, extra=""):
    return ac.fingerprint(version, ansible_dir, ac.collection_source_dirs(paths), extra=extra)


def test_the_fingerprint_follows_every_module_and_module_utils_file_and_nothing_else(tmp_path):
    ansible_dir, paths, coll = tree(tmp_path)
    first = fp("2.19.14", ansible_dir, paths)
    assert first == fp("2.19.14", ansible_dir, paths)  # stable
    assert ac.collection_source_dirs(paths) == sorted([str(coll / "module_utils"), str(coll / "modules")])
    # a filter plugin is not part of any payload
    (coll / "filter" / "f.py").write_text("# changed\n")
    assert fp("2.19.14", ansible_dir, paths) == first
    assert fp("2.19.15", ansible_dir, paths) != first
    assert fp("2.19.14", ansible_dir, paths, extra="3.12") != first
    seen = {first}
    for path in (coll / "module_utils" / "_util.py", coll / "modules" / "mod.py", os.path.join(ansible_dir, "module_utils", "basic.py")):
        before = os.stat(path)
        with open(path, "a") as fh:  # one byte more
            fh.write("#")
        changed = fp("2.19.14", ansible_dir, paths)
        assert changed not in seen, path
        seen.add(changed)
        # a chmod alone changes the ctime: another fingerprint too (the file may have been replaced in place)
        os.chmod(path, 0o600)
        assert fp("2.19.14", ansible_dir, paths) not in seen
        seen.add(fp("2.19.14", ansible_dir, paths))
        assert os.stat(path).st_size == before.st_size + 1
    # a new module_utils file, and a collection path given as its ansible_collections directory
    (coll / "module_utils" / "_new.py").write_text("")
    assert fp("2.19.14", ansible_dir, paths) not in seen
    assert ac.collection_source_dirs([os.path.join(paths[0], "ansible_collections")]) == ac.collection_source_dirs(paths)
    assert ac.collection_source_dirs([str(tmp_path / "missing")]) == []


def test_only_collection_and_core_payloads_are_kept():
    assert ac.kept("ansible.modules.stat-ZIP_DEFLATED-none")
    assert ac.kept("ansible_collections.onprem.llm_serving.plugins.modules.managed_files-ZIP_DEFLATED-none")
    # a module of a role's library/ can change without the fingerprint seeing it; locks and parts are not payloads
    assert not ac.kept("ansible.legacy.mymodule-ZIP_DEFLATED-none")
    assert not ac.kept("ansible.modules.stat-ZIP_DEFLATED-none.lock")
    assert not ac.kept("ansible.modules.stat-ZIP_DEFLATED-none-part")


def test_save_then_restore_round_trip_never_overwrites(tmp_path):
    run1, store, run2 = tmp_path / "run1", tmp_path / "store" / "abc", tmp_path / "run2"
    run1.mkdir()
    (run1 / "ansible.modules.stat-ZIP_DEFLATED-none").write_bytes(b"stat payload")
    (run1 / "ansible.legacy.mine-ZIP_DEFLATED-none").write_bytes(b"legacy")
    (run1 / "ansible.modules.stat-ZIP_DEFLATED-none.lock").write_bytes(b"")
    assert ac.save(str(run1), str(store)) == 1
    assert sorted(os.listdir(store)) == ["ansible.modules.stat-ZIP_DEFLATED-none"]  # nothing else, no part left
    assert oct(os.stat(store).st_mode & 0o777) == "0o700"
    # a second run's save of the same payload leaves the stored one alone
    (run1 / "ansible.modules.stat-ZIP_DEFLATED-none").write_bytes(b"other bytes")
    assert ac.save(str(run1), str(store)) == 0
    assert (store / "ansible.modules.stat-ZIP_DEFLATED-none").read_bytes() == b"stat payload"
    # restore into a new run's directory (made), not over what the run already has
    assert ac.restore(str(store), str(run2)) == 1
    assert (run2 / "ansible.modules.stat-ZIP_DEFLATED-none").read_bytes() == b"stat payload"
    assert ac.restore(str(store), str(run2)) == 0
    # the run's directory is removed at its end: the store keeps its file
    os.unlink(run2 / "ansible.modules.stat-ZIP_DEFLATED-none")
    assert (store / "ansible.modules.stat-ZIP_DEFLATED-none").read_bytes() == b"stat payload"
    assert ac.restore(str(tmp_path / "nothing"), str(run2)) == 0 and ac.save(str(tmp_path / "nothing"), str(store)) == 0


def test_prune_keeps_the_most_recently_used_and_any_in_use(tmp_path):
    root = tmp_path / "ansiballz"
    now = time.time()
    for age, name in ((10, "a"), (20, "b"), (30000, "c"), (40000, "d"), (50, "e")):
        (root / name).mkdir(parents=True)
        os.utime(root / name, (now - age, now - age))
    (root / "link").symlink_to(root / "a")
    # the two most recent are kept; of the others, only those unused for an hour go (e, used 50 s ago, stays)
    assert sorted(ac.prune(str(root), 2, now=now)) == ["c", "d"]
    assert sorted(os.listdir(root)) == ["a", "b", "e", "link"]
    assert ac.prune(str(tmp_path / "missing"), 2) == []


PLAY = """
- hosts: localhost
  gather_facts: false
  tasks:
    - ansible.builtin.stat:
        path: /
    - onprem.llm_serving.managed_files:
        directories: [{path: "%s", mode: "0755"}]
"""


def playbook(tmp_path, store):
    (tmp_path / "play.yml").write_text(PLAY % (tmp_path / "made"))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ONPREM_LLM_SERVING_ANSIBALLZ_CACHE_DIR=str(store),
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", "ansible_python_interpreter=" + sys.executable, "-vvvv", str(tmp_path / "play.yml")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return [line for line in proc.stdout.splitlines() if line.startswith("preload: ")]


def test_a_second_run_starts_with_the_payloads_the_first_built(tmp_path):
    store = tmp_path / "ansiballz"
    first = playbook(tmp_path, store)
    assert first[0].startswith("preload: 0 module payload(s) from "), first
    assert first[-1].startswith("preload: kept 2 new module payload(s) in "), first
    (key,) = os.listdir(store)
    assert sorted(os.listdir(store / key)) == [
        "ansible.modules.stat-ZIP_DEFLATED-none", "ansible_collections.onprem.llm_serving.plugins.modules.managed_files-ZIP_DEFLATED-none"]
    second = playbook(tmp_path, store)
    assert second[0].startswith("preload: 2 module payload(s) from %s " % (store / key)), second
    assert second[-1].startswith("preload: kept 0 new module payload(s)"), second
    # off: nothing read or kept
    env_off = dict(os.environ, ONPREM_LLM_SERVING_ANSIBALLZ_CACHE="false")
    old = dict(os.environ)
    os.environ.update(env_off)
    try:
        assert playbook(tmp_path, store) == []
    finally:
        os.environ.clear()
        os.environ.update(old)
