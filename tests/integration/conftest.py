# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Order of the integration tests: the ones that watch the lab's running engines come after test_readme_commands.py,
which brings up fresh lab hosts and runs `make lab` on them (before it, the lab hosts of `make test` have no engine)."""
from __future__ import annotations

# test files that need the lab converged by test_readme_commands.py (vLLM on llm-lab-1, Ollama on llm-lab-2, behind the
# hosts' gateways)
AFTER_MAKE_LAB = ("test_gateway_lab.py", "test_monitoring_lab.py",
                  # last: it adds a second vLLM replica on llm-lab-1 and rolls updates through it
                  "test_update_lab.py")


def pytest_collection_modifyitems(session, config, items):  # pylint: disable=unused-argument
    """Stable: every other test keeps its place; the AFTER_MAKE_LAB files move to the end, in their own order."""
    later = [item for item in items if item.path.name in AFTER_MAKE_LAB]
    items[:] = [item for item in items if item.path.name not in AFTER_MAKE_LAB] + later
