# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller-side packs of the common role (the bundle's apt repository) and of the vllm role (the wheelhouse):
both are made by controller_pack with their family's prune pattern and the role's prune_after_days variable; and the
pack is made once however many hosts (separate processes, as Ansible's forks are) reach it together, and made again
when GNU tar saw the directory change while it read it (exit 1: "file changed as we read it"), leaving no part behind."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PACK_TASKS = {
    "common": ("roles/common/tasks/os_repository_stage.yml", "Pack the repository on the controller", "os-repository-*.tar"),
    "vllm": ("roles/vllm/tasks/install_venv_build.yml", "Pack the wheelhouse on the controller", "vllm-wheelhouse-*.tar"),
}
# one host's pack step, in its own process: controller_pack's logic with GNU tar found on PATH
HOST = """
import subprocess, sys
from ansible_collections.onprem.llm_serving.plugins.module_utils import _controller_pack as cp
def run_tar(argv):
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stderr
try:
    print(cp.make_pack(sys.argv[1], sys.argv[2], run_tar, pause=0))
except cp.PackError as exc:
    sys.exit(str(exc))
"""


def tasks(node):
    for task in node or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks(task.get(key))


@pytest.mark.parametrize("role", sorted(PACK_TASKS))
def test_each_role_packs_with_controller_pack_and_prunes_its_family(role):
    path, name, pattern = PACK_TASKS[role]
    with open(os.path.join(ROOT, path)) as handle:
        found = [t for t in tasks(yaml.safe_load(handle)) if str(t.get("name", "")).startswith(name)]
    assert len(found) == 1, found
    task = found[0]
    args = task["onprem.llm_serving.controller_pack"]
    assert args["prune_pattern"] == pattern
    assert args["prune_after_days"] == "{{ %s_controller_prune_after_days }}" % role
    assert task["delegate_to"] == "localhost" and task["become"] is False
    with open(os.path.join(ROOT, "roles", role, "defaults", "main.yml")) as handle:
        assert yaml.safe_load(handle)["%s_controller_prune_after_days" % role] == 7


def repository(tmp_path):
    src = tmp_path / "debian-12"
    (src / "pool").mkdir(parents=True)
    for i in range(30):
        (src / "pool" / ("pkg%02d_1.0_all.deb" % i)).write_bytes(os.urandom(32 * 1024))
    (src / "Packages").write_text("Package: pkg00\n")
    return src


def shim(tmp_path, fail):
    """A tar on PATH that logs each call; fail='once' exits 1 the first time, 'always' every time, as GNU tar does for
    a directory that changed while it read it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tar.log"
    script = "#!/bin/sh\necho call >> %s\n" % log
    changed = "echo 'tar: ./pool: file changed as we read it' >&2; exit 1"
    if fail == "once":
        script += "if [ ! -e %s ]; then touch %s; %s; fi\n" % (tmp_path / "failed-once", tmp_path / "failed-once", changed)
    elif fail == "always":
        script += changed + "\n"
    script += "exec /bin/tar \"$@\"\n"
    (bin_dir / "tar").write_text(script)
    os.chmod(bin_dir / "tar", 0o755)
    return dict(os.environ, PATH="%s:%s" % (bin_dir, os.environ["PATH"]), PYTHONPATH=os.pathsep.join(sys.path)), log


def host(env, src, tar):
    return subprocess.Popen([sys.executable, "-c", HOST, str(src), str(tar)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def members(tar):
    with tarfile.open(tar) as archive:
        return {m.name.lstrip("./"): hashlib.sha256(archive.extractfile(m).read()).hexdigest()
                for m in archive.getmembers() if m.isfile()}


def expected(src):
    return {str(p.relative_to(src)): hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}


def test_packed_once_when_hosts_arrive_together(tmp_path):
    src = repository(tmp_path)
    tar = tmp_path / "cache" / "os-repository-debian-12-abc.tar"
    env, log = shim(tmp_path, fail=None)
    procs = [host(env, src, tar) for _host in range(4)]
    outs = [p.communicate() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outs
    assert sorted(out.strip() for out, _err in outs) == ["False", "False", "False", "True"]
    assert sorted(os.listdir(tar.parent)) == [tar.name, tar.name + ".lock"]
    assert log.read_text() == "call\n"  # one tar for four hosts
    assert members(tar) == expected(src)


def pack_alone(tmp_path, fail):
    """One host's pack step with the given tar shim: (returncode, stdout, stderr, source, tar, tar's call log)."""
    src = repository(tmp_path)
    tar = tmp_path / "cache" / "os-repository-debian-12-abc.tar"
    env, log = shim(tmp_path, fail=fail)
    proc = host(env, src, tar)
    out, err = proc.communicate()
    return proc.returncode, out, err, src, tar, log


def test_a_pack_that_saw_the_directory_change_is_made_again(tmp_path):
    rc, out, err, src, tar, log = pack_alone(tmp_path, fail="once")
    assert rc == 0 and out.strip() == "True", err
    assert log.read_text() == "call\ncall\n"
    assert sorted(os.listdir(tar.parent)) == [tar.name, tar.name + ".lock"]  # no half-written part left
    assert members(tar) == expected(src)


def test_a_directory_that_keeps_changing_fails_the_pack_and_leaves_nothing(tmp_path):
    rc, _out, err, _src, tar, log = pack_alone(tmp_path, fail="always")
    assert rc == 1 and "failed 3 times" in err and "file changed as we read it" in err
    assert log.read_text() == "call\n" * 3
    assert sorted(os.listdir(tar.parent)) == [tar.name + ".lock"]
