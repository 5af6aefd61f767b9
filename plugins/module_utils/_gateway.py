# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure logic of the ``gateway`` role (private API): one authenticated HAProxy front door per serving group.

``build()`` turns the role's variables, the inventory's groups and the endpoints the engine roles published
(``llm_endpoints``, the contract of roles/smoke) into the HAProxy 2.6 configuration and the map files it reads:

- ``config``: the whole haproxy.cfg; it holds no secret (diff mode may show it);
- ``rates_map``: key name -> requests allowed per period (no secret);
- ``keys_map``: API key -> key name, and ``upstream_map``: backend -> the engine's own ``Authorization`` value. These two
  ARE secrets: the role writes them root-only with no_log.

What a front door does, in order, for every request: a path that is not plain (percent-encoded, ``//``, ``/./``,
``/../``, characters outside ``[A-Za-z0-9/_.~:@-]``) is refused with 400, so that no encoding or dot-segment slips a
route past the allow-list; no ``Authorization: Bearer <key>`` of the list -> 401; the key's name is tracked in a stick
table and a key over its rate gets 429 with ``Retry-After``; a route outside the engine's allow-list -> 403; the
client's Authorization header is removed and, when the engine has its own API key, the engine's key is set. The log
line carries the key's NAME (``key=<name>``) and the path without its query string; never a header.

A door in the middle of a TGI -> vLLM migration (``migrate_to``, playbooks/migrate_tgi_to_vllm.yml) keeps its URL, its
keys and its model name: its backend holds the TGI replicas AND the vLLM replicas of the same model, ``balance
roundrobin`` with the weights of ``migration_weights`` so that ``migrate_to.weight`` percent of the new requests go to
vLLM; it opens only the routes both engines allow and refuses what either forbids. Both sides share one engine key.

Nothing here touches Ansible, the disk or a process; errors are ``GatewayError`` with a message naming the variable
that fixes them, never a key's value.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from fractions import Fraction

# The routes a front door forwards, per engine (issue 11; OPERATIONS.md "Who checks the API key").
# vLLM 0.32's own --api-key guards only /v1, /v2, /inference and /cohere; /invocations, /tokenize, /metrics, /load, ...
# answer anyone: only the OpenAI API (/v1/...) goes through. TGI: the OpenAI API too (/metrics, /info, /health are open
# in TGI). Ollama has no authentication at all: its read and generate API, never the routes that change the server.
ROUTES = {
    "vllm": {"prefixes": ("/v1/",), "paths": ()},
    "tgi": {"prefixes": ("/v1/",), "paths": ()},
    "ollama": {"prefixes": ("/v1/",),
               "paths": ("/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/show", "/api/ps", "/api/version")},
}
# Refused even under an allowed prefix or when a frontend's extra_paths names them: they change the server.
FORBIDDEN = {
    # vLLM: runtime LoRA loading (VLLM_ALLOW_RUNTIME_LORA_UPDATING) lives under /v1
    "vllm": ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"),
    "tgi": (),
    "ollama": ("/api/create", "/api/delete", "/api/pull", "/api/push", "/api/copy", "/api/blobs"),
}
# The readiness path of each engine (the contract's health_path defaults, plugins/filter/llm_serving.py).
HEALTH = {"vllm": "/health", "tgi": "/health", "ollama": "/api/version"}
ENGINES = tuple(ROUTES)
WILDCARDS = ("0.0.0.0", "::", "[::]", "")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,30}$")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
# RFC 6750 b64token: what may follow "Bearer " (and nothing a map file or a log line would read differently)
KEY_CHARS = re.compile(r"^[A-Za-z0-9._~+/=-]+$")
PATH = re.compile(r"^/[A-Za-z0-9/_.~:@-]*$")
TIME = re.compile(r"^[0-9]+(us|ms|s|m|h|d)?$")
SERVER_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")
FRONTEND_KEYS = {"name", "engine", "port", "group", "model", "instances", "bind_address", "extra_paths", "migrate_to"}
# a door in the middle of a TGI -> vLLM migration (playbooks/migrate_tgi_to_vllm.yml): its backend holds both engines'
# replicas of one model and the weights send ``weight`` percent of the new requests to the migrate_to side
MIGRATE_KEYS = {"engine", "group", "instances", "weight"}
# the engines a migration may mix: both speak the OpenAI API under /v1/ and serve the same model behind one door
MIGRATE_ENGINES = ("vllm", "tgi")
# HAProxy's server weights (0 takes no new request; 256 is the largest)
MAX_WEIGHT = 256
KEY_KEYS = {"name", "key", "rate_limit"}
# Mozilla "intermediate" (the ciphers Debian's own haproxy.cfg ships)
TLS_CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
               "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
               "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
TLS_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
LOG_FORMAT = ('%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq '
              'key=%[var(txn.gw_key)] \\"%HM %HPO %HV\\"')

# Settings the role passes (its variables); the defaults are the production values of roles/gateway/defaults.
DEFAULT_SETTINGS = {
    "bind_address": "0.0.0.0",
    "rate_limit": 600,
    "rate_limit_period": 60,
    "key_min_length": 32,
    "timeout_connect": "5s",
    "timeout_client": "15m",
    "timeout_server": "15m",
    "timeout_http_request": "30s",
    "timeout_http_keep_alive": "60s",
    "timeout_queue": "60s",
    "timeout_check": "5s",
    "hard_stop_after": "30m",
    "check_interval": "2s",
    "check_fast_interval": "500ms",
    "maxconn": 4096,
    "runtime_socket": "/run/haproxy/admin.sock",
    "metrics_address": "127.0.0.1",
    "metrics_port": 8405,
    "log_target": "/dev/log",
    "chroot": "/var/lib/haproxy",
    "user": "haproxy",
    "group": "haproxy",
    "tls_pem": "/etc/haproxy/onprem-gateway/tls.pem",
    "keys_map": "/etc/haproxy/onprem-gateway/api-keys.map",
    "rates_map": "/etc/haproxy/onprem-gateway/rate-limits.map",
    "upstream_map": "/etc/haproxy/onprem-gateway/upstream-keys.map",
}


class GatewayError(Exception):
    """The role's variables or the published endpoints cannot make a safe gateway; the message says which and how."""


def _int(value, where, low, high):
    if isinstance(value, bool):
        raise GatewayError("%s must be a whole number from %d to %d, got %r" % (where, low, high, value))
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise GatewayError("%s must be a whole number from %d to %d, got %r" % (where, low, high, value))
    if not low <= number <= high:
        raise GatewayError("%s must be a whole number from %d to %d, got %r" % (where, low, high, value))
    return number


def _whole(value, where, low, high):
    """_int, refusing a fraction too (10.5 percent is no whole number; _int would take it as 10)."""
    if isinstance(value, float) and not value.is_integer():
        raise GatewayError("%s must be a whole number from %d to %d, got %r" % (where, low, high, value))
    return _int(value, where, low, high)


def settings_of(settings):
    """The settings with defaults applied and every value checked (time formats, ranges, paths)."""
    out = dict(DEFAULT_SETTINGS)
    unknown = sorted(set(settings or {}) - set(DEFAULT_SETTINGS))
    if unknown:
        raise GatewayError("unknown gateway setting(s) %s" % ", ".join(unknown))
    out.update({k: v for k, v in (settings or {}).items() if v is not None or k in ("chroot", "user", "group")})
    for key in ("timeout_connect", "timeout_client", "timeout_server", "timeout_http_request", "timeout_http_keep_alive",
                "timeout_queue", "timeout_check", "hard_stop_after", "check_interval", "check_fast_interval"):
        if not TIME.match(str(out[key])):
            raise GatewayError("gateway_%s must be an HAProxy time such as 30s, 15m or 500ms, got %r" % (key, out[key]))
        out[key] = str(out[key])
    out["rate_limit"] = _int(out["rate_limit"], "gateway_rate_limit", 1, 10 ** 9)
    out["rate_limit_period"] = _int(out["rate_limit_period"], "gateway_rate_limit_period", 1, 86400)
    out["key_min_length"] = _int(out["key_min_length"], "gateway_api_key_min_length", 16, 4096)
    out["maxconn"] = _int(out["maxconn"], "gateway_maxconn", 1, 10 ** 7)
    out["metrics_port"] = _int(out["metrics_port"], "gateway_metrics_port", 0, 65535)
    for key in ("runtime_socket", "tls_pem", "keys_map", "rates_map", "upstream_map"):
        if not re.match(r"^/[^\s\"']+$", str(out[key])):
            raise GatewayError("gateway: %s must be an absolute path without blanks or quotes, got %r" % (key, out[key]))
    return out


def check_keys(keys, min_length=32):
    """The API keys as [{name, key, rate_limit}]; a bad entry is named by its name or index, never by its value."""
    if not isinstance(keys, (list, tuple)) or not keys:
        raise GatewayError("gateway_api_keys is empty: with no key every request is refused. Give it a list of "
                           "{name, key} (keep the keys in a vault: ansible-vault encrypt_string)")
    out, names, values = [], set(), set()
    for index, item in enumerate(keys):
        where = "gateway_api_keys[%d]" % index
        if not isinstance(item, dict):
            raise GatewayError("%s must be a dict {name, key, rate_limit}, got a %s" % (where, type(item).__name__))
        unknown = sorted(set(item) - KEY_KEYS)
        if unknown:
            raise GatewayError("%s: unknown field(s) %s; a key has name, key and optionally rate_limit" % (where, ", ".join(unknown)))
        name = item.get("name")
        if not isinstance(name, str) or not KEY_NAME.match(name):
            raise GatewayError("%s: name %r must be 1-64 letters, digits, _ . @ - (it is what the log shows)" % (where, name))
        where = "%s (%s)" % (where, name)
        if name in names:
            raise GatewayError("%s: the name %s is used twice; each key needs its own name" % (where, name))
        key = item.get("key")
        if not isinstance(key, str) or len(key) < min_length or not KEY_CHARS.match(key):
            raise GatewayError("%s: the key (not shown) must be at least %d characters of A-Z a-z 0-9 . _ ~ + / = - "
                               "(e.g. openssl rand -hex 32); set it, or lower gateway_api_key_min_length" % (where, min_length))
        if key in values:
            raise GatewayError("%s: the same key (not shown) is given to two names; give each name its own key" % where)
        rate = item.get("rate_limit")
        if rate is not None:
            rate = _int(rate, where + ": rate_limit", 1, 10 ** 9)
        names.add(name)
        values.add(key)
        out.append({"name": name, "key": key, "rate_limit": rate})
    return out


def server_name(host, instance):
    """HAProxy's name of one replica: <host>-<instance> (the runtime API's be_<door>/<name>)."""
    return SERVER_NAME_BAD.sub("_", "%s-%s" % (host, instance))


def engine_metrics_path(host, instance):
    """Where the gateway's metrics listener relays the /metrics of an engine it reaches on loopback."""
    return "/engines/%s/metrics" % server_name(host, instance)


# engines whose /metrics the metrics listener relays when they listen on loopback beside the gateway
METRICS_ENGINES = ("vllm", "tgi")


def _is_loopback(address):
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_parts(url):
    match = re.match(r"^(https?)://(\[[^\]]+\]|[^:/\s]+)(?::([0-9]+))?$", str(url or ""))
    if not match:
        return None, None, None
    scheme, host, port = match.groups()
    return scheme, host.strip("[]"), int(port) if port else (443 if scheme == "https" else 80)


def server_address(address, port):
    """address:port as HAProxy reads it (an IPv6 address gets the ipv6@ prefix)."""
    try:
        if ipaddress.ip_address(address).version == 6:
            return "ipv6@%s:%d" % (address, port)
    except ValueError:
        pass
    return "%s:%d" % (address, port)


def check_frontend(item, index, groups, settings):
    """One gateway_frontends entry, normalised: {name, engine, port, group, model, instances, bind_address, extra_paths}."""
    where = "gateway_frontends[%d]" % index
    if not isinstance(item, dict):
        raise GatewayError("%s must be a dict {name, engine, port, group, model}, got a %s" % (where, type(item).__name__))
    unknown = sorted(set(item) - FRONTEND_KEYS)
    if unknown:
        raise GatewayError("%s: unknown field(s) %s; a front door has %s" % (where, ", ".join(unknown), ", ".join(sorted(FRONTEND_KEYS))))
    name = item.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise GatewayError("%s: name %r must be 1-31 lower-case letters, digits, _ or - (it names the frontend and backend)"
                           % (where, name))
    where = "%s (%s)" % (where, name)
    engine = item.get("engine")
    if engine not in ENGINES:
        raise GatewayError("%s: engine %r must be one of %s" % (where, engine, ", ".join(ENGINES)))
    port = _int(item.get("port"), where + ": port", 1, 65535)
    group = item.get("group") or "%s_servers" % engine
    if group not in (groups or {}):
        raise GatewayError("%s: group %s is not in the inventory; set group to the inventory group whose %s instances this "
                           "door fronts" % (where, group, engine))
    instances = item.get("instances")
    if instances is not None and (not isinstance(instances, (list, tuple)) or not all(isinstance(i, str) for i in instances)):
        raise GatewayError("%s: instances must be a list of instance names, got %r" % (where, instances))
    migrate_to = check_migrate_to(item.get("migrate_to"), where, engine, group, groups)
    extra = item.get("extra_paths") or []
    if not isinstance(extra, (list, tuple)):
        raise GatewayError("%s: extra_paths must be a list of paths, got %r" % (where, extra))
    for path in extra:
        if not isinstance(path, str) or not PATH.match(path) or "//" in path or "/." in path:
            raise GatewayError("%s: extra_paths entry %r must be a plain absolute path (A-Z a-z 0-9 / _ . ~ : @ -, no "
                               "dot segments)" % (where, path))
        for side in (engine, migrate_to["engine"]) if migrate_to else (engine,):
            if path in FORBIDDEN[side] or path.rstrip("/") in FORBIDDEN[side]:
                raise GatewayError("%s: extra_paths %s changes the %s server and is never opened at the gateway; run it "
                                   "on the host itself" % (where, path, side))
    bind = item.get("bind_address") or settings["bind_address"]
    return {"name": name, "engine": engine, "port": port, "group": group, "model": item.get("model"),
            "instances": list(instances) if instances is not None else None, "bind_address": str(bind),
            "extra_paths": list(extra), "migrate_to": migrate_to}


def check_migrate_to(value, where, engine, group, groups):
    """A door's ``migrate_to`` ({engine, group, instances, weight}), normalised; None when the door is not migrating.

    The door's backend then holds the replicas of the door's engine AND those of migrate_to's engine, and ``weight``
    (0-100) is the percent of new requests the migrate_to side gets (migration_weights turns it into HAProxy weights)."""
    if value is None:
        return None
    where = "%s: migrate_to" % where
    if not isinstance(value, dict):
        raise GatewayError("%s must be a dict {engine, group, instances, weight}, e.g. {engine: vllm, weight: 10}, got %r"
                           % (where, value))
    unknown = sorted(set(value) - MIGRATE_KEYS)
    if unknown:
        raise GatewayError("%s: unknown field(s) %s; migrate_to has %s" % (where, ", ".join(unknown), ", ".join(sorted(MIGRATE_KEYS))))
    target = value.get("engine")
    if engine == "ollama" or target == "ollama":
        raise GatewayError("%s: a migration mixes two OpenAI-API engines that serve the same model (vllm and tgi) behind "
                           "one backend; ollama cannot be on either side of it (this door: %s, migrate_to.engine: %r). "
                           "Give the ollama instances a door of their own" % (where, engine, target))
    if target not in MIGRATE_ENGINES:
        raise GatewayError("%s.engine %r must be one of %s (the engine the door's clients move to, e.g. vllm on a tgi door)"
                           % (where, target, ", ".join(MIGRATE_ENGINES)))
    if target == engine:
        raise GatewayError("%s.engine %r is the door's own engine; migrate_to names the OTHER engine (a tgi door migrates "
                           "to vllm). More %s replicas join this door through its group and instances" % (where, target, engine))
    target_group = value.get("group") or group
    if not isinstance(target_group, str) or target_group not in (groups or {}):
        raise GatewayError("%s.group %r is not in the inventory; set it to the inventory group whose %s instances this door "
                           "migrates to (default: the door's group %s)" % (where, target_group, target, group))
    instances = value.get("instances")
    if instances is not None and (not isinstance(instances, (list, tuple)) or not all(isinstance(i, str) for i in instances)):
        raise GatewayError("%s.instances must be a list of %s instance names, got %r" % (where, target, instances))
    weight = value.get("weight")
    weight = 0 if weight is None else _whole(weight, "%s.weight (the percent of new requests sent to %s)" % (where, target), 0, 100)
    return {"engine": target, "group": target_group, "instances": list(instances) if instances is not None else None,
            "weight": weight}


def migration_weights(n_from, n_to, percent):
    """HAProxy weights (each 0-256) for a door in the middle of a migration: (weight of each of the ``n_from`` replicas
    of the door's engine, weight of each of the ``n_to`` replicas of migrate_to's engine), such that the migrate_to side
    gets ``percent`` of the new requests: n_to * w_to / (n_from * w_from + n_to * w_to) == percent / 100.

    Exact where whole weights of at most 256 allow it (the smallest such pair: 1 + 1 replicas at 10 -> (9, 1)), else
    the nearest share they can make. percent 0 -> (1, 0): the migrate_to side takes no new request; 100 -> (0, 1);
    anything strictly between gives both sides a weight of at least 1, so neither side is shut off by rounding."""
    n_from = _whole(n_from, "migration_weights: the number of replicas of the door's engine (n_from)", 1, 10 ** 6)
    n_to = _whole(n_to, "migration_weights: the number of replicas of the migrate_to engine (n_to)", 1, 10 ** 6)
    percent = _whole(percent, "migration_weights: the percent of new requests sent to the migrate_to side", 0, 100)
    if percent == 0:
        return 1, 0
    if percent == 100:
        return 0, 1
    want = Fraction(percent, 100)
    best = None
    for w_to in range(1, MAX_WEIGHT + 1):
        # the share falls as w_from grows: the best w_from for this w_to is on one side or the other of the exact one
        exact = Fraction(n_to * w_to * (100 - percent), n_from * percent)
        low = int(exact)
        for w_from in sorted({min(MAX_WEIGHT, max(1, low)), min(MAX_WEIGHT, max(1, low + 1))}):
            error = abs(Fraction(n_to * w_to, n_from * w_from + n_to * w_to) - want)
            candidate = (error, w_from + w_to, w_to, w_from)
            if best is None or candidate < best:
                best = candidate
    return best[3], best[2]


def migrate_share(n_from, n_to, weights):
    """The share of new requests (0.0-1.0) the migrate_to side gets with these weights (for reports and tests)."""
    w_from, w_to = weights
    total = n_from * w_from + n_to * w_to
    return float(n_to * w_to) / total if total else 0.0


# HAProxy's per-server counters of an answer that failed: a 5xx from the engine, a connection that failed, a response
# that broke off (show stat's hrsp_5xx, econ, eresp)
GATE_ERRORS = ("hrsp_5xx", "econ", "eresp")


def migration_gate(servers, start, end, engine="vllm", probe=None, max_errors=0, step=0):
    """The judgement of one traffic-shift step from what HAProxy counted while it was held.

    servers: the door's replicas [{name, engine}]; start, end: {server name: its show stat counters (stot, hrsp_5xx,
    econ, eresp)} at the start and the end of the gate; engine: the side the traffic moves to; probe: llm_benchmark's
    level of the probe requests sent through the door (or None); max_errors: errors the moving side may answer; step:
    the percent it was given. A counter lower at the end than at the start was reset (HAProxy reloaded): the end value
    is what the gate saw since. Returns {door_requests, requests, errors, probe_completed, probe_failed, probe_errors,
    probe_ttft_p99_ms, counters_reset, passed, reasons}."""
    out = {"door_requests": 0, "requests": 0, "errors": 0, "counters_reset": False}

    def delta(name, key):
        before = int((start.get(name) or {}).get(key) or 0)
        after = int((end.get(name) or {}).get(key) or 0)
        if after < before:
            out["counters_reset"] = True
            return after
        return after - before

    for server in servers or []:
        name = server["name"]
        if name not in (end or {}):
            raise GatewayError("migration gate: no counters of replica %s at the end of the gate" % name)
        requests = delta(name, "stot")
        out["door_requests"] += requests
        if server.get("engine") == engine:
            out["requests"] += requests
            out["errors"] += sum(delta(name, key) for key in GATE_ERRORS)
    probe = probe or {}
    out.update(probe_completed=int(probe.get("completed") or 0), probe_failed=int(probe.get("failed") or 0),
               probe_errors=list(probe.get("errors") or []), probe_ttft_p99_ms=round(float(probe.get("p99_ttft_ms") or 0), 1))
    reasons = []
    if out["errors"] > max_errors:
        reasons.append("the %s replicas answered %d of %d requests with an error (5xx, failed connection or response; "
                       "at most %d allowed: migrate_gate_max_errors)" % (engine, out["errors"], out["requests"], max_errors))
    if out["probe_failed"]:
        reasons.append("%d of %d probe requests through the door failed (%s)" % (
            out["probe_failed"], out["probe_failed"] + out["probe_completed"], "; ".join(out["probe_errors"][:3]) or "no detail"))
    if step > 0 and out["requests"] == 0:
        reasons.append("no request reached the %s replicas during the gate, so it proved nothing: raise migrate_gate_requests "
                       "or migrate_gate_seconds" % engine)
    out["passed"] = not reasons
    out["reasons"] = reasons
    return out


def _side_servers(where, engine, group, model, instances, groups, serving, gateway_host, fields):
    """The replicas of one engine behind a door: every published endpoint of ``engine`` on the hosts of ``group``
    (filtered by model and instances), each with the address the gateway host reaches it at.
    ``fields``: how this door's variables are named in the messages (the door's own, or migrate_to's).
    Returns (servers, models, keys)."""
    servers, models, keys = [], set(), set()
    for host in groups.get(group) or []:
        info = (serving or {}).get(host) or {}
        endpoints = info.get("endpoints")
        if endpoints is None:
            raise GatewayError("%s: host %s of group %s has published no endpoints (llm_endpoints): the engine stage did "
                               "not run for it in this play. Run site.yml (or add --tags %s_smoke to publish them again)"
                               % (where, host, group, engine))
        for endpoint in endpoints:
            if not isinstance(endpoint, dict) or endpoint.get("engine") != engine:
                continue
            instance = endpoint.get("instance") or endpoint.get("name")
            if instances is not None and instance not in instances:
                continue
            if model and endpoint.get("model") != model:
                continue
            scheme, url_host, url_port = _url_parts(endpoint.get("url"))
            if scheme != "http":
                raise GatewayError("%s: endpoint %s on %s has url %r; the gateway reaches engines over plain http on a "
                                   "private address or loopback" % (where, instance, host, endpoint.get("url")))
            bind = str(endpoint.get("host") if endpoint.get("host") is not None else url_host)
            port = int(endpoint.get("port") or url_port)
            if bind in WILDCARDS:
                address = "127.0.0.1" if host == gateway_host else str(info.get("address") or host)
            elif _is_loopback(bind):
                if host != gateway_host:
                    raise GatewayError(
                        "%s: %s instance %s on %s listens on loopback (%s), which the gateway on %s cannot reach. Run the "
                        "gateway on %s too (gateway_hosts), or bind the engine to a private address (%s_bind_address)"
                        % (where, engine, instance, host, bind, gateway_host, host, engine))
                address = bind
            else:
                address = bind
            address = address.strip("[]")
            name = server_name(host, instance)
            servers.append({"name": name, "host": host, "instance": instance, "address": address, "port": port,
                            "model": endpoint.get("model"), "engine": engine, "weight": 1,
                            "health_path": endpoint.get("health_path") or HEALTH[engine]})
            models.add(endpoint.get("model"))
            keys.add(endpoint.get("api_key") or None)
    if not servers:
        serving_model = " serving %s" % model if model else ""
        named = " named %s" % ", ".join(instances) if instances else ""
        raise GatewayError("%s: no %s instance in group %s%s%s has published an endpoint; check the %s of this door"
                           % (where, engine, group, serving_model, named, fields))
    if len(models) > 1 and engine in ("vllm", "tgi"):
        raise GatewayError("%s: the %s instances of group %s serve different models (%s); one door fronts replicas of ONE "
                           "model: set %s on this door, and add a door per model"
                           % (where, engine, group, ", ".join(sorted(str(m) for m in models)),
                              "migrate_to.instances" if fields.startswith("migrate_to") else "model (or instances)"))
    if len(keys) > 1:
        raise GatewayError("%s: the %s instances behind this door have different engine API keys (not shown); give them "
                           "one api_key, or put them behind separate doors" % (where, engine))
    return servers, models, keys


def servers_of(frontend, groups, serving, gateway_host):
    """The replicas behind one front door: every published endpoint of its engine on the hosts of its group (filtered by
    model and instances), each with the address the gateway host reaches it at. Returns (servers, upstream_key).

    A migrating door (migrate_to) also holds every published endpoint of migrate_to's engine on the hosts of its group
    (filtered by its instances), after the door engine's own. Each server has ``engine`` and ``weight`` (HAProxy's: 1
    on a door that is not migrating, else migration_weights of the two sides' counts and migrate_to.weight)."""
    where = "gateway_frontends (%s)" % frontend["name"]
    engine, migrate = frontend["engine"], frontend.get("migrate_to")
    servers, models, keys = _side_servers(where, engine, frontend["group"], frontend["model"], frontend["instances"],
                                          groups, serving, gateway_host, "group, model and instances")
    if migrate:
        # the two sides serve one model under names of their own (TGI's model id, vLLM's served names): checked per side
        others, _models, other_keys = _side_servers(where + ": migrate_to", migrate["engine"], migrate["group"], None,
                                                    migrate["instances"], groups, serving, gateway_host,
                                                    "migrate_to.group and migrate_to.instances")
        if other_keys != keys:
            raise GatewayError(
                "%s: the %s instances (migrate_to) and the %s instances behind this door have different engine API keys "
                "(not shown); the door sends one key upstream to both: give the %s instances the %s instances' api_key%s"
                % (where, migrate["engine"], engine, migrate["engine"], engine,
                   " (the tgi_to_vllm filter carries it over)" if engine == "tgi" else ""))
        w_from, w_to = migration_weights(len(servers), len(others), migrate["weight"])
        for server in servers:
            server["weight"] = w_from
        for server in others:
            server["weight"] = w_to
        servers = servers + others
    if len({s["health_path"] for s in servers}) > 1:
        raise GatewayError("%s: the instances behind this door have different readiness paths (%s)"
                           % (where, ", ".join(sorted({s["health_path"] for s in servers}))))
    hint = (" (beside a %s instance on the same host, give the %s instance a name and a port of its own)"
            % (engine, migrate["engine"]) if migrate else "")
    names = [s["name"] for s in servers]
    if len(set(names)) != len(names):
        raise GatewayError("%s: two instances map to one server name (%s); rename an instance%s" % (where, ", ".join(names), hint))
    if len({(s["address"], s["port"]) for s in servers}) != len(servers):
        raise GatewayError("%s: two endpoints share one address and port (%s)%s" % (
            where, ", ".join("%s:%d" % (s["address"], s["port"]) for s in servers), hint))
    return servers, next(iter(keys))


def _bind(address, port):
    address = str(address).strip("[]")
    if address in ("", "::"):
        return ":::%d v4v6" % port
    return server_address(address, port)


def _json_string(message):
    return "'{\"error\": {\"message\": \"%s\", \"type\": \"gateway\"}}'" % message


def door_routes(frontend):
    """(prefixes, paths, forbidden) a door opens and refuses. A migrating door sends a request to either engine, so it
    opens only what both allow (the intersection of their ROUTES) and refuses what either forbids (the union of their
    FORBIDDEN); extra_paths are opened on top, as on any door."""
    engines = [frontend["engine"]] + ([frontend["migrate_to"]["engine"]] if frontend.get("migrate_to") else [])
    prefixes = [p for p in ROUTES[engines[0]]["prefixes"] if all(p in ROUTES[e]["prefixes"] for e in engines)]
    paths = {p for p in ROUTES[engines[0]]["paths"] if all(p in ROUTES[e]["paths"] for e in engines)}
    forbidden = []
    for engine in engines:
        forbidden += [p for p in FORBIDDEN[engine] if p not in forbidden]
    return prefixes, sorted(paths | set(frontend["extra_paths"])), forbidden


def _frontend_lines(frontend, settings):
    name, engine = frontend["name"], frontend["engine"]
    period = settings["rate_limit_period"]
    prefixes, paths, forbidden = door_routes(frontend)
    migrate = frontend.get("migrate_to")
    lines = [
        "frontend fe_%s" % name,
        "    # %s: the %s instances of group %s%s%s" % (
            name, engine, frontend["group"], ", model %s" % frontend["model"] if frontend["model"] else "",
            "; migrating to the %s instances of group %s (%d%% of new requests)" % (
                migrate["engine"], migrate["group"], migrate["weight"]) if migrate else ""),
        "    bind %s ssl crt %s alpn h2,http/1.1" % (_bind(frontend["bind_address"], frontend["port"]), settings["tls_pem"]),
        "    option forwardfor",
        # the rules run once the request's body is in (up to a buffer): a refusal (401, 403, 429) sent while an HTTP/2
        # client is still sending its body reset the stream (curl: exit 92, no answer) about half the time in the lab
        "    option http-buffer-request",
        # the key's NAME, never a header; the path without its query string
        "    log-format \"%s\"" % LOG_FORMAT,
        "    stick-table type string len 64 size 100k expire %ds store http_req_rate(%ds)" % (2 * period, period),
        # plain paths only: no encoding, no dot segments, no doubled slash can walk around the allow-list
        "    http-request deny deny_status 400 if { path -m reg [^A-Za-z0-9/_.~:@-] } || { path_sub // /./ /../ } || "
        "{ path_end /. /.. }",
        "    http-request set-var(txn.gw_key) req.fhdr(authorization),regsub(\"^Bearer +\",\"\",i),map_str(%s) "
        "if { req.fhdr(authorization) -i -m reg '^bearer +[^ ]+$' }" % settings["keys_map"],
        "    http-request return status 401 content-type application/json hdr WWW-Authenticate Bearer string %s "
        "unless { var(txn.gw_key) -m found }" % _json_string("a valid API key is required: Authorization: Bearer <key>"),
        "    http-request set-var(txn.gw_limit) var(txn.gw_key),map_str_int(%s,%d)" % (settings["rates_map"], settings["rate_limit"]),
        "    http-request track-sc0 var(txn.gw_key)",
        "    http-request return status 429 content-type application/json hdr Retry-After %d string %s "
        "if { sc_http_req_rate(0),sub(txn.gw_limit) gt 0 }" % (period, _json_string("rate limit of this API key reached")),
        "    http-request del-header authorization",
    ]
    for prefix in prefixes:
        lines.append("    acl gw_route path_beg %s" % prefix)
    if paths:
        lines.append("    acl gw_route path %s" % " ".join(paths))
    if forbidden:
        lines.append("    acl gw_forbidden path_beg %s" % " ".join(forbidden))
    lines.append("    http-request return status 403 content-type application/json string %s if gw_forbidden || !gw_route"
                 % _json_string("this route is not open at the gateway") if forbidden else
                 "    http-request return status 403 content-type application/json string %s unless gw_route"
                 % _json_string("this route is not open at the gateway"))
    lines.append("    default_backend be_%s" % name)
    return lines


def _backend_lines(frontend, servers, upstream_key, settings):
    health = servers[0]["health_path"]
    migrating = bool(frontend.get("migrate_to"))
    lines = ["backend be_%s" % frontend["name"]]
    if migrating:
        # the weights split the new requests between the two engines. leastconn does not follow weights while the
        # replicas are idle: with equal connection counts it alternates, so a 10% step would send about 50%.
        # roundrobin sends each replica its weight's share of the requests, idle or busy.
        lines += ["    # migrating: %d%% of new requests to the %s replicas, by the weights; leastconn does not follow weights "
                  "while the replicas are idle" % (frontend["migrate_to"]["weight"], frontend["migrate_to"]["engine"]),
                  "    balance roundrobin"]
    else:
        lines.append("    balance leastconn")
    lines += [
        "    option httpchk",
        "    http-check send meth GET uri %s ver HTTP/1.1 hdr Host localhost" % health,
        "    http-check expect status 200",
        "    option redispatch",
        "    retries 2",
        # only a connection that never reached the engine is retried: a generation is not replayed
        "    retry-on conn-failure",
        # a replica that is out (down) or changing state is checked every check_fast_interval: one that comes back (a
        # restart, a rolling update) is in again about a second after it answers, one that stops answering is out as fast
        "    default-server check inter %s fastinter %s downinter %s fall 3 rise 2"
        % (settings["check_interval"], settings["check_fast_interval"], settings["check_fast_interval"]),
    ]
    if frontend["engine"] == "ollama":
        # Ollama bound to loopback answers 403 to a Host that is not local (allowedHostsMiddleware): the client's Host
        # (the gateway's public name) must not reach it
        lines.append("    http-request set-header Host localhost")
    if upstream_key:
        lines.append("    http-request set-header Authorization \"%%[be_name,map(%s)]\"" % settings["upstream_map"])
    for server in servers:
        weight = " weight %d" % server["weight"] if migrating else ""
        lines.append("    server %s %s%s" % (server["name"], server_address(server["address"], server["port"]), weight))
    return lines


def render(frontends, settings):
    """haproxy.cfg from the checked front doors [(frontend, servers, upstream_key)] and settings."""
    s = settings
    lines = ["global", "    log %s local0" % s["log_target"]]
    if s["chroot"]:
        lines.append("    chroot %s" % s["chroot"])
    if s["user"]:
        lines.append("    user %s" % s["user"])
    if s["group"]:
        lines.append("    group %s" % s["group"])
    lines += [
        # the runtime API: set server be_<door>/<server> state drain|ready|maint, show stat
        "    stats socket %s mode 660 level admin expose-fd listeners" % s["runtime_socket"],
        "    stats timeout 30s",
        "    maxconn %d" % s["maxconn"],
        # a reload lets the old process finish its streams for this long
        "    hard-stop-after %s" % s["hard_stop_after"],
        "    ssl-default-bind-ciphers %s" % TLS_CIPHERS,
        "    ssl-default-bind-ciphersuites %s" % TLS_CIPHERSUITES,
        "    ssl-default-bind-options ssl-min-ver TLSv1.2 no-tls-tickets",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        "    timeout connect %s" % s["timeout_connect"],
        # a long generation (streamed or not) may be silent for minutes: Debian's 50 s would cut it
        "    timeout client %s" % s["timeout_client"],
        "    timeout server %s" % s["timeout_server"],
        "    timeout http-request %s" % s["timeout_http_request"],
        "    timeout http-keep-alive %s" % s["timeout_http_keep_alive"],
        "    timeout queue %s" % s["timeout_queue"],
        "    timeout check %s" % s["timeout_check"],
    ]
    if s["metrics_port"]:
        lines += [
            "",
            "frontend gateway_metrics",
            "    # the gateway's own Prometheus metrics, on the private side only",
            "    bind %s" % _bind(s["metrics_address"], s["metrics_port"]),
            "    no log",
            "    http-request use-service prometheus-exporter if { path /metrics }",
        ]
        # an engine on loopback beside the gateway cannot be scraped from the monitoring host: its /metrics is relayed
        # here, at /engines/<host>-<instance>/metrics (vLLM's and TGI's /metrics are refused at the doors)
        relayed = {}
        for _frontend, servers, _key in frontends:
            for server in servers:  # per server: a migrating door holds the replicas of two engines
                if server["engine"] in METRICS_ENGINES and _is_loopback(server["address"]):
                    relayed.setdefault(server["name"], server)
        if relayed:
            lines.append("    acl gw_engine_metrics path %s" % " ".join(
                engine_metrics_path(s["host"], s["instance"]) for s in relayed.values()))
            lines.append("    http-request return status 404 unless gw_engine_metrics")
            for name, server in relayed.items():
                lines.append("    use_backend mx_%s if { path %s }" % (name, engine_metrics_path(server["host"], server["instance"])))
            for name, server in relayed.items():
                lines += ["", "backend mx_%s" % name, "    http-request set-path /metrics",
                          "    server %s %s" % (name, server_address(server["address"], server["port"]))]
        else:
            lines.append("    http-request return status 404")
    for frontend, servers, upstream_key in frontends:
        lines.append("")
        lines += _frontend_lines(frontend, s)
        lines.append("")
        lines += _backend_lines(frontend, servers, upstream_key, s)
    return "\n".join(lines) + "\n"


def build(frontends, keys, groups, serving, gateway_host, settings=None):
    """Everything the role writes: {config, rates_map, keys_map, upstream_map, doors}.

    frontends: gateway_frontends; keys: gateway_api_keys; groups: the inventory's groups; serving: {host: {endpoints:
    its llm_endpoints (None when not published), address: how the gateway host reaches it}}; gateway_host: the host
    the gateway runs on. keys_map and upstream_map hold secrets."""
    s = settings_of(settings)
    checked_keys = check_keys(keys, s["key_min_length"])
    if not isinstance(frontends, (list, tuple)) or not frontends:
        raise GatewayError("gateway_frontends is empty: give each serving group a door, e.g. "
                           "[{name: chat, engine: vllm, group: vllm_servers, port: 8443}]")
    doors, seen_names, seen_ports = [], set(), {}
    local_ports = {int(e.get("port")) for e in ((serving or {}).get(gateway_host) or {}).get("endpoints") or []
                   if isinstance(e, dict) and e.get("port")}
    reserved = {s["metrics_port"]: "gateway_metrics_port"} if s["metrics_port"] else {}
    for index, item in enumerate(frontends):
        frontend = check_frontend(item, index, groups, s)
        if frontend["name"] in seen_names:
            raise GatewayError("gateway_frontends (%s): the name is used twice" % frontend["name"])
        if frontend["port"] in seen_ports or frontend["port"] in reserved:
            raise GatewayError("gateway_frontends (%s): port %d is also used by %s" % (
                frontend["name"], frontend["port"], seen_ports.get(frontend["port"]) or reserved.get(frontend["port"])))
        if frontend["port"] in local_ports:
            raise GatewayError("gateway_frontends (%s): port %d is an engine's port on %s; give the door another port"
                               % (frontend["name"], frontend["port"], gateway_host))
        seen_names.add(frontend["name"])
        seen_ports[frontend["port"]] = "gateway_frontends (%s)" % frontend["name"]
        servers, upstream_key = servers_of(frontend, groups, serving, gateway_host)
        if upstream_key is not None and (not isinstance(upstream_key, str) or not re.match(r"^\S+$", upstream_key)):
            raise GatewayError("gateway_frontends (%s): the engines' api_key (not shown) has blanks; the gateway sends it "
                               "as one Bearer token" % frontend["name"])
        doors.append((frontend, servers, upstream_key))
    return {
        "config": render(doors, s),
        "rates_map": "".join("%s %d\n" % (k["name"], k["rate_limit"] or s["rate_limit"]) for k in checked_keys),
        "keys_map": "".join("%s %s\n" % (k["key"], k["name"]) for k in checked_keys),
        "upstream_map": "".join("be_%s Bearer %s\n" % (f["name"], key) for f, _servers, key in doors if key),
        "doors": [{"name": f["name"], "engine": f["engine"], "group": f["group"], "port": f["port"],
                   "bind_address": f["bind_address"], "model": servers[0]["model"],
                   "health_path": servers[0]["health_path"], "engine_key": key is not None,
                   "servers": [{k: v for k, v in server.items() if k != "health_path"} for server in servers],
                   "migrate_to": {"engine": f["migrate_to"]["engine"], "weight": f["migrate_to"]["weight"]}
                   if f["migrate_to"] else None}
                  for f, servers, key in doors],
    }


def door_requests(door, host, cacert=None):
    """What a client sends to one door: {url, path, body} of a short generation, and a curl line for it.

    The key is never in it: the line reads $API_KEY (double quotes, so the shell expands it). ``cacert``: a
    certificate file the client verifies the door with; True: do not verify (-k, a self-signed lab certificate)."""
    address = str(host)
    if ":" in address and not address.startswith("["):
        address = "[%s]" % address
    url = "https://%s:%s" % (address, door["port"])
    model = door.get("model") or ""
    if door["engine"] == "ollama":
        path, body = "/api/generate", {"model": model, "prompt": "Hello", "stream": False}
    else:
        path, body = "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
    tls = " -k" if cacert is True else (" --cacert %s" % shlex.quote(str(cacert)) if cacert else "")
    curl = "curl -s%s %s%s -H \"Authorization: Bearer $API_KEY\" -H 'Content-Type: application/json' -d %s" % (
        tls, url, path, shlex.quote(json.dumps(body, separators=(", ", ": "))))
    return {"url": url, "path": path, "body": body, "curl": curl}


def curl_lines(doors, host, self_signed=False):
    """Two lines per door: what it fronts, and a curl line through it with the key from $API_KEY."""
    lines = []
    for door in doors or []:
        req = door_requests(door, host, True if self_signed else None)
        migrate = door.get("migrate_to")
        lines.append("door %s (%s %s, %d replica(s)%s) %s" % (
            door["name"], door["engine"], door.get("model") or "", len(door.get("servers") or []),
            "; migrating: %d%% of new requests to %s" % (migrate["weight"], migrate["engine"]) if migrate else "",
            req["url"]))
        lines.append("    " + req["curl"])
    return "\n".join(lines) if lines else "(no doors)"
