# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The models role's preflight plans every model at once: what each revision directory has, what the served path can
lend it, what the controller must copy, and the refusals that name the model and the fix.

Runs the role's own preflight (include_role tasks_from: preflight) with ansible-playbook against this machine
(connection local): the controller's sources and the "host's" models_root are temporary directories.
Run: .venv/bin/pytest roles/models/tests/
"""
from __future__ import annotations

import grp
import hashlib
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def sha(data):
    return hashlib.sha256(data).hexdigest()


FILES = {"config.json": b"{}", "model.safetensors": b"weights", "tokenizer/tokenizer.json": b"tok"}
GGUF = b"GGUF-bytes"


def sources(tmp_path):
    """An hf model on the controller with its SHA256SUMS, and a gguf file pinned inline."""
    hf = tmp_path / "src" / "tiny"
    for rel, data in FILES.items():
        (hf / rel).parent.mkdir(parents=True, exist_ok=True)
        (hf / rel).write_bytes(data)
    (hf / "SHA256SUMS").write_text("".join("%s  %s\n" % (sha(d), r) for r, d in sorted(FILES.items())))
    (tmp_path / "src" / "tiny.gguf").write_bytes(GGUF)
    return [{"name": "tiny", "format": "hf", "revision": "r1", "src": str(hf)},
            {"name": "tiny-gguf", "format": "gguf", "revision": "g1", "src": str(tmp_path / "src" / "tiny.gguf"), "sha256": sha(GGUF)}]


def plan(tmp_path, models, **extra):
    """The preflight's plan (__models_plan and __models_need_bytes), or the failed run's output."""
    play = [{"hosts": "localhost", "gather_facts": False,
             "vars": dict({"ansible_python_interpreter": sys.executable, "models_root": str(tmp_path / "root"),
                           "models_list": models, "models_group": grp.getgrgid(os.getgid()).gr_name}, **extra),
             "tasks": [{"ansible.builtin.include_role": {"name": "onprem.llm_serving.models", "tasks_from": "preflight"}},
                       {"ansible.builtin.copy": {"content": "{{ {'plan': __models_plan, 'bytes': __models_need_bytes | int} | to_json }}",
                                                 "dest": str(tmp_path / "plan.json")}}]}]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,", "-c", "local",
                             str(tmp_path / "play.yml")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    out = " ".join((result.stdout + result.stderr).split())
    if result.returncode != 0:
        return None, out
    with open(tmp_path / "plan.json", encoding="utf-8") as handle:
        return json.load(handle), out


def test_a_fresh_host_stages_everything_and_counts_the_bytes(tmp_path):
    found, out = plan(tmp_path, sources(tmp_path))
    assert found, out
    by = {p["name"]: p for p in found["plan"]}
    assert by["tiny"]["state"] == "stage" and by["tiny"]["link_state"] == "absent"
    assert by["tiny"]["todo"] == sorted(FILES) and by["tiny"]["subdirs"] == ["tokenizer"]
    assert by["tiny"]["sizes"] == {r: len(d) for r, d in FILES.items()}
    assert by["tiny"]["sums"] == "".join("%s  %s\n" % (sha(d), r) for r, d in sorted(FILES.items()))
    assert by["tiny"]["manifest"] == str(tmp_path / "src" / "tiny" / "SHA256SUMS")
    assert by["tiny-gguf"]["todo"] == ["tiny.gguf"] and by["tiny-gguf"]["manifest"] == "models_list[].sha256"
    assert by["tiny-gguf"]["rev_dir"] == str(tmp_path / "root" / ".revisions" / "tiny-gguf" / "g1")
    assert found["bytes"] == sum(len(d) for d in FILES.values()) + len(GGUF)


def test_a_verified_revision_is_ready_and_a_served_directory_lends_its_files(tmp_path):
    models = sources(tmp_path)
    root = tmp_path / "root"
    # tiny: its revision directory holds every pinned file, and the served symlink points at it
    rev = root / ".revisions" / "tiny" / "r1"
    for rel, data in FILES.items():
        (rev / rel).parent.mkdir(parents=True, exist_ok=True)
        (rev / rel).write_bytes(data)
    (root / "tiny").symlink_to(".revisions/tiny/r1")
    # tiny-gguf: the layout before revisions, a plain directory holding the pinned file
    (root / "tiny-gguf").mkdir()
    (root / "tiny-gguf" / "tiny.gguf").write_bytes(GGUF)
    found, out = plan(tmp_path, models)
    assert found, out
    by = {p["name"]: p for p in found["plan"]}
    assert (by["tiny"]["state"], by["tiny"]["link_state"], by["tiny"]["link_target"], by["tiny"]["todo"]) == (
        "ready", "link", ".revisions/tiny/r1", [])
    assert by["tiny"]["link_files"] == [[str(rev / r), r] for r in sorted(FILES)]
    assert (by["tiny-gguf"]["state"], by["tiny-gguf"]["link_state"], by["tiny-gguf"]["todo"]) == ("stage", "dir", [])
    assert by["tiny-gguf"]["link_files"] == [[str(root / "tiny-gguf" / "tiny.gguf"), "tiny.gguf"]]
    assert found["bytes"] == 0


def test_a_wrong_file_under_the_served_path_is_copied_not_lent(tmp_path):
    models = sources(tmp_path)[:1]
    (tmp_path / "root" / "tiny").mkdir(parents=True)
    (tmp_path / "root" / "tiny" / "config.json").write_bytes(b"{}")
    (tmp_path / "root" / "tiny" / "model.safetensors").write_bytes(b"other weights")
    found, out = plan(tmp_path, models)
    assert found, out
    [entry] = found["plan"]
    assert [f for _p, f in entry["link_files"]] == ["config.json"]
    assert entry["todo"] == ["model.safetensors", "tokenizer/tokenizer.json"]
    assert found["bytes"] == len(FILES["model.safetensors"]) + len(FILES["tokenizer/tokenizer.json"])


def test_refusals_name_the_model_and_the_fix(tmp_path):
    models = sources(tmp_path)
    missing = dict(models[0], src=str(tmp_path / "src" / "nowhere"))
    _found, out = plan(tmp_path, [missing])
    assert "Model tiny has no pinned checksums: no models_list[].checksums, and the manifest %s/SHA256SUMS does not exist on the " \
           "controller." % missing["src"] in out, out
    bad = dict(models[1], sha256="not-a-sha")
    _found, out = plan(tmp_path, [bad])
    assert "The pinned checksums of model tiny-gguf are not usable" in out and "Fix models_list[].checksums / sha256 / manifest" in out, out
    os.unlink(tmp_path / "src" / "tiny" / "model.safetensors")
    _found, out = plan(tmp_path, models[:1])
    assert "Model tiny: these source files do not exist on the controller: ['%s/model.safetensors']" % models[0]["src"] in out, out
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "root" / "tiny-gguf").write_text("a file where the served path goes")
    _found, out = plan(tmp_path, models[1:])
    assert "%s/tiny-gguf on localhost is neither a directory nor a symlink" % (tmp_path / "root") in out, out


def test_a_source_spelled_with_extra_slashes_is_measured_the_same(tmp_path):
    """models_list[].src with a doubled and a trailing slash: the controller's listing still finds every file to copy."""
    [model] = sources(tmp_path)[:1]
    found, out = plan(tmp_path, [dict(model, src=model["src"].replace("/src/", "//src/") + "/")])
    assert found, out
    assert found["plan"][0]["sizes"] == {r: len(d) for r, d in FILES.items()}
    assert found["bytes"] == sum(len(d) for d in FILES.values())


def test_a_missing_group_and_a_full_disk_are_refused_before_any_copy(tmp_path):
    """The plan's one host read also answers whether models_group exists and how much models_root's file system has
    free (its nearest existing parent's, before the first run creates it): each refusal names the value and the fix."""
    models = sources(tmp_path)
    _found, out = plan(tmp_path, models, models_group="no-such-group-onprem")
    assert "Group no-such-group-onprem (models_group) does not exist on localhost" in out, out
    assert "Run the common role first" in out
    free = shutil.disk_usage(tmp_path).free
    _found, out = plan(tmp_path, models, models_disk_headroom_mb=free // 1048576 + 1024)
    assert "Not enough disk space on localhost to stage the models under %s" % (tmp_path / "root") in out, out
    assert "lower models_disk_headroom_mb" in out
    assert not (tmp_path / "root").exists()
    found, out = plan(tmp_path, models, models_disk_headroom_mb=0)
    assert found and found["bytes"] == sum(len(d) for d in FILES.values()) + len(GGUF), out


def test_the_variable_checks_name_every_bad_variable_in_one_run(tmp_path):
    models = sources(tmp_path)
    models[1]["name"] = "tiny"  # two models named tiny
    result, out = plan(tmp_path, models, models_root="srv/models", models_keep_revisions=0)
    assert result is None, out[-3000:]
    for expect in ("models_list names must be unique and made of letters", 'models_root is "srv/models", a relative path',
                   "models_keep_revisions is 0; it counts the revision in service too"):
        assert expect in out, out[-3000:]


def test_the_variable_checks_pass_quietly_on_good_variables(tmp_path):
    result, out = plan(tmp_path, sources(tmp_path))
    assert result is not None, out[-3000:]
    assert "a relative path" not in out and "must be unique" not in out
