# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The TGI -> vLLM migration's logic (_tgi_to_vllm): every pair, every refusal, the alias, types, no secret in output.

roles/tgi/tests/test_tgi_migration_filter.py runs the filter through Ansible, renders the vllm role's unit from its
result and parses that command line with vLLM 0.32's own argument parser."""
from __future__ import annotations

import copy
import os
import re

import pytest
import yaml

from ansible_collections.onprem.llm_serving.plugins.module_utils import _tgi_to_vllm as m

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
KEY = "tgi-Key-0123456789-secret"
SECRET = "s3cr3t-value-never-shown"


def tgi(**over):
    """A tgi_instances entry after the role's defaults (roles/tgi/vars/main.yml __tgi_instance_defaults)."""
    inst = {"name": "mistral", "model_id": "/srv/llm/models/mistral-7b", "state": "present", "bind_address": "127.0.0.1",
            "port": 3000, "shm_size": "1g", "num_shard": 1, "max_input_tokens": None, "max_total_tokens": 8192,
            "max_concurrent_requests": 128, "quantize": None, "graceful_termination_timeout": 90, "api_key": KEY,
            "extra_args": [], "env": {}}
    inst.update(over)
    return inst


def run(inst=None, **kwargs):
    return m.tgi_to_vllm(tgi() if inst is None else inst, **kwargs)


def pairs(extra_args):
    """extra_args as {option: value} (a flag maps to True; --served-model-name to its list)."""
    out, i = {}, 0
    while i < len(extra_args):
        opt = extra_args[i]
        i += 1
        values = []
        while i < len(extra_args) and not extra_args[i].startswith("--"):
            values.append(extra_args[i])
            i += 1
        out[opt] = True if not values else values[0] if len(values) == 1 and opt != "--served-model-name" else values
    return out


def text_of(result):
    return "\n".join(result["notes"] + result["refused"])


# --- the pairs -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, key, value", [
    ({"max_total_tokens": 8192}, "max_model_len", 8192),
    ({"max_total_tokens": "4096"}, "max_model_len", 4096),
    ({"max_total_tokens": None, "extra_args": ["--max-total-tokens", "2048"]}, "max_model_len", 2048),
    ({"max_total_tokens": None, "extra_args": ["--max-total-tokens=1024"]}, "max_model_len", 1024),
    ({"num_shard": 2}, "tensor_parallel_size", 2),
    ({"num_shard": "4"}, "tensor_parallel_size", 4),
    ({"num_shard": None, "extra_args": ["--num-shard", "8"]}, "tensor_parallel_size", 8),
    ({"extra_args": ["--cuda-memory-fraction", "0.85"]}, "gpu_memory_utilization", 0.85),
    ({"extra_args": ["--cuda-memory-fraction=1"]}, "gpu_memory_utilization", 1.0),
    ({"graceful_termination_timeout": 30}, "shutdown_timeout", 30),
    ({"graceful_termination_timeout": "120"}, "shutdown_timeout", 120),
    ({"port": 3001}, "port", 3001),
    ({"port": "3002"}, "port", 3002),
    ({"bind_address": "0.0.0.0"}, "bind_address", "0.0.0.0"),
    ({"extra_args": ["--max-batch-size", "32"]}, "max_num_seqs", 32),
    ({"extra_args": ["--dtype", "bfloat16"]}, "dtype", "bfloat16"),
    ({"extra_args": ["--dtype=float16"]}, "dtype", "float16"),
    ({}, "model", "/srv/llm/models/mistral-7b"),
    ({}, "name", "mistral"),
    ({}, "state", "present"),
])
def test_pairs_to_instance_keys(over, key, value):
    out = run(tgi(**over))
    assert out["instance"][key] == value
    assert type(out["instance"][key]) is type(value)  # pylint: disable=unidiomatic-typecheck
    assert out["refused"] == []


@pytest.mark.parametrize("over, option, value", [
    ({"max_concurrent_requests": 64}, "--max-num-queued-reqs", "64"),
    ({"max_concurrent_requests": "7"}, "--max-num-queued-reqs", "7"),
    ({}, "--max-num-queued-reqs", "128"),
    ({"extra_args": ["--max-batch-prefill-tokens", "4096"]}, "--max-num-batched-tokens", "4096"),
    ({"extra_args": ["--max-batch-prefill-tokens=2048"]}, "--max-num-batched-tokens", "2048"),
    ({"extra_args": ["--kv-cache-dtype", "fp8_e4m3fn"]}, "--kv-cache-dtype", "fp8_e4m3"),
    ({"extra_args": ["--kv-cache-dtype", "fp8_e5m2"]}, "--kv-cache-dtype", "fp8_e5m2"),
    ({"extra_args": ["--trust-remote-code"]}, "--trust-remote-code", True),
    ({"extra_args": ["--revision", "abc123"]}, "--revision", "abc123"),
    ({"extra_args": ["--otlp-endpoint", "http://otel:4317"]}, "--otlp-traces-endpoint", "http://otel:4317"),
    ({"extra_args": ["--cors-allow-origin", "https://a.example", "--cors-allow-origin=https://b.example"]},
     "--allowed-origins", '["https://a.example", "https://b.example"]'),
    ({"max_total_tokens": None}, "--max-model-len", "auto"),
])
def test_pairs_to_vllm_options(over, option, value):
    out = run(tgi(**over))
    assert pairs(out["instance"]["extra_args"])[option] == value
    assert all(isinstance(a, str) for a in out["instance"]["extra_args"])
    assert out["refused"] == []


def test_max_total_tokens_null_is_auto_and_overrides_a_role_wide_default():
    inst = run(tgi(max_total_tokens=None))["instance"]
    assert inst["max_model_len"] is None and "max_model_len" in inst
    assert pairs(inst["extra_args"])["--max-model-len"] == "auto"


def test_max_concurrent_requests_note_says_503_for_429():
    out = run(tgi(max_concurrent_requests=64))
    note = [n for n in out["notes"] if "--max-num-queued-reqs" in n][0]
    assert note.startswith("max_concurrent_requests 64 -> --max-num-queued-reqs 64")
    assert "503" in note and "429" in note


@pytest.mark.parametrize("tgi_name, vllm_name", [
    ("awq", "awq"), ("gptq", "gptq"), ("compressed-tensors", "compressed-tensors"), ("fp8", "fp8_per_tensor"),
])
def test_quantize_mapped(tgi_name, vllm_name):
    out = run(tgi(quantize=tgi_name))
    assert out["instance"]["quantization"] == vllm_name
    assert out["refused"] == []
    assert any(n.startswith("quantize %s -> quantization %s" % (tgi_name, vllm_name)) for n in out["notes"])


def test_quantize_from_extra_args_and_env():
    assert run(tgi(extra_args=["--quantize", "gptq"]))["instance"]["quantization"] == "gptq"
    assert run(tgi(env={"QUANTIZE": "awq"}))["instance"]["quantization"] == "awq"


@pytest.mark.parametrize("tgi_name", ["marlin", "eetq", "exl2", "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4"])
def test_quantize_refused(tgi_name):
    out = run(tgi(quantize=tgi_name))
    assert "quantization" not in out["instance"]
    assert len(out["refused"]) == 1
    message = out["refused"][0]
    assert message.startswith("quantize %s: vLLM 0.32 " % tgi_name)
    assert "Serve " in message  # what to do


def test_quantize_table_covers_the_tgi_roles_choices():
    with open(os.path.join(ROOT, "roles", "tgi", "meta", "argument_specs.yml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)["argument_specs"]["main"]["options"]
    choices = [c for c in spec["tgi_quantize"]["choices"] if c is not None]
    assert sorted(choices) == sorted(m.QUANTIZE)
    assert sorted(m.OPTIONS["quantize"][1]) == sorted(choices)


VLLM_QUANT = os.path.join(ROOT, ".cache", "vllm-venv", "lib", "python3.11", "site-packages", "vllm", "model_executor",
                          "layers", "quantization", "__init__.py")


@pytest.mark.skipif(not os.path.exists(VLLM_QUANT), reason="no vLLM 0.32 venv in .cache/vllm-venv (tools/artefacts.py vllm-venv)")
def test_quantize_table_against_vllm_0_32s_method_list():
    with open(VLLM_QUANT, encoding="utf-8") as f:
        source = f.read()
    block = re.search(r"QuantizationMethods = Literal\[(.*?)\]", source, re.S).group(1)
    methods = set(re.findall(r'"([^"]+)"', block))
    for tgi_name, (method, _note) in m.QUANTIZE.items():
        if method:
            assert method in methods, tgi_name
        else:
            assert tgi_name not in methods and tgi_name.replace("-", "_") not in methods, tgi_name


def _readme_row(first_cell_start):
    with open(os.path.join(ROOT, "roles", "tgi", "README.md"), encoding="utf-8") as f:
        rows = [ln for ln in f.read().splitlines() if ln.startswith("| " + first_cell_start)]
    assert len(rows) == 1, first_cell_start
    return rows[0].split(" | ")


def test_readme_table_lists_what_the_code_drops_and_refuses():
    dropped = set(re.findall(r"`--([a-z-]+)`", _readme_row("`--validation-workers`")[0]))
    assert dropped == set(m.DROPPED) - {"max-input-tokens", "max-input-length"}
    refused = set(re.findall(r"`--([a-z-]+)`", _readme_row("`--speculate`")[0]))
    assert refused == set(m.REFUSED)
    reserved = set(re.findall(r"`--([a-z-]+)`", _readme_row("`--model-id`")[0]))
    assert reserved == set(m.RESERVED)
    not_carried = set(re.findall(r"`([A-Z_]+)`", _readme_row("`env`: `HOME`")[0]))
    assert not_carried == set(m.VLLM_OWN_ENV)
    same = _readme_row("`quantize: awq`")
    assert re.findall(r"`(?:quantize: )?([a-z-]+)`", same[0]) == ["awq", "gptq", "compressed-tensors"]
    assert re.findall(r"`(?:quantization: )?([a-z-]+)`", same[1]) == [m.QUANTIZE[q][0] for q in ("awq", "gptq", "compressed-tensors")]
    assert _readme_row("`quantize: fp8`")[1] == "`quantization: %s`" % m.QUANTIZE["fp8"][0]
    refused = ["marlin", "eetq", "exl2"] + [re.findall(r"`(?:quantize: )?([a-z0-9-]+)`", _readme_row("`quantize: bitsandbytes`")[0])]
    for row in refused:
        names = row if isinstance(row, list) else [row]
        cells = _readme_row("`quantize: %s`" % names[0])
        assert cells[1] == "—" and cells[2].startswith("**refused**")
        for name in names:
            assert m.QUANTIZE[name][0] is None
    assert sorted(["marlin", "eetq", "exl2"] + refused[-1]) == sorted(q for q, (method, _note) in m.QUANTIZE.items() if method is None)


# --- names, address, key ---------------------------------------------------------------------------------------------

def test_served_model_name_is_the_tgi_model_id():
    out = run()
    assert out["instance"]["served_model_name"] == "/srv/llm/models/mistral-7b"
    assert "--served-model-name" not in out["instance"]["extra_args"]


def test_aliases_become_more_served_names_first_the_model_id():
    out = run(aliases=["tgi", "mistral", "tgi", "/srv/llm/models/mistral-7b"])
    inst = out["instance"]
    assert inst["served_model_name"] is None  # the role's key takes one name; the list goes on the command line
    assert pairs(inst["extra_args"])["--served-model-name"] == ["/srv/llm/models/mistral-7b", "tgi", "mistral"]
    assert any("--served-model-name /srv/llm/models/mistral-7b tgi mistral" in n for n in out["notes"])


@pytest.mark.parametrize("aliases", ["tgi", [""], [" tgi"], [3]])
def test_bad_aliases(aliases):
    with pytest.raises(m.TgiMigrationError, match="aliases"):
        run(aliases=aliases)


def test_hub_model_id_is_refused_but_kept_as_a_name():
    out = run(tgi(model_id="mistralai/Mistral-7B-Instruct-v0.3"))
    assert out["instance"]["served_model_name"] == "mistralai/Mistral-7B-Instruct-v0.3"
    assert len(out["refused"]) == 1 and out["refused"][0].startswith("model_id mistralai/Mistral-7B-Instruct-v0.3: a hub id")


def test_port_bind_and_key_carried():
    out = run(tgi(port=3005, bind_address="10.0.0.5"))
    inst = out["instance"]
    assert (inst["port"], inst["bind_address"], inst["api_key"]) == (3005, "10.0.0.5", KEY)
    assert any(n.startswith("api_key: carried over (value not shown)") for n in out["notes"])


def test_empty_api_key_carried_as_empty():
    out = run(tgi(api_key=""))
    assert out["instance"]["api_key"] == ""
    assert not any(n.startswith("api_key") for n in out["notes"])


# --- no secret in notes or refusals ----------------------------------------------------------------------------------

def test_no_secret_in_notes_or_refusals():
    inst = tgi(env={"HF_TOKEN": SECRET, "VLLM_API_KEY": SECRET, "MY_TOKEN": SECRET},
               extra_args=["--ngrok", "--ngrok-authtoken", SECRET, "--unknown-secret", SECRET, SECRET, "--speculate", "3"])
    out = run(inst)
    text = text_of(out)
    assert KEY not in text and SECRET not in text
    assert "--ngrok-authtoken (value not shown)" in text
    assert out["instance"]["api_key"] == KEY  # the instance carries it (used with no_log)
    assert out["instance"]["env"] == {"HF_TOKEN": SECRET, "MY_TOKEN": SECRET}


@pytest.mark.parametrize("extra_args", [["--api-key", KEY], ["--api-key=" + KEY]])
def test_api_key_in_extra_args_is_an_error_without_the_key(extra_args):
    with pytest.raises(m.TgiMigrationError) as err:
        run(tgi(extra_args=extra_args))
    assert KEY not in str(err.value)
    assert "set api_key" in str(err.value)


def test_api_key_in_env_is_an_error_without_the_key():
    with pytest.raises(m.TgiMigrationError) as err:
        run(tgi(env={"API_KEY": KEY}))
    assert KEY not in str(err.value) and "API_KEY" in str(err.value) and "set api_key" in str(err.value)


def test_api_key_not_a_string_is_an_error_without_it():
    with pytest.raises(m.TgiMigrationError, match="api_key is not a string") as err:
        run(tgi(api_key=12345678))
    assert "12345678" not in str(err.value)


# --- extra_args: every option accounted for --------------------------------------------------------------------------

def test_every_launcher_option_has_exactly_one_fate():
    for option in m.OPTIONS:
        fates = [option in m.RESERVED, option in m.MAPPED, option in m.DROPPED, option in m.REFUSED]
        assert fates.count(True) == 1, option


def _arg_for(option):
    kind, choices = m.OPTIONS[option]
    if kind == "flag":
        return ["--" + option]
    value = {"int": "3", "float": "0.5", "bool": "true", "list": "x", "str": "x"}[kind]
    return ["--" + option, choices[0] if choices else value]


@pytest.mark.parametrize("option", sorted(m.DROPPED))
def test_dropped_options_are_noted_by_name(option):
    out = run(tgi(extra_args=_arg_for(option)))
    assert out["refused"] == []
    assert any(n.startswith("extra_args --%s" % option) and "dropped" in n for n in out["notes"]), out["notes"]


@pytest.mark.parametrize("option", sorted(m.REFUSED))
def test_refused_options_are_listed_by_name(option):
    out = run(tgi(extra_args=_arg_for(option)))
    assert len(out["refused"]) == 1 and out["refused"][0].startswith("extra_args --%s" % option)


@pytest.mark.parametrize("extra_args, named", [
    (["--not-an-option", "1"], "extra_args --not-an-option"),
    (["--num_shard", "2"], "extra_args --num_shard"),  # clap takes kebab-case only
    (["--flagonly"], "extra_args --flagonly"),
    (["-x"], "extra_args -x"),
    (["stray"], "extra_args item 0"),
])
def test_unknown_extra_args_are_refused_by_name(extra_args, named):
    out = run(tgi(extra_args=extra_args))
    assert len(out["refused"]) == 1
    assert out["refused"][0].startswith((named + " ", named + ":"))
    assert "not a text-generation-launcher 3.3.7 option" in out["refused"][0]
    for arg in extra_args[1:]:
        assert arg not in out["refused"][0]


def test_unknown_option_values_are_skipped_not_taken_for_options():
    out = run(tgi(extra_args=["--something", "a", "b", "--max-batch-size", "4"]))
    assert [r.split(":")[0] for r in out["refused"]] == ["extra_args --something"]
    assert out["instance"]["max_num_seqs"] == 4


# --- the GPUs TGI shards over ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("over, kwargs, tp", [
    ({"num_shard": None}, {"gpu_count": 0}, 1),
    ({"num_shard": None}, {"gpu_count": 4}, 4),
    ({"num_shard": None}, {"gpu_count": "2"}, 2),
    ({"num_shard": None, "env": {"CUDA_VISIBLE_DEVICES": "0,1,2"}}, {}, 3),
    ({"num_shard": None, "env": {"CUDA_VISIBLE_DEVICES": "1"}}, {"gpu_count": 8}, 1),
    ({"num_shard": None, "extra_args": ["--sharded", "false"]}, {}, 1),
    ({"num_shard": 2, "extra_args": ["--sharded=true"]}, {}, 2),
    ({"num_shard": None, "extra_args": ["--sharded", "true"]}, {"gpu_count": 2}, 2),
])
def test_tensor_parallel_size_when_num_shard_is_null(over, kwargs, tp):
    out = run(tgi(**over), **kwargs)
    assert out["instance"]["tensor_parallel_size"] == tp
    assert out["refused"] == []


def test_num_shard_null_without_gpu_count_is_refused():
    out = run(tgi(num_shard=None))
    assert "tensor_parallel_size" not in out["instance"]
    assert len(out["refused"]) == 1 and out["refused"][0].startswith("num_shard null") and "gpu_count" in out["refused"][0]


# --- notes of the pairs that differ ----------------------------------------------------------------------------------

def test_max_input_tokens_is_noted_as_dropped():
    out = run(tgi(max_input_tokens=4096))
    assert any(n.startswith("max_input_tokens 4096: dropped") for n in out["notes"])
    assert out["refused"] == []


def test_batched_tokens_below_batch_size_is_refused():
    out = run(tgi(extra_args=["--max-batch-prefill-tokens", "16", "--max-batch-size", "32"]))
    assert len(out["refused"]) == 1 and "extra_args --max-batch-prefill-tokens 16 is below extra_args --max-batch-size 32" in out["refused"][0]


def test_notes_name_where_a_value_came_from():
    out = run(tgi(num_shard=None, extra_args=["--num-shard", "2"]))
    assert "extra_args --num-shard 2 -> tensor_parallel_size 2" in out["notes"]


# --- the environment -------------------------------------------------------------------------------------------------

def test_env_options_apply_when_the_command_line_leaves_them_out():
    out = run(tgi(env={"MAX_BATCH_PREFILL_TOKENS": "1024", "CUDA_MEMORY_FRACTION": "0.5"}))
    assert pairs(out["instance"]["extra_args"])["--max-num-batched-tokens"] == "1024"
    assert out["instance"]["gpu_memory_utilization"] == 0.5
    assert "env" not in out["instance"]  # launcher options are not carried as variables


def test_env_options_the_command_line_sets_are_ignored_with_a_note():
    out = run(tgi(num_shard=2, env={"NUM_SHARD": "4"}))
    assert out["instance"]["tensor_parallel_size"] == 2
    assert "env NUM_SHARD: TGI ignored it, the command line sets --num-shard (num_shard)" in out["notes"]


def test_tgi_env_is_merged_under_the_instances_env():
    out = run(tgi(env={"NCCL_DEBUG": "WARN"}), tgi_env={"NCCL_DEBUG": "INFO", "HF_HUB_ENABLE_HF_TRANSFER": "0"})
    assert out["instance"]["env"] == {"NCCL_DEBUG": "WARN", "HF_HUB_ENABLE_HF_TRANSFER": "0"}
    assert any(n.startswith("env HF_HUB_ENABLE_HF_TRANSFER, NCCL_DEBUG: carried over") for n in out["notes"])


@pytest.mark.parametrize("name", sorted(m.VLLM_OWN_ENV))
def test_env_the_vllm_role_writes_is_not_carried(name):
    out = run(tgi(env={name: "x"}))
    assert "env" not in out["instance"]
    assert any(n.startswith("env %s: not carried over" % name) for n in out["notes"])


# --- types and purity ------------------------------------------------------------------------------------------------

def test_types_of_the_whole_instance():
    inst = run(tgi(extra_args=["--cuda-memory-fraction", "0.9", "--max-batch-size", "8"]), aliases=["tgi"])["instance"]
    assert isinstance(inst["port"], int) and isinstance(inst["tensor_parallel_size"], int)
    assert isinstance(inst["max_model_len"], int) and isinstance(inst["shutdown_timeout"], int)
    assert isinstance(inst["max_num_seqs"], int) and isinstance(inst["gpu_memory_utilization"], float)
    assert all(isinstance(a, str) for a in inst["extra_args"])
    assert set(inst) <= {"name", "model", "state", "bind_address", "port", "served_model_name", "tensor_parallel_size",
                         "pipeline_parallel_size", "gpu_memory_utilization", "kv_cache_memory_bytes",
                         "enable_prefix_caching", "max_model_len", "max_num_seqs", "dtype", "shutdown_timeout",
                         "quantization", "api_key", "enforce_eager", "distributed_executor_backend", "extra_args", "env"}


def test_keys_are_the_vllm_roles_instance_keys():
    with open(os.path.join(ROOT, "roles", "vllm", "vars", "main.yml"), encoding="utf-8") as f:
        keys = set(yaml.safe_load(f)["__vllm_instance_keys"])
    inst = run(tgi(quantize="awq", extra_args=["--cuda-memory-fraction", "0.9", "--max-batch-size", "8", "--dtype", "float16"],
                   env={"X": "1"}))["instance"]
    assert set(inst) <= keys


def test_input_is_not_changed():
    inst = tgi(extra_args=["--max-batch-prefill-tokens", "4096"], env={"A": "1"})
    before = copy.deepcopy(inst)
    run(inst, tgi_env={"B": "2"}, aliases=["tgi"])
    assert inst == before


# --- errors name the TGI key and the fix ------------------------------------------------------------------------------

@pytest.mark.parametrize("inst, pattern", [
    ("not a dict", "must be a dict"),
    ({k: v for k, v in tgi().items() if k != "api_key"}, r"tgi_instances\[mistral\]: api_key missing.*__tgi_instance_defaults"),
    (tgi(tensor_parallel_size=2), r"unknown key\(s\) tensor_parallel_size"),
    (tgi(host="0.0.0.0"), r"unknown key\(s\) host"),
    (tgi(state="absent"), "nothing to migrate"),
    (tgi(name="Bad Name"), "Fix name"),
    (tgi(model_id=""), "Fix model_id"),
    (tgi(port=0), r"port: 0 is below 1\. Fix port \(or tgi_port\)"),
    (tgi(port=70000), "above 65535"),
    (tgi(port="80x"), r"'80x' is not a whole number\. Fix port"),
    (tgi(port=True), "not a whole number"),
    (tgi(max_total_tokens="lots"), r"max_total_tokens: 'lots' is not a whole number\. Fix max_total_tokens \(or tgi_max_total_tokens\)"),
    (tgi(quantize="int4"), r"quantize: 'int4' is not one of TGI's values.*Fix quantize"),
    (tgi(num_shard=0), "TGI refuses num_shard < 1"),
    (tgi(num_shard=1, extra_args=["--sharded", "true"]), "TGI refuses it"),
    (tgi(num_shard=2, extra_args=["--num-shard", "2"]), r"num_shard and extra_args --num-shard both set --num-shard"),
    (tgi(extra_args=["--max-concurrent-requests", "10"]), "max_concurrent_requests and extra_args --max-concurrent-requests"),
    (tgi(extra_args=["--max-batch-size", "2", "--max-batch-size=3"]), "given twice"),
    (tgi(extra_args=["--max-batch-size"]), r"--max-batch-size needs a value\. Fix extra_args"),
    (tgi(extra_args=["--max-batch-size", "--trust-remote-code"]), "needs a value"),
    (tgi(extra_args=["--max-batch-size", "many"]), r"extra_args --max-batch-size: 'many' is not a whole number"),
    (tgi(extra_args=["--cuda-memory-fraction", "1.5"]), "at most 1"),
    (tgi(extra_args=["--cuda-memory-fraction", "half"]), "is not a number"),
    (tgi(extra_args=["--quantize", "int4"]), "not one of TGI's values"),
    (tgi(extra_args=["--sharded", "maybe"]), "is not true or false"),
    (tgi(extra_args=["--num-shard 2"]), "holds a blank"),
    (tgi(extra_args="--num-shard 2"), "must be a list"),
    (tgi(extra_args=[None]), "not an argument"),
    (tgi(extra_args=["--port", "8080"]), r"sets --port, which the tgi role sets itself from the instance's port"),
    (tgi(extra_args=["-p8080"]), r"sets --port"),
    (tgi(extra_args=["-g", "10"]), r"graceful_termination_timeout"),
    (tgi(extra_args=["--model-id=/x"]), r"model_id"),
    (tgi(extra_args=["--hostname", "0.0.0.0"]), r"bind_address"),
    (tgi(env={"PORT": "1"}), r"env sets PORT.*set port"),
    (tgi(env={"NUM_SHARD": "two"}), r"env NUM_SHARD: 'two' is not a whole number\. Fix NUM_SHARD in env \(or tgi_env\)"),
    (tgi(env=[]), "must be a dict"),
])
def test_errors(inst, pattern):
    with pytest.raises(m.TgiMigrationError, match=pattern):
        m.tgi_to_vllm(inst)


def test_tgi_env_not_a_dict():
    with pytest.raises(m.TgiMigrationError, match="tgi_env must be a dict"):
        run(tgi_env=["A=1"])
