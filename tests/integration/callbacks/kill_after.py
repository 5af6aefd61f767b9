# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test aid: SIGKILL ansible-playbook right after a task whose name contains $KILL_AFTER_TASK reports a change.

This is how tests/integration/test_readme_commands.py makes "a run that died after a unit or env file changed
and before its restart": the next run must finish the job from the host's truth.
"""
from __future__ import annotations

DOCUMENTATION = """
name: kill_after
type: aggregate
short_description: Kill the run right after a named task changed something (tests only)
description:
  - SIGKILLs ansible-playbook's own process right after a task whose name contains the value of the environment
    variable KILL_AFTER_TASK reports a change, to simulate a run that dies mid-way.
requirements:
  - enable in callbacks_enabled (tests only)
"""

import os
import signal

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "kill_after"
    CALLBACK_NEEDS_ENABLED = True

    def _maybe_kill(self, result):
        needle = os.environ.get("KILL_AFTER_TASK")
        if needle and needle in result.task_name and result._result.get("changed"):
            self._display.display("kill_after: killing the run after %r changed" % result.task_name)
            os.kill(os.getpid(), signal.SIGKILL)

    def v2_runner_on_ok(self, result):
        self._maybe_kill(result)

    def v2_runner_item_on_ok(self, result):
        self._maybe_kill(result)
