# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render a role's templates with Ansible's own templar, without a host (shared by roles/*/tests)."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The collection's own filters (onprem.llm_serving.env_file, ...) resolve through the checkout's collection link.
_AnsibleCollectionFinder(paths=[os.path.join(ROOT, ".cache", "collections")])._install()


def trusted(value):
    """Mark role data as trusted templates, as Ansible does for the role's own files."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return {k: trusted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trusted(v) for v in value]
    return value


def role_vars(role_dir, facts, overrides):
    """defaults + vars of the role, the way Ansible layers them (vars/main.yml wins), then facts and overrides."""
    loader = DataLoader()
    data = trusted(dict(loader.load_from_file(os.path.join(role_dir, "defaults", "main.yml"))))
    data.update(trusted(dict(loader.load_from_file(os.path.join(role_dir, "vars", "main.yml")))))
    data.update(facts)
    data.update(overrides)
    return data


def render_instance(role_dir, name, defaults_var, instance, variables):
    """Render templates/NAME for one instance: `item` is defaults_var combined with the instance, as the role does."""
    templates = os.path.join(role_dir, "templates")
    variables = dict(variables, inst=instance)
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[templates])
    variables["item"] = templar.template(trust_as_template("{{ [%s] | product([inst]) | map('combine') | first }}" % defaults_var))
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[templates])
    with open(os.path.join(templates, name)) as f:
        return templar.template(trust_as_template(f.read()))


def exec_start(unit):
    """The ExecStart= command as argv (systemd's line continuations joined)."""
    joined = unit.replace("\\\n", " ")
    line = [ln for ln in joined.splitlines() if ln.startswith("ExecStart=")][0]
    return shlex.split(line[len("ExecStart="):])


def ansible_playbook(args, env_extra=None, verbosity=None, timeout=300):
    """ansible-playbook of this venv from the repository root with its ansible.cfg, no colour; returns the
    CompletedProcess (every role-test run goes through here)."""
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1", **(env_extra or {}))
    return subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook")] + ([verbosity] if verbosity else [])
                          + list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_role(tmp_path, role, tags, extra_vars, verbosity=None, timeout=300):
    """ansible-playbook with one role of the collection against localhost (connection local, no become), the extra vars
    from a JSON file, only the given tags; returns the CompletedProcess (the role tests' preflight runs)."""
    (tmp_path / "play.yml").write_text("- hosts: localhost\n  gather_facts: false\n  roles:\n    - role: onprem.llm_serving.%s\n" % role)
    (tmp_path / "vars.json").write_text(json.dumps(extra_vars))
    return ansible_playbook(["-i", "localhost,", "-c", "local", str(tmp_path / "play.yml"), "-e", "@" + str(tmp_path / "vars.json"),
                             "--tags", tags], {"ANSIBLE_INJECT_FACT_VARS": "false"}, verbosity, timeout)


def run_role_cases(tmp_path, role, tags, cases, verbosity=None, timeout=600):
    """One ansible-playbook run of a role for many variable sets: each set is an inventory host of its own (case0,
    case1, ...; connection local, this machine), its variables the host's. A host that fails stops alone; the others go
    on (one controller start and role load for every case, where run_role pays them per case). Returns the process and,
    per case, the messages of the tasks that failed on its host (empty when it passed), through the test callback
    tests/callbacks/host_failures.py. Role variables (vars/main.yml) win over host variables: the sets name the role's
    public variables only, which its vars/main.yml never sets."""
    hosts = {"case%d" % i: dict(case, ansible_connection="local", ansible_python_interpreter=sys.executable)
             for i, case in enumerate(cases)}
    (tmp_path / "inventory.json").write_text(json.dumps({"all": {"hosts": hosts}}))
    (tmp_path / "play.yml").write_text("- hosts: all\n  gather_facts: false\n  roles:\n    - role: onprem.llm_serving.%s\n" % role)
    failures = tmp_path / "failures.json"
    proc = ansible_playbook(["-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml"), "--tags", tags],
                            {"ANSIBLE_INJECT_FACT_VARS": "false", "ANSIBLE_CALLBACK_PLUGINS": os.path.join(ROOT, "tests", "callbacks"),
                             "ANSIBLE_CALLBACKS_ENABLED": "onprem.llm_serving.preload,host_failures", "HOST_FAILURES_FILE": str(failures)},
                            verbosity, timeout)
    if not failures.exists():
        raise AssertionError("the run wrote no %s (did the host_failures callback load?): %s" % (failures, (proc.stdout + proc.stderr)[-3000:]))
    found = json.loads(failures.read_text())
    return proc, [" ".join(" ".join(f["msg"] for f in found.get("case%d" % i, [])).split()) for i in range(len(cases))]


def run_tasks(tmp_path, tasks, variables, env_extra=None):
    """Tasks taken from the role's files as they are, in a play against this machine (connection local), with the
    role's variables they read; returns the CompletedProcess."""
    (tmp_path / "tasks.yml").write_text(json.dumps(tasks))
    play = [{"hosts": "localhost", "gather_facts": False, "vars": dict(variables, ansible_python_interpreter=sys.executable),
             "tasks": [{"ansible.builtin.include_tasks": str(tmp_path / "tasks.yml")}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    return ansible_playbook(["-i", "localhost,", "-c", "local", str(tmp_path / "play.yml")], env_extra)


VLLM_PYTHON = os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(ROOT, ".cache", "vllm-venv", "bin", "python"))


def vllm_parse(argv, keys, then=""):
    """A vLLM command line through vLLM 0.32's own argument parser, in the vLLM venv (one Python start): {key: value} of
    the parsed namespace for ``keys``. ``then``: Python run after the parse with ``ns`` and ``values`` (e.g. build a
    config that validates them, and put what it kept in ``values``). Skips the calling test without the venv."""
    import pytest  # pylint: disable=import-outside-toplevel
    if not os.path.exists(VLLM_PYTHON):
        pytest.skip("no vLLM venv python at %s (set LLM_TEST_VLLM_PYTHON; tools/artefacts.py builds .cache/vllm-venv)" % VLLM_PYTHON)
    script = ("import json, sys\n"
              "from vllm.utils.argparse_utils import FlexibleArgumentParser\n"
              "from vllm.entrypoints.launchers.cli_args import make_arg_parser\n"
              "ns = make_arg_parser(FlexibleArgumentParser()).parse_args(json.loads(sys.argv[1]))\n"
              "values = {k: getattr(ns, k) for k in json.loads(sys.argv[2])}\n"
              + then +
              "print('PARSED=' + json.dumps(values))\n")
    proc = subprocess.run([VLLM_PYTHON, "-c", script, json.dumps(list(argv)), json.dumps(list(keys))], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads([line for line in proc.stdout.splitlines() if line.startswith("PARSED=")][0][len("PARSED="):])
