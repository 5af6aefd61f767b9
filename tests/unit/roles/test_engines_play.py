# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engines stage runs each host at its own pace (README, "Deploy speed and fleets"): one play with the free
strategy over the three engine groups, and nothing in the engine roles that the free strategy would run once per host
instead of once (run_once). The one controller-side step, packing the vLLM wheelhouse, is done once however many hosts
reach it together: tests/unit/roles/test_controller_packs.py."""
from __future__ import annotations

import glob
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ENGINE_ROLES = ("vllm", "tgi", "ollama", "engine_common")


def load(path):
    with open(os.path.join(ROOT, path)) as handle:
        return yaml.safe_load(handle)


def tasks(node):
    """Every task dict in a task list, blocks and rescue/always included."""
    for task in node or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from tasks(task.get(key))


def test_one_free_play_over_the_engine_groups():
    plays = load("playbooks/engines.yml")
    assert len(plays) == 1
    play = plays[0]
    assert play["strategy"] == "ansible.builtin.free"
    assert set(play["hosts"].split(":")) == {"vllm_servers", "tgi_servers", "ollama_servers"}
    # each engine's role is one include, skipped as one task where the host is not in the engine's group, and tagged
    # always so that the role's own tags select its tasks under --tags
    assert "roles" not in play
    roles = {t["ansible.builtin.include_role"]["name"].split(".")[-1]: (t["when"], t["tags"]) for t in play["tasks"]}
    assert roles == {e: ("inventory_hostname in groups.get('%s_servers', [])" % e, ["always"]) for e in ("vllm", "tgi", "ollama")}


def test_no_run_once_in_the_engine_roles():
    found = []
    for role in ENGINE_ROLES:
        for path in glob.glob(os.path.join(ROOT, "roles", role, "tasks", "*.yml")):
            for task in tasks(load(path)):
                if "run_once" in task:
                    found.append("%s: %s" % (os.path.relpath(path, ROOT), task.get("name")))
    assert not found, "the free strategy runs run_once tasks on every host: %s" % found
