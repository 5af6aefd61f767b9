# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The ollama role's unit (rendered with Ansible's own templar, no host) and the preflight's refusal of relative paths.

The unit restarts on any exit with a start limit, stops within ollama_timeout_stop_sec (Ollama does not drain), and is
hardened (checked for real by the Molecule scenario's verify_units.yml). The preflight cases run the real role against
localhost and fail in the variable checks, before anything on the host is read or changed.
Run: .venv/bin/pytest roles/ollama/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(ROLE))
sys.path.insert(0, os.path.join(REPO, "tests"))
from role_templates import role_vars, run_role as run_role_tags  # noqa: E402  pylint: disable=wrong-import-position

INSTANCE = {"name": "ollama", "unit": "ollama", "port": 11434, "bind_address": "127.0.0.1", "models_dir": "/var/lib/ollama/models"}


def render(**overrides):
    variables = role_vars(ROLE, {"inventory_hostname": "h1", "ansible_managed": "Ansible managed", "__ollama_instance": INSTANCE},
                          overrides)
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", "ollama.service.j2")) as f:
        return templar.template(trust_as_template(f.read()))


def directives(unit):
    return [ln.strip() for ln in unit.splitlines() if "=" in ln and not ln.startswith("#")]


def test_unit_restarts_any_exit_rate_limited_and_hardened():
    unit = render()
    d = directives(unit)
    unit_section = unit[unit.index("[Unit]"):unit.index("[Service]")]
    assert "StartLimitIntervalSec=600" in unit_section and "StartLimitBurst=5" in unit_section
    for line in ["Restart=always", "TimeoutStopSec=30", "LimitCORE=0", "RemoveIPC=yes", "ProtectProc=invisible",
                 "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/var/lib/ollama /var/lib/ollama/models", "ExecStart=/opt/ollama/current/bin/ollama serve"]:
        assert line in d, line
    assert not any(x.startswith(("MemoryMax=", "TasksMax=")) for x in d)


def test_unit_caps_and_switches():
    d = directives(render(ollama_memory_max="24G", ollama_tasks_max="1024", ollama_syscall_filter=False, ollama_protect_proc=False,
                          ollama_timeout_stop_sec=10, ollama_start_limit_burst=2))
    assert "MemoryMax=24G" in d and "TasksMax=1024" in d and "TimeoutStopSec=10" in d and "StartLimitBurst=2" in d
    assert not any(x.startswith(("SystemCallFilter=", "ProtectProc=")) for x in d)
    # without ollama_hardening none of the sandboxing is written, the restart policy and limits stay
    d = directives(render(ollama_hardening=False))
    assert "Restart=always" in d and "LimitCORE=0" in d
    assert not any(x.startswith(("SystemCallFilter=", "ProtectProc=", "RemoveIPC=", "ProtectSystem=")) for x in d)


def run_role(tmp_path, **extra_vars):
    (tmp_path / "ollama-linux-amd64.tgz").write_bytes(b"")  # the preflight only looks for it on the controller
    base = {"ansible_python_interpreter": sys.executable, "ollama_version": "0.5.4", "ollama_archive_src": str(tmp_path / "ollama-linux-amd64.tgz"),
            "ollama_archive_sha256": "0" * 64,
            # the platform check reads these facts; the test machine's PID 1 is not systemd
            "ansible_facts": {"system": "Linux", "service_mgr": "systemd", "architecture": "x86_64"}}
    base.update(extra_vars)
    return run_role_tags(tmp_path, "ollama", "ollama_preflight", base, timeout=120)


@pytest.mark.parametrize("extra, expect", [
    ({"ollama_models_dir": "models"}, 'ollama_models_dir is "models", not an absolute path'),
    ({"ollama_home": "var/lib/ollama"}, 'ollama_home is "var/lib/ollama", not an absolute path'),
    ({"ollama_instances": [{"name": "ollama", "port": 11434}, {"name": "two", "port": 11435, "models_dir": "./two"}]},
     'models_dir of instance two in ollama_instances is "./two", not an absolute path'),
    ({"ollama_tasks_max": "many"}, "ollama_tasks_max a number (got many)"),
    ({"ollama_extra_env": {"OLLAMA_HOST": "0.0.0.0:1"}}, "ollama_extra_env / ollama_instances[ollama].extra_env sets OLLAMA_HOST,"),
])
def test_preflight_refuses_relative_paths_and_bad_caps(tmp_path, extra, expect):
    result = run_role(tmp_path, **extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert expect in out, out


def test_preflight_names_every_failed_variable_check_in_one_run(tmp_path):
    result = run_role(tmp_path, ollama_home="var/lib/ollama", ollama_tasks_max="many", ollama_smoke_ready_timeout=30)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out
    for expect in ('ollama_home is "var/lib/ollama", not an absolute path', "ollama_tasks_max a number (got many)",
                   "ollama_smoke_ready_timeout was renamed ollama_smoke_timeout in 0.2.0"):
        assert expect in out, out[-3000:]
    assert "ollama_models_dir is" not in out and "Installing Ollama needs" not in out  # the checks that pass say nothing
