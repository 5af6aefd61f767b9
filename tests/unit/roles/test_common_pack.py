# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The common role packs the bundle's apt repository on the controller once per run however many hosts (or test
scenarios) reach it together (a controller-side lock), and packs again when tar saw the directory change while it read
it (GNU tar exits 1: "file changed as we read it"), as the shell command of roles/common/tasks/os_repository_stage.yml runs."""
from __future__ import annotations

import hashlib
import os
import subprocess
import tarfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def pack_command():
    def tasks(node):
        for task in node or []:
            yield task
            for key in ("block", "rescue", "always"):
                yield from tasks(task.get(key))
    with open(os.path.join(ROOT, "roles", "common", "tasks", "os_repository_stage.yml")) as handle:
        for task in tasks(yaml.safe_load(handle)):
            if str(task.get("name", "")).startswith("Pack the repository on the controller"):
                # the YAML folds the command (>-) into one line, as Ansible hands it to /bin/sh
                return " ".join(task["ansible.builtin.shell"]["cmd"].split("\n"))
    raise AssertionError("no pack task in roles/common/tasks/os_repository_stage.yml")


def repository(tmp_path):
    src = tmp_path / "debian-12"
    (src / "pool").mkdir(parents=True)
    for i in range(30):
        (src / "pool" / ("pkg%02d_1.0_all.deb" % i)).write_bytes(os.urandom(32 * 1024))
    (src / "Packages").write_text("Package: pkg00\n")
    return src


def shim(tmp_path, fail_first):
    """A tar that logs each call and, with fail_first, exits 1 the first time as GNU tar does for a changed directory."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "tar.log"
    script = "#!/bin/sh\necho call >> %s\n" % log
    if fail_first:
        script += "if [ ! -e %s ]; then touch %s; echo 'tar: ./pool: file changed as we read it' >&2; exit 1; fi\n" % (
            tmp_path / "failed-once", tmp_path / "failed-once")
    script += "exec /bin/tar \"$@\"\n"
    (bin_dir / "tar").write_text(script)
    os.chmod(bin_dir / "tar", 0o755)
    return bin_dir, log


def members(tar):
    with tarfile.open(tar) as archive:
        return {m.name.lstrip("./"): hashlib.sha256(archive.extractfile(m).read()).hexdigest()
                for m in archive.getmembers() if m.isfile()}


def expected(src):
    return {str(p.relative_to(src)): hashlib.sha256(p.read_bytes()).hexdigest() for p in src.rglob("*") if p.is_file()}


def test_packed_once_when_hosts_arrive_together(tmp_path):
    src = repository(tmp_path)
    tar = tmp_path / "cache" / "os-repository-debian-12-abc.tar"
    bin_dir, log = shim(tmp_path, fail_first=False)
    env = dict(os.environ, TAR=str(tar), SRC=str(src), PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    procs = [subprocess.Popen(["/bin/sh", "-c", pack_command()], env=env) for _host in range(4)]
    assert [p.wait() for p in procs] == [0, 0, 0, 0]
    assert sorted(os.listdir(tar.parent)) == [tar.name, tar.name + ".lock"]
    assert log.read_text() == "call\n"  # one tar for four hosts
    assert members(tar) == expected(src)


def test_a_pack_that_saw_the_directory_change_is_made_again(tmp_path):
    src = repository(tmp_path)
    tar = tmp_path / "cache" / "os-repository-debian-12-abc.tar"
    bin_dir, log = shim(tmp_path, fail_first=True)
    env = dict(os.environ, TAR=str(tar), SRC=str(src), PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.run(["/bin/sh", "-c", pack_command()], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text() == "call\ncall\n"
    assert sorted(os.listdir(tar.parent)) == [tar.name, tar.name + ".lock"]  # no half-written part left
    assert members(tar) == expected(src)


def test_a_directory_that_keeps_changing_fails_the_pack_and_leaves_nothing(tmp_path):
    src = repository(tmp_path)
    tar = tmp_path / "cache" / "os-repository-debian-12-abc.tar"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tar").write_text("#!/bin/sh\necho 'tar: ./pool: file changed as we read it' >&2\nexit 1\n")
    os.chmod(bin_dir / "tar", 0o755)
    env = dict(os.environ, TAR=str(tar), SRC=str(src), PATH="%s:%s" % (bin_dir, os.environ["PATH"]))
    proc = subprocess.run(["/bin/sh", "-c", pack_command()], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and proc.stderr.count("file changed as we read it") == 3
    assert sorted(os.listdir(tar.parent)) == [tar.name + ".lock"]
