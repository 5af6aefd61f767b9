# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the stat cache of manifest_verify is used, and that its switches turn it off (a full re-check).

The models role checks each revision and each staged copy through ``<dir>/.verified-stat.json`` unless
``models_verify_stat_cache`` is false; stage 1 of site.yml checks the bundle through a file in the controller's cache
unless ``bundle_verify_stat_cache`` is false. The tasks' own ``stat_cache`` expressions are rendered here with
Ansible's templar, both ways (what the module then does with each is tested in tests/unit/plugins/module_utils/
test_bundle.py). Here, not under tests/unit: the templar is controller code, which changes how in-process module runs
collect their warnings (tests/run_all.py runs roles/*/tests in a process of their own)."""
from __future__ import annotations

import os

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # roles/models/tests -> repo
OMIT = "__omit_place_holder__test"


def verify_tasks(path):
    """Every onprem.llm_serving.manifest_verify task in a task or playbook file, blocks included."""
    found = []

    def walk(items):
        for item in items or []:
            if not isinstance(item, dict):
                continue
            if "onprem.llm_serving.manifest_verify" in item:
                found.append(item)
            for key in ("block", "rescue", "always", "tasks"):
                walk(item.get(key))

    with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
        walk(yaml.safe_load(handle))
    return found


def render(expression, variables):
    return Templar(loader=DataLoader(), variables=dict(variables, omit=OMIT)).template(trust_as_template(expression))


@pytest.mark.parametrize("path, item_var, item", [
    ("roles/models/tasks/plan.yml", "item", {"rev_dir": "/srv/llm/models/.revisions/tiny/rev-1"}),
    ("roles/models/tasks/stage_one.yml", "__models_entry", {"staging": "/srv/llm/models/.staging/tiny@rev-1"}),
])
def test_models_checks_go_through_the_revision_cache_unless_turned_off(path, item_var, item):
    [task] = [t for t in verify_tasks(path) if "stat_cache" in t["onprem.llm_serving.manifest_verify"]]
    expression = task["onprem.llm_serving.manifest_verify"]["stat_cache"]
    where = item.get("rev_dir") or item.get("staging")
    variables = {item_var: item, "__models_stat_cache": ".verified-stat.json"}
    assert render(expression, dict(variables, models_verify_stat_cache=True)) == where + "/.verified-stat.json"
    assert render(expression, dict(variables, models_verify_stat_cache=False)) == OMIT
    assert render(expression, dict(variables, models_verify_stat_cache="false")) == OMIT   # as -e passes it


def test_the_staged_copy_records_its_cache_inside_the_directory_that_is_renamed_into_place():
    """The staging directory becomes the revision directory by one rename: the cache written there moves with it."""
    with open(os.path.join(ROOT, "roles/models/vars/main.yml"), encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["__models_stat_cache"] == ".verified-stat.json"
    with open(os.path.join(ROOT, "roles/models/defaults/main.yml"), encoding="utf-8") as handle:
        assert yaml.safe_load(handle)["models_verify_stat_cache"] is True


def test_the_bundle_check_goes_through_the_controller_cache_unless_turned_off():
    [task] = verify_tasks("playbooks/preflight.yml")
    expression = task["onprem.llm_serving.manifest_verify"]["stat_cache"]
    variables = {"__bundle_verify_cache_dir": "/root/.cache/onprem-llm-serving", "llm_bundle_dir": "/srv/bundle"}
    path = render(expression, variables)                 # the default: on
    assert path.startswith("/root/.cache/onprem-llm-serving/bundle-") and path.endswith(".json")
    assert render(expression, dict(variables, llm_bundle_dir="/srv/other")) != path   # one cache per bundle directory
    assert render(expression, dict(variables, bundle_verify_stat_cache=False)) == OMIT
    assert render(expression, dict(variables, bundle_verify_stat_cache="false")) == OMIT   # as -e passes it
