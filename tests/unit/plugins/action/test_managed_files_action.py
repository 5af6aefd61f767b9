# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""managed_files end to end through ansible-playbook (local connection): the action plugin renders a template byte for
byte as ansible.builtin.template does, reads role files, stages and checks, and a second run changes nothing."""
from __future__ import annotations

import grp
import json
import os
import pwd
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
PLAYBOOK_BIN = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")

TEMPLATE = """{{ ansible_managed | comment }}
# {{ item.unit }} on {{ inventory_hostname }}
{% for k in settings | sort %}
{{ k }}={{ settings[k] }}
{% endfor %}
"""


def play(tmp_path, name, tasks, check=False):
    role = tmp_path / "roles" / "r"
    (role / "templates").mkdir(parents=True, exist_ok=True)
    (role / "files").mkdir(parents=True, exist_ok=True)
    (role / "tasks").mkdir(parents=True, exist_ok=True)
    (role / "templates" / "t.conf.j2").write_text(TEMPLATE)
    (role / "files" / "plain.txt").write_text("plain file, no trailing newline stripped\n\n")
    (role / "tasks" / "main.yml").write_text(json.dumps(tasks))
    pb = tmp_path / ("%s.yml" % name)
    pb.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "vars": {"settings": {"B": "2", "A": "1"}},
                               "roles": ["r"]}]))
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(tmp_path / "roles"), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    cmd = [PLAYBOOK_BIN, "-i", "localhost,", "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable, str(pb)]
    if check:
        cmd.append("--check")
    proc = subprocess.run(cmd + ["--diff"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    return proc.returncode, out


def results(out):
    return {t["task"]["name"].split(" : ")[-1]: t["hosts"]["localhost"] for t in out["plays"][0]["tasks"]}


def test_renders_as_the_template_module_and_converges(tmp_path):
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    out_dir = tmp_path / "out"
    tasks = [
        {"name": "reference", "ansible.builtin.template": {"src": "t.conf.j2", "dest": str(tmp_path / "reference.conf"),
                                                           "mode": "0644"}, "vars": {"item": {"unit": "u1"}}},
        {"name": "bulk", "onprem.llm_serving.managed_files": {
            "directories": [{"path": str(out_dir / "sub"), "owner": me, "group": group, "mode": "0750"}],
            "files": [
                {"dest": str(out_dir / "sub" / "t.conf"), "template": "t.conf.j2", "vars": {"item": {"unit": "u1"}},
                 "owner": me, "group": group, "mode": "0640", "validate": "grep -q '^A=1$' %s"},
                {"dest": str(out_dir / "plain.txt"), "src": "plain.txt", "mode": "0644"},
                {"dest": str(out_dir / "inline"), "content": "x={{ settings.A }}\n", "mode": "0600"},
            ]}},
    ]
    rc, out = play(tmp_path, "first", tasks)
    assert rc == 0, out
    bulk = results(out)["bulk"]
    assert bulk["changed"] is True
    assert (out_dir / "sub" / "t.conf").read_bytes() == (tmp_path / "reference.conf").read_bytes()
    assert b"Ansible managed" in (out_dir / "sub" / "t.conf").read_bytes()
    assert (out_dir / "plain.txt").read_text() == "plain file, no trailing newline stripped\n\n"
    assert (out_dir / "inline").read_text() == "x=1\n"
    assert oct(os.stat(out_dir / "sub").st_mode & 0o7777) == "0o750"
    rc, out = play(tmp_path, "second", tasks)
    assert rc == 0 and results(out)["bulk"]["changed"] is False and results(out)["bulk"]["changed_paths"] == []


def test_a_failed_check_and_two_sources_are_refused(tmp_path):
    dest = tmp_path / "live.conf"
    dest.write_text("live\n")
    rc, out = play(tmp_path, "bad", [{"name": "bulk", "onprem.llm_serving.managed_files": {"files": [
        {"dest": str(dest), "template": "t.conf.j2", "vars": {"item": {"unit": "u"}}, "mode": "0644",
         "validate": "grep -q '^NOPE' %s"}]}}])
    assert rc != 0 and "failed its check" in results(out)["bulk"]["msg"]
    assert dest.read_text() == "live\n"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".staged")]
    rc, out = play(tmp_path, "two", [{"name": "bulk", "onprem.llm_serving.managed_files": {"files": [
        {"dest": str(dest), "template": "t.conf.j2", "content": "x", "mode": "0644"}]}}])
    assert rc != 0 and "exactly one of content, template, src" in results(out)["bulk"]["msg"]


def test_check_mode_writes_nothing(tmp_path):
    rc, out = play(tmp_path, "check", [{"name": "bulk", "onprem.llm_serving.managed_files": {
        "directories": [{"path": str(tmp_path / "new"), "mode": "0755"}],
        "files": [{"dest": str(tmp_path / "new" / "f"), "template": "t.conf.j2", "vars": {"item": {"unit": "u"}}, "mode": "0644"}]}}],
        check=True)
    assert rc == 0 and results(out)["bulk"]["changed"] is True
    assert not (tmp_path / "new").exists()
