# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Galaxy tarball ships the collection only, and works from a clean install.

Builds the tarball with `ansible-galaxy collection build`, checks its file list (no lab harness,
tests, recorded results, stand-ins or caches; everything the collection needs), installs it with
`ansible-galaxy collection install` into an empty collections path and, from a directory outside
the checkout, runs `ansible-doc` for every module and role, the playbooks' `--syntax-check` and
`--list-tasks` of site.yml.
"""
from __future__ import annotations

import json
import re
import subprocess
import tarfile

import pytest

from conftest import BIN, ROOT, galaxy_info, run

NS, NAME = "onprem", "llm_serving"
FQ = "%s.%s" % (NS, NAME)

# Paths that are development, lab or test material, never collection content.
FORBIDDEN = [
    r"^tests/", r"^tools/", r"^inventories/", r"^roles/[^/]+/(molecule|tests)(/|$)",
    r"(^|/)\.",  # .cache, .lab, .ci, .venv, .gitignore, .ansible-lint, changelogs/.plugin-cache.yaml
    r"^(Makefile|ansible\.cfg)$", r"^benchmark-reports/", r"^changelogs/fragments/", r"^dist/", r"^context/",
    r"__pycache__", r"\.pyc$", r"\.tar\.gz$", r"^requirements/(controller|constraints)\.txt$",
    r"stand-in", r"(^|/)results/",
]
REQUIRED = [
    "MANIFEST.json", "FILES.json", "README.md", "site.yml", "meta/runtime.yml", "CHANGELOG.rst",
    "changelogs/changelog.yaml", "changelogs/config.yaml", "execution-environment.yml",
    "requirements/ee.txt", "requirements/bindep.txt",
]


def tracked(*prefixes):
    out = subprocess.run(["git", "ls-files", "--", *prefixes], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [p for p in out.splitlines() if (ROOT / p).is_file()]


@pytest.fixture(scope="module")
def members(collection_tarball):
    with tarfile.open(collection_tarball) as tar:
        return [m.name.removeprefix("./") for m in tar.getmembers() if m.isfile()]


def test_tarball_has_no_lab_or_test_material(collection_tarball, members):
    bad = sorted(m for m in members if any(re.search(p, m) for p in FORBIDDEN))
    assert not bad, "the Galaxy tarball ships lab/test material (galaxy.yml build_ignore): %s" % bad
    print("\n%s: %d files, %d bytes" % (collection_tarball.name, len(members), collection_tarball.stat().st_size))


def test_tarball_has_the_collection(members):
    want = set(REQUIRED)
    want.update(tracked("plugins", "playbooks", "meta"))
    want.update(p for p in tracked("roles") if not re.match(r"roles/[^/]+/(molecule|tests)/", p))
    missing = sorted(want - set(members))
    assert not missing, "the Galaxy tarball lacks collection content: %s" % missing


def test_manifest_version_is_galaxy_version(collection_tarball):
    with tarfile.open(collection_tarball) as tar:
        manifest = json.load(tar.extractfile("MANIFEST.json"))
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == (NS, NAME, galaxy_info()["version"])


def test_installed_collection_is_the_only_one_found(workdir, installed):
    out = run([BIN / "ansible-galaxy", "collection", "list", FQ, "--format", "json"], cwd=workdir, env=installed["env"]).stdout
    found = json.loads(out)
    assert list(found) == [str(installed["path"].parents[1])], found
    assert found[str(installed["path"].parents[1])][FQ]["version"] == galaxy_info()["version"]


def test_ansible_doc_every_module(workdir, installed):
    modules = sorted(p.stem for p in (installed["path"] / "plugins" / "modules").glob("*.py") if p.stem != "__init__")
    assert set(modules) >= {p.split("/")[-1][:-3] for p in tracked("plugins/modules") if p.endswith(".py")}
    listed = json.loads(run([BIN / "ansible-doc", "-t", "module", "-l", FQ, "--json"], cwd=workdir, env=installed["env"]).stdout)
    assert sorted(listed) == ["%s.%s" % (FQ, m) for m in modules]
    docs = json.loads(run([BIN / "ansible-doc", "-t", "module", "--json", *["%s.%s" % (FQ, m) for m in modules]],
                          cwd=workdir, env=installed["env"]).stdout)
    for module in modules:
        doc = docs["%s.%s" % (FQ, module)]["doc"]
        assert doc["short_description"] and doc["options"] is not None, module


def test_ansible_doc_every_role(workdir, installed):
    roles = sorted(p.parent.parent.name for p in (installed["path"] / "roles").glob("*/meta/argument_specs.yml"))
    docs = json.loads(run([BIN / "ansible-doc", "-t", "role", "--json", *["%s.%s" % (FQ, r) for r in roles]],
                          cwd=workdir, env=installed["env"]).stdout)
    assert sorted(docs) == ["%s.%s" % (FQ, r) for r in roles]
    for role, doc in docs.items():  # an internal role may have no `main`, only its own entry points
        assert doc["entry_points"], role
        assert all(entry.get("short_description") for entry in doc["entry_points"].values()), role


def test_playbooks_syntax_check_from_the_install(workdir, installed):
    playbooks = ["%s.%s" % (FQ, p.stem) for p in sorted((installed["path"] / "playbooks").glob("*.yml"))]
    assert "%s.site" % FQ in playbooks
    # what an AWX / AAP project holds (README): one playbook that imports the collection's site
    project = workdir / "project-site.yml"
    project.write_text("---\n- name: LLM serving\n  ansible.builtin.import_playbook: %s.site\n" % FQ)
    out = run([BIN / "ansible-playbook", "-i", installed["inventory"], "--syntax-check", installed["path"] / "site.yml", project,
               *playbooks], cwd=workdir, env=installed["env"]).stdout
    assert out.count("playbook: ") == len(playbooks) + 2, out


def test_site_list_tasks_from_the_install(workdir, installed):
    out = run([BIN / "ansible-playbook", "-i", installed["inventory"], "--list-tasks", installed["path"] / "site.yml"],
              cwd=workdir, env=installed["env"]).stdout
    roles = set()
    for playbook in (installed["path"] / "playbooks").glob("*.yml"):
        roles.update(re.findall(r"role: (%s\.\w+)" % re.escape(FQ), playbook.read_text()))
    for role in sorted(roles):
        if ("%s :" % role) not in out and role.endswith((".benchmark", ".bundle", ".update", ".migrate")):
            continue  # benchmark.yml, bundle.yml and the day-2 update.yml / rollback.yml / migrate_tgi_to_vllm.yml are not part of site.yml
        assert ("%s :" % role) in out, "site.yml --list-tasks from the install lists no task of %s:\n%s" % (role, out)
