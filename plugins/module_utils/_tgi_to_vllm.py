# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TGI -> vLLM migration (private API): one ``tgi_instances`` entry turned into one ``vllm_instances`` entry.

``tgi_to_vllm(instance)`` takes a TGI instance as the tgi role holds it after its defaults (``__tgi_instances``:
every key of ``__tgi_instance_defaults`` present) and returns ``{"instance": ..., "notes": [...], "refused": [...]}``:

- ``instance``: a ``vllm_instances`` entry (roles/vllm/meta/argument_specs.yml): the keys keep their types (int, float,
  str); ``extra_args`` is a list of strings, as the vllm role takes it;
- ``notes``: what differs in behaviour, what was dropped because vLLM does it by itself or has no such knob, each
  starting with the TGI key or option it is about;
- ``refused``: what vLLM cannot do as TGI did; each names the TGI key or option, the value (never a secret) and what to
  do. A caller migrates an instance only when this list is empty (the filter's ``strict=true`` fails on it).

The launcher options read are text-generation-launcher 3.3.7's (launcher/src/main.rs ``Args``); TGI reads each long
option from the command line (the role's keys and ``extra_args``) or, when the command line leaves it out, from the
environment variable of the same name in capitals (``MAX_BATCH_PREFILL_TOKENS``). The vLLM options are vLLM 0.32's
(vllm/engine/arg_utils.py, vllm/entrypoints/launchers/cli_args.py), checked with its own argument parser.

Errors (``TgiMigrationError``) are instances TGI itself or the tgi role would not run (unknown keys, an option given
twice, a value of the wrong type); each names the TGI key and the fix. No message carries the API key, an
environment variable's value or the value of an option that may hold a secret.
"""

from __future__ import annotations

import json
import re


class TgiMigrationError(ValueError):
    """A TGI instance that cannot be read; the message names the TGI key and the fix."""


# Keys of a tgi_instances entry after the role's defaults (roles/tgi/vars/main.yml __tgi_instance_keys).
REQUIRED_KEYS = ("name", "model_id", "bind_address", "port", "num_shard", "max_input_tokens", "max_total_tokens",
                 "max_concurrent_requests", "quantize", "graceful_termination_timeout", "api_key", "extra_args", "env")
OPTIONAL_KEYS = ("state", "shm_size", "otlp_endpoint", "otlp_service_name")

# TGI's launcher defaults of the options the migration carries (launcher/src/main.rs).
TGI_DEFAULT_MAX_CONCURRENT_REQUESTS = 128
TGI_DEFAULT_GRACEFUL_TERMINATION_TIMEOUT = 90

# --quantize (TGI) -> --quantization (vLLM 0.32: vllm/model_executor/layers/quantization/__init__.py QuantizationMethods),
# or None and why not.
QUANTIZE = {
    "awq": ("awq", None),
    "gptq": ("gptq", None),
    "compressed-tensors": ("compressed-tensors", None),
    "fp8": ("fp8_per_tensor", None),
    "marlin": (None, "vLLM 0.32 has no method for Marlin-format checkpoints (its Marlin kernels load GPTQ and AWQ "
                     "checkpoints, and it picks them itself). Serve a GPTQ or AWQ checkpoint of the model (quantize gptq "
                     "or awq) or the unquantized one (quantize null)"),
    "eetq": (None, "vLLM 0.32 has no EETQ (int8 weight-only) method. Serve the unquantized model (quantize null, twice the "
                   "memory of int8), a pre-quantized AWQ, GPTQ or compressed-tensors checkpoint, or FP8 on GPUs that have "
                   "it (quantize fp8) once its output is checked"),
    "exl2": (None, "vLLM 0.32 cannot load EXL2 checkpoints. Serve a GPTQ, AWQ or compressed-tensors checkpoint of the "
                   "same model (or the unquantized one) and set quantize to match"),
}
for _bnb in ("bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4"):
    QUANTIZE[_bnb] = (None, "vLLM 0.32 has no bitsandbytes method. Serve the unquantized model (quantize null), a "
                            "pre-quantized AWQ, GPTQ or compressed-tensors checkpoint, or FP8 on GPUs that have it "
                            "(quantize fp8) once its output is checked")

# --kv-cache-dtype (TGI) -> --kv-cache-dtype (vLLM 0.32's choices)
KV_CACHE_DTYPE = {"fp8_e4m3fn": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"}

_INT, _FLOAT, _STR, _FLAG, _BOOL, _LIST = "int", "float", "str", "flag", "bool", "list"

# text-generation-launcher 3.3.7's options: name -> (kind of value, choices). _FLAG takes no value, _BOOL takes
# true|false, _LIST may be given more than once.
OPTIONS = {
    "model-id": (_STR, None), "revision": (_STR, None), "validation-workers": (_INT, None), "sharded": (_BOOL, None),
    "num-shard": (_INT, None), "quantize": (_STR, tuple(QUANTIZE)), "speculate": (_INT, None),
    "dtype": (_STR, ("float16", "bfloat16")), "kv-cache-dtype": (_STR, tuple(KV_CACHE_DTYPE)), "trust-remote-code": (_FLAG, None),
    "max-concurrent-requests": (_INT, None), "max-best-of": (_INT, None), "max-stop-sequences": (_INT, None),
    "max-top-n-tokens": (_INT, None), "max-input-tokens": (_INT, None), "max-input-length": (_INT, None),
    "max-total-tokens": (_INT, None), "waiting-served-ratio": (_FLOAT, None), "max-batch-prefill-tokens": (_INT, None),
    "max-batch-total-tokens": (_INT, None), "max-waiting-tokens": (_INT, None), "max-batch-size": (_INT, None),
    "cuda-graphs": (_STR, None), "hostname": (_STR, None), "port": (_INT, None), "prometheus-port": (_INT, None),
    "shard-uds-path": (_STR, None), "master-addr": (_STR, None), "master-port": (_INT, None),
    "huggingface-hub-cache": (_STR, None), "weights-cache-override": (_STR, None), "disable-custom-kernels": (_FLAG, None),
    "cuda-memory-fraction": (_FLOAT, None), "rope-scaling": (_STR, ("linear", "dynamic")), "rope-factor": (_FLOAT, None),
    "json-output": (_FLAG, None), "otlp-endpoint": (_STR, None), "otlp-service-name": (_STR, None),
    "cors-allow-origin": (_LIST, None), "api-key": (_STR, None), "watermark-gamma": (_FLOAT, None),
    "watermark-delta": (_FLOAT, None), "ngrok": (_FLAG, None), "ngrok-authtoken": (_STR, None), "ngrok-edge": (_STR, None),
    "tokenizer-config-path": (_STR, None), "disable-grammar-support": (_FLAG, None), "env": (_FLAG, None),
    "max-client-batch-size": (_INT, None), "lora-adapters": (_STR, None), "usage-stats": (_STR, ("on", "off", "no-stack")),
    "payload-limit": (_INT, None), "enable-prefill-logprobs": (_FLAG, None), "graceful-termination-timeout": (_INT, None),
}
SHORT_OPTIONS = {"-p": "port", "-g": "graceful-termination-timeout", "-e": "env"}
# Options whose value may be a secret: never shown.
SECRET_OPTIONS = ("api-key", "ngrok-authtoken")
# The launcher reads every long option but --env from the environment too.
ENV_OPTIONS = dict((name.replace("-", "_").upper(), name) for name in OPTIONS if name != "env")

# What the tgi role sets from a variable (plugins/filter/llm_serving.py RESERVED_ARGS / RESERVED_ENV): refused there too.
RESERVED = {
    "model-id": "model_id", "hostname": "bind_address", "port": "port", "api-key": "api_key",
    "graceful-termination-timeout": "graceful_termination_timeout",
}
# The role keys that are launcher options: the template passes them on the command line.
KEY_OPTIONS = (("num_shard", "num-shard"), ("max_input_tokens", "max-input-tokens"), ("max_total_tokens", "max-total-tokens"),
               ("max_concurrent_requests", "max-concurrent-requests"), ("quantize", "quantize"))
# The same for the optional keys, which the template passes only when set (empty is off).
OPTIONAL_KEY_OPTIONS = (("otlp_endpoint", "otlp-endpoint"), ("otlp_service_name", "otlp-service-name"))

# Options carried to a vLLM key or option (tgi_to_vllm below).
MAPPED = ("revision", "sharded", "num-shard", "quantize", "dtype", "kv-cache-dtype", "trust-remote-code",
          "max-concurrent-requests", "max-total-tokens", "max-batch-prefill-tokens", "max-batch-size", "cuda-memory-fraction",
          "otlp-endpoint", "cors-allow-origin")

# Options with no vLLM counterpart that change nothing a client gets from the model: dropped, with why.
DROPPED = {
    "validation-workers": "the tokenizer workers of TGI's router; vLLM has no such option",
    "max-best-of": "TGI's cap on best_of; vLLM 0.32 has no such cap",
    "max-stop-sequences": "TGI's cap on stop sequences per request; vLLM has no such cap",
    "max-top-n-tokens": "TGI's cap on top_n_tokens (its /generate API); on the OpenAI routes vLLM caps logprobs with "
                        "--max-logprobs (default 20)",
    "max-input-tokens": "vLLM has no separate prompt cap: it only checks that the prompt fits in max_model_len, so prompts "
                        "TGI refused as too long are served; cap them at the client or the gateway if you relied on it",
    "max-input-length": "TGI's old name of max_input_tokens; vLLM has no separate prompt cap (prompts must fit in "
                        "max_model_len)",
    "waiting-served-ratio": "a knob of TGI's batching scheduler; vLLM's scheduler has no counterpart",
    "max-waiting-tokens": "a knob of TGI's batching scheduler; vLLM's scheduler has no counterpart",
    "max-batch-total-tokens": "vLLM sizes its KV cache from gpu_memory_utilization (or kv_cache_memory_bytes), not from a "
                              "token budget",
    "cuda-graphs": "vLLM captures CUDA graphs for batch sizes it picks; enforce_eager true turns them (and torch.compile) off",
    "prometheus-port": "vLLM serves /metrics on its API port; there is no second listener to scrape",
    "shard-uds-path": "the plumbing between TGI's shards; vLLM has its own",
    "master-addr": "the plumbing between TGI's shards; vLLM has its own (VLLM_HOST_IP, set by the vllm role)",
    "master-port": "the plumbing between TGI's shards; vLLM has its own",
    "huggingface-hub-cache": "a path in TGI's container; vLLM's hub cache is under vllm_cache_dir (HF_HOME, set by the vllm role)",
    "disable-custom-kernels": "TGI's own kernels; vLLM picks its kernels itself",
    "json-output": "vLLM logs to the journal in its own format",
    "otlp-service-name": "vLLM has no option for the trace service name",
    "disable-grammar-support": "vLLM 0.32 has no such switch: structured output requests TGI refused are served",
    "env": "the launcher printed its environment at start",
    "max-client-batch-size": "TGI's cap on inputs per request; vLLM has no such cap",
    "usage-stats": "the vllm role turns vLLM's usage stats off itself (VLLM_NO_USAGE_STATS=1, DO_NOT_TRACK=1)",
    "payload-limit": "vLLM has no request body limit; cap it at the gateway if you relied on it",
    "enable-prefill-logprobs": "TGI's switch for prompt logprobs; vLLM has no such switch",
}

# Options vLLM cannot do as TGI did: refused, with what to do.
REFUSED = {
    "speculate": "vLLM's speculative decoding is --speculative-config (JSON: method, num_speculative_tokens, ...); choose "
                 "it and add it to the vLLM instance's extra_args, or remove --speculate from the TGI instance",
    "weights-cache-override": "TGI loaded the weights from that path; serve the model from a path on the host (vLLM "
                              "model), staged with onprem.llm_serving.models",
    "rope-scaling": "it changes the model's positions; vLLM takes it as --hf-overrides with a rope_scaling JSON the "
                    "model's config accepts: add that to the vLLM instance's extra_args once checked",
    "rope-factor": "it changes the model's positions; vLLM takes it as --hf-overrides with a rope_scaling JSON the "
                   "model's config accepts: add that to the vLLM instance's extra_args once checked",
    "watermark-gamma": "vLLM has no watermarking: its outputs would not carry TGI's watermark",
    "watermark-delta": "vLLM has no watermarking: its outputs would not carry TGI's watermark",
    "ngrok": "vLLM opens no ngrok tunnel: clients that came through it need the gateway's URL",
    "ngrok-authtoken": "vLLM opens no ngrok tunnel: clients that came through it need the gateway's URL",
    "ngrok-edge": "vLLM opens no ngrok tunnel: clients that came through it need the gateway's URL",
    "tokenizer-config-path": "the chat template came from that file; vLLM takes a template with --chat-template <file>: "
                             "add it to the vLLM instance's extra_args",
    "lora-adapters": "vLLM serves adapters with --enable-lora and --lora-modules name=path (clients then send the "
                     "adapter's name as the model, not adapter_id): add them to the vLLM instance's extra_args",
}

# Environment the vllm role writes itself from its own variables (roles/vllm/templates/vllm.env.j2), or reserves:
# not carried over.
VLLM_OWN_ENV = {
    "HOME": "the vllm role sets it (vllm_cache_dir)",
    "HF_HOME": "the vllm role sets it under vllm_cache_dir",
    "VLLM_CACHE_ROOT": "the vllm role sets it under vllm_cache_dir",
    "VLLM_HOST_IP": "the vllm role sets it (vllm_host_ip)",
    "VLLM_CPU_KVCACHE_SPACE": "the vllm role sets it (vllm_cpu_kvcache_space_gib, or kv_cache_memory_bytes)",
    "VLLM_API_KEY": "the vllm role writes it from api_key",
    "VLLM_PORT": "the vllm role sets the port from port",
}
# What the tgi role writes itself, refused in env there (plugins/filter/llm_serving.py RESERVED_ENV["tgi"]).
TGI_RESERVED_ENV = {"API_KEY": "api_key", "PORT": "port", "HOSTNAME": "bind_address",
                    "GRACEFUL_TERMINATION_TIMEOUT": "graceful_termination_timeout", "MODEL_ID": "model_id"}

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _as_int(value, label, fix, minimum=0):
    """``value`` as an int (an int, or a string of digits), at least ``minimum``; else an error naming ``label``."""
    if _is_int(value):
        number = value
    elif isinstance(value, str) and re.match(r"^\s*[0-9]+\s*$", value):
        number = int(value)
    else:
        raise TgiMigrationError("%s: %r is not a whole number. %s" % (label, value, fix))
    if number < minimum:
        raise TgiMigrationError("%s: %d is below %d. %s" % (label, number, minimum, fix))
    return number


def _as_float(value, label, fix):
    if isinstance(value, bool):
        raise TgiMigrationError("%s: %r is not a number. %s" % (label, value, fix))
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TgiMigrationError("%s: %r is not a number. %s" % (label, value, fix)) from exc


def _shown(option, value):
    """The value of an option as a message may show it."""
    return "(value not shown)" if option in SECRET_OPTIONS else value


class _Settings(object):
    """The launcher options an instance sets, each with where it came from (a key, extra_args or env)."""

    def __init__(self, where):
        self.where = where
        self.values = {}
        self.sources = {}

    def set(self, option, value, source, from_env=False):
        """Record an option; False when the environment gives one the command line already set (TGI ignores it)."""
        if option in self.values:
            if from_env:
                return False
            if OPTIONS[option][0] == _LIST and not self.sources[option].startswith("env "):
                self.values[option] = self.values[option] + value
                return True
            raise TgiMigrationError(
                "%s: %s and %s both set --%s; TGI's launcher refuses an option given twice. Keep one of them"
                % (self.where, self.sources[option], source, option))
        self.values[option] = value
        self.sources[option] = source
        return True

    def get(self, option, default=None):
        return self.values.get(option, default)

    def source(self, option):
        return self.sources.get(option, "--" + option)


def _parse_value(option, raw, label, fix):
    """A launcher option's value, typed as the launcher types it; ``label`` names where it was set."""
    kind, choices = OPTIONS[option]
    if kind == _INT:
        return _as_int(raw, label, fix)
    if kind == _FLOAT:
        return _as_float(raw, label, fix)
    if kind == _LIST:
        return [str(raw)]
    if kind in (_FLAG, _BOOL):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise TgiMigrationError("%s: %r is not true or false. %s" % (label, raw, fix))
    value = str(raw)
    if choices and value not in choices:
        raise TgiMigrationError("%s: %r is not one of TGI's values (%s). %s"
                                % (label, _shown(option, value), ", ".join(choices), fix))
    return value


def _parse_extra_args(args, where, settings, unknown):
    """Read ``extra_args`` the way TGI's launcher (clap) does: --opt value, --opt=value, flags, -p/-g/-e.

    Options the launcher does not have go to ``unknown`` by name; their values are skipped, never shown."""
    label = "%s extra_args" % where
    fix = "Fix extra_args (or tgi_extra_args)"
    if args is None:
        args = []
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise TgiMigrationError("%s must be a list of arguments, one per item (got %s). %s" % (label, type(args).__name__, fix))
    args = list(args)
    for index, arg in enumerate(args):
        if isinstance(arg, bool) or not isinstance(arg, (str, int, float)):
            raise TgiMigrationError("%s[%d] is a %s, not an argument. %s" % (label, index, type(arg).__name__, fix))
    i = 0
    while i < len(args):
        text = str(args[i])
        i += 1
        inline = None
        if text.startswith("--"):
            name, sep, rest = text[2:].partition("=")
            if sep:
                inline = rest
            if re.search(r"\s", name):
                raise TgiMigrationError(
                    "%s: the item starting with --%s holds a blank, and TGI's launcher gets each item as one argument. "
                    "Give the option and its value as two items ('--opt', 'value') or as '--opt=value'"
                    % (label, name.split()[0] if name.split() else ""))
        elif text[:2] in SHORT_OPTIONS:
            name = SHORT_OPTIONS[text[:2]]
            if len(text) > 2:
                inline = text[2:]
        elif text.startswith("-") and len(text) > 1:
            unknown.append("extra_args %s" % text[:2])
            continue
        else:
            # a value with no option before it: clap refuses it; never shown (it may be a secret)
            unknown.append("extra_args item %d (a value with no option before it)" % (i - 1))
            continue
        if name in RESERVED:
            raise TgiMigrationError(
                "%s sets --%s, which the tgi role sets itself from the instance's %s (value not shown: it may be a "
                "secret). Remove it from extra_args and set %s" % (label, name, RESERVED[name], RESERVED[name]))
        if name not in OPTIONS:
            unknown.append("extra_args --%s" % name)
            while inline is None and i < len(args) and not str(args[i]).startswith("-"):
                i += 1
            continue
        if OPTIONS[name][0] == _FLAG:
            value = True if inline is None else _parse_value(name, inline, "%s --%s" % (label, name), fix)
        else:
            if inline is None:
                if i >= len(args) or str(args[i]).startswith("--"):
                    raise TgiMigrationError("%s: --%s needs a value. %s (give it as '--%s', '<value>' or '--%s=<value>')"
                                            % (label, name, fix, name, name))
                inline = args[i]
                i += 1
            value = _parse_value(name, inline, "%s --%s" % (label, name), fix)
        settings.set(name, value, "extra_args --%s" % name)


def _names(model_id, aliases, where):
    names = [model_id]
    if aliases is None:
        aliases = []
    if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)):
        raise TgiMigrationError("%s: aliases must be a list of the model names clients send (got %s). Fix the filter's "
                                "aliases argument" % (where, type(aliases).__name__))
    for alias in aliases:
        if not isinstance(alias, str) or not alias.strip() or alias != alias.strip():
            raise TgiMigrationError("%s: alias %r is not a model name (a non-empty string without blanks at its ends). "
                                    "Fix the filter's aliases argument" % (where, alias))
        if alias not in names:
            names.append(alias)
    return names


def _visible_gpus(env):
    """The GPUs TGI counts from CUDA_VISIBLE_DEVICES, or None when it is not set."""
    if "CUDA_VISIBLE_DEVICES" not in env:
        return None
    return len([d for d in str(env["CUDA_VISIBLE_DEVICES"]).split(",") if d.strip()])


def tgi_to_vllm(instance, gpu_count=None, aliases=None, tgi_env=None):
    """One tgi_instances entry (after the tgi role's defaults) as a vllm_instances entry, with notes and refusals.

    ``gpu_count``: the GPUs the TGI container sees (the tgi role's GPU count, 0 on hosts without one); needed only when
    num_shard is null (TGI then shards over every GPU it sees). ``aliases``: more model names clients send (vLLM answers
    404 to a name it does not serve; TGI answered to any). ``tgi_env``: the role-wide tgi_env, merged under the
    instance's env as the tgi role does."""
    if not isinstance(instance, dict):
        raise TgiMigrationError("a TGI instance must be a dict (an entry of tgi_instances), got %s" % type(instance).__name__)
    where = "tgi_instances[%s]" % (instance.get("name") if isinstance(instance.get("name"), str) else "?")
    missing = [k for k in REQUIRED_KEYS if k not in instance]
    if missing:
        raise TgiMigrationError(
            "%s: %s missing. Pass the instance after the tgi role's defaults (its __tgi_instances, or the entry combined "
            "over __tgi_instance_defaults): a role-wide tgi_port, tgi_api_key, ... would otherwise be lost"
            % (where, ", ".join(missing)))
    unknown_keys = sorted(set(instance) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown_keys:
        raise TgiMigrationError("%s: unknown key(s) %s; a tgi_instances entry has %s. Fix that instance"
                                % (where, ", ".join(unknown_keys), ", ".join(REQUIRED_KEYS + OPTIONAL_KEYS)))
    name = instance["name"]
    if not isinstance(name, str) or not re.match(r"^[a-z0-9][a-z0-9_.-]{0,62}$", name):
        raise TgiMigrationError("%s: name %r is not an instance name ([a-z0-9][a-z0-9_.-]*). Fix name" % (where, name))
    if instance.get("state", "present") != "present":
        raise TgiMigrationError("%s: state is %r: there is nothing to migrate. Migrate only present instances "
                                "(selectattr('state', 'equalto', 'present'))" % (where, instance.get("state")))
    model_id = instance["model_id"]
    if not isinstance(model_id, str) or not model_id.strip():
        raise TgiMigrationError("%s: model_id %r is not a model path or id. Fix model_id" % (where, model_id))
    bind_address = instance["bind_address"]
    if not isinstance(bind_address, str) or not bind_address:
        raise TgiMigrationError("%s: bind_address %r is not an address. Fix bind_address (or tgi_bind_address)"
                                % (where, bind_address))
    port = _as_int(instance["port"], "%s port" % where, "Fix port (or tgi_port)", minimum=1)
    if port > 65535:
        raise TgiMigrationError("%s port: %d is above 65535. Fix port (or tgi_port)" % (where, port))
    api_key = "" if instance["api_key"] is None else instance["api_key"]
    if not isinstance(api_key, str):
        raise TgiMigrationError("%s: api_key is not a string (value not shown). Fix api_key (or tgi_api_key)" % where)
    grace = TGI_DEFAULT_GRACEFUL_TERMINATION_TIMEOUT
    if instance["graceful_termination_timeout"] is not None:
        grace = _as_int(instance["graceful_termination_timeout"], "%s graceful_termination_timeout" % where,
                        "Fix graceful_termination_timeout (or tgi_graceful_termination_timeout), in seconds")
    env = {}
    for label, value in (("tgi_env", tgi_env), ("%s env" % where, instance["env"])):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise TgiMigrationError("%s must be a dict of environment variables, got %s. Fix it" % (label, type(value).__name__))
        env.update(value)
    names = _names(model_id, aliases, where)

    notes = []
    refused = []
    extra = []
    out = {"name": name, "state": "present", "model": model_id, "bind_address": bind_address, "port": port}

    # --- the options: the role's keys and extra_args (the command line), then the environment for what they leave out ---
    settings = _Settings(where)
    for key, option in KEY_OPTIONS:
        if instance[key] is not None:
            settings.set(option, _parse_value(option, instance[key], "%s %s" % (where, key), "Fix %s (or tgi_%s)" % (key, key)), key)
    for key, option in OPTIONAL_KEY_OPTIONS:
        if instance.get(key) not in (None, ""):
            settings.set(option, _parse_value(option, instance[key], "%s %s" % (where, key), "Fix %s (or tgi_%s)" % (key, key)), key)
    unknown = []
    _parse_extra_args(instance["extra_args"], where, settings, unknown)
    carried = []
    env_notes = []
    for key in sorted(env, key=str):
        if key in TGI_RESERVED_ENV:
            raise TgiMigrationError("%s env sets %s, which the tgi role writes itself from %s (value not shown). Remove "
                                    "it from env (or tgi_env) and set %s" % (where, key, TGI_RESERVED_ENV[key], TGI_RESERVED_ENV[key]))
        if key in ENV_OPTIONS:
            option = ENV_OPTIONS[key]
            value = _parse_value(option, env[key], "%s env %s" % (where, key), "Fix %s in env (or tgi_env)" % key)
            if not settings.set(option, value, "env " + key, from_env=True):
                env_notes.append("env %s: TGI ignored it, the command line sets --%s (%s)" % (key, option, settings.source(option)))
        elif key in VLLM_OWN_ENV:
            env_notes.append("env %s: not carried over, %s (value not shown)" % (key, VLLM_OWN_ENV[key]))
        else:
            carried.append(key)
    if carried:
        env_notes.append("env %s: carried over as they are (values not shown); vLLM reads only the ones it knows: check "
                         "those that were TGI's own" % ", ".join(str(k) for k in carried))
    for item in unknown:
        refused.append("%s: not a text-generation-launcher 3.3.7 option (its value is not shown: it may be a secret); "
                       "remove it, or add the vLLM option that does the same to the vLLM instance's extra_args" % item)

    def src(option):
        return settings.source(option)

    # --- model and the names clients send --------------------------------------------------------------------------
    if not model_id.startswith("/"):
        refused.append("model_id %s: a hub id; the vllm role serves only a model path on the host. Stage the model with "
                       "onprem.llm_serving.models and set model to its path (the hub id stays a served name)" % model_id)
    if len(names) == 1:
        out["served_model_name"] = model_id
    else:
        # the vllm role's served_model_name takes one name; vLLM's --served-model-name takes several (nargs='+')
        out["served_model_name"] = None
        extra += ["--served-model-name"] + names
    notes.append("model_id %s -> model %s, --served-model-name %s: TGI answered to any model name (and read 'tgi' as its "
                 "model id); vLLM answers 404 to a name it does not serve and puts the first name in its responses. Pass "
                 "the other names your clients send as aliases" % (model_id, model_id, " ".join(names)))
    notes.append("routes: vLLM serves the OpenAI API (/v1/chat/completions, /v1/completions, /v1/models); TGI's own "
                 "/generate, /generate_stream and /info are not served: move their clients to /v1 first")

    # --- address, key, drain ----------------------------------------------------------------------------------------
    notes.append("port %d, bind_address %s: carried over (TGI published them to its container's port 80; vLLM binds them "
                 "itself). Beside a running TGI instance on the same host give the vLLM instance another port; the "
                 "gateway keeps the clients' URL" % (port, bind_address))
    out["api_key"] = api_key
    if api_key:
        notes.append("api_key: carried over (value not shown); vLLM checks it only on the /v1, /v2, /inference and "
                     "/cohere routes: keep the gateway's allow-list in front")
    out["shutdown_timeout"] = grace
    notes.append("graceful_termination_timeout %d -> shutdown_timeout %d: vLLM drains in-flight requests that long on "
                 "SIGTERM, answers 503 to new ones meanwhile and keeps /health at 200: drain at the gateway first"
                 % (grace, grace))
    if instance.get("shm_size") is not None:
        notes.append("shm_size %s: a setting of TGI's container; the vLLM venv units use the host's /dev/shm, its containers "
                     "host IPC or vllm_container_shm_size (role-wide)" % instance["shm_size"])

    # --- parallelism ------------------------------------------------------------------------------------------------
    num_shard = settings.get("num-shard")
    sharded = settings.get("sharded")
    if num_shard is not None and num_shard < 1:
        raise TgiMigrationError("%s: %s is %d; TGI refuses num_shard < 1. Set it to 1 or more" % (where, src("num-shard"), num_shard))
    if sharded is True and num_shard is not None and num_shard <= 1:
        raise TgiMigrationError("%s: %s true with num_shard %d; TGI refuses it. Set num_shard to 2 or more, or remove "
                                "--sharded" % (where, src("sharded"), num_shard))
    if num_shard is not None:
        out["tensor_parallel_size"] = num_shard
        notes.append("%s %d -> tensor_parallel_size %d" % (src("num-shard"), num_shard, num_shard))
    elif sharded is False:
        out["tensor_parallel_size"] = 1
        notes.append("%s false -> tensor_parallel_size 1" % src("sharded"))
    else:
        seen, how = _visible_gpus(env), "CUDA_VISIBLE_DEVICES"
        if seen is None and gpu_count is not None:
            seen, how = _as_int(gpu_count, "%s gpu_count" % where, "Pass the GPUs the TGI container sees (0 without GPUs)"), "gpu_count"
        if seen is None:
            refused.append("num_shard null: TGI shards over every GPU its container sees, which the migration was not told. "
                           "Pass gpu_count (the tgi role's GPU count, 0 on hosts without GPUs) or set num_shard on the "
                           "TGI instance")
        elif sharded is True and seen <= 1:
            raise TgiMigrationError("%s: %s true but TGI sees %d GPU(s) (%s); TGI refuses it. Set num_shard, or remove "
                                    "--sharded" % (where, src("sharded"), seen, how))
        else:
            out["tensor_parallel_size"] = max(seen, 1)
            notes.append("num_shard null -> tensor_parallel_size %d: TGI shards over the GPUs its container sees (%d, %s)"
                         % (max(seen, 1), seen, how))

    # --- lengths, admission, batching -------------------------------------------------------------------------------
    total = settings.get("max-total-tokens")
    if total is not None:
        if total < 1:
            raise TgiMigrationError("%s: %s is 0; set at least 1" % (where, src("max-total-tokens")))
        out["max_model_len"] = total
        notes.append("%s %d -> max_model_len %d (prompt and output together, in both)" % (src("max-total-tokens"), total, total))
    else:
        # the vllm role's max_model_len takes a number; vLLM's --max-model-len takes auto (-1) too
        out["max_model_len"] = None
        extra += ["--max-model-len", "auto"]
        notes.append("max_total_tokens null -> --max-model-len auto: TGI took the model's length, lowered to what fitted in "
                     "memory; vLLM's auto does the same")
    for option in ("max-input-tokens", "max-input-length"):
        if settings.get(option) is not None:
            notes.append("%s %d: dropped; %s" % (src(option), settings.get(option), DROPPED[option]))
    queued = settings.get("max-concurrent-requests", TGI_DEFAULT_MAX_CONCURRENT_REQUESTS)
    if queued < 1:
        raise TgiMigrationError("%s: %s is 0; TGI needs at least 1. Fix it" % (where, src("max-concurrent-requests")))
    extra += ["--max-num-queued-reqs", str(queued)]
    notes.append("%s %d -> --max-num-queued-reqs %d: both count waiting and running requests; beyond it vLLM answers 503 "
                 "where TGI answered 429, so clients and the gateway that retry on 429 must retry on 503 too"
                 % (src("max-concurrent-requests") if "max-concurrent-requests" in settings.values else "max_concurrent_requests",
                    queued, queued))
    batch = settings.get("max-batch-size")
    if batch is not None:
        if batch < 1:
            raise TgiMigrationError("%s: %s is 0; set at least 1" % (where, src("max-batch-size")))
        out["max_num_seqs"] = batch
        notes.append("%s %d -> max_num_seqs %d (requests in one batch)" % (src("max-batch-size"), batch, batch))
    prefill = settings.get("max-batch-prefill-tokens")
    if prefill is not None:
        if prefill < 1:
            raise TgiMigrationError("%s: %s is 0; set at least 1" % (where, src("max-batch-prefill-tokens")))
        extra += ["--max-num-batched-tokens", str(prefill)]
        notes.append("%s %d -> --max-num-batched-tokens %d: vLLM counts every token of a step (prefill and decode) against "
                     "it and splits long prompts into chunks; it does not start when it is below max_num_seqs (default up "
                     "to 1024 on large GPUs)" % (src("max-batch-prefill-tokens"), prefill, prefill))
        if batch is not None and prefill < batch:
            refused.append("%s %d is below %s %d: vLLM does not start when --max-num-batched-tokens is below "
                           "--max-num-seqs. Raise the one or lower the other"
                           % (src("max-batch-prefill-tokens"), prefill, src("max-batch-size"), batch))

    # --- memory, precision, quantization ----------------------------------------------------------------------------
    fraction = settings.get("cuda-memory-fraction")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise TgiMigrationError("%s: %s is %s; vLLM's --gpu-memory-utilization takes a fraction above 0 and at most 1. "
                                    "Set one" % (where, src("cuda-memory-fraction"), fraction))
        out["gpu_memory_utilization"] = fraction
        notes.append("%s %s -> gpu_memory_utilization %s (the vllm role passes it on GPU hosts)"
                     % (src("cuda-memory-fraction"), fraction, fraction))
    else:
        notes.append("cuda_memory_fraction unset (TGI's 1.0): the vllm role's vllm_gpu_memory_utilization applies")
    quantize = settings.get("quantize")
    if quantize is not None:
        method, why_not = QUANTIZE[quantize]
        if method is None:
            refused.append("%s %s: %s" % (src("quantize"), quantize, why_not))
        elif quantize == "fp8":
            out["quantization"] = method
            notes.append("%s fp8 -> quantization fp8_per_tensor: TGI quantized the weights to FP8 at load; vLLM 0.32's fp8 "
                         "only loads FP8 checkpoints and names fp8_per_tensor for this (fp8_per_channel, closer to TGI's "
                         "per-channel scales, needs SM89+). For a checkpoint already in FP8 set quantization null: vLLM "
                         "reads the method from config.json and refuses a different one" % src("quantize"))
        else:
            out["quantization"] = method
            notes.append("%s %s -> quantization %s: vLLM checks it against the checkpoint's config.json "
                         "(quantization_config) and does not start on a mismatch; it picks the kernels itself"
                         % (src("quantize"), quantize, method))
    dtype = settings.get("dtype")
    if dtype is not None:
        out["dtype"] = dtype
        notes.append("%s %s -> dtype %s" % (src("dtype"), dtype, dtype))
    kv_dtype = settings.get("kv-cache-dtype")
    if kv_dtype is not None:
        extra += ["--kv-cache-dtype", KV_CACHE_DTYPE[kv_dtype]]
        notes.append("%s %s -> --kv-cache-dtype %s" % (src("kv-cache-dtype"), kv_dtype, KV_CACHE_DTYPE[kv_dtype]))
    if settings.get("trust-remote-code"):
        extra.append("--trust-remote-code")
        notes.append("%s -> --trust-remote-code: vLLM runs the model's own code too" % src("trust-remote-code"))
    revision = settings.get("revision")
    if revision is not None:
        extra += ["--revision", revision]
        notes.append("%s %s -> --revision %s" % (src("revision"), revision, revision))

    # --- observability, browsers ------------------------------------------------------------------------------------
    otlp = settings.get("otlp-endpoint")
    if otlp is not None:
        extra += ["--otlp-traces-endpoint", otlp]
        notes.append("%s -> --otlp-traces-endpoint %s" % (src("otlp-endpoint"), otlp))
    origins = settings.get("cors-allow-origin")
    if origins:
        extra += ["--allowed-origins", json.dumps(origins)]
        notes.append("%s -> --allowed-origins %s (one JSON list)" % (src("cors-allow-origin"), json.dumps(origins)))

    # --- the rest: dropped with a note, or refused ------------------------------------------------------------------
    for option in sorted(settings.values):
        value = settings.values[option]
        if value is False or option in MAPPED or option in ("max-input-tokens", "max-input-length"):
            continue
        if option in DROPPED:
            notes.append("%s: dropped; %s" % (src(option), DROPPED[option]))
        else:
            shown = "" if OPTIONS[option][0] == _FLAG else " %s" % _shown(option, value)
            refused.append("%s%s: %s" % (src(option), shown, REFUSED[option]))

    notes += env_notes
    if extra:
        out["extra_args"] = extra
    if carried:
        out["env"] = dict((k, env[k]) for k in carried)
    return {"instance": out, "notes": notes, "refused": refused}
