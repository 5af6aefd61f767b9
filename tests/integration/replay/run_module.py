# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one module of the collection through Ansible itself (ad hoc, local connection) and return its result.

This goes through the whole real path: AnsiballZ packaging, module_utils imports, argument spec,
no_log, JSON result. The module runs under /usr/bin/python3 (the system's Python, no extra packages).
"""
from __future__ import annotations

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ANSIBLE = os.path.join(ROOT, ".venv", "bin", "ansible")
PYTHON = os.environ.get("LLM_TEST_TARGET_PYTHON", "/usr/bin/python3")


def run_module(name, args, check=False, timeout=300):
    """Returns (result dict, raw stdout)."""
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_NOCOLOR="1")
    cmd = [ANSIBLE, "localhost", "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=%s" % PYTHON,
           "-m", "onprem.llm_serving.%s" % name, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout,
                          check=False)
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible printed no JSON (rc %s):\n%s\n%s" % (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:]))
    result = doc["plays"][0]["tasks"][0]["hosts"]["localhost"]
    return result, proc.stdout
