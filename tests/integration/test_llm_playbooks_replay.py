# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/smoke.yml with ansible-playbook against REPLAY servers (TGI and Ollama wire formats, see
tests/integration/replay/replay_servers.py for the cited sources), two inventory hosts on the local connection.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "replay"))

from replay_servers import OllamaReplay, TgiReplay  # noqa: E402


def _inventory(tmp, endpoints_by_host):
    hosts = {}
    for host, endpoints in endpoints_by_host.items():
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3", "llm_endpoints": endpoints}
    path = os.path.join(tmp, "hosts.yml")
    with open(path, "w") as f:
        yaml.safe_dump({"all": {"children": {"llm_hosts": {"hosts": hosts}}}}, f)
    return path


def _playbook(inventory, playbook):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_CALLBACK_RESULT_FORMAT="yaml")
    return subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", inventory, os.path.join(ROOT, "playbooks", playbook)],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300, check=False)


def test_smoke_playbook_prints_one_table_and_fails_only_the_broken_host():
    with TgiReplay(model="bigscience/bloom-560m") as tgi, OllamaReplay() as ollama, tempfile.TemporaryDirectory() as tmp:
        inv = _inventory(tmp, {
            "gpu-a": [{"name": "tgi-bloom", "engine": "tgi", "url": tgi.url, "model": "bigscience/bloom-560m"}],
            "gpu-b": [{"name": "ollama-tiny", "engine": "auto", "url": ollama.url, "model": "tiny"},
                      {"name": "ollama-typo", "engine": "ollama", "url": ollama.url, "model": "tinny"}],
        })
        proc = _playbook(inv, "smoke.yml")
    out = proc.stdout
    assert proc.returncode == 2, out  # a host failed
    table_start = out.index("Print one table of every endpoint]")
    table = out[table_start:out.index("Fail the hosts whose endpoints", table_start)]
    assert table.count("host           endpoint") == 1
    assert "tgi-bloom" in table and "ollama-tiny" in table and "ollama-typo" in table
    assert "3.3.6" in table and "0.5.4" in table
    assert "model 'tinny' is not served" in table
    assert table.count(" OK") == 2 and table.count("FAIL: ") == 1
    recap = out[out.index("PLAY RECAP"):]
    assert "gpu-a" in recap and "failed=0" in recap.split("gpu-a")[1].splitlines()[0]
    assert "failed=1" in recap.split("gpu-b")[1].splitlines()[0]


def test_smoke_playbook_without_endpoints_says_so():
    with tempfile.TemporaryDirectory() as tmp:
        inv = _inventory(tmp, {"gpu-a": []})
        proc = _playbook(inv, "smoke.yml")
    assert proc.returncode == 0, proc.stdout
    assert "(no host defines llm_endpoints)" in proc.stdout
