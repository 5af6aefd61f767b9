# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the shared systemd/proc helper used by ollama_env (and reusable by the engine roles)."""
from __future__ import annotations

import os

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _systemd


def test_parse_show():
    out = "MainPID=4242\nActiveState=active\nExecMainStartTimestamp=Tue 2026-11-24 00:10:00 UTC\nEmpty=\n"
    assert _systemd.parse_show(out) == {"MainPID": "4242", "ActiveState": "active",
                                        "ExecMainStartTimestamp": "Tue 2026-11-24 00:10:00 UTC", "Empty": ""}


def test_parse_environ_keeps_equals_in_values_and_skips_junk():
    data = b"PATH=/usr/bin\0OLLAMA_HOST=0.0.0.0:11434\0OLLAMA_X=a=b\0junk\0\0"
    assert _systemd.parse_environ(data) == {"PATH": "/usr/bin", "OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_X": "a=b"}


def test_parse_stat_starttime_with_awkward_comm():
    fields = ["S"] + [str(i) for i in range(4, 22)] + ["123456", "999"]
    stat = "4242 (my (odd) prog) " + " ".join(fields)
    assert _systemd.parse_stat_starttime(stat) == 123456
    with pytest.raises(_systemd.SystemdError):
        _systemd.parse_stat_starttime("garbage")


def test_parse_btime():
    assert _systemd.parse_btime("cpu 1 2 3\nbtime 1763942400\nprocesses 5\n") == 1763942400
    with pytest.raises(_systemd.SystemdError):
        _systemd.parse_btime("cpu 1\n")


@pytest.mark.parametrize("name, unit", [("ollama", "ollama.service"), ("ollama.service", "ollama.service"),
                                        ("ollama@gpu0", "ollama@gpu0.service"), ("x.socket", "x.socket")])
def test_unit_name(name, unit):
    assert _systemd.unit_name(name) == unit


def test_systemd_host_against_fake_run_command_and_proc(tmp_path):
    calls = []

    def run_command(args):
        calls.append(args)
        if args[-1] == "broken.service":
            return 1, "", "Failed to connect to bus"
        return 0, "MainPID=77\nActiveState=active\n", ""

    proc = tmp_path / "proc"
    (proc / "77").mkdir(parents=True)
    (proc / "77" / "environ").write_bytes(b"OLLAMA_NUM_PARALLEL=4\0HOME=/root\0")
    (proc / "77" / "stat").write_text("77 (sleep) S " + " ".join(["0"] * 18) + " 250 0\n")
    (proc / "stat").write_text("btime 1000\n")
    host = _systemd.SystemdHost(run_command, proc=str(proc))
    assert host.main_pid("ollama.service") == 77
    assert calls[0] == ["systemctl", "show", "--no-pager", "-p", "MainPID", "ollama.service"]
    assert host.environ(77) == {"OLLAMA_NUM_PARALLEL": "4", "HOME": "/root"}
    assert host.process_start_time(77) == 1000 + 250.0 / os.sysconf("SC_CLK_TCK")
    with pytest.raises(_systemd.SystemdError) as info:
        host.show("broken.service", ["MainPID"])
    assert "Failed to connect to bus" in str(info.value)
    with pytest.raises(_systemd.SystemdError) as info:
        host.environ(78)
    assert "could not read" in str(info.value)


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs Linux /proc")
def test_real_proc_start_time_is_plausible():
    host = _systemd.SystemdHost(lambda args: (0, "", ""))
    started = host.process_start_time(os.getpid())
    with open("/proc/stat") as handle:
        btime = _systemd.parse_btime(handle.read())
    assert btime <= started
    assert os.getpid() in [int(p) for p in os.listdir("/proc") if p.isdigit()]
    assert host.environ(os.getpid()).get("PATH") == os.environ.get("PATH")
