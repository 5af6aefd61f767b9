# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Shared by the release tests: the collection tarball built once per session, and a clean
environment for Ansible's CLIs (nothing of the checkout on the collections path, no ansible.cfg)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


def galaxy_info() -> dict:
    return yaml.safe_load((ROOT / "galaxy.yml").read_text())


def clean_env(workdir: Path, collections: Path | None = None) -> dict:
    """The caller's environment without any ANSIBLE_* setting; collections only from `collections`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_") and k != "LLM_REPO_ROOT"}
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_HOME"] = str(workdir / "ansible-home")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(collections or workdir / "no-collections")
    env["ANSIBLE_COLLECTIONS_SCAN_SYS_PATH"] = "false"  # not even the `ansible` package's collections
    env["ANSIBLE_ROLES_PATH"] = str(workdir / "no-roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def run(cmd, cwd: Path, env: dict, timeout: int = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    command = " ".join(map(str, cmd))
    assert proc.returncode == 0, "%s failed (%d):\n%s\n%s" % (command, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A directory outside the checkout with an empty ansible.cfg: the checkout's ansible.cfg and its
    .cache/collections link are never read."""
    path = tmp_path_factory.mktemp("release")
    (path / "ansible.cfg").write_text("[defaults]\n")
    return path


@pytest.fixture(scope="session")
def collection_tarball(workdir) -> Path:
    """`ansible-galaxy collection build` of the checkout, as a release would make it."""
    out = workdir / "dist"
    run([BIN / "ansible-galaxy", "collection", "build", ROOT, "--output-path", out], cwd=workdir, env=clean_env(workdir))
    info = galaxy_info()
    tarball = out / ("%s-%s-%s.tar.gz" % (info["namespace"], info["name"], info["version"]))
    assert tarball.is_file(), sorted(os.listdir(out))
    return tarball


@pytest.fixture(scope="session")
def installed(workdir, collection_tarball):
    """The tarball installed into a collections path of its own."""
    collections = workdir / "collections"
    env = clean_env(workdir, collections)
    run([BIN / "ansible-galaxy", "collection", "install", collection_tarball, "-p", collections], cwd=workdir, env=env)
    info = galaxy_info()
    path = collections / "ansible_collections" / info["namespace"] / info["name"]
    assert (path / "MANIFEST.json").is_file()
    inventory = workdir / "inventory.yml"
    inventory.write_text(
        "all:\n  vars: {ansible_connection: local}\n  children:\n"
        "    llm_hosts:\n      children:\n"
        "        vllm_servers: {hosts: {vllm-1: {}}}\n"
        "        tgi_servers: {hosts: {tgi-1: {}}}\n"
        "        ollama_servers: {hosts: {ollama-1: {}}}\n"
        "    gpu_hosts: {hosts: {vllm-1: {}}}\n"
        "    container_hosts: {hosts: {tgi-1: {}}}\n"
    )
    return {"path": path, "env": env, "inventory": inventory}
