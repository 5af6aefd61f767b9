#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gateway_server
short_description: Drain, ready or weigh one replica behind a front door (HAProxy's runtime API)
version_added: 0.3.0
description:
  - Talks to the gateway's HAProxy through its admin socket (the C(gateway) role's C(gateway_runtime_socket)), on the
    gateway host. Reads one replica's state (C(show stat)) and, when asked, changes it with C(set server ... state)
    and C(set server ... weight). Nothing is written to the configuration file; a reload of the gateway puts every
    replica back to ready at its configured weight.
  - O(state=drain) stops new requests to the replica and, with O(wait=true), waits until it holds no session and no
    queued request (a streamed generation is one session until its last chunk), at most O(drain_timeout) seconds. A
    replica still busy then is reported (RV(idle) false, its sessions in RV(after)), not failed; the caller stops the engine,
    whose own graceful shutdown (vLLM's C(--shutdown-timeout)) ends the rest.
  - O(state=ready) puts it back and, with O(wait=true), waits until its health checks say UP.
  - O(min_ready) refuses to drain or put in maintenance a replica when fewer than that many others would still take
    requests.
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: Reads the state and says what would change; changes nothing and waits for nothing.
  diff_mode:
    support: full
    description: The replica's status and weight before and after.
  idempotent:
    support: full
    description: A replica already in the asked state and weight is not changed.
  platform:
    support: full
    platforms: posix
    description: The gateway host (HAProxy 2.6's runtime API on a UNIX socket, level admin).
options:
  socket:
    description: The admin socket (the gateway role's C(gateway_runtime_socket)).
    type: path
    default: /run/haproxy/admin.sock
  door:
    description: The front door's name (C(gateway_frontends[].name)); its backend is C(be_<door>).
    type: str
    required: true
  server:
    description: The replica, as the gateway names it, C(<host>-<instance>) (characters other than letters, digits,
      C(_.-) become C(_)).
    type: str
    required: true
  state:
    description: What the replica should be; omitted, the module only reads it.
    type: str
    choices: [ready, drain, maint]
  weight:
    description: The replica's weight (0-256; 0 takes no new requests, as in a traffic shift's first step).
    type: int
  wait:
    description: With O(state=drain) or O(state=maint), wait until idle; with O(state=ready), wait until UP.
    type: bool
    default: true
  drain_timeout:
    description: Seconds to wait for the replica's sessions to end.
    type: float
    default: 120
  up_timeout:
    description: Seconds to wait for the replica's health checks to pass after O(state=ready).
    type: float
    default: 300
  min_ready:
    description: Refuse O(state=drain) or O(state=maint) when fewer than this many other replicas of the door take
      requests.
    type: int
    default: 0
notes:
  - C(playbooks/update.yml) drains each replica before its engine restarts and puts it back after its smoke test.
"""

EXAMPLES = r"""
- name: Drain vLLM instance tiny of llm-01 at door chat, at most 2 minutes
  onprem.llm_serving.gateway_server:
    door: chat
    server: llm-01-tiny
    state: drain
    drain_timeout: 120
    min_ready: 1
  delegate_to: door-01

- name: Send a tenth of the traffic to the new replica
  onprem.llm_serving.gateway_server:
    door: chat
    server: llm-02-vllm
    weight: 10
    wait: false
  delegate_to: door-01
"""

RETURN = r"""
before:
  description: The replica as C(show stat) saw it first.
  returned: always
  type: dict
  sample: {status: UP, admin: 0, scur: 3, qcur: 0, weight: 1, check_status: L7OK, stot: 812, eresp: 0, econ: 0, wretr: 0, wredis: 0, hrsp_5xx: 0}
after:
  description: The replica at the end (after the wait).
  returned: always
  type: dict
others_ready:
  description: How many other replicas of the door took requests when the module started.
  returned: always
  type: int
idle:
  description: Whether the replica held no session and no queued request at the end (O(state=drain) or O(state=maint)).
  returned: when state is drain or maint
  type: bool
waited:
  description: Seconds spent waiting (idle or UP).
  returned: always
  type: float
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.llm_serving.plugins.module_utils import _haproxy_runtime as rt


def wanted_change(row, state, weight):
    """What would change: (state change?, weight change?), from the admin state the runtime API set (not from the
    status, which says DOWN while a drained replica restarts)."""
    admin = row.get("admin", 0)
    state_change = False
    if state == "drain":
        state_change = not admin & rt.ADMIN_FDRAIN or bool(admin & rt.ADMIN_FMAINT)
    elif state == "maint":
        state_change = not admin & rt.ADMIN_FMAINT
    elif state == "ready":
        state_change = bool(admin & (rt.ADMIN_FDRAIN | rt.ADMIN_FMAINT))
    return state_change, weight is not None and row["weight"] != weight


def main():
    module = AnsibleModule(
        argument_spec=dict(
            socket=dict(type="path", default="/run/haproxy/admin.sock"),
            door=dict(type="str", required=True),
            server=dict(type="str", required=True),
            state=dict(type="str", choices=list(rt.STATES)),
            weight=dict(type="int"),
            wait=dict(type="bool", default=True),
            drain_timeout=dict(type="float", default=120),
            up_timeout=dict(type="float", default=300),
            min_ready=dict(type="int", default=0),
        ),
        supports_check_mode=True,
    )
    p = module.params
    backend = "be_%s" % p["door"]
    name = p["server"]
    if p["weight"] is not None and not 0 <= p["weight"] <= 256:
        module.fail_json(msg="gateway_server: weight %d is outside HAProxy's 0-256; fix the weight" % p["weight"])
    try:
        rows = rt.servers(p["socket"], backend)
        if name not in rows:
            module.fail_json(msg="gateway_server: door %s has no replica %s (it has %s); a replica is named <host>-<instance>"
                             % (p["door"], name, ", ".join(sorted(rows)) or "none"))
        before = rows[name]
        others = rt.ready_count(rows, excluding=(name,))
        result = {"changed": False, "before": before, "after": before, "others_ready": others, "waited": 0.0}
        if p["state"] in ("drain", "maint") and others < p["min_ready"]:
            module.fail_json(msg="gateway_server: taking %s out of door %s would leave %d replica(s) taking requests, fewer "
                             "than min_ready %d (the others: %s). Bring the others back (or add replicas) first, or lower "
                             "update_min_ready" % (name, p["door"], others, p["min_ready"],
                                                   ", ".join("%s %s" % (n, r["status"]) for n, r in sorted(rows.items()) if n != name)
                                                   or "none"), **result)
        state_change, weight_change = wanted_change(before, p["state"], p["weight"])
        result["changed"] = state_change or weight_change
        if module._diff:
            weight_after = p["weight"] if p["weight"] is not None else before["weight"]
            result["diff"] = {"before": "%s/%s: %s weight %d\n" % (backend, name, before["status"], before["weight"]),
                              "after": "%s/%s: %s weight %s\n" % (backend, name, p["state"] or before["status"], weight_after)}
        if module.check_mode:
            module.exit_json(**result)
        if weight_change:
            rt.set_weight(p["socket"], backend, name, p["weight"])
        if state_change:
            rt.set_state(p["socket"], backend, name, p["state"])
        if p["state"] in ("drain", "maint"):
            result["idle"] = False
            if p["wait"]:
                try:
                    result["after"], result["waited"] = rt.wait_idle(p["socket"], backend, name, p["drain_timeout"])
                    result["idle"] = True
                except TimeoutError as exc:
                    result["after"], result["waited"] = exc.args[0], p["drain_timeout"]
            else:
                result["after"] = rt.server(p["socket"], backend, name)
                result["idle"] = result["after"]["scur"] == 0 and result["after"]["qcur"] == 0
        elif p["state"] == "ready" and p["wait"]:
            try:
                result["after"], result["waited"] = rt.wait_up(p["socket"], backend, name, p["up_timeout"])
            except TimeoutError as exc:
                result["after"] = exc.args[0]
                module.fail_json(msg="gateway_server: %s at door %s is %s after %.0f s (last check: %s); the gateway's health "
                                 "check does not pass. Read the engine's journal on its host; its smoke test answered "
                                 "directly" % (name, p["door"], exc.args[0]["status"], p["up_timeout"],
                                               exc.args[0]["check_status"] or "none"), **result)
        else:
            result["after"] = rt.server(p["socket"], backend, name)
    except rt.HaproxyRuntimeError as exc:
        module.fail_json(msg="gateway_server: %s" % exc)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
