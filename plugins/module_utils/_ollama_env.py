# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pure logic of the ``ollama_env`` module (private API).

Validate and normalise the options into Ollama environment variables, render them as a systemd
drop-in, parse existing unit files, drop-ins and EnvironmentFiles the way systemd does to find
which file wins for each variable, and compare the running server's environment with what we
manage. Nothing here touches AnsibleModule, the disk or a process: callers pass text and callables.

Variable names and value formats follow Ollama's ``envconfig/config.go`` and docs/faq.md.
systemd semantics follow systemd.unit(5) (drop-in order), systemd.exec(5) (Environment=,
EnvironmentFile=, UnsetEnvironment=) and systemd.syntax(7) (quoting).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from ansible_collections.onprem.llm_serving.plugins.module_utils._systemd import unit_name

# option name -> environment variable, in the order they are rendered.
OPTION_VARS = (
    ("host", "OLLAMA_HOST"),
    ("num_parallel", "OLLAMA_NUM_PARALLEL"),
    ("max_loaded_models", "OLLAMA_MAX_LOADED_MODELS"),
    ("max_queue", "OLLAMA_MAX_QUEUE"),
    ("keep_alive", "OLLAMA_KEEP_ALIVE"),
    ("flash_attention", "OLLAMA_FLASH_ATTENTION"),
    ("kv_cache_type", "OLLAMA_KV_CACHE_TYPE"),
    ("context_length", "OLLAMA_CONTEXT_LENGTH"),
    ("models", "OLLAMA_MODELS"),
    ("origins", "OLLAMA_ORIGINS"),
    ("load_timeout", "OLLAMA_LOAD_TIMEOUT"),
    ("sched_spread", "OLLAMA_SCHED_SPREAD"),
    ("gpu_overhead", "OLLAMA_GPU_OVERHEAD"),
)
VAR_OPTIONS = dict((var, opt) for opt, var in OPTION_VARS)

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
QUANTISED_KV_CACHE_TYPES = ("q8_0", "q4_0")

# Variables outside the OLLAMA_ namespace that Ollama reads to choose GPUs (envconfig).
GPU_VISIBILITY_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL",
    "GGML_VK_VISIBLE_DEVICES",
    "HSA_OVERRIDE_GFX_VERSION",
)
EXTRA_ENV_KEY_RE = re.compile(r"^OLLAMA_[A-Z0-9_]+$")

# Go's time.ParseDuration syntax (what Ollama tries first), or a plain integer = seconds.
GO_DURATION_RE = re.compile(r"^[-+]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|\u00b5s|\u03bcs|ms|s|m|h))+$")
INTEGER_RE = re.compile(r"^[-+]?[0-9]+$")
HOSTNAME_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
SERVICE_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

DEFAULT_DROPIN_NAME = "50-ollama-env.conf"
HEADER = (
    "# Managed by Ansible (onprem.llm_serving.ollama_env): local changes are overwritten.\n"
    "# Ollama reads these at start: run `systemctl daemon-reload` and restart %s after a change.\n"
)


class OllamaEnvError(Exception):
    """Base class of every error this module_util raises."""


class InvalidOption(OllamaEnvError):
    """An option value was refused. ``option``, ``value`` and ``fix`` make up the message."""

    def __init__(self, option, value, problem, fix):
        self.option = option
        self.value = value
        self.problem = problem
        self.fix = fix
        super(InvalidOption, self).__init__(
            "option %s: value %r refused: %s. Fix: %s. Nothing was written." % (option, value, problem, fix))


class OverriddenError(OllamaEnvError):
    """Another unit file or EnvironmentFile wins over our drop-in for at least one variable."""

    def __init__(self, message, overrides):
        self.overrides = overrides
        super(OverriddenError, self).__init__(message)


# --------------------------------------------------------------------------- validation

def _control_char(text):
    for char in text:
        if char == "\n" or char == "\r":
            return "a newline"
        if ord(char) < 0x20 or ord(char) == 0x7f:
            return "the control character %r" % char
    return None


def _check_text(option, value):
    """Refuse values systemd cannot carry in one Environment= line."""
    bad = _control_char(value)
    if bad:
        raise InvalidOption(option, value, "it contains %s, which a systemd Environment= line cannot carry" % bad,
                            "remove the line break or control character")
    return value


def _to_text(option, value):
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    if not isinstance(value, str):
        raise InvalidOption(option, value, "it is a %s, not a string or number" % type(value).__name__,
                            "give a string, an integer or a boolean")
    return _check_text(option, value)


def parse_count(option, value, minimum=1, maximum=None):
    """An integer >= ``minimum``; accepts an int or a string of digits (``"4"``), nothing else."""
    if isinstance(value, bool) or value is None:
        raise InvalidOption(option, value, "it is not an integer", "give a whole number >= %d" % minimum)
    if isinstance(value, str):
        _check_text(option, value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.match(r"^[0-9]+$", value.strip()):
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    else:
        raise InvalidOption(option, value, "it is not a whole number",
                            "give a whole number >= %d without units or punctuation (for example %d)" % (minimum, max(minimum, 1)))
    if number < minimum:
        raise InvalidOption(option, value, "it is below the minimum %d" % minimum, "give a whole number >= %d" % minimum)
    if maximum is not None and number > maximum:
        raise InvalidOption(option, value, "it is above the maximum %d" % maximum, "give a whole number <= %d" % maximum)
    return number


def parse_duration(option, value):
    """Ollama duration: Go duration (``5m``, ``1h30m``, ``-1m``) or integer seconds (``300``, ``-1`` = forever)."""
    if isinstance(value, bool) or value is None:
        raise InvalidOption(option, value, "it is not a duration", "give a duration such as 5m, 1h, 30s or a number of seconds")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise InvalidOption(option, value, "Ollama does not accept fractional seconds without a unit",
                            "give whole seconds or a duration with a unit, e.g. 1500ms")
    text = _check_text(option, str(value)).strip()
    if text == "0" or INTEGER_RE.match(text) or GO_DURATION_RE.match(text):
        return text
    raise InvalidOption(option, value, "it is neither a Go duration nor a whole number of seconds",
                        "write it like 5m, 90s, 1h30m, 300 (seconds) or -1 (forever); units are ns us ms s m h")


def validate_host(value):
    """``[http|https://]host[:port]`` with host an IPv4 address, a bracketed IPv6 address or a hostname."""
    option = "host"
    if not isinstance(value, str):
        raise InvalidOption(option, value, "it is not a string", "give host[:port], e.g. 0.0.0.0:11434")
    _check_text(option, value)
    text = value.strip()
    if not text:
        raise InvalidOption(option, value, "it is empty", "give host[:port], e.g. 127.0.0.1:11434, or omit the option")
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() not in ("http", "https"):
            raise InvalidOption(option, value, "scheme %r is not http or https" % scheme, "use http:// or https://, or no scheme")
    for sep, what in (("/", "a path"), ("?", "a query"), ("#", "a fragment"), ("@", "user information")):
        if sep in rest:
            raise InvalidOption(option, value, "it contains %s (%r); Ollama only takes [scheme://]host[:port]" % (what, rest[rest.index(sep):]),
                                "remove everything from %r on, e.g. %s" % (sep, rest.split(sep, 1)[0] or "0.0.0.0:11434"))
    if rest.startswith("["):
        match = re.match(r"^\[([^\]]+)\](?::([^:]*))?$", rest)
        if not match:
            raise InvalidOption(option, value, "the bracketed IPv6 address is malformed", "write it as [addr]:port, e.g. [::1]:11434")
        address, port = match.group(1), match.group(2)
        try:
            ipaddress.IPv6Address(address.split("%", 1)[0])
        except ValueError:
            raise InvalidOption(option, value, "%r is not an IPv6 address" % address, "write a valid IPv6 address in brackets, e.g. [::]:11434")
        if rest.endswith(":"):
            port = ""
    else:
        if rest.count(":") > 1:
            raise InvalidOption(option, value, "an IPv6 address must be in brackets", "write it as [%s]:11434" % rest)
        host, sep, port = rest.partition(":")
        if not sep:
            port = None
        if not host:
            raise InvalidOption(option, value, "the host part is empty", "name the address to bind, e.g. 0.0.0.0%s" % (":" + port if port else ""))
        if re.match(r"^[0-9.]+$", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise InvalidOption(option, value, "%r is not an IPv4 address" % host, "give four numbers 0-255, e.g. 0.0.0.0")
        elif len(host) > 253 or not all(HOSTNAME_LABEL_RE.match(label) for label in host.rstrip(".").split(".")):
            raise InvalidOption(option, value, "%r is not a valid hostname" % host,
                                "use letters, digits and hyphens in dot-separated labels, or an IP address")
    if port is not None:
        if not port.isdigit():
            raise InvalidOption(option, value, "port %r is not a number" % port, "give a port 1-65535, e.g. 11434")
        if not 1 <= int(port) <= 65535:
            raise InvalidOption(option, value, "port %s is out of range" % port, "give a port 1-65535, e.g. 11434")
    return text


def validate_origins(value):
    option = "origins"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise InvalidOption(option, value, "it is not a non-empty list", "give a list such as ['https://chat.example.com'], or omit the option")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise InvalidOption(option, item, "an origin must be a non-empty string", "give origins like https://chat.example.com or *")
        _check_text(option, item)
        if "," in item or re.search(r"\s", item.strip()):
            raise InvalidOption(option, item, "an origin cannot contain a comma or whitespace (Ollama splits OLLAMA_ORIGINS on commas)",
                                "give one origin per list item")
        out.append(item.strip())
    return ",".join(out)


def validate_extra_env(value):
    option = "extra_env"
    if not isinstance(value, dict):
        raise InvalidOption(option, value, "it is not a dictionary", "give a mapping of VARIABLE: value")
    env = {}
    for key, val in value.items():
        if not isinstance(key, str) or not (EXTRA_ENV_KEY_RE.match(key) or key in GPU_VISIBILITY_VARS):
            fix = "use an upper-case name matching ^OLLAMA_[A-Z0-9_]+$ or one of %s" % ", ".join(GPU_VISIBILITY_VARS)
            if isinstance(key, str) and "=" in key:
                problem = "the key contains '=' (write the value as the dictionary value, not in the key)"
                fix = "write %s: %s" % (key.split("=", 1)[0].upper(), key.split("=", 1)[1] or "VALUE")
            elif isinstance(key, str) and EXTRA_ENV_KEY_RE.match(key.upper()):
                problem = "the key is not upper case (environment variables are case sensitive; Ollama ignores %s)" % key
                fix = "write %s" % key.upper()
            else:
                problem = "the key is not an Ollama or GPU-visibility variable"
            raise InvalidOption("extra_env key", key, problem, fix)
        if key in VAR_OPTIONS:
            raise InvalidOption("extra_env key", key, "%s has its own option" % key,
                                "set the option %s instead of extra_env.%s" % (VAR_OPTIONS[key], key))
        if val is None:
            raise InvalidOption("extra_env.%s" % key, val, "the value is null", "give a value, or remove the key")
        env[key] = _to_text("extra_env.%s" % key, val)
    return env


def build_env(params):
    """Validate the module options and return the managed environment {VAR: str}.

    ``params`` holds the option values (None = not set). Raises InvalidOption for the first problem.
    """
    env = {}
    for option in ("num_parallel", "max_loaded_models", "max_queue", "context_length"):
        if params.get(option) is not None:
            env[dict(OPTION_VARS)[option]] = str(parse_count(option, params[option], minimum=1))
    if params.get("gpu_overhead") is not None:
        env["OLLAMA_GPU_OVERHEAD"] = str(parse_count("gpu_overhead", params["gpu_overhead"], minimum=0))
    for option in ("keep_alive", "load_timeout"):
        if params.get(option) is not None:
            env[dict(OPTION_VARS)[option]] = parse_duration(option, params[option])
    if params.get("host") is not None:
        env["OLLAMA_HOST"] = validate_host(params["host"])
    for option in ("flash_attention", "sched_spread"):
        if params.get(option) is not None:
            if not isinstance(params[option], bool):
                raise InvalidOption(option, params[option], "it is not a boolean", "give true or false")
            env[dict(OPTION_VARS)[option]] = "1" if params[option] else "0"
    kv = params.get("kv_cache_type")
    if kv is not None:
        if kv not in KV_CACHE_TYPES:
            raise InvalidOption("kv_cache_type", kv, "it is not a K/V cache type Ollama knows", "give one of %s" % ", ".join(KV_CACHE_TYPES))
        if kv in QUANTISED_KV_CACHE_TYPES and params.get("flash_attention") is not True:
            raise InvalidOption("kv_cache_type", kv, "a quantised K/V cache needs flash attention, and flash_attention is %s" % (
                "false" if params.get("flash_attention") is False else "not set"),
                "set flash_attention: true, or kv_cache_type: f16")
        env["OLLAMA_KV_CACHE_TYPE"] = kv
    models = params.get("models")
    if models is not None:
        if not isinstance(models, str) or not models.startswith("/"):
            raise InvalidOption("models", models, "it is not an absolute path", "give an absolute directory, e.g. /var/lib/ollama/models")
        env["OLLAMA_MODELS"] = _check_text("models", models)
    if params.get("origins") is not None:
        env["OLLAMA_ORIGINS"] = validate_origins(params["origins"])
    if params.get("extra_env"):
        env.update(validate_extra_env(params["extra_env"]))
    return env


def validate_service(service):
    """``ollama`` or ``ollama.service`` -> ``ollama``; template instances such as ``ollama@gpu0`` are fine."""
    if not isinstance(service, str) or not SERVICE_RE.match(service or ""):
        raise InvalidOption("service", service, "it is not a systemd unit name", "give the service name, e.g. ollama")
    if service.endswith(".service"):
        service = service[:-len(".service")]
    tail = service.rsplit("@", 1)[-1]
    if not service or "." in tail and tail.rsplit(".", 1)[-1] in ("socket", "timer", "target", "mount", "path", "slice", "scope"):
        raise InvalidOption("service", service, "it is not a service unit", "give the service name, e.g. ollama")
    return service


def default_path(service):
    return "/etc/systemd/system/%s.service.d/%s" % (service, DEFAULT_DROPIN_NAME)


def validate_path(path):
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidOption("path", path, "it is not an absolute path", "give e.g. /etc/systemd/system/ollama.service.d/50-ollama-env.conf")
    _check_text("path", path)
    if not path.endswith(".conf") or path.endswith("/.conf"):
        raise InvalidOption("path", path, "systemd only reads drop-ins whose name ends in .conf", "name the file like 50-ollama-env.conf")
    return posixpath.normpath(path)


# --------------------------------------------------------------------------- rendering

def quote_environment_value(key, value):
    """One ``Environment=`` line that systemd unquotes back to exactly ``key=value``.

    The whole assignment is double-quoted; backslash and double quote are backslash-escaped
    (systemd C-unescapes quoted words) and ``%`` is doubled (specifier expansion).
    """
    _check_text(key, value)
    text = "%s=%s" % (key, value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return 'Environment="%s"' % text


def render_dropin(env, service="ollama"):
    lines = [HEADER % unit_name(service), "[Service]\n"]
    order = [var for _opt, var in OPTION_VARS if var in env] + sorted(k for k in env if k not in VAR_OPTIONS)
    for key in order:
        lines.append(quote_environment_value(key, env[key]) + "\n")
    return "".join(lines)


# --------------------------------------------------------------------------- parsing (systemd semantics)

_C_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "s": " ",
              "\\": "\\", '"': '"', "'": "'"}


def split_words(rvalue):
    """Split an rvalue like systemd's extract_first_word(EXTRACT_UNQUOTE|EXTRACT_CUNESCAPE)."""
    words = []
    i, n = 0, len(rvalue)
    while i < n:
        while i < n and rvalue[i] in " \t\n\r":
            i += 1
        if i >= n:
            break
        word, quote = [], None
        while i < n:
            char = rvalue[i]
            if char == "\\" and i + 1 < n:
                nxt = rvalue[i + 1]
                if nxt == "x" and i + 3 < n and re.match(r"[0-9a-fA-F]{2}", rvalue[i + 2:i + 4]):
                    word.append(chr(int(rvalue[i + 2:i + 4], 16)))
                    i += 4
                    continue
                word.append(_C_ESCAPES.get(nxt, nxt))
                i += 2
                continue
            if quote:
                if char == quote:
                    quote = None
                else:
                    word.append(char)
            elif char in "\"'":
                quote = char
            elif char in " \t\n\r":
                break
            else:
                word.append(char)
            i += 1
        words.append("".join(word))
    return words


def expand_percent(text):
    """Resolve ``%%`` to ``%``; other specifiers are left as written (they name the unit or host)."""
    return re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else m.group(0), text)


def parse_unit_file(text):
    """Return the [Service] directives of a unit file or drop-in as an ordered list of (key, rvalue)."""
    directives = []
    section = None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith(("#", ";")):
                continue
            line = line[:-1] + " " + nxt
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        if section != "Service" or "=" not in line:
            continue
        key, rvalue = line.split("=", 1)
        directives.append((key.strip(), rvalue.strip()))
    return directives


def parse_environment_rvalue(rvalue):
    """``Environment=`` right-hand side -> list of (key, value); None means the list is reset."""
    if rvalue == "":
        return None
    pairs = []
    for word in split_words(rvalue):
        word = expand_percent(word)
        if "=" not in word:
            continue
        key, value = word.split("=", 1)
        if ENV_NAME_RE.match(key):
            pairs.append((key, value))
    return pairs


def parse_env_file(text):
    """Parse an EnvironmentFile= file like systemd's load_env_file: list of (key, value)."""
    pairs = []
    logical, buf = [], ""
    for raw in text.splitlines():
        if buf:
            buf += "\n" + raw
        else:
            buf = raw
        # an unquoted trailing backslash (or an open double quote) continues onto the next line
        if _open_continuation(buf):
            continue
        logical.append(buf)
        buf = ""
    if buf:
        logical.append(buf)
    for line in logical:
        stripped = line.lstrip()
        if not stripped or stripped[0] in "#;":
            continue
        if "=" not in stripped:
            continue
        key, raw_value = stripped.split("=", 1)
        key = key.strip()
        if not ENV_NAME_RE.match(key):
            continue
        pairs.append((key, _env_file_value(raw_value)))
    return pairs


def _open_continuation(text):
    quote, i = None, 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            if i + 1 >= len(text):
                return quote != "'"
            i += 2
            continue
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        i += 1
    return quote is not None


def _env_file_value(raw):
    """Value part of an EnvironmentFile line: quotes removed, unquoted trailing blanks dropped."""
    out, quote, keep, i = [], None, 0, 0
    raw = raw.lstrip(" \t")
    while i < len(raw):
        char = raw[i]
        if quote == "'":
            if char == "'":
                quote = None
            else:
                out.append(char)
            keep = len(out)
        elif quote == '"':
            if char == '"':
                quote = None
            elif char == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                if nxt in '"\\`$':
                    out.append(nxt)
                elif nxt != "\n":
                    out.extend(["\\", nxt])
                i += 1
            else:
                out.append(char)
            keep = len(out)
        elif char in "\"'":
            quote = char
            keep = len(out)
        elif char == "\\" and i + 1 < len(raw):
            if raw[i + 1] != "\n":
                out.append(raw[i + 1])
                keep = len(out)
            i += 1
        else:
            out.append(char)
            if char not in " \t":
                keep = len(out)
        i += 1
    return "".join(out[:keep])


def dropin_dirs(unit, unit_path):
    """Directories systemd searches for drop-ins of ``unit``, in the order it considers them.

    For ``a-b.service``: ``a-b.service.d`` in every unit directory, then the prefix ``a-.service.d``,
    then the type-wide ``service.d`` (systemd >= 246). A file name found first masks the same name later.
    """
    base, _dot, suffix = unit.rpartition(".")
    names = [unit]
    stem = base.split("@", 1)[0] if "@" in base else base
    if "@" in base:
        names.append(stem + "@." + suffix)
    parts = stem.split("-")
    for count in range(len(parts) - 1, 0, -1):
        names.append("-".join(parts[:count]) + "-." + suffix)
    names.append(suffix)
    return [posixpath.join(directory, name + ".d") for name in names for directory in unit_path]


def order_dropins(listing):
    """``listing``: [(dir, [file names])] in search order -> drop-in paths in the order systemd applies them.

    Only ``*.conf`` files count; a name seen in an earlier directory masks the same name later;
    the result is sorted by file name (lexical), regardless of directory.
    """
    chosen = {}
    for directory, names in listing:
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = posixpath.join(directory, name)
    return [chosen[name] for name in sorted(chosen)]


def resolve_environment(unit_files, load_env_files):
    """Work out, per variable, which source sets the value the service will get.

    ``unit_files``: [(path, text)] in application order (fragment first, then drop-ins in order).
    ``load_env_files``: callable(pattern) -> [(path, text)] (empty when missing); may raise OSError.
    Returns {"assignments": [...], "winners": {var: source}, "unreadable": [...]}; a source is a dict
    with variable, value, file (where the value is), unit_file (which unit file said so) and how.
    """
    env_list = []      # Environment= assignments, in order
    env_files = []     # (pattern, optional, unit_file)
    unset = []         # (entry, unit_file)
    for path, text in unit_files:
        for key, rvalue in parse_unit_file(text):
            if key == "Environment":
                pairs = parse_environment_rvalue(rvalue)
                if pairs is None:
                    env_list = []
                    continue
                for var, value in pairs:
                    env_list.append({"variable": var, "value": value, "file": path, "unit_file": path, "how": "Environment"})
            elif key == "EnvironmentFile":
                if rvalue == "":
                    env_files = []
                    continue
                optional = rvalue.startswith("-")
                env_files.append((expand_percent(rvalue.lstrip("-")), optional, path))
            elif key == "UnsetEnvironment":
                if rvalue == "":
                    unset = []
                    continue
                unset.extend((word, path) for word in split_words(rvalue))
    assignments = list(env_list)
    unreadable = []
    file_list = []
    for pattern, optional, unit_path in env_files:
        try:
            found = load_env_files(pattern)
        except (IOError, OSError) as exc:
            unreadable.append({"file": pattern, "unit_file": unit_path, "error": str(exc)})
            continue
        if not found and not optional:
            unreadable.append({"file": pattern, "unit_file": unit_path, "error": "missing (systemd will refuse to start the service)"})
        for env_path, text in found:
            for var, value in parse_env_file(text):
                entry = {"variable": var, "value": value, "file": env_path, "unit_file": unit_path, "how": "EnvironmentFile"}
                file_list.append(entry)
    assignments.extend(file_list)
    winners = {}
    # Environment= in order, then EnvironmentFile= contents in order: later wins (systemd.exec(5)).
    for entry in assignments:
        winners[entry["variable"]] = entry
    for word, unit_path in unset:
        var, sep, value = word.partition("=")
        current = winners.get(var)
        if current is not None and (not sep or current["value"] == value):
            winners[var] = {"variable": var, "value": None, "file": unit_path, "unit_file": unit_path, "how": "UnsetEnvironment"}
    return {"assignments": assignments, "winners": winners, "unreadable": unreadable}


def find_overrides(resolution, managed, our_path):
    """For each managed variable that another file also sets (or that we do not win), say who wins.

    Returns a list of {variable, ours, winner, winner_value, winner_how, set_by, ours_wins}.
    """
    overrides = []
    for var in sorted(managed):
        others = [a for a in resolution["assignments"] if a["variable"] == var and a["file"] != our_path]
        winner = resolution["winners"].get(var)
        ours_wins = winner is not None and winner["file"] == our_path and winner["how"] == "Environment"
        if not others and ours_wins:
            continue
        overrides.append({
            "variable": var,
            "ours": managed[var],
            "winner": winner["file"] if winner else None,
            "winner_value": winner["value"] if winner else None,
            "winner_how": winner["how"] if winner else None,
            "set_by": sorted(set(a["file"] for a in others)),
            "ours_wins": ours_wins,
        })
    return overrides


def describe_override(item):
    if item["winner"] is None:
        return "%s: our drop-in is not read by systemd for this service" % item["variable"]
    how = {"Environment": "an Environment= line in", "EnvironmentFile": "the EnvironmentFile",
           "UnsetEnvironment": "UnsetEnvironment= in"}.get(item["winner_how"], item["winner_how"])
    return "%s: %s %s wins with %r (we set %r)" % (item["variable"], how, item["winner"], item["winner_value"], item["ours"])


# --------------------------------------------------------------------------- verification

def compare_environment(managed, actual):
    """Return (effective, mismatches) for the managed variables against the process environment."""
    effective = dict((var, actual.get(var)) for var in sorted(managed))
    mismatches = [{"variable": var, "expected": managed[var], "actual": actual.get(var)}
                  for var in sorted(managed) if actual.get(var) != managed[var]]
    return effective, mismatches


def diagnose(mismatches, service, overrides=(), changed=False, need_daemon_reload=False,
             dropin_mtime=None, started_at=None, dropin_path=None):
    """Turn mismatches into one message that says why and what to do."""
    unit = unit_name(service)
    lost = dict((o["variable"], o) for o in overrides if not o["ours_wins"])
    lines = ["verify: the running %s does not have the managed environment:" % unit]
    for item in mismatches:
        lines.append("  %s: expected %r, running process has %s" % (
            item["variable"], item["expected"], "it unset" if item["actual"] is None else repr(item["actual"])))
    reasons = []
    overridden = [v for v in (m["variable"] for m in mismatches) if v in lost]
    if overridden:
        reasons.append("overridden by another file: " + "; ".join(describe_override(lost[v]) for v in overridden)
                       + ". Fix: remove the variable from that file, or give our drop-in a later name (path)")
    not_restarted = False
    if changed:
        reasons.append("the drop-in was changed by this task: run `systemctl daemon-reload` and restart %s, then verify" % unit)
        not_restarted = True
    elif need_daemon_reload:
        reasons.append("systemd has not reloaded the changed unit files (NeedDaemonReload=yes): "
                       "run `systemctl daemon-reload` and restart %s" % unit)
        not_restarted = True
    elif dropin_mtime is not None and started_at is not None and started_at < dropin_mtime:
        reasons.append("not restarted since the change: the process started at %.0f, before %s was last written at %.0f; "
                       "restart %s" % (started_at, dropin_path, dropin_mtime, unit))
        not_restarted = True
    if not reasons or (not not_restarted and len(overridden) < len(mismatches)):
        reasons.append("the service was restarted after the change and no unit file overrides these variables: "
                       "something else changes the environment (an ExecStart wrapper such as `env -i`, or PassEnvironment=)")
    return "\n".join(lines + ["cause: " + r for r in reasons])
