# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters shared by the engine roles and the smoke/benchmark roles.

The endpoint contract (what an engine role publishes in the host fact ``llm_endpoints``) is declared in
``roles/smoke/meta/argument_specs.yml`` (option ``smoke_endpoints``); ``endpoints`` below applies its
defaults and checks it, and a unit test keeps the two in step.

- endpoints: normalise a list of endpoint dicts to the contract (defaults applied, bad entries refused)
- replace_endpoints: llm_endpoints with one engine role's published entries replaced
- endpoint_url: http://ADDRESS:PORT for a bind address and port (wildcard addresses -> loopback)
- smoke_table: one text table of llm_endpoint results
- curl_lines: a curl line per endpoint result, API keys read from $API_KEY
- env_file: the lines of an environment file that systemd and docker read the same way
- systemd_verify_command: a template ``validate:`` command running systemd-analyze verify on the staged unit
"""

from __future__ import annotations


import re
import shlex

from ansible.errors import AnsibleFilterError

ENGINES = ("vllm", "tgi", "ollama")
# engine -> (protocol llm_endpoint speaks to it in the smoke test, readiness path, metrics path)
ENGINE_DEFAULTS = {
    "vllm": ("openai", "/health", "/metrics"),
    "tgi": ("tgi", "/health", "/metrics"),
    "ollama": ("ollama", "/api/version", None),
}
PROTOCOLS = ("auto", "openai", "tgi", "ollama")
# The contract's optional fields and their defaults (roles/smoke/meta/argument_specs.yml says the same).
CONTRACT_DEFAULTS = {
    "min_tokens": 8,
    "max_tokens": 32,
    "ignore_eos": False,
    "ready_timeout": 600,
    "validate_certs": True,
    "ca_path": None,
    "api_key": None,
    "unit": None,
    "instance": None,
    "model": None,
}
CONTRACT_KEYS = set(CONTRACT_DEFAULTS) | {
    "name", "engine", "protocol", "url", "health_path", "metrics_path", "host", "port", "vocab_size"}
WILDCARDS = ("0.0.0.0", "::", "[::]", "")
TABLE_FORMAT = "%-14s %-16s %-7s %-22s %-18s %7s %8s %7s %8s  %s"


def endpoint_url(bind_address, port, scheme="http"):
    """Where a client on the host reaches an engine bound to ``bind_address``: wildcards mean loopback."""
    host = "127.0.0.1" if str(bind_address) in WILDCARDS else str(bind_address)
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host
    return "%s://%s:%s" % (scheme, host, port)


def endpoints(items, where="llm_endpoints"):
    """Every endpoint dict with the contract's defaults applied; a bad entry fails naming it and the fix."""
    if items is None:
        return []
    if not isinstance(items, (list, tuple)):
        raise AnsibleFilterError("%s must be a list of endpoint dicts, got %s" % (where, type(items).__name__))
    out = []
    for index, item in enumerate(items):
        label = "%s[%d]" % (where, index)
        if not isinstance(item, dict):
            raise AnsibleFilterError("%s must be a dict (name, engine, url, ...), got %r" % (label, item))
        label = "%s (%s)" % (label, item.get("name", "no name"))
        missing = [k for k in ("name", "url") if not item.get(k)]
        if missing:
            raise AnsibleFilterError("%s: %s missing. Each endpoint needs name and url (http://host:port, without /v1)"
                                     % (label, ", ".join(missing)))
        unknown = sorted(set(item) - CONTRACT_KEYS)
        if unknown:
            raise AnsibleFilterError("%s: unknown key(s) %s; the contract has %s" % (
                label, ", ".join(unknown), ", ".join(sorted(CONTRACT_KEYS))))
        if not re.match(r"^https?://[^/\s]+$", str(item["url"])):
            raise AnsibleFilterError("%s: url %r is not http(s)://host:port (no path: the API paths are added)"
                                     % (label, item["url"]))
        engine = item.get("engine", "auto")
        if engine not in ENGINES and engine not in PROTOCOLS:
            raise AnsibleFilterError("%s: engine %r is not one of %s" % (label, engine, ", ".join(ENGINES + PROTOCOLS)))
        protocol, health, metrics = ENGINE_DEFAULTS.get(engine, (engine, None, None))
        norm = dict(CONTRACT_DEFAULTS)
        norm.update({"engine": engine, "protocol": protocol, "health_path": health, "metrics_path": metrics})
        norm.update(item)
        if norm["protocol"] not in PROTOCOLS:
            raise AnsibleFilterError("%s: protocol %r is not one of %s" % (label, norm["protocol"], ", ".join(PROTOCOLS)))
        for key in ("min_tokens", "max_tokens", "ready_timeout"):
            try:
                norm[key] = int(norm[key])
            except (TypeError, ValueError):
                raise AnsibleFilterError("%s: %s must be a whole number, got %r" % (label, key, norm[key]))
        if not 1 <= norm["min_tokens"] <= norm["max_tokens"]:
            raise AnsibleFilterError("%s: need 1 <= min_tokens (%s) <= max_tokens (%s)" % (label, norm["min_tokens"], norm["max_tokens"]))
        out.append(norm)
    return out


def replace_endpoints(current, engine, new):
    """``current`` without the endpoints an engine role of ``engine`` published (they carry ``instance``), plus ``new``.

    Endpoints the inventory lists (no ``instance``) are kept."""
    kept = [e for e in (current or []) if not (isinstance(e, dict) and e.get("engine") == engine and e.get("instance"))]
    return kept + list(new or [])


def _value(result, key, default="-"):
    value = result.get(key)
    return default if value is None else value


def smoke_table(results_by_host):
    """One table: ``results_by_host`` is a list of [host, [llm_endpoint results with .item]]."""
    rows = [TABLE_FORMAT % ("host", "endpoint", "engine", "version", "model", "ready_s", "ttft_ms", "itl_ms", "tok/s", "result")]
    for host, results in results_by_host:
        for r in results or []:
            if r.get("skipped"):
                continue
            item = r.get("item") or {}
            ok = "checks" in r and not r.get("failed")
            msg = str(r.get("msg") or "")
            rows.append(TABLE_FORMAT % (
                host, item.get("name", "?"), r.get("engine") or item.get("engine", "?"), _value(r, "engine_version"),
                r.get("model") or item.get("model") or "-", _value(r, "time_to_ready_s"), _value(r, "ttft_ms"),
                _value(r, "itl_ms_mean"), _value(r, "tokens_per_s"),
                "OK" if ok else "FAIL: " + (msg[:297] + "..." if len(msg) > 300 else msg)))
    if len(rows) == 1:
        rows.append("(no host defines llm_endpoints)")
    return "\n".join(rows)


def curl_lines(results_by_host, curl_hosts=None):
    """Two lines per endpoint: what it is, and a curl command to try it. Keys are never printed: $API_KEY.

    ``curl_hosts``: {host: address} to show instead of loopback (engines opened beyond loopback)."""
    curl_hosts = curl_hosts or {}
    lines = []
    for host, results in results_by_host:
        for r in results or []:
            if r.get("skipped"):
                continue
            e = r.get("item") or {}
            url = str(e.get("url", ""))
            if curl_hosts.get(host):
                url = re.sub(r"^(https?://)(127\.0\.0\.1|localhost|\[::1\])", r"\g<1>" + str(curl_hosts[host]), url)
            loopback = re.search(r"//(127\.0\.0\.1|localhost|\[::1\])", url) is not None
            where = "on %s: " % host if loopback else ""
            auth = " -H 'Authorization: Bearer $API_KEY'" if e.get("api_key") else ""
            model = r.get("model") or e.get("model") or ""
            engine = e.get("engine", "")
            if engine == "ollama":
                body = {"model": model, "prompt": "Hello", "stream": False}
                curl = "curl -s %s/api/generate -d %s" % (url, shlex.quote(_json(body)))
            elif engine == "tgi":
                body = {"inputs": "Hello", "parameters": {"max_new_tokens": 16}}
                curl = "curl -s %s/generate -H 'Content-Type: application/json'%s -d %s" % (url, auth, shlex.quote(_json(body)))
            else:
                body = {"model": model, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}
                curl = "curl -s %s/v1/chat/completions -H 'Content-Type: application/json'%s -d %s" % (url, auth, shlex.quote(_json(body)))
            lines.append("%s %s (%s) %s" % (host, e.get("name", "?"), engine or "?", url))
            lines.append("    " + where + curl)
    return "\n".join(lines) if lines else "(no endpoints)"


def _json(value):
    import json
    return json.dumps(value, separators=(", ", ": "))


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# systemd's EnvironmentFile= strips quotes and unescapes backslashes; docker's --env-file takes the line as it
# is. A value both read alike has none of these characters and no surrounding blanks.
ENV_UNSAFE = re.compile(r"[\"'\\\n\r\x00`$]")


def env_file(env, where="env"):
    """The ``KEY=value`` lines of an environment file that systemd and docker read the same way.

    Refuses (naming the key, never the value: it may be a secret) names that are not shell names and values
    with a newline, quote, backslash, ``$`` or backquote, or blanks at either end."""
    if not isinstance(env, dict):
        raise AnsibleFilterError("%s must be a dict of environment variables, got %s" % (where, type(env).__name__))
    lines = []
    for key in env:
        value = env[key]
        if not ENV_NAME.match(str(key)):
            raise AnsibleFilterError("%s: %r is not a valid environment variable name (letters, digits, _; not starting "
                                     "with a digit)" % (where, key))
        if isinstance(value, bool):
            value = "1" if value else "0"
        value = "" if value is None else str(value)
        if ENV_UNSAFE.search(value) or value != value.strip():
            raise AnsibleFilterError(
                "%s: the value of %s has a newline, quote, backslash, $, backquote or blanks at an end; systemd and docker "
                "would read it differently (value not shown: it may be a secret). Use a value without them" % (where, key))
        lines.append("%s=%s" % (key, value))
    return "\n".join(lines) + ("\n" if lines else "")


def systemd_verify_command(unit):
    """``validate:`` for a template writing ``unit``: systemd-analyze verify wants the unit's own file name,
    so the staged file (%s) is copied under that name into a private directory first."""
    if not re.match(r"^[A-Za-z0-9:_.@-]+\.(service|timer|socket|path)$", str(unit)):
        raise AnsibleFilterError("systemd_verify_command: %r is not a unit file name" % (unit,))
    script = ('d=$(mktemp -d) && cp "$1" "$d/%s" && systemd-analyze verify "$d/%s"; rc=$?; rm -rf "$d"; exit $rc'
              % (unit, unit))
    return "/bin/sh -c %s verify %%s" % shlex.quote(script)


class FilterModule(object):
    def filters(self):
        return {
            "endpoints": endpoints,
            "endpoint_url": endpoint_url,
            "replace_endpoints": replace_endpoints,
            "smoke_table": smoke_table,
            "curl_lines": curl_lines,
            "env_file": env_file,
            "systemd_verify_command": systemd_verify_command,
        }
