# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
name: preload
type: aggregate
short_description: Load the connection, shell and become plugins and the Jinja filters and tests once, before any task
version_added: 0.3.0
description:
  - Ansible runs each task of each host in a worker process forked from the controller's main process. The plugin
    loader's caches live in that process, so each worker loads the connection plugin again (its Python source and the
    YAML of its documentation, for its settings), and the shell and become plugins, and each Jinja filter and test its
    templates use (in a profile of a re-run of the two-host lab, about 5 of the controller's 33 CPU seconds).
  - This callback loads them once in the main process when the playbook starts, so that every worker is forked with
    them loaded. It prints nothing and changes nothing; a plugin that cannot be loaded is left to the worker, as before.
  - Enabled in the collection's C(ansible.cfg) (C(callbacks_enabled)); an C(ANSIBLE_CALLBACKS_ENABLED) of your own
    replaces that list, so name it there too.
author:
  - onprem.llm_serving maintainers (@onprem)
options: {}
"""

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import become_loader, connection_loader, filter_loader, shell_loader, test_loader

# What inventories reach hosts with and what runs the tasks there, by both spellings: the loader keeps a plugin's
# settings under the name it was asked for (ssh and ansible.builtin.ssh are two entries).
PRELOAD = (
    (connection_loader, ("ssh", "ansible.builtin.ssh", "local", "ansible.builtin.local", "community.docker.docker")),
    (shell_loader, ("sh", "ansible.builtin.sh")),
    (become_loader, ("sudo", "ansible.builtin.sudo")),
)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "onprem.llm_serving.preload"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        for loader, names in PRELOAD:
            for name in names:
                try:
                    loader.get(name, class_only=True)
                except Exception as exc:  # pylint: disable=broad-exception-caught
                    self._display.vvvv("preload: %s %s not loaded here (%s); each worker loads it" % (loader.type, name, exc))
        for loader in (filter_loader, test_loader):
            try:
                list(loader.all(class_only=True))
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self._display.vvvv("preload: the %s plugins not loaded here (%s)" % (loader.type, exc))
