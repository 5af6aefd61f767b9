# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The venv install's installer (vllm_installer): the command the role runs for uv and pip, with and without a mirror
(rendered with Ansible's own templar), and files/install_uv.py run as the role runs it (`<venv>/bin/python -c <file>
LOCK FIND_LINKS`) against a small uv wheel built here (tools/artefacts.py's alias_wheel): the pinned uv goes into the venv alone and hash-checked, a wheel
that is not the pinned one is refused by its hash, a lock without uv names the variable and both fixes.
The real installs (uv, 149 wheels) run in Molecule vllm and in `make lab` (tests/integration/test_readme_commands.py)."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tests"))
from role_templates import role_vars  # noqa: E402  pylint: disable=wrong-import-position

SCRIPT = open(os.path.join(ROLE, "files", "install_uv.py"), encoding="utf-8").read()
_SPEC = importlib.util.spec_from_file_location("artefacts_for_vllm_install", os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tools", "artefacts.py"))
ARTEFACTS = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ARTEFACTS)
ARGV = "{{ __vllm_installer_argv[vllm_installer] + __vllm_install_args }}"


def installer_argv(**overrides):
    variables = role_vars(ROLE, {"inventory_hostname": "h1", "groups": {"gpu_hosts": []}}, overrides)
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(ARGV))


TAIL = ["--no-index", "--no-deps", "--require-hashes", "--find-links"]


@pytest.mark.parametrize("url", ["", "https://mirror.example/wheels/"])
def test_uv_installs_exactly_the_lock_offline_unless_a_mirror(url):
    argv = installer_argv(vllm_installer="uv", vllm_wheelhouse_url=url)
    venv = "/opt/vllm/0.32.0/venv"
    assert argv[:5] == [venv + "/bin/uv", "pip", "install", "--python", venv + "/bin/python"]
    assert "--no-config" in argv and "--compile-bytecode" in argv
    assert argv[argv.index("--link-mode") + 1] == "hardlink"
    assert argv[argv.index("--cache-dir") + 1] == "/opt/vllm/0.32.0/.uv-cache"
    assert ("--offline" in argv) == (url == "") and ("--system-certs" in argv) == (url != "")
    where = url or "/opt/vllm/0.32.0/wheelhouse"
    assert argv[-7:] == TAIL + [where, "-r", "/opt/vllm/0.32.0/wheelhouse/requirements.lock"]


@pytest.mark.parametrize("url", ["", "https://mirror.example/wheels/"])
def test_pip_installs_exactly_the_lock(url):
    argv = installer_argv(vllm_installer="pip", vllm_wheelhouse_url=url)
    assert argv == ["/opt/vllm/0.32.0/venv/bin/python", "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
                    *TAIL, url or "/opt/vllm/0.32.0/wheelhouse", "-r", "/opt/vllm/0.32.0/wheelhouse/requirements.lock"]


def wheel(directory, name, version, summary):
    """A small valid wheel (tools/artefacts.py's metadata-only wheel builder); returns (path, sha256)."""
    filename, data = ARTEFACTS.alias_wheel(name, version, "pip", summary)
    path = os.path.join(directory, filename)
    with open(path, "wb") as handle:
        handle.write(data)
    return path, hashlib.sha256(data).hexdigest()


# With its own pip (vllm_installer: pip makes that venv) and without (the role's venv for uv: install_uv.py then runs the
# interpreter's pip wheel in place)
@pytest.fixture(scope="module", params=["with-pip", "without-pip"])
def venv(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)] + (["--without-pip"] if request.param == "without-pip" else []),
                   check=True)
    return path


def install_uv(venv, lock, find_links):
    return subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, str(lock), str(find_links)],
                          capture_output=True, text=True, check=False)


def installed(venv, name):
    probe = "import importlib.metadata as m\ntry: print(m.version(%r))\nexcept m.PackageNotFoundError: print('-')" % name
    return subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def test_the_pinned_uv_goes_in_alone_and_hash_checked(venv, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _path, digest = wheel(str(wheels), "uv", "0.13.8", "pinned")
    _other, other_digest = wheel(str(wheels), "other", "1.0", "not installed")
    lock = wheels / "requirements.lock"
    lock.write_text("# a lock as tools/artefacts.py writes it\nother==1.0 \\\n    --hash=sha256:%s\nuv==0.13.8 \\\n"
                    "    --hash=sha256:%s\n" % (other_digest, digest))
    pip_before = installed(venv, "pip")
    proc = install_uv(venv, lock, wheels)
    assert proc.returncode == 0, proc.stderr
    assert installed(venv, "uv") == "0.13.8"
    assert installed(venv, "pip") == pip_before  # a venv without pip stays without (pip ran from its wheel)
    assert installed(venv, "other") == "-"  # uv alone: the installer installs the rest


def test_a_wheel_that_is_not_the_pinned_one_is_refused(venv, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(str(wheels), "uv", "0.13.9", "a different build")
    lock = wheels / "requirements.lock"
    lock.write_text("uv==0.13.9 \\\n    --hash=sha256:%s\n" % ("ab" * 32))
    proc = install_uv(venv, lock, wheels)
    assert proc.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr
    assert installed(venv, "uv") != "0.13.9"


def test_a_lock_without_uv_names_the_variable_and_the_fixes(venv, tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("uvicorn==0.54.0 \\\n    --hash=sha256:%s\n" % ("cd" * 32))
    proc = install_uv(venv, lock, tmp_path)
    assert proc.returncode == 1
    assert "vllm_installer is uv, but %s pins no uv" % lock in proc.stderr
    assert "put uv, hash-pinned, in the wheelhouse lock" in proc.stderr and "set vllm_installer: pip" in proc.stderr
