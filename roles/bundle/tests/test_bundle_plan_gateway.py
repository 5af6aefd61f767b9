# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bundle_plan: hosts that run the gateway get its packages (HAProxy, openssl) in the bundle's apt repository."""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter.bundle import bundle_plan  # noqa: E402  pylint: disable=wrong-import-position

ROLES = os.path.join(ROOT, "roles")


def packages(groups):
    hosts = [{"name": "h", "groups": groups, "vars": {"bundle_os_release": "debian-12", "common_python_wheels": []}}]
    return bundle_plan(hosts, ROLES, "/b")["apt"][0]["packages"]


def test_a_gateway_host_gets_haproxy_and_openssl():
    assert {"haproxy", "openssl"} <= set(packages(["llm_hosts", "gateway_hosts"]))


def test_a_host_without_the_gateway_does_not():
    assert not {"haproxy", "openssl"} & set(packages(["llm_hosts"]))
