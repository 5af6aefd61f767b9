# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The preload callback: after the playbook starts, the main process holds the ssh connection plugin with its settings,
the sh shell and sudo become plugins, so a forked worker finds them loaded (it neither imports them nor parses their
documentation again). Each check runs in a fresh interpreter: this process's loaders may already hold them."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))

CHECK = """
import sys
from ansible import constants as C
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader([sys.argv[1]])
from ansible_collections.onprem.llm_serving.plugins.callback.preload import CallbackModule
before = C.config.has_configuration_definition('connection', 'ssh')
if sys.argv[2] == 'start':
    CallbackModule().v2_playbook_on_start(None)
print(before, C.config.has_configuration_definition('connection', 'ssh'),
      C.config.has_configuration_definition('connection', 'ansible_collections.ansible.builtin.plugins.connection.ssh'),
      C.config.has_configuration_definition('become', 'sudo'), C.config.has_configuration_definition('shell', 'sh'))
"""


def run(mode):
    collections = os.path.join(ROOT, ".cache", "collections")
    proc = subprocess.run([sys.executable, "-c", CHECK, collections, mode], capture_output=True, text=True, check=True,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    return proc.stdout.split("\n")


def test_the_main_process_holds_the_connection_settings_after_the_start():
    lines = run("start")
    assert lines[-2] == "False True True True True"  # defined after it, in the process every worker is forked from


def test_without_it_nothing_is_loaded_before_the_first_worker():
    lines = run("none")
    assert lines[-2] == "False False False False False"
