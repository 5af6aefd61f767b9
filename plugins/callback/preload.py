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
  - It also keeps the module payloads a run built (AnsiballZ, a module and the module_utils it imports, zipped) for the
    next run. Ansible builds each module's payload once per run in the run's temporary directory and removes it at the
    end; the next run builds the same payloads from the same files again. The callback puts the payloads of the last
    run with the same sources into the new run's directory at the start (Ansible finds them built) and keeps the new
    ones at the end, in a store named by a fingerprint of ansible-core's version and of every module and module_utils
    file of ansible-core and of each collection the run can load (path, size, mtime, ctime), so that any change to any of
    them gives another store. Payloads of modules from a role's C(library/) are not kept (built every run, as before).
    The 4 most recently used stores are kept.
  - Enabled in the collection's C(ansible.cfg) (C(callbacks_enabled)); an C(ANSIBLE_CALLBACKS_ENABLED) of your own
    replaces that list, so name it there too.
author:
  - onprem.llm_serving maintainers (@onprem)
options:
  ansiballz_cache:
    description: Keep the module payloads a run built for the next run with the same module sources.
    type: bool
    default: true
    env:
      - name: ONPREM_LLM_SERVING_ANSIBALLZ_CACHE
    ini:
      - section: callback_preload
        key: ansiballz_cache
  ansiballz_cache_dir:
    description: Where the kept payloads are, one directory per fingerprint (made with mode 0700).
    type: path
    default: ~/.cache/onprem-llm-serving/ansiballz
    env:
      - name: ONPREM_LLM_SERVING_ANSIBALLZ_CACHE_DIR
    ini:
      - section: callback_preload
        key: ansiballz_cache_dir
"""

import os
import sys

import ansible
from ansible import constants as C
from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import become_loader, connection_loader, filter_loader, shell_loader, test_loader
from ansible.release import __version__ as ansible_version
from ansible.utils.collection_loader import AnsibleCollectionConfig

from ansible_collections.onprem.llm_serving.plugins.plugin_utils import _ansiballz_cache

KEEP_STORES = 4

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

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._store = None  # the payload store of this run's fingerprint, once the start found it

    def v2_playbook_on_start(self, playbook):
        loads = [(loader, name, False) for loader, names in PRELOAD for name in names]
        loads += [(loader, None, True) for loader in (filter_loader, test_loader)]
        for loader, name, every in loads:
            try:
                if every:
                    list(loader.all(class_only=True))
                else:
                    loader.get(name, class_only=True)
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self._display.vvvv("preload: %s %s not loaded here (%s); each worker loads it" % (loader.type, name or "plugins", exc))
        try:
            keep = self.get_option("ansiballz_cache")
        except KeyError:  # options unknown: not loaded by Ansible's callback loader (its settings were never read)
            keep = False
        if keep:
            try:
                self._restore_payloads()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                self._store = None
                self._display.vvvv("preload: no kept module payloads this run (%s)" % exc)

    def v2_playbook_on_stats(self, stats):
        if self._store is None:
            return
        try:
            saved = _ansiballz_cache.save(self._run_cache(), self._store)
            root = os.path.dirname(self._store)
            removed = _ansiballz_cache.prune(root, KEEP_STORES)
            self._display.vvvv("preload: kept %d new module payload(s) in %s; removed stores %s" % (saved, self._store, removed))
        except Exception as exc:  # pylint: disable=broad-exception-caught
            self._display.vvvv("preload: the module payloads of this run were not kept (%s)" % exc)

    @staticmethod
    def _run_cache():
        # where Ansible's workers look for and write each module's payload (executor/module_common.py)
        return os.path.join(C.DEFAULT_LOCAL_TMP, "ansiballz_cache")

    def _restore_payloads(self):
        root = os.path.expanduser(self.get_option("ansiballz_cache_dir"))
        sources = _ansiballz_cache.collection_source_dirs(AnsibleCollectionConfig.collection_paths)
        key = _ansiballz_cache.fingerprint(ansible_version, os.path.dirname(ansible.__file__), sources, extra=sys.version)
        self._store = os.path.join(root, key)
        count = _ansiballz_cache.restore(self._store, self._run_cache())
        self._display.vvvv("preload: %d module payload(s) from %s (fingerprint of ansible-core and %d collection source "
                           "directories)" % (count, self._store, len(sources)))
