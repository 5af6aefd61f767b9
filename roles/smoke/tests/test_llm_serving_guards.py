# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guards of plugins/filter/llm_serving.py (with the role tests: importing the controller side here changes how
module warnings are collected in the tests/unit process): no_secrets (what a loop may show), engine_args and engine_env
(what the roles set themselves is refused in extra_args/env, naming the variable to use, never the value)."""
from __future__ import annotations

import os
import sys

import pytest

from ansible.errors import AnsibleFilterError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
# role_templates installs the collection finder, so the collection's filter plugin imports
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter import llm_serving as f  # noqa: E402  pylint: disable=wrong-import-position

SECRET = "sk-CANARY-0123"


def test_no_secrets_drops_the_keys_at_every_depth_and_leaves_the_input_alone():
    instances = [{"name": "a", "api_key": SECRET, "env": {"HF_TOKEN": SECRET}, "port": 8000},
                 {"name": "b", "api_key": "", "nested": [{"api_key": SECRET, "x": 1}]}]
    out = f.no_secrets(instances, ["api_key", "env"])
    assert out == [{"name": "a", "port": 8000}, {"name": "b", "nested": [{"x": 1}]}]
    assert SECRET not in repr(out)
    assert instances[0]["api_key"] == SECRET and instances[0]["env"] == {"HF_TOKEN": SECRET}
    assert f.no_secrets({"item": {"api_key": SECRET, "name": "a"}, "ok": True}) == {"item": {"name": "a"}, "ok": True}
    assert f.no_secrets({"api_key": SECRET, "env": {"A": "1"}}, "api_key") == {"env": {"A": "1"}}
    assert f.no_secrets("text") == "text" and f.no_secrets(None) is None


def test_no_secrets_can_mask_instead_of_dropping():
    endpoints = [{"name": "a", "api_key": SECRET}, {"name": "b", "api_key": None}, {"name": "c"}]
    assert f.no_secrets(endpoints, mask="(set)") == [{"name": "a", "api_key": "(set)"}, {"name": "b", "api_key": None}, {"name": "c"}]


@pytest.mark.parametrize("engine, arg, option, variable", [
    ("vllm", "--host", "--host", "vllm_bind_address"),
    ("vllm", "--host=0.0.0.0", "--host", "vllm_bind_address"),
    ("vllm", "--port", "--port", "vllm_port"),
    ("vllm", "--port=9000", "--port", "vllm_port"),
    ("vllm", "--api-key", "--api-key", "vllm_api_key"),
    ("vllm", "--api-key=" + SECRET, "--api-key", "vllm_api_key"),
    ("vllm", "--api_key=" + SECRET, "--api-key", "vllm_api_key"),    # vLLM turns _ into - in option names
    ("vllm", "--api-k", "--api-key", "vllm_api_key"),                 # argparse resolves unambiguous prefixes
    ("vllm", "--hos=0.0.0.0", "--host", "vllm_bind_address"),
    ("vllm", "--shutdown-timeout=5", "--shutdown-timeout", "vllm_shutdown_timeout"),
    ("vllm", "--model=/x", "--model", "model"),
    ("tgi", "--hostname=0.0.0.0", "--hostname", "tgi_bind_address"),
    ("tgi", "--port", "--port", "tgi_port"),
    ("tgi", "-p", "-p", "tgi_port"),
    ("tgi", "-p8080", "-p", "tgi_port"),
    ("tgi", "--api-key=" + SECRET, "--api-key", "tgi_api_key"),
    ("tgi", "--graceful-termination-timeout=5", "--graceful-termination-timeout", "tgi_graceful_termination_timeout"),
    ("tgi", "-g", "-g", "tgi_graceful_termination_timeout"),
    ("tgi", "--model-id=/x", "--model-id", "model_id"),
])
def test_engine_args_refuses_what_the_role_sets(engine, arg, option, variable):
    with pytest.raises(AnsibleFilterError) as err:
        f.engine_args(["--swap-space", "4", arg, "1"], engine, "%s_instances[a].extra_args" % engine)
    msg = str(err.value)
    assert "%s_instances[a].extra_args sets %s," % (engine, option) in msg
    assert variable in msg and "set that variable instead" in msg
    assert SECRET not in msg


@pytest.mark.parametrize("engine, args", [
    ("vllm", ["--swap-space", "4", "--max-num-batched-tokens=8192", "--model-impl", "vllm", "--hf-overrides", '{"a": 1}']),
    ("vllm", ["--served-model-name", "x", "--port-not-an-option"]),  # not a prefix of a reserved option: vLLM decides
    ("vllm", ["--api-server-count", "2", "-O3", "--h"]),             # --h is shorter than any prefix the guard reads
    ("tgi", ["--max-batch-prefill-tokens", "4096", "--sharded", "false", "--hostnamex"]),
    ("tgi", ["--trust-remote-code", "-e"]),
    ("vllm", []),
])
def test_engine_args_passes_the_rest_through(engine, args):
    assert f.engine_args(args, engine) == args


def test_engine_args_wants_a_list():
    assert f.engine_args(None, "vllm") == []
    with pytest.raises(AnsibleFilterError, match="must be a list of arguments"):
        f.engine_args("--port 1", "vllm", "vllm_extra_args")
    with pytest.raises(AnsibleFilterError, match="engine 'ollama' is not one of"):
        f.engine_args([], "ollama")


@pytest.mark.parametrize("engine, key, variable", [
    ("vllm", "VLLM_API_KEY", "vllm_api_key"),
    ("vllm", "VLLM_PORT", "vllm_port"),
    ("tgi", "API_KEY", "tgi_api_key"),
    ("tgi", "PORT", "tgi_port"),
    ("tgi", "GRACEFUL_TERMINATION_TIMEOUT", "tgi_graceful_termination_timeout"),
    ("ollama", "OLLAMA_HOST", "ollama_bind_address"),
    ("ollama", "OLLAMA_MODELS", "ollama_models_dir"),
])
def test_engine_env_refuses_what_the_role_writes(engine, key, variable):
    with pytest.raises(AnsibleFilterError) as err:
        f.engine_env({"OK": "1", key: SECRET}, engine, "%s_env" % engine)
    msg = str(err.value)
    assert "%s_env sets %s," % (engine, key) in msg and variable in msg
    assert SECRET not in msg


def test_engine_env_passes_the_rest_through():
    env = {"HF_TOKEN": SECRET, "OMP_NUM_THREADS": "4"}
    assert f.engine_env(env, "vllm") == env and f.engine_env(None, "tgi") == {}
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        f.engine_env(["A=1"], "vllm")
