#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: llm_endpoint
short_description: Prove that an LLM endpoint (vLLM, TGI, Ollama) really serves its model
version_added: "0.1.0"
description:
  - Waits until the endpoint answers (connection refused, reset, timeouts and HTTP 502/503/504 are retried with exponential
    backoff until O(ready_timeout)), and reports the time it took.
  - Tells the engine apart from its answers when O(engine=auto) (C(GET /api/version) answers only on Ollama, C(GET /info) with a
    C(model_id) only on TGI, C(GET /version) on vLLM), checks that O(model) is among the served models, then runs a real
    generation on every selected API, streamed and not streamed.
  - "A generation counts only when it produced at least O(min_tokens) tokens (from C(usage) or the engine's own counts) and, when
    streamed, the stream ended properly (C(data: [DONE]) for OpenAI, the final event with C(generated_text) and C(details) for TGI,
    C(done:true) for Ollama)."
  - Measures on the first streamed check time to first token (arrival of the first event carrying a token minus the request
    start), inter-token latency (gaps between later token events), end-to-end latency and tokens per second, the same way as
    M(onprem.llm_serving.llm_benchmark) and C(vllm bench serve).
  - Returns the engine's server-side figures where it has them (Ollama C(eval_count)/C(eval_duration) and C(/api/ps); vLLM
    C(/metrics) counters including the prefix cache).
  - Uses only the Python standard library on the host it runs on.
author:
  - onprem.llm_serving maintainers (@onprem)
extends_documentation_fragment:
  - onprem.llm_serving.llm_http
options:
  timeout:
    description: Seconds to wait for each single HTTP answer (one generation included).
    type: float
    default: 60.0
  engine:
    description:
      - Protocol to test. V(openai) is the OpenAI-compatible API (vLLM, TGI's C(/v1), Ollama's C(/v1)); V(tgi) and V(ollama) are
        those engines' native APIs; V(auto) detects the engine and uses its native protocol (OpenAI for vLLM).
    type: str
    choices: [auto, openai, tgi, ollama]
    default: auto
  model:
    description:
      - Name under which the model must be served (OpenAI C(id) from C(/v1/models), Ollama name from C(/api/tags) where V(tiny)
        matches V(tiny:latest), TGI C(model_id) from C(/info)). When omitted, the first served model is used.
    type: str
  apis:
    description:
      - APIs to exercise. V(chat) and V(completions) for V(openai); V(generate) for V(tgi); V(chat) and V(generate) for V(ollama).
        Default all of the protocol's.
    type: list
    elements: str
    choices: [chat, completions, generate]
  streaming:
    description: Run each API streamed, non-streamed or V(both).
    type: str
    choices: [both, streamed, non_streamed]
    default: both
  prompt:
    description: Prompt (or user message) to send.
    type: str
    default: Write a short story about a lighthouse keeper who finds a message in a bottle.
  max_tokens:
    description: Maximum number of tokens per generation.
    type: int
    default: 32
  min_tokens:
    description: Fewest generated tokens that prove a real generation.
    type: int
    default: 8
  ignore_eos:
    description: Ask vLLM to ignore the end-of-sequence token (vLLM extension), so a model that stops early still yields O(max_tokens).
    type: bool
    default: false
  ready_timeout:
    description: Seconds to wait for the endpoint to become ready (a GPU host can take minutes to load a model).
    type: float
    default: 600.0
  collect_metrics:
    description: Read vLLM's C(/metrics) and return the selected counters in RV(server).
    type: bool
    default: true
  unit:
    description:
      - The systemd unit that serves the endpoint, on the host this module runs on (V(vllm-tiny.service)). While the endpoint
        is not ready yet, its state is read after each attempt. Once the unit has failed or stopped, or systemd restarted it
        twice since the wait began (a crash loop; one restart can be a kill from outside, and the wait goes on), the module
        fails at once with the unit's last log lines instead of waiting until O(ready_timeout) (a venv that cannot import,
        a bad flag, a model that does not fit).
      - A unit this host does not know is not watched, nor one on a host where systemd does not answer (a warning says so).
        Leave it unset when the module runs on another host than the engine.
    type: str
  refused_without_key:
    description:
      - Once the endpoint is ready, also send one C(GET) without O(api_key) to a read-only route (C(/v1/models) for V(openai)
        and V(tgi), C(/api/tags) for V(ollama)) and fail unless it answers HTTP 401, before any generation. This proves that
        a gateway's door, or an engine started with its key, refuses a request without one. Needs O(api_key).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same checks in check mode.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  idempotent:
    support: full
    description: Always returns RV(ignore:changed=false).
notes:
  - Read-only; always returns C(changed=false).
  - Each streamed generation uses O(timeout) as the limit between two received chunks and for the headers.
seealso:
  - module: onprem.llm_serving.llm_benchmark
"""

EXAMPLES = r"""
- name: Smoke-test the local vLLM (OpenAI API, every path streamed and not)
  onprem.llm_serving.llm_endpoint:
    url: http://127.0.0.1:8000
    engine: openai
    model: tiny
    api_key: "{{ vllm_api_key }}"
    ready_timeout: 900
    unit: vllm-tiny.service   # fails at once, with its log, if the unit crash-loops or fails while the model loads

- name: Let the module find out which engine answers, and prove 16 tokens
  onprem.llm_serving.llm_endpoint:
    url: "http://{{ inventory_hostname }}:11434"
    model: tiny
    min_tokens: 16
    max_tokens: 16
  delegate_to: localhost
  register: smoke

- name: Prove a gateway door refuses a request without a key, then generate through it with one
  onprem.llm_serving.llm_endpoint:
    url: https://127.0.0.1:8443
    engine: openai
    api_key: "{{ gateway_api_keys[0].key }}"
    refused_without_key: true
    validate_certs: false

- name: TGI behind a TLS proxy with a private CA
  onprem.llm_serving.llm_endpoint:
    url: https://tgi.example.internal
    engine: tgi
    ca_path: /etc/pki/internal-ca.pem
"""

RETURN = r"""
engine:
  description: Engine that answered (V(vllm), V(tgi), V(ollama), or V(openai) for an unknown OpenAI-compatible server).
  returned: success
  type: str
  sample: vllm
protocol:
  description: Protocol that was exercised.
  returned: success
  type: str
  sample: openai
engine_version:
  description: Version reported by C(/version), C(/info) or C(/api/version); null when the server has none.
  returned: success
  type: str
  sample: 0.32.0
model:
  description: Served model name that was tested.
  returned: success
  type: str
  sample: tiny
served_models:
  description: Every model the engine serves.
  returned: success
  type: list
  elements: str
  sample: [tiny]
time_to_ready_s:
  description: Seconds from the first probe until the endpoint answered.
  returned: success
  type: float
  sample: 31.4
ready_attempts:
  description: Probes sent until ready.
  returned: success
  type: int
  sample: 7
waited_for:
  description: Distinct reasons seen while waiting (refused, HTTP 503, ...).
  returned: success
  type: list
  elements: str
ttft_ms:
  description: Time to first token of the first streamed check, in ms.
  returned: success
  type: float
  sample: 12.7
itl_ms_mean:
  description: Mean inter-token latency of the first streamed check, in ms.
  returned: success
  type: float
itl_ms_median:
  description: Median inter-token latency of the first streamed check, in ms.
  returned: success
  type: float
tpot_ms:
  description: (E2E - TTFT) / (tokens - 1) of the first streamed check, in ms.
  returned: success
  type: float
e2e_ms:
  description: End-to-end latency (until the last token event) of the first streamed check, in ms.
  returned: success
  type: float
tokens_per_s:
  description: Output tokens / end-to-end latency of the first streamed check.
  returned: success
  type: float
output_tokens:
  description: Tokens generated by the first streamed check.
  returned: success
  type: int
checks:
  description: One entry per API and streaming mode with its figures.
  returned: success
  type: list
  elements: dict
  sample:
    - api: chat
      path: /v1/chat/completions
      stream: true
      output_tokens: 32
      token_source: usage
      finish_reason: length
      ended_properly: true
      ttft_ms: 9.1
      itl_ms_mean: 3.2
      e2e_ms: 110.3
      tokens_per_s: 290.1
server:
  description:
    - Server-side figures. Ollama - C(eval_count), C(eval_duration), C(eval_tokens_per_s), C(prompt_eval_*), C(load_duration),
      C(loaded_models) from C(/api/ps). vLLM - counters from C(/metrics) (C(prefix_cache_queries_total), C(prefix_cache_hits_total),
      C(prefix_cache_hit_rate), C(num_requests_running), ...).
  returned: success
  type: dict
"""

import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import (
    CLIENT_ARGSPEC,
    LlmError,
    client_from_params,
)
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_endpoint import EndpointChecker
from ansible_collections.onprem.llm_serving.plugins.module_utils._systemd import SystemdError, SystemdHost, unit_watch


def argument_spec():
    spec = dict(CLIENT_ARGSPEC)
    spec.update(
        engine=dict(type="str", default="auto", choices=["auto", "openai", "tgi", "ollama"]),
        model=dict(type="str"),
        apis=dict(type="list", elements="str", choices=["chat", "completions", "generate"]),
        streaming=dict(type="str", default="both", choices=["both", "streamed", "non_streamed"]),
        prompt=dict(type="str", default="Write a short story about a lighthouse keeper who finds a message in a bottle."),
        max_tokens=dict(type="int", default=32, no_log=False),
        min_tokens=dict(type="int", default=8, no_log=False),
        ignore_eos=dict(type="bool", default=False),
        ready_timeout=dict(type="float", default=600.0),
        collect_metrics=dict(type="bool", default=True),
        unit=dict(type="str"),
        refused_without_key=dict(type="bool", default=False),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    if p["min_tokens"] > p["max_tokens"]:
        module.fail_json(msg="min_tokens (%d) is larger than max_tokens (%d): no generation could pass; lower min_tokens or raise max_tokens"
                         % (p["min_tokens"], p["max_tokens"]))
    if p["refused_without_key"] and not p["api_key"]:
        module.fail_json(msg="llm_endpoint %s: refused_without_key is true but api_key is not set: the check sends one request without "
                         "the key and the others with it; set api_key, or refused_without_key: false" % p["url"])
    watch = None
    if p["unit"]:
        try:
            watch = unit_watch(SystemdHost(module.run_command), p["unit"])
        except SystemdError as exc:
            # no systemd to ask here (a container, another host): the wait runs to ready_timeout as without unit
            module.warn("llm_endpoint %s: unit %s is not watched, systemd did not answer: %s" % (p["url"], p["unit"], exc))
    try:
        client = client_from_params(p)
        result = EndpointChecker(client).run(
            engine=p["engine"], model=p["model"], apis=p["apis"], streaming=p["streaming"], prompt=p["prompt"], max_tokens=p["max_tokens"],
            min_tokens=p["min_tokens"], ignore_eos=p["ignore_eos"], ready_timeout=p["ready_timeout"], collect_metrics=p["collect_metrics"],
            watch=watch, refused_without_key=p["refused_without_key"])
    except LlmError as exc:
        module.fail_json(msg="llm_endpoint %s (engine=%s, model=%s): %s" % (p["url"], p["engine"], p["model"], exc))
    except Exception as exc:  # unexpected: keep the traceback for a bug report
        module.fail_json(msg="llm_endpoint %s: unexpected %s: %s" % (p["url"], type(exc).__name__, exc), exception=traceback.format_exc())
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
