# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tgi role's preflight refuses bad input with a message naming the variable to fix, never the API key.

Runs the real role with ansible-playbook against localhost (connection local, no become); every case
fails in the variable checks, before anything on the host is read or changed.
Run: .venv/bin/pytest roles/tgi/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from role_templates import run_role as run_role_tags  # noqa: E402  pylint: disable=wrong-import-position
GOOD = {"name": "bloom", "model_id": "/srv/llm/models/bloom", "api_key": "do-not-print-me"}


def run_role(tmp_path, **extra_vars):
    return run_role_tags(tmp_path, "tgi", "tgi_preflight", extra_vars, verbosity="-v")


@pytest.mark.parametrize("extra, expect", [
    ({"tgi_instances": [dict(GOOD, port=0)]}, ["instance bloom in tgi_instances is invalid", "port 1-65535 (got 0)"]),
    ({"tgi_instances": [dict(GOOD, graceful_termination_timeout=-5)]}, ["graceful_termination_timeout seconds >= 0 (got -5)"]),
    ({"tgi_instances": [dict(GOOD, extra_args=["--api-key=do-not-print-me"])]},
     ["tgi_instances[bloom].extra_args sets --api-key,", "api_key (tgi_api_key)"]),
    ({"tgi_instances": [dict(GOOD, extra_args=["-p", "8080"])]}, ["tgi_instances[bloom].extra_args sets -p,", "port (tgi_port"]),
    ({"tgi_extra_args": ["--hostname=0.0.0.0"], "tgi_instances": [GOOD]}, ["tgi_extra_args sets --hostname,", "tgi_bind_address"]),
    ({"tgi_env": {"API_KEY": "do-not-print-me"}, "tgi_instances": [GOOD]}, ["tgi_env sets API_KEY,", "api_key (tgi_api_key)"]),
    ({"tgi_instances": [dict(GOOD, api_key="do-not-print-me\\n")]},
     ["tgi_env / tgi_instances[bloom] (env, api_key): the value of API_KEY has a newline, quote"]),
    ({"tgi_tasks_max": "lots", "tgi_instances": [GOOD]}, ["tgi_tasks_max a number (got lots)"]),
])
def test_preflight_refuses_without_printing_the_key(tmp_path, extra, expect):
    result = run_role(tmp_path, **extra)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    for text in expect:
        assert text in out, out
    assert "do-not-print-me" not in out
