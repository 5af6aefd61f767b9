# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""execution-environment.yml: `ansible-builder create` writes a build context (no image pulled, no
network used: it runs in a network namespace of its own where unshare allows) whose Containerfile
and files hold the built collection tarball and the pins of requirements/; meta/execution-environment.yml
gives any EE that installs the collection its system packages."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import BIN, ROOT, clean_env, galaxy_info, run

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path) -> dict:
    """name -> version of a requirements/constraints file; every non-comment line must be an exact pin."""
    out = {}
    for line in path.read_text().splitlines():
        line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).strip()  # extras do not change the pin
        if not line:
            continue
        match = PIN.match(line)
        assert match, "%s: not an exact pin: %r" % (path.name, line)
        out[norm(match.group(1))] = match.group(2)
    return out


def offline() -> list:
    """`unshare --net` where it works (root, as CI runs): a command under it has no network at all."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "--net", "true"], capture_output=True, check=False).returncode == 0:
        return [unshare, "--net"]
    return []


@pytest.fixture(scope="module")
def definition() -> dict:
    return yaml.safe_load((ROOT / "execution-environment.yml").read_text())


@pytest.fixture(scope="module")
def context(workdir, collection_tarball, definition):
    """`ansible-builder create` on a copy of what the definition reads, the built tarball in dist/."""
    src = workdir / "ee"
    (src / "dist").mkdir(parents=True)
    shutil.copy(ROOT / "execution-environment.yml", src)
    deps = definition["dependencies"]
    for rel in (deps["python"], deps["system"]):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
    shutil.copy(collection_tarball, src / "dist")
    out = run([*offline(), BIN / "ansible-builder", "create", "--file", "execution-environment.yml", "--context", "context",
               "--output-filename", "Containerfile", "-v", "3"], cwd=src, env=clean_env(workdir)).stdout
    assert "Complete!" in out, out
    return src / "context"


def test_ee_pins_are_the_constraints():
    constraints = pins(ROOT / "requirements" / "constraints.txt")
    ee = pins(ROOT / "requirements" / "ee.txt")
    wrong = {n: (v, constraints.get(n)) for n, v in ee.items() if constraints.get(n) != v}
    assert not wrong, "requirements/ee.txt disagrees with requirements/constraints.txt: %s" % wrong
    controller = pins(ROOT / "requirements" / "controller.txt")
    for runtime in ("ansible-core", "jinja2", "pyyaml"):  # what the collection needs on the controller
        assert ee[runtime] == controller[runtime], runtime


def test_definition_pins_ansible_core_and_runner_from_requirements(definition):
    ee = pins(ROOT / "requirements" / "ee.txt")
    assert definition["version"] == 3
    for key, package in (("ansible_core", "ansible-core"), ("ansible_runner", "ansible-runner")):
        assert definition["dependencies"][key]["package_pip"] == "%s==%s" % (package, ee[package])


def test_definition_names_the_galaxy_tarball(definition):
    info = galaxy_info()
    tarball = "%s-%s-%s.tar.gz" % (info["namespace"], info["name"], info["version"])
    files = {f["src"]: f["dest"] for f in definition["additional_build_files"]}
    assert files.get("dist/" + tarball) == "collections", files
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": "collections/" + tarball, "type": "file"}]
    assert definition["images"]["base_image"]["name"].split(":")[-1] not in ("", "latest")


def test_context_holds_the_built_tarball(context, collection_tarball):
    copied = context / "_build" / "collections" / collection_tarball.name
    assert copied.read_bytes() == collection_tarball.read_bytes()
    requirements = yaml.safe_load((context / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "collections/" + collection_tarball.name, "type": "file"}]


def test_context_requirements_are_the_pins(context):
    assert pins(context / "_build" / "requirements.txt") == pins(ROOT / "requirements" / "ee.txt")
    assert (context / "_build" / "constraints" / "ee.txt").read_text() == (ROOT / "requirements" / "ee.txt").read_text()
    assert (context / "_build" / "bindep.txt").read_text() == (ROOT / "requirements" / "bindep.txt").read_text()


def test_containerfile(context, definition):
    text = (context / "Containerfile").read_text()
    ee = pins(ROOT / "requirements" / "ee.txt")
    assert 'ARG EE_BASE_IMAGE="%s"' % definition["images"]["base_image"]["name"] in text
    assert 'ARG ANSIBLE_INSTALL_REFS="ansible-core==%s ansible-runner==%s"' % (ee["ansible-core"], ee["ansible-runner"]) in text
    assert 'ARG PYCMD="/usr/bin/python3.11"' in text
    # every stage's pip takes the pins, set before the first pip install
    constraint = text.index("ENV PIP_CONSTRAINT=/etc/onprem-llm-serving/pip-constraints.txt")
    assert constraint < text.index("RUN $PYCMD -m pip install --no-cache-dir $ANSIBLE_INSTALL_REFS")
    assert "COPY _build/constraints/ee.txt /etc/onprem-llm-serving/pip-constraints.txt" in text
    assert "ansible-galaxy collection install $ANSIBLE_GALAXY_CLI_COLLECTION_OPTS -r requirements.yml" in text
    assert "introspect --user-pip=requirements.txt --user-bindep=bindep.txt" in text
    assert "RUN /output/scripts/check_ansible $PYCMD" in text
    scripts = sorted(p.name for p in (context / "_build" / "scripts").iterdir())
    assert {"assemble", "install-from-bindep", "introspect.py"} <= set(scripts)


def test_introspect_of_the_installed_collection(workdir, installed):
    """What ansible-builder takes from the collection when another EE installs it: the bindep list."""
    out = run([*offline(), BIN / "ansible-builder", "introspect", "--sanitize", installed["path"].parents[2]],
              cwd=workdir, env=clean_env(workdir)).stdout
    data = yaml.safe_load(out[out.index("---"):])
    want = [line for line in (ROOT / "requirements" / "bindep.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert [entry.split("  #")[0] for entry in data["system"]] == want
    assert data["python"] == []
