# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Restarts decided from the host's truth: _systemd.decide_restart / UnitState, and the unit_state module."""
from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.onprem.llm_serving.plugins.module_utils import _systemd
from ansible_collections.onprem.llm_serving.plugins.modules import unit_state

RUNNING = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "42",
           "NeedDaemonReload": "no"}


@pytest.mark.parametrize("props, mtimes, since, action", [
    (RUNNING, {"/u": 100.0, "/e": 150.0}, 200.0, "none"),
    (RUNNING, {"/u": 100.0, "/e": 250.0}, 200.0, "restart"),            # env file written after the start
    (RUNNING, {"/u": 100.0, "/marker": 200.5}, 200.0, "restart"),       # reinstalled after the start
    (RUNNING, {"/u": 100.0, "/gone": None}, 200.0, "none"),             # a missing file is no reason
    (dict(RUNNING, NeedDaemonReload="yes"), {"/u": 100.0}, 200.0, "restart"),
    (dict(RUNNING, ActiveState="failed"), {"/u": 300.0}, None, "start"),
    (dict(RUNNING, ActiveState="inactive"), {}, None, "start"),
    (dict(RUNNING, ActiveState="activating"), {"/u": 300.0}, 200.0, "restart"),
    (dict(RUNNING, LoadState="not-found", ActiveState="inactive"), {}, None, "absent"),
    (RUNNING, {"/u": 100.0}, None, "restart"),                          # no timestamp: restart, do not guess
])
def test_decide_restart(props, mtimes, since, action):
    decision = _systemd.decide_restart(props, mtimes, since)
    assert decision["action"] == action, decision["reason"]
    assert decision["reason"]


def test_reason_names_the_newer_file():
    decision = _systemd.decide_restart(RUNNING, {"/etc/systemd/system/x.service": 100.0, "/etc/llm/x.env": 212.5}, 200.0)
    assert decision["newest"] == {"path": "/etc/llm/x.env", "mtime": 212.5}
    assert decision["reason"] == "/etc/llm/x.env changed 12.5 s after the service started"


def test_unit_files_from_systemctl_show():
    props = {"FragmentPath": "/etc/systemd/system/ollama.service",
             "DropInPaths": "/etc/systemd/system/ollama.service.d/50-ollama-env.conf /run/systemd/system/ollama.service.d/x.conf",
             "EnvironmentFiles": "/etc/onprem-llm/a.env (ignore_errors=no) /etc/onprem-llm/b.env (ignore_errors=yes)"}
    assert _systemd.unit_files(props) == [
        "/etc/systemd/system/ollama.service",
        "/etc/systemd/system/ollama.service.d/50-ollama-env.conf",
        "/run/systemd/system/ollama.service.d/x.conf",
        "/etc/systemd/system/ollama.service.d",
        "/run/systemd/system/ollama.service.d",
        "/etc/onprem-llm/a.env",
        "/etc/onprem-llm/b.env",
    ]
    assert _systemd.unit_files({"FragmentPath": "", "DropInPaths": "", "EnvironmentFiles": ""}) == []


def test_monotonic_to_epoch():
    # entered active 30 s (in monotonic time) before now
    assert _systemd.monotonic_to_epoch(70 * 10 ** 6, now_epoch=1000.0, now_monotonic=100.0) == pytest.approx(970.0)
    assert _systemd.monotonic_to_epoch(0, 1000.0, 100.0) is None


class FakeSystemd(object):
    def __init__(self, props):
        self.props = props

    def show(self, unit, properties):
        if unit not in self.props:
            return {"LoadState": "not-found", "ActiveState": "inactive"}
        return dict((p, self.props[unit].get(p, "")) for p in properties)


def make_tree(tmp_path, env_mtime, unit_mtime=100.0):
    unit = tmp_path / "vllm-a.service"
    env = tmp_path / "vllm-a.env"
    unit.write_text("[Service]\n")
    env.write_text("A=1\n")
    os.utime(unit, (unit_mtime, unit_mtime))
    os.utime(env, (env_mtime, env_mtime))
    return {"vllm-a.service": dict(RUNNING, FragmentPath=str(unit), DropInPaths="",
                                   EnvironmentFiles="%s (ignore_errors=no)" % env,
                                   ActiveEnterTimestampMonotonic=str(50 * 10 ** 6))}


@pytest.mark.parametrize("env_mtime, action", [(140.0, "none"), (160.0, "restart")])
def test_unit_state_reads_real_mtimes(tmp_path, env_mtime, action):
    # started at monotonic 50 s; now is monotonic 100 s = epoch 200 s, so it started at epoch 150 s
    state = _systemd.UnitState(FakeSystemd(make_tree(tmp_path, env_mtime)), clock=lambda: (200.0, 100.0))
    decision = state.inspect("vllm-a.service")
    assert decision["active_since"] == pytest.approx(150.0)
    assert decision["action"] == action


def test_unit_state_extra_path_symlink_switch_counts(tmp_path):
    props = make_tree(tmp_path, 140.0)
    link = tmp_path / "current"
    os.symlink("/nonexistent-target", str(link))  # lstat: the link itself, even when its target is old or gone
    os.utime(str(link), (170.0, 170.0), follow_symlinks=False)
    state = _systemd.UnitState(FakeSystemd(props), clock=lambda: (200.0, 100.0))
    decision = state.inspect("vllm-a.service", [str(link)])
    assert decision["action"] == "restart"
    assert decision["newest"]["path"] == str(link)


def run_module(capsys, monkeypatch, args, props):
    monkeypatch.setattr(unit_state, "SystemdHost", lambda run, systemctl: FakeSystemd(props))
    monkeypatch.setattr(unit_state.AnsibleModule, "get_bin_path", lambda self, name, required=False: "/bin/systemctl")
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            unit_state.main()
    return json.loads(capsys.readouterr().out)


def test_module_sorts_units_into_actions(tmp_path, capsys, monkeypatch):
    props = make_tree(tmp_path, 10 ** 10)  # env file newer than any start: restart
    props["vllm-a.service"]["UnitFileState"] = "enabled"
    props["ollama.service"] = dict(RUNNING, ActiveState="failed", UnitFileState="disabled")
    out = run_module(capsys, monkeypatch, {"units": [{"name": "vllm-a", "paths": []}, "ollama", "tgi-x.service"]}, props)
    assert out["changed"] is False
    assert out["restart"] == ["vllm-a.service"]
    assert out["start"] == ["ollama.service"]
    assert out["absent"] == ["tgi-x.service"]
    assert out["daemon_reload"] is False
    assert "changed" in out["units"]["vllm-a.service"]["reason"]
    assert out["enabled"] == ["vllm-a.service"]
    assert out["not_enabled"] == ["ollama.service", "tgi-x.service"]


@pytest.mark.parametrize("units", [[{"name": "x", "paths": ["relative/path"]}], [{"paths": []}], [7]])
def test_module_refuses_bad_entries(capsys, monkeypatch, units):
    out = run_module(capsys, monkeypatch, {"units": units}, {})
    assert out["failed"] is True
    assert out["msg"].startswith("units:")
