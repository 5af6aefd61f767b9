# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engines stage runs each host at its own pace (README, "Deploy speed and fleets"): one play with the free
strategy over the three engine groups, nothing in the engine roles that the free strategy would run once per host
instead of once (run_once), and the one controller-side step, packing the vLLM wheelhouse, done once however many
hosts reach it together (a controller-side lock)."""
from __future__ import annotations

import glob
import hashlib
import os
import subprocess
import tarfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ENGINE_ROLES = ("vllm", "tgi", "ollama", "engine_common")


def load(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


def tasks(node):
    """Every task dict in a task list, blocks and rescue/always included."""
    for task in node or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks(task.get(key))


def test_one_free_play_over_the_engine_groups():
    plays = load("playbooks/engines.yml")
    assert len(plays) == 1
    play = plays[0]
    assert play["strategy"] == "ansible.builtin.free"
    assert set(play["hosts"].split(":")) == {"vllm_servers", "tgi_servers", "ollama_servers"}
    roles = {r["role"].split(".")[-1]: r["when"] for r in play["roles"]}
    assert roles == {e: "inventory_hostname in groups.get('%s_servers', [])" % e for e in ("vllm", "tgi", "ollama")}


def test_no_run_once_in_the_engine_roles():
    found = []
    for role in ENGINE_ROLES:
        for path in glob.glob(os.path.join(ROOT, "roles", role, "tasks", "*.yml")):
            for task in tasks(load(path)):
                if "run_once" in task:
                    found.append("%s: %s" % (os.path.relpath(path, ROOT), task.get("name")))
    assert not found, "the free strategy runs run_once tasks on every host: %s" % found


def pack_command():
    for task in tasks(load("roles/vllm/tasks/install_venv_build.yml")):
        if str(task.get("name", "")).startswith("Pack the wheelhouse on the controller"):
            return task["ansible.builtin.shell"]["cmd"]
    raise AssertionError("no pack task in roles/vllm/tasks/install_venv_build.yml")


def test_the_wheelhouse_is_packed_once_when_hosts_arrive_together(tmp_path):
    src = tmp_path / "wheelhouse"
    src.mkdir()
    for i in range(40):
        (src / ("pkg%02d-1.0-py3-none-any.whl" % i)).write_bytes(os.urandom(64 * 1024))
    tar = tmp_path / "cache" / "wheelhouse-abc.tar"
    # the YAML folds the command (>-) into one line, as Ansible hands it to /bin/sh
    cmd = " ".join(pack_command().split("\n"))
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "tar").write_text("#!/bin/sh\necho packed >> %s\nexec /bin/tar \"$@\"\n" % (tmp_path / "tar.log"))
    os.chmod(shim / "tar", 0o755)
    env = dict(os.environ, TAR=str(tar), SRC=str(src), PATH="%s:%s" % (shim, os.environ["PATH"]))
    procs = [subprocess.Popen(["/bin/sh", "-c", cmd], env=env) for host in ("host-1", "host-2", "host-3", "host-4")]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    assert sorted(os.listdir(tar.parent)) == [tar.name, tar.name + ".lock"]
    assert (tmp_path / "tar.log").read_text() == "packed\n"  # one tar for four hosts
    with tarfile.open(tar) as archive:
        members = {m.name.lstrip("./"): archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
    assert {k: hashlib.sha256(v).hexdigest() for k, v in members.items()} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    inode = os.stat(tar).st_ino
    assert subprocess.run(["/bin/sh", "-c", cmd], env=env, check=False).returncode == 0
    assert os.stat(tar).st_ino == inode  # a later host finds the tar and packs nothing
