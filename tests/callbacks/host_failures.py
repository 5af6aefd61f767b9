# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test aid: write each host's failures (task name and message, loop items' included) to $HOST_FAILURES_FILE as JSON
at the end of the run, so that one run of a role over many inventory hosts, one variable set each, tells each set's
refusal apart (tests/role_templates.py run_role_cases)."""
from __future__ import annotations

DOCUMENTATION = """
name: host_failures
type: aggregate
short_description: Record each host's failed tasks and their messages in a JSON file (tests only)
description:
  - At the end of the run, writes to the file named by the environment variable HOST_FAILURES_FILE a JSON object
    that maps each host to the list of its failed tasks (task name and message); a host that failed nothing has an
    empty list.
requirements:
  - enable in callbacks_enabled (tests only)
"""

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "host_failures"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._failures = {}

    def _record(self, result, ignore_errors=False):
        if ignore_errors:
            return
        self._failures.setdefault(result._host.get_name(), []).append(
            {"task": result.task_name, "msg": str(result._result.get("msg", ""))})

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, ignore_errors)

    def v2_runner_item_on_failed(self, result):
        self._record(result)

    def v2_playbook_on_stats(self, stats):
        hosts = {host: self._failures.get(host, []) for host in stats.processed}
        with open(os.environ["HOST_FAILURES_FILE"], "w", encoding="utf-8") as handle:
            json.dump(hosts, handle)
