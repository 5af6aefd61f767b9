# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tgi_to_vllm filter (plugins/filter/tgi_migration.py) as Ansible runs it, end to end without a host.

A tgi_instances entry goes through the tgi role's own defaults (__tgi_present), the filter (through Jinja, as a playbook
calls it), the vllm role's unit and env templates, and the unit's command line through vLLM 0.32's own argument parser
(skipped without .cache/vllm-venv). The pure logic's tests are tests/unit/plugins/module_utils/test_tgi_to_vllm.py.
Run: .venv/bin/pytest roles/tgi/tests/
"""
from __future__ import annotations

import json
import os
import sys

import pytest
from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(ROLE))
VLLM_ROLE = os.path.join(ROOT, "roles", "vllm")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from role_templates import exec_start, render_instance, role_vars, vllm_parse  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.filter.tgi_migration import tgi_to_vllm  # noqa: E402  pylint: disable=wrong-import-position

KEY = "tgi-key-do-not-print-me"
ENTRY = {"name": "mistral", "model_id": "/srv/llm/models/mistral-7b", "num_shard": 2, "max_input_tokens": 4096,
         "max_total_tokens": 8192, "max_concurrent_requests": 64, "quantize": "awq", "api_key": KEY,
         "extra_args": ["--max-batch-prefill-tokens", "4096", "--cuda-memory-fraction", "0.85"], "env": {"NCCL_DEBUG": "WARN"}}


def migrate(entry, expression, **overrides):
    """The tgi role's __tgi_present[0] for ``entry`` run through ``expression`` (a filter call) by Ansible's templar."""
    facts = {"inventory_hostname": "gpu01", "groups": {"gpu_hosts": ["gpu01"]}, "ansible_managed": "Ansible managed"}
    variables = role_vars(ROLE, facts, dict(overrides, tgi_instances=[entry]))
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template("{{ __tgi_present[0] | %s }}" % expression))


def render_vllm(name, instance):
    facts = {"inventory_hostname": "gpu01", "groups": {"gpu_hosts": ["gpu01"]}, "playbook_dir": "/pb",
             "ansible_managed": "Ansible managed", "__vllm_uid": "999", "__vllm_gid": "998"}
    return render_instance(VLLM_ROLE, name, "__vllm_instance_defaults", instance, role_vars(VLLM_ROLE, facts, {"vllm_gpu": True}))


def test_the_filter_through_ansible_with_the_tgi_roles_defaults():
    result = migrate(ENTRY, "onprem.llm_serving.tgi_to_vllm(aliases=['tgi'])", tgi_port=3100, tgi_graceful_termination_timeout=45)
    inst = result["instance"]
    assert result["refused"] == []
    assert inst["port"] == 3100 and inst["bind_address"] == "127.0.0.1"  # the role's defaults reached the filter
    assert inst["shutdown_timeout"] == 45 and inst["tensor_parallel_size"] == 2 and inst["max_model_len"] == 8192
    assert inst["gpu_memory_utilization"] == 0.85 and inst["quantization"] == "awq" and inst["api_key"] == KEY
    assert KEY not in json.dumps(result["notes"])


def test_vllm_unit_from_the_result_and_vllm_0_32_reads_it():
    inst = migrate(ENTRY, "onprem.llm_serving.tgi_to_vllm(aliases=['tgi'])")["instance"]
    unit = render_vllm("vllm.service.j2", inst)
    argv = exec_start(unit)
    serve = argv[argv.index("vllm.entrypoints.openai.api_server") + 1:]
    assert KEY not in unit
    env = render_vllm("vllm.env.j2", inst)
    assert "VLLM_API_KEY=%s" % KEY in env.splitlines() and "NCCL_DEBUG=WARN" in env.splitlines()
    text = " ".join(serve)
    for expect in ("--model /srv/llm/models/mistral-7b", "--port 3000", "--host 127.0.0.1", "--tensor-parallel-size 2",
                   "--gpu-memory-utilization 0.85", "--max-model-len 8192", "--quantization awq", "--shutdown-timeout 90",
                   "--served-model-name /srv/llm/models/mistral-7b tgi", "--max-num-queued-reqs 64",
                   "--max-num-batched-tokens 4096"):
        assert expect in text, text
    assert serve.count("--served-model-name") == 1
    parsed = vllm_parse(serve, ['model', 'served_model_name', 'host', 'port', 'tensor_parallel_size', 'gpu_memory_utilization',
                                'max_model_len', 'quantization', 'shutdown_timeout', 'max_num_queued_reqs', 'max_num_batched_tokens'])
    assert parsed == {"model": "/srv/llm/models/mistral-7b", "served_model_name": ["/srv/llm/models/mistral-7b", "tgi"],
                      "host": "127.0.0.1", "port": 3000, "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85,
                      "max_model_len": 8192, "quantization": "awq", "shutdown_timeout": 90, "max_num_queued_reqs": 64,
                      "max_num_batched_tokens": 4096}


def test_vllm_0_32_reads_the_other_mapped_options():
    """Every option the migration can put in extra_args, through vLLM's parser (one start of the vLLM venv)."""
    entry = dict(ENTRY, max_total_tokens=None, quantize="fp8",
                 extra_args=["--kv-cache-dtype", "fp8_e4m3fn", "--trust-remote-code", "--revision", "main", "--dtype", "bfloat16",
                             "--otlp-endpoint", "http://otel:4317", "--cors-allow-origin", "https://a.example",
                             "--max-batch-size", "16"])
    inst = migrate(entry, "onprem.llm_serving.tgi_to_vllm")["instance"]
    serve = exec_start(render_vllm("vllm.service.j2", inst))
    serve = serve[serve.index("vllm.entrypoints.openai.api_server") + 1:]
    assert "--max-model-len" in serve and serve[serve.index("--max-model-len") + 1] == "auto"
    parsed = vllm_parse(serve, ['served_model_name', 'max_model_len', 'quantization', 'kv_cache_dtype', 'trust_remote_code',
                                'revision', 'dtype', 'otlp_traces_endpoint', 'allowed_origins', 'max_num_seqs'])
    assert parsed == {"served_model_name": ["/srv/llm/models/mistral-7b"], "max_model_len": -1, "quantization": "fp8_per_tensor",
                      "kv_cache_dtype": "fp8_e4m3", "trust_remote_code": True, "revision": "main", "dtype": "bfloat16",
                      "otlp_traces_endpoint": "http://otel:4317", "allowed_origins": ["https://a.example"], "max_num_seqs": 16}


def test_filter_error_names_the_key_and_the_fix():
    with pytest.raises(AnsibleFilterError, match=r"tgi_to_vllm: tgi_instances\[mistral\] extra_args sets --api-key.*set api_key") as err:
        migrate(dict(ENTRY, extra_args=["--api-key", KEY]), "onprem.llm_serving.tgi_to_vllm")
    assert KEY not in str(err.value)


def test_filter_strict_fails_on_refusals_and_lists_them():
    entry = dict(ENTRY, quantize="eetq", extra_args=["--speculate", "2"])
    loose = migrate(entry, "onprem.llm_serving.tgi_to_vllm")
    assert [r.split(":")[0] for r in loose["refused"]] == ["quantize eetq", "extra_args --speculate 2"]
    with pytest.raises(AnsibleFilterError, match=r"tgi_instances\[mistral\] cannot move to vLLM as it is \(2 refused\): "
                                                 r"quantize eetq: .*extra_args --speculate 2: "):
        migrate(entry, "onprem.llm_serving.tgi_to_vllm(strict=true)")


def test_filter_called_directly():
    inst = dict(ENTRY, state="present", bind_address="127.0.0.1", port=3000, graceful_termination_timeout=90, shm_size="1g")
    assert tgi_to_vllm(inst, gpu_count=0)["instance"]["tensor_parallel_size"] == 2
    with pytest.raises(AnsibleFilterError, match="gpu_count"):
        tgi_to_vllm(dict(inst, num_shard=None), strict=True)


def test_otlp_keys_of_the_tgi_role_carry_over():
    """The tgi role's otlp_endpoint (role default or instance key) becomes vLLM's --otlp-traces-endpoint; the service name is
    dropped with a note; the same option given twice (key and extra_args) is an error, as TGI's launcher refuses it."""
    result = migrate(dict(ENTRY, otlp_service_name="tgi-mistral"), "onprem.llm_serving.tgi_to_vllm", tgi_otlp_endpoint="http://otel:4317")
    extra = result["instance"]["extra_args"]
    assert extra[extra.index("--otlp-traces-endpoint") + 1] == "http://otel:4317" and result["refused"] == []
    assert "otlp_endpoint -> --otlp-traces-endpoint http://otel:4317" in result["notes"]
    assert any(n.startswith("otlp_service_name: dropped;") for n in result["notes"])
    serve = exec_start(render_vllm("vllm.service.j2", result["instance"]))
    assert serve[serve.index("--otlp-traces-endpoint") + 1] == "http://otel:4317"
    # the role's empty default is off: nothing carried
    assert "--otlp-traces-endpoint" not in migrate(ENTRY, "onprem.llm_serving.tgi_to_vllm")["instance"].get("extra_args", [])
    with pytest.raises(AnsibleFilterError, match=r"otlp_endpoint and extra_args --otlp-endpoint both set --otlp-endpoint"):
        migrate(dict(ENTRY, otlp_endpoint="http://otel:4317", extra_args=["--otlp-endpoint", "http://b:4317"]), "onprem.llm_serving.tgi_to_vllm")
