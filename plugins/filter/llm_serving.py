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
- no_secrets: a copy of a value without the keys that may hold a secret (what a loop may show)
- engine_args: an engine's extra_args, refused when they set what a role variable owns (--host, --port, --api-key, ...)
- engine_env: an engine's environment, refused when it sets what a role variable owns (VLLM_API_KEY, API_KEY, PORT, ...)
- packages_missing: the OS packages (of those host_facts gather=packages read) an install task would still act on
"""

from __future__ import annotations


import re
import shlex

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.module_utils import _host_facts

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
            auth = " -H \"Authorization: Bearer $API_KEY\"" if e.get("api_key") else ""
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


SECRET_KEYS = ("api_key",)


def no_secrets(value, keys=SECRET_KEYS, mask=None):
    """A copy of ``value`` (dicts and lists, nested) without the keys in ``keys``.

    A loop over instance dicts shows each item with ``-v`` (``loop_control.label`` hides it only in the one-line
    summary), so a loop that does not need the secret loops over this copy and keeps its normal output.
    With ``mask``, a key that holds a value keeps it replaced by ``mask`` (so a later step still knows one is set)."""
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k not in keys:
                out[k] = no_secrets(v, keys, mask)
            elif mask is not None:
                out[k] = mask if v else v
        return out
    if isinstance(value, (list, tuple)):
        return [no_secrets(v, keys, mask) for v in value]
    return value


# Options each engine role sets itself, and the variable that sets them. The engines' parsers read them in more forms than
# the plain one: vLLM's argparse takes --opt=value, unambiguous abbreviations (allow_abbrev) and --opt_name with
# underscores; TGI's launcher (clap) takes --opt=value and short forms (-p 8080, -p8080).
RESERVED_ARGS = {
    "vllm": {
        "--host": "bind_address (vllm_bind_address)",
        "--port": "port (vllm_port)",
        "--api-key": "api_key (vllm_api_key)",
        "--shutdown-timeout": "shutdown_timeout (vllm_shutdown_timeout)",
        "--model": "model",
    },
    "tgi": {
        "--hostname": "bind_address (tgi_bind_address; the container listens on its own address)",
        "--port": "port (tgi_port; the container listens on 80)",
        "-p": "port (tgi_port; the container listens on 80)",
        "--api-key": "api_key (tgi_api_key)",
        "--graceful-termination-timeout": "graceful_termination_timeout (tgi_graceful_termination_timeout)",
        "-g": "graceful_termination_timeout (tgi_graceful_termination_timeout)",
        "--model-id": "model_id",
    },
}
# Environment variables the engines read for the same settings (TGI's launcher takes each long option from the environment too).
RESERVED_ENV = {
    "vllm": {"VLLM_API_KEY": "api_key (vllm_api_key)", "VLLM_PORT": "port (vllm_port)"},
    "tgi": {"API_KEY": "api_key (tgi_api_key)", "PORT": "port (tgi_port)", "HOSTNAME": "bind_address (tgi_bind_address)",
            "GRACEFUL_TERMINATION_TIMEOUT": "graceful_termination_timeout (tgi_graceful_termination_timeout)",
            "MODEL_ID": "model_id"},
    "ollama": {"OLLAMA_HOST": "bind_address and port (ollama_bind_address, ollama_port, or the instance's)",
               "OLLAMA_MODELS": "models_dir (ollama_models_dir, or the instance's)"},
}


def _reserved_option(arg, engine):
    """The reserved option ``arg`` sets (in any form the engine's parser reads), or None."""
    text = str(arg)
    reserved = RESERVED_ARGS[engine]
    if text.startswith("--"):
        name = text.split("=", 1)[0]
        if engine == "vllm":
            name = name.replace("_", "-")
        for option in reserved:
            if not option.startswith("--"):
                continue
            # vLLM's argparse resolves an unambiguous prefix (--api-k, --hos) to the full option
            if name == option or (engine == "vllm" and len(name) >= 4 and option.startswith(name)):
                return option
        return None
    if text.startswith("-") and len(text) >= 2:
        short = text[:2]
        return short if short in reserved else None
    return None


def engine_args(args, engine, where="extra_args"):
    """``args`` unchanged when none of them sets an option the role owns; else refused, naming the variable to use.

    The offending argument is named by its option only: ``--api-key=...`` carries the secret itself."""
    if engine not in RESERVED_ARGS:
        raise AnsibleFilterError("engine_args: engine %r is not one of %s" % (engine, ", ".join(sorted(RESERVED_ARGS))))
    if args is None:
        return []
    if isinstance(args, (str, bytes)) or not isinstance(args, (list, tuple)):
        raise AnsibleFilterError("%s must be a list of arguments, one per item (got %s)" % (where, type(args).__name__))
    for arg in args:
        option = _reserved_option(arg, engine)
        if option:
            raise AnsibleFilterError(
                "%s sets %s, which the role sets itself from the instance's %s. Remove it from %s and set that variable instead"
                " (value not shown: it may be a secret)" % (where, option, RESERVED_ARGS[engine][option], where))
    return list(args)


def engine_env(env, engine, where="env"):
    """``env`` unchanged when it sets none of the variables the role owns; else refused, naming the variable to use."""
    if engine not in RESERVED_ENV:
        raise AnsibleFilterError("engine_env: engine %r is not one of %s" % (engine, ", ".join(sorted(RESERVED_ENV))))
    env = env or {}
    if not isinstance(env, dict):
        raise AnsibleFilterError("%s must be a dict of environment variables, got %s" % (where, type(env).__name__))
    for key in env:
        if str(key) in RESERVED_ENV[engine]:
            raise AnsibleFilterError(
                "%s sets %s, which the role writes itself from the instance's %s. Remove it from %s and set that variable instead"
                " (value not shown: it may be a secret)" % (where, key, RESERVED_ENV[engine][str(key)], where))
    return env


def packages_missing(found, names, version=""):
    """Of ``names``, those an install task would still act on: not installed, or (``version`` set, the pin as the role
    gives its package manager) at another version. ``found`` is host_facts' ``packages`` (gather=packages). A role skips
    its apt or dnf task when this is empty, the package manager's lists unloaded; anything unsure counts as missing."""
    if not isinstance(found, dict):
        raise AnsibleFilterError("packages_missing needs host_facts' packages (a dict), got %s" % type(found).__name__)
    if isinstance(names, str) or not isinstance(names, (list, tuple)):
        raise AnsibleFilterError("packages_missing needs a list of package names, got %r" % (names,))
    return _host_facts.packages_missing(found, [str(name) for name in names], str(version or ""))


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
            "no_secrets": no_secrets,
            "engine_args": engine_args,
            "engine_env": engine_env,
            "packages_missing": packages_missing,
        }
