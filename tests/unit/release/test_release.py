# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The release metadata agree: galaxy.yml's version is the latest release in
changelogs/changelog.yaml and in CHANGELOG.rst (regenerate both with tools/release.sh), and
meta/runtime.yml's requires_ansible admits the ansible-core that requirements/ pins."""
from __future__ import annotations

import re

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from conftest import ROOT, galaxy_info


def changelog() -> dict:
    return yaml.safe_load((ROOT / "changelogs" / "changelog.yaml").read_text())


def test_galaxy_version_is_the_latest_release():
    version = galaxy_info()["version"]
    releases = changelog()["releases"] or {}
    assert version in releases, "changelogs/changelog.yaml has no release %s: run tools/release.sh" % version
    assert max(releases, key=Version) == version
    assert releases[version]["release_date"]
    assert releases[version]["changes"].get("release_summary"), "add a release_summary fragment for %s" % version


def test_release_fragments_exist():
    fragments = ROOT / "changelogs" / "fragments"
    for version, release in changelog()["releases"].items():
        missing = [f for f in release.get("fragments", []) if not (fragments / f).is_file()]
        assert not missing, "%s lists fragments that are gone (changelogs/config.yaml keeps them): %s" % (version, missing)


def test_changelog_rst_has_the_release():
    version = galaxy_info()["version"]
    text = (ROOT / "CHANGELOG.rst").read_text()
    assert re.search(r"^v%s\n=+$" % re.escape(version), text, re.M), "CHANGELOG.rst lacks v%s: run tools/release.sh" % version


def test_requires_ansible_admits_the_pinned_core():
    runtime = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())
    pinned = re.search(r"^ansible-core==(\S+)$", (ROOT / "requirements" / "controller.txt").read_text(), re.M).group(1)
    spec = SpecifierSet(runtime["requires_ansible"])
    assert pinned in spec, "requires_ansible %s excludes the tested ansible-core %s" % (spec, pinned)
    series = ".".join(pinned.split(".")[:2])
    assert "%s.0" % series in spec  # the whole tested series, from its first release
