"""Every role keeps its public contract in one shape (../shared/STYLE.md):

- each public variable is in defaults/main.yml AND meta/argument_specs.yml (main entry point), with
  the same names, prefixed with the role name;
- every option has a type and a description;
- the role README's variables table is generated from the argument specs (tools/role_docs.py) and current;
- tasks/main.yml is a table of contents: only includes/imports, each named and tagged.
"""
from __future__ import annotations

import glob
import os
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = sorted(os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(ROOT, "roles", "*", "tasks")))


def load(path):
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def spec_options(role):
    """Options of every entry point (an internal role such as engine_common has no main entry point)."""
    specs = load(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"))["argument_specs"]
    options = {}
    for entry in specs.values():
        options.update(entry.get("options", {}))
    return options


def is_internal(role):
    return "main" not in load(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"))["argument_specs"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_and_argument_specs_agree(role):
    defaults = load(os.path.join(ROOT, "roles", role, "defaults", "main.yml"))
    options = spec_options(role)
    assert sorted(set(defaults) - set(options)) == [], "in defaults/main.yml but not in meta/argument_specs.yml"
    assert sorted(set(options) - set(defaults)) == [], "in meta/argument_specs.yml but not in defaults/main.yml"


@pytest.mark.parametrize("role", ROLES)
def test_public_variables_are_prefixed(role):
    bad = [name for name in spec_options(role) if not name.startswith(role + "_")]
    assert bad == [], f"variables of role {role} must start with {role}_"


@pytest.mark.parametrize("role", ROLES)
def test_every_option_has_type_and_description(role):
    missing = [name for name, opt in spec_options(role).items() if not opt.get("type") or not opt.get("description")]
    assert missing == []


@pytest.mark.parametrize("role", ROLES)
def test_readme_variables_are_generated_from_specs(role):
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    import role_docs  # pylint: disable=import-outside-toplevel

    readme = os.path.join(ROOT, "roles", role, "README.md")
    assert os.path.exists(readme), f"roles/{role}/README.md is missing"
    text = open(readme).read()
    section = role_docs.render(os.path.join(ROOT, "roles", role))
    assert section in text, f"roles/{role}/README.md: variables table out of date: run tools/role_docs.py"
    for name in spec_options(role):
        assert f"`{name}`" in section


@pytest.mark.parametrize("role", ROLES)
def test_tasks_main_is_a_table_of_contents(role):
    tasks = load(os.path.join(ROOT, "roles", role, "tasks", "main.yml"))
    if is_internal(role):
        # an internal role is used through its entry points only; main refuses a direct use
        assert [list(set(t) - {"name", "tags"}) for t in tasks] == [["ansible.builtin.fail"]]
        for entry in load(os.path.join(ROOT, "roles", role, "meta", "argument_specs.yml"))["argument_specs"]:
            assert os.path.exists(os.path.join(ROOT, "roles", role, "tasks", entry + ".yml")), entry
        return
    includes = {"ansible.builtin.include_tasks", "ansible.builtin.import_tasks", "ansible.builtin.include_role",
                "ansible.builtin.import_role", "block"}
    for task in tasks:
        assert task.get("name"), f"unnamed task in roles/{role}/tasks/main.yml: {task}"
        assert includes & set(task), f"roles/{role}/tasks/main.yml: '{task['name']}' is not an include"
        assert task.get("tags"), f"roles/{role}/tasks/main.yml: '{task['name']}' has no tags"


def _task_files():
    for pattern in ("roles/*/tasks/*.yml", "roles/*/handlers/*.yml", "playbooks/*.yml", "site.yml"):
        yield from sorted(glob.glob(os.path.join(ROOT, pattern)))


def _walk_tasks(node):
    """Every task dict in a task file or playbook, blocks and plays included."""
    if isinstance(node, list):
        for item in node:
            yield from _walk_tasks(item)
    elif isinstance(node, dict):
        yield node
        for key in ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always"):
            if key in node:
                yield from _walk_tasks(node[key])


DYNAMIC_INCLUDES = {"ansible.builtin.include_tasks", "include_tasks", "ansible.builtin.include_role", "include_role"}


def bare_tagged_includes(tasks):
    """Names of the tagged dynamic includes that do not pass their tags on with apply:. An include tagged always
    alone is not one: it runs under every --tags, and the included tasks' own tags select them (playbooks/engines.yml
    includes each engine's role so, as `roles:` did)."""
    bad = []
    for task in _walk_tasks(tasks):
        for key in DYNAMIC_INCLUDES & set(task):
            args = task[key]
            tags = task.get("tags")
            if tags and tags not in (["always"], "always") and not (isinstance(args, dict) and (args.get("apply") or {}).get("tags")):
                bad.append(task.get("name", key))
    return bad


@pytest.mark.parametrize("path", [os.path.relpath(p, ROOT) for p in _task_files()])
def test_tagged_includes_pass_their_tags_on(path):
    """A tag on a bare include_tasks/include_role covers the include only: under --tags its tasks are
    skipped and later tasks miss their facts. Tagged dynamic includes must use apply: (or import_*)."""
    bad = bare_tagged_includes(load(os.path.join(ROOT, path)))
    assert bad == [], f"{path}: tagged include without apply: {{tags: ...}}: {bad}"


def test_the_tag_contract_rejects_a_bare_tagged_include():
    play = [{"hosts": "all", "tasks": [
        {"name": "bare", "ansible.builtin.include_tasks": "y.yml", "tags": ["t"]},
        {"block": [{"name": "nested bare", "ansible.builtin.include_role": {"name": "r"}, "tags": ["t"]}]},
        {"name": "applied", "ansible.builtin.include_tasks": {"file": "y.yml", "apply": {"tags": ["t"]}}, "tags": ["t"]},
        {"name": "untagged", "ansible.builtin.include_tasks": "y.yml"},
        {"name": "static", "ansible.builtin.import_tasks": "y.yml", "tags": ["t"]},
        {"name": "always", "ansible.builtin.include_role": {"name": "r"}, "tags": ["always"]},
        {"name": "always and more", "ansible.builtin.include_role": {"name": "r"}, "tags": ["always", "t"]},
    ]}]
    assert bare_tagged_includes(play) == ["bare", "nested bare", "always and more"]
