# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the gateway role; the logic is plugins/module_utils/_gateway.py (pure, unit-tested).

- gateway_config: the HAProxy configuration, the rate-limit map and a summary of each door (no secret in them)
- gateway_secrets: the two maps that hold secrets (API key -> name, backend -> engine key); use them with no_log
- gateway_curl_lines: a curl line per door, the key read from $API_KEY
- gateway_migration_weights: [weight of each door-engine replica, weight of each migrate_to replica] (HAProxy's
  0-256) that send a given percent of a migrating door's new requests to the migrate_to side (runtime weight changes)
- gateway_migration_gate: the judgement of one traffic-shift step from HAProxy's counters and the probe requests
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.module_utils._gateway import (
    GatewayError, build, curl_lines, migration_gate, migration_weights)


def _build(frontends, keys, groups, serving, gateway_host, settings):
    try:
        return build(frontends, keys, groups, serving, gateway_host, settings)
    except GatewayError as exc:
        raise AnsibleFilterError("gateway on %s: %s" % (gateway_host, exc))


def gateway_config(frontends, keys, groups, serving, gateway_host, settings=None):
    """{config, rates_map, doors}: what may be shown (diff mode, the summary)."""
    plan = _build(frontends, keys, groups, serving, gateway_host, settings)
    return {"config": plan["config"], "rates_map": plan["rates_map"], "doors": plan["doors"]}


def gateway_secrets(frontends, keys, groups, serving, gateway_host, settings=None):
    """{keys_map, upstream_map}: secrets, written root-only with no_log."""
    plan = _build(frontends, keys, groups, serving, gateway_host, settings)
    return {"keys_map": plan["keys_map"], "upstream_map": plan["upstream_map"]}


def gateway_curl_lines(doors, host, self_signed=False):
    """A curl line per door (the doors of gateway_config) through ``host``; -k when the certificate is self-signed."""
    return curl_lines(doors, host, self_signed)


def gateway_migration_weights(n_from, n_to, percent):
    """[w_from, w_to]: with ``n_from`` replicas of the door's engine at w_from and ``n_to`` replicas of migrate_to's
    engine at w_to, the migrate_to side gets ``percent`` of the new requests (exact where whole weights allow, else the
    nearest; 0 -> [1, 0], 100 -> [0, 1]). E.g. 1 tgi + 1 vllm at 10 -> [9, 1]."""
    try:
        return list(migration_weights(n_from, n_to, percent))
    except GatewayError as exc:
        raise AnsibleFilterError("gateway_migration_weights: %s" % exc)


def gateway_migration_gate(servers, start, end, engine="vllm", probe=None, max_errors=0, step=0):
    """{door_requests, requests, errors, probe_*, counters_reset, passed, reasons} of one step of a migrating door:
    ``servers`` the door's replicas, ``start``/``end`` {replica: show stat counters} at the gate's ends, ``probe``
    llm_benchmark's level of the probe requests (or none)."""
    try:
        return migration_gate(servers, start or {}, end or {}, engine, probe, int(max_errors), int(step))
    except GatewayError as exc:
        raise AnsibleFilterError("gateway_migration_gate: %s" % exc)


class FilterModule:
    def filters(self):
        return {"gateway_config": gateway_config, "gateway_secrets": gateway_secrets,
                "gateway_curl_lines": gateway_curl_lines, "gateway_migration_weights": gateway_migration_weights,
                "gateway_migration_gate": gateway_migration_gate}
