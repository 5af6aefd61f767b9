# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller settings the README tells fleets to use are the ones this checkout runs with (ansible.cfg), and
they do what the README says they do."""
from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def readme_settings():
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = re.findall(r"```ini\n(.*?)```", text, re.S)
    assert len(blocks) == 1, "the README shows one ansible.cfg block for fleets"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(blocks[0])
    return parser


def test_the_readme_fleet_settings_are_this_checkouts_ansible_cfg():
    shown = readme_settings()
    ours = configparser.ConfigParser(interpolation=None)
    ours.read(os.path.join(ROOT, "ansible.cfg"))
    assert shown.sections(), "no settings in the README's ini block"
    for section in shown.sections():
        for key, value in shown.items(section):
            assert ours.get(section, key, fallback=None) == value, "README [%s] %s = %s, ansible.cfg has %s" % (
                section, key, value, ours.get(section, key, fallback=None))
    for section, key in (("defaults", "forks"), ("defaults", "gathering"), ("connection", "pipelining"),
                         ("ssh_connection", "pipelining"), ("ssh_connection", "ssh_args")):
        assert shown.has_option(section, key), "the README's fleet settings lack [%s] %s" % (section, key)


def test_ansible_reads_them():
    """ansible-config, run from the repository root as users do, reports the values (from ansible.cfg, not defaults)."""
    bindir = os.path.dirname(sys.executable)
    proc = subprocess.run([os.path.join(bindir, "ansible-config"), "dump", "--only-changed", "--format", "json"], cwd=ROOT,
                          capture_output=True, text=True, check=True,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    seen = {item["name"]: item for item in json.loads(proc.stdout) if isinstance(item, dict) and "name" in item}
    for name, value in (("DEFAULT_FORKS", 25), ("DEFAULT_GATHERING", "smart"), ("ANSIBLE_PIPELINING", True)):
        assert seen.get(name, {}).get("value") == value, (name, seen.get(name))
        assert seen[name]["origin"].endswith("ansible.cfg"), seen[name]
