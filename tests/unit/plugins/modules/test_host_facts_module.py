# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_facts main() through patch_module_args, against fake sysfs and /proc trees under tmp_path."""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest


from ansible_collections.onprem.llm_serving.plugins.modules import host_facts
from module_runner import run_main  # noqa: E402  pylint: disable=wrong-import-position

# the fake-tree builders of the logic's tests (tests/unit has no packages, so load the file by path)
_SPEC = importlib.util.spec_from_file_location(
    "host_facts_trees", os.path.join(os.path.dirname(__file__), "..", "module_utils", "test_host_facts.py"))
_TREES = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_TREES)
SYSFS = _TREES.SYSFS
make_proc = _TREES.make_proc
make_sysfs = _TREES.make_sysfs
tcp_line = _TREES.tcp_line


def run_module(capsys, args, check_mode=False):
    return run_main(host_facts.main, capsys, args, check_mode)


@pytest.fixture
def trees(tmp_path):
    make_sysfs(tmp_path / "sys", SYSFS)
    order = sys.byteorder  # the module decodes /proc/net/tcp in the host's byte order
    processes = {4242: {"comm": "python3", "cgroup": "0::/system.slice/vllm-main.service\n",
                        "fds": {3: "socket:[501]", 4: "socket:[601]"}}}
    make_proc(tmp_path / "proc",
              tcp_line(0, "0.0.0.0", 8000, 501, uid=999, byteorder=order) + tcp_line(1, "127.0.0.1", 22, 502, byteorder=order),
              tcp_line(0, "::", 8000, 601, uid=999, byteorder=order), processes,
              mounts="rootfs / ext4 rw 0 0\n")
    (tmp_path / "srv").mkdir()
    return tmp_path


@pytest.mark.parametrize("check_mode", [False, True])
def test_everything_against_fake_trees(capsys, trees, check_mode):
    result = run_module(capsys, {"sysfs_root": str(trees / "sys"), "proc_root": str(trees / "proc"),
                                 "ports": [8000], "paths": [str(trees / "srv" / "models")]}, check_mode=check_mode)
    assert result["rc"] == 0 and result["changed"] is False
    assert result["gathered"] == ["gpus", "listeners", "disk"]
    assert [g["address"] for g in result["gpus"]] == ["0000:17:00.0", "0000:18:00.0"]
    assert [s["address"] for s in result["nvswitches"]] == ["0000:05:00.0"]
    assert [(s["family"], s["address"], s["port"], s["pid"], s["process"], s["unit"]) for s in result["listeners"]] == [
        ("ipv4", "0.0.0.0", 8000, 4242, "python3", "vllm-main.service"),
        ("ipv6", "::", 8000, 4242, "python3", "vllm-main.service")]
    disk = result["disk"][str(trees / "srv" / "models")]
    assert disk["measured_path"] == str(trees / "srv") and disk["exists"] is False and disk["mount"] == "/"
    assert disk["fstype"] == "ext4" and disk["free_mib"] >= 0


def test_gather_one_part_returns_only_that_part(capsys, trees):
    result = run_module(capsys, {"gather": ["listeners"], "proc_root": str(trees / "proc")})
    assert sorted(k for k in result if k not in ("rc", "changed", "invocation")) == ["gathered", "listeners"]
    assert [s["port"] for s in result["listeners"]] == [22, 8000, 8000]


def test_pci_devices_path_option(capsys, trees):
    result = run_module(capsys, {"gather": ["gpus"], "pci_devices_path": str(trees / "sys" / "bus" / "pci" / "devices"),
                                 "nvswitch_device_ids": ["0x1ad1"]})
    assert result["pci_devices_path"] == str(trees / "sys" / "bus" / "pci" / "devices")
    assert [s["address"] for s in result["nvswitches"]] == ["0000:06:00.0"]


def test_relative_path_fails_with_a_clear_message(capsys, trees):
    result = run_module(capsys, {"gather": ["disk"], "paths": ["srv/models"], "proc_root": str(trees / "proc")})
    assert result["rc"] == 1 and result["failed"] is True
    assert "'srv/models' is not absolute" in result["msg"]


def test_bad_port_fails(capsys, trees):
    result = run_module(capsys, {"gather": ["listeners"], "ports": [0, 70000], "proc_root": str(trees / "proc")})
    assert result["rc"] == 1 and "ports [0, 70000] are not TCP ports" in result["msg"]


def test_unreadable_proc_fails(capsys, tmp_path):
    result = run_module(capsys, {"gather": ["listeners"], "proc_root": str(tmp_path / "nowhere")})
    assert result["rc"] == 1 and "could not read the TCP sockets" in result["msg"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_packages_through_the_module(capsys, tmp_path, check_mode):
    status = tmp_path / "status"
    status.write_text("Package: docker.io\nStatus: install ok installed\nArchitecture: amd64\nVersion: 20.10.24+dfsg1-1+b3\n")
    result = run_module(capsys, {"gather": ["packages"], "packages": ["docker.io", "podman"],
                                 "dpkg_status_path": str(status)}, check_mode=check_mode)
    assert result["rc"] == 0 and result["changed"] is False and result["gathered"] == ["packages"]
    assert result["packages"]["docker.io"]["full_version"] == "20.10.24+dfsg1-1+b3"
    assert result["packages"]["podman"]["installed"] is False


def test_packages_bad_manager_is_refused(capsys, tmp_path):
    result = run_module(capsys, {"gather": ["packages"], "packages": ["x"], "package_manager": "apt"})
    assert result["rc"] == 1 and "package_manager" in result["msg"] and "dpkg" in result["msg"]


@pytest.mark.parametrize("check_mode", [False, True])
def test_groups_through_the_module(capsys, check_mode):
    """This machine's name service: root exists with gid 0, a made-up name does not."""
    result = run_module(capsys, {"gather": ["groups"], "groups": ["root", "no-such-group-onprem"]}, check_mode=check_mode)
    assert result["rc"] == 0 and result["changed"] is False and result["gathered"] == ["groups"]
    assert result["groups"]["root"]["exists"] is True and result["groups"]["root"]["gid"] == 0
    assert result["groups"]["no-such-group-onprem"] == {"name": "no-such-group-onprem", "exists": False, "gid": None,
                                                        "members": []}
