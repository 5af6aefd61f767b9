# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of the pure ollama_env logic: validate, render, parse, override resolution, diagnosis."""
from __future__ import annotations

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _ollama_env as oe

# --------------------------------------------------------------------------- bad input table
# (options, offending option named in the message, fragment of the problem, fragment of the fix)
BAD_INPUT = [
    ({"host": "http://0.0.0.0:11434/api"}, "host", "contains a path", "remove everything"),
    ({"host": "0.0.0.0:11434/"}, "host", "contains a path", "0.0.0.0:11434"),
    ({"host": "0.0.0.0:65536"}, "host", "port 65536 is out of range", "1-65535"),
    ({"host": "0.0.0.0:0"}, "host", "port 0 is out of range", "1-65535"),
    ({"host": "0.0.0.0:http"}, "host", "is not a number", "1-65535"),
    ({"host": "::1"}, "host", "in brackets", "[::1]:11434"),
    ({"host": "[fe80::zz]:11434"}, "host", "not an IPv6 address", "IPv6"),
    ({"host": "300.1.1.1"}, "host", "not an IPv4 address", "0-255"),
    ({"host": "ftp://0.0.0.0"}, "host", "scheme 'ftp'", "http://"),
    ({"host": "bad_host!:11434"}, "host", "not a valid hostname", "letters"),
    ({"host": ":11434"}, "host", "host part is empty", "0.0.0.0"),
    ({"host": "user@0.0.0.0"}, "host", "user information", "remove"),
    ({"num_parallel": 0}, "num_parallel", "below the minimum 1", ">= 1"),
    ({"num_parallel": "0"}, "num_parallel", "below the minimum 1", ">= 1"),
    ({"num_parallel": "10:"}, "num_parallel", "not a whole number", "without units or punctuation"),
    ({"num_parallel": "ten"}, "num_parallel", "not a whole number", ">= 1"),
    ({"num_parallel": -2}, "num_parallel", "below the minimum", ">= 1"),
    ({"num_parallel": True}, "num_parallel", "not an integer", ">= 1"),
    ({"num_parallel": 2.5}, "num_parallel", "not a whole number", ">= 1"),
    ({"max_loaded_models": "1.5"}, "max_loaded_models", "not a whole number", ">= 1"),
    ({"max_queue": 0}, "max_queue", "below the minimum", ">= 1"),
    ({"context_length": "8k"}, "context_length", "not a whole number", ">= 1"),
    ({"gpu_overhead": "512MiB"}, "gpu_overhead", "not a whole number", ">= 0"),
    ({"gpu_overhead": -1}, "gpu_overhead", "below the minimum 0", ">= 0"),
    ({"kv_cache_type": "q5_1", "flash_attention": True}, "kv_cache_type", "not a K/V cache type", "f16, q8_0, q4_0"),
    ({"kv_cache_type": "q8_0"}, "kv_cache_type", "flash_attention is not set", "flash_attention: true"),
    ({"kv_cache_type": "q4_0", "flash_attention": False}, "kv_cache_type", "flash_attention is false", "kv_cache_type: f16"),
    ({"keep_alive": "5 minutes"}, "keep_alive", "neither a Go duration", "5m"),
    ({"keep_alive": "5min"}, "keep_alive", "neither a Go duration", "5m"),
    ({"keep_alive": 1.5}, "keep_alive", "fractional seconds", "1500ms"),
    ({"load_timeout": "forever"}, "load_timeout", "neither a Go duration", "-1"),
    ({"models": "models"}, "models", "not an absolute path", "/var/lib/ollama/models"),
    ({"origins": ["https://a.example,https://b.example"]}, "origins", "comma", "one origin per list item"),
    ({"origins": []}, "origins", "non-empty list", "omit the option"),
    ({"extra_env": {"ollama_debug": "1"}}, "extra_env key", "not upper case", "OLLAMA_DEBUG"),
    ({"extra_env": {"OLLAMA_NUM_PARALLEL=10": ""}}, "extra_env key", "contains '='", "OLLAMA_NUM_PARALLEL: 10"),
    ({"extra_env": {"OLLAMA_NUM_PARALLEL:10": "1"}}, "extra_env key", "not an Ollama", "^OLLAMA_[A-Z0-9_]+$"),
    ({"extra_env": {"PATH": "/bin"}}, "extra_env key", "not an Ollama or GPU-visibility", "CUDA_VISIBLE_DEVICES"),
    ({"extra_env": {"OLLAMA_HOST": "0.0.0.0"}}, "extra_env key", "has its own option", "option host"),
    ({"extra_env": {"OLLAMA_DEBUG": None}}, "extra_env.OLLAMA_DEBUG", "null", "remove the key"),
    ({"extra_env": {"OLLAMA_DEBUG": "1\n2"}}, "extra_env.OLLAMA_DEBUG", "a newline", "remove the line break"),
    ({"models": "/srv/models\nEnvironment=OLLAMA_HOST=evil"}, "models", "a newline", "remove the line break"),
    ({"host": "0.0.0.0\n"}, "host", "a newline", "remove the line break"),
    ({"origins": ["https://a\r"]}, "origins", "a newline", "remove the line break"),
    ({"keep_alive": "5m\n"}, "keep_alive", "a newline", "remove the line break"),
    ({"num_parallel": "4\n"}, "num_parallel", "a newline", "remove the line break"),
    ({"extra_env": {"OLLAMA_X": "a\tb"}}, "extra_env.OLLAMA_X", "control character", "control character"),
]


@pytest.mark.parametrize("params, option, problem, fix", BAD_INPUT, ids=[repr(b[0])[:60] for b in BAD_INPUT])
def test_bad_input_is_refused_with_option_value_and_fix(params, option, problem, fix):
    with pytest.raises(oe.InvalidOption) as info:
        oe.build_env(params)
    exc = info.value
    assert exc.option == option
    assert problem in exc.problem
    assert fix in exc.fix
    message = str(exc)
    assert message.startswith("option %s: value " % option)
    assert "Fix: " in message and "Nothing was written" in message


GOOD_INPUT = [
    ({"host": "0.0.0.0:11434"}, {"OLLAMA_HOST": "0.0.0.0:11434"}),
    ({"host": "http://ollama.example.com"}, {"OLLAMA_HOST": "http://ollama.example.com"}),
    ({"host": "https://[::]:443"}, {"OLLAMA_HOST": "https://[::]:443"}),
    ({"host": "[::1]"}, {"OLLAMA_HOST": "[::1]"}),
    ({"host": " 127.0.0.1 "}, {"OLLAMA_HOST": "127.0.0.1"}),
    ({"num_parallel": "4", "max_loaded_models": 2, "max_queue": 512, "context_length": 8192},
     {"OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_LOADED_MODELS": "2", "OLLAMA_MAX_QUEUE": "512", "OLLAMA_CONTEXT_LENGTH": "8192"}),
    ({"keep_alive": "1h30m", "load_timeout": 600}, {"OLLAMA_KEEP_ALIVE": "1h30m", "OLLAMA_LOAD_TIMEOUT": "600"}),
    ({"keep_alive": -1}, {"OLLAMA_KEEP_ALIVE": "-1"}),
    ({"keep_alive": "-1m"}, {"OLLAMA_KEEP_ALIVE": "-1m"}),
    ({"keep_alive": "0"}, {"OLLAMA_KEEP_ALIVE": "0"}),
    ({"keep_alive": "1.5h"}, {"OLLAMA_KEEP_ALIVE": "1.5h"}),
    ({"flash_attention": True, "kv_cache_type": "q4_0", "sched_spread": False},
     {"OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q4_0", "OLLAMA_SCHED_SPREAD": "0"}),
    ({"kv_cache_type": "f16"}, {"OLLAMA_KV_CACHE_TYPE": "f16"}),
    ({"gpu_overhead": 0}, {"OLLAMA_GPU_OVERHEAD": "0"}),
    ({"models": "/srv/ollama models"}, {"OLLAMA_MODELS": "/srv/ollama models"}),
    ({"origins": ["https://a.example", "*"]}, {"OLLAMA_ORIGINS": "https://a.example,*"}),
    ({"extra_env": {"OLLAMA_DEBUG": True, "CUDA_VISIBLE_DEVICES": "0,1", "OLLAMA_NOPRUNE": 1, "GPU_DEVICE_ORDINAL": ""}},
     {"OLLAMA_DEBUG": "1", "CUDA_VISIBLE_DEVICES": "0,1", "OLLAMA_NOPRUNE": "1", "GPU_DEVICE_ORDINAL": ""}),
]


@pytest.mark.parametrize("params, env", GOOD_INPUT)
def test_good_input_is_normalised(params, env):
    assert oe.build_env(params) == env


@pytest.mark.parametrize("service, expected", [("ollama", "ollama"), ("ollama.service", "ollama"), ("ollama@gpu0", "ollama@gpu0")])
def test_service_names(service, expected):
    assert oe.validate_service(service) == expected


@pytest.mark.parametrize("service", ["", "ollama.socket", "oll ama", "a/b"])
def test_bad_service_names(service):
    with pytest.raises(oe.InvalidOption) as info:
        oe.validate_service(service)
    assert info.value.option == "service"


@pytest.mark.parametrize("path", ["relative.conf", "/etc/systemd/system/ollama.service.d/env", "/etc/x/.conf"])
def test_bad_paths(path):
    with pytest.raises(oe.InvalidOption) as info:
        oe.validate_path(path)
    assert info.value.option == "path"


def test_default_path_sorts_before_99_dropins():
    path = oe.default_path("ollama")
    assert path == "/etc/systemd/system/ollama.service.d/50-ollama-env.conf"
    assert sorted(["99-local.conf", "50-ollama-env.conf", "10-vendor.conf"])[1] == "50-ollama-env.conf"


# --------------------------------------------------------------------------- quoting and round trip
TRICKY_VALUES = [
    "plain",
    "with space",
    'double "quote"',
    "single 'quote'",
    "back\\slash",
    "trailing backslash\\",
    "50% and %n %i %%",
    "$HOME ${X} `cmd`",
    "semi;colon #hash",
    "unicode \u00e9\u4e2d",
    "",
    "  leading and trailing  ",
    "\\x41 not an escape",
]


@pytest.mark.parametrize("value", TRICKY_VALUES)
def test_quoting_round_trips_through_the_systemd_parser(value):
    line = oe.quote_environment_value("OLLAMA_X", value)
    assert line.startswith('Environment="OLLAMA_X=') and line.endswith('"')
    key, rvalue = line.split("=", 1)
    assert oe.parse_environment_rvalue(rvalue) == [("OLLAMA_X", value)]


def test_percent_is_doubled_and_backslash_escaped():
    assert oe.quote_environment_value("OLLAMA_X", '50% a\\b "c"') == 'Environment="OLLAMA_X=50%% a\\\\b \\"c\\""'


def test_render_then_parse_gives_the_same_env_and_is_deterministic():
    env = oe.build_env({"host": "0.0.0.0:11434", "num_parallel": 4, "keep_alive": "5m", "flash_attention": True,
                        "kv_cache_type": "q8_0", "origins": ["https://a", "*"],
                        "extra_env": {"OLLAMA_Z": 'x "y" 100%', "CUDA_VISIBLE_DEVICES": "0"}})
    text = oe.render_dropin(env, "ollama")
    assert text == oe.render_dropin(dict(reversed(list(env.items()))), "ollama")
    assert text.splitlines()[2] == "[Service]"
    assert text.splitlines()[3] == 'Environment="OLLAMA_HOST=0.0.0.0:11434"'
    res = oe.resolve_environment([("/d/50-ollama-env.conf", text)], lambda pattern: [])
    assert dict((k, v["value"]) for k, v in res["winners"].items()) == env


# --------------------------------------------------------------------------- parsing unit files and env files
def test_parse_unit_file_sections_comments_and_continuations():
    text = "\n".join([
        "[Unit]",
        "Environment=NOT_SERVICE=1",
        "[Service]",
        "# Environment=COMMENTED=1",
        "; Environment=COMMENTED=2",
        "Environment=A=1 \\",
        "  B=2",
        "  Environment = C=3",
        "EnvironmentFile=-/etc/default/ollama",
        "[Install]",
        "WantedBy=multi-user.target",
    ])
    assert oe.parse_unit_file(text) == [("Environment", "A=1  B=2"), ("Environment", "C=3"), ("EnvironmentFile", "-/etc/default/ollama")]


def test_parse_environment_rvalue_multiple_quoted_and_reset():
    assert oe.parse_environment_rvalue('A=1 "B=two words" \'C=x y\' D=%%') == [("A", "1"), ("B", "two words"), ("C", "x y"), ("D", "%")]
    assert oe.parse_environment_rvalue("") is None
    assert oe.parse_environment_rvalue("novalue 1BAD=x") == []


def test_parse_env_file_like_systemd():
    text = "\n".join([
        "# comment",
        "; comment",
        "OLLAMA_HOST=0.0.0.0",
        "  OLLAMA_NUM_PARALLEL = 8  ",
        'OLLAMA_ORIGINS="a b" ',
        "OLLAMA_MODELS='/srv/m x'",
        'OLLAMA_DQ="q\\"uote \\n"',
        "OLLAMA_CONT=one\\",
        "two",
        "not a line",
        "export OLLAMA_EXPORTED=1",
    ])
    assert oe.parse_env_file(text) == [
        ("OLLAMA_HOST", "0.0.0.0"), ("OLLAMA_NUM_PARALLEL", "8"), ("OLLAMA_ORIGINS", "a b"),
        ("OLLAMA_MODELS", "/srv/m x"), ("OLLAMA_DQ", 'q"uote \\n'), ("OLLAMA_CONT", "onetwo")]


def test_dropin_dirs_order_name_then_prefixes_then_type():
    dirs = oe.dropin_dirs("ollama-gpu.service", ["/etc/systemd/system", "/usr/lib/systemd/system"])
    assert dirs == [
        "/etc/systemd/system/ollama-gpu.service.d", "/usr/lib/systemd/system/ollama-gpu.service.d",
        "/etc/systemd/system/ollama-.service.d", "/usr/lib/systemd/system/ollama-.service.d",
        "/etc/systemd/system/service.d", "/usr/lib/systemd/system/service.d"]
    assert oe.dropin_dirs("ollama@gpu0.service", ["/etc/systemd/system"]) == [
        "/etc/systemd/system/ollama@gpu0.service.d", "/etc/systemd/system/ollama@.service.d", "/etc/systemd/system/service.d"]


def test_order_dropins_masks_by_name_and_sorts_lexically():
    listing = [
        ("/etc/systemd/system/ollama.service.d", ["50-ollama-env.conf", "99-local.conf", "notes.txt"]),
        ("/run/systemd/system/ollama.service.d", ["99-local.conf", "60-run.conf"]),
        ("/usr/lib/systemd/system/ollama.service.d", ["10-vendor.conf"]),
    ]
    assert oe.order_dropins(listing) == [
        "/usr/lib/systemd/system/ollama.service.d/10-vendor.conf",
        "/etc/systemd/system/ollama.service.d/50-ollama-env.conf",
        "/run/systemd/system/ollama.service.d/60-run.conf",
        "/etc/systemd/system/ollama.service.d/99-local.conf",
    ]


# --------------------------------------------------------------------------- override resolution
OURS = "/etc/systemd/system/ollama.service.d/50-ollama-env.conf"
MANAGED = {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_NUM_PARALLEL": "4"}


def _files(*extra_before, **kw):
    ours = oe.render_dropin(MANAGED, "ollama")
    files = [("/usr/lib/systemd/system/ollama.service", "[Service]\nExecStart=/usr/bin/ollama serve\nEnvironment=OLLAMA_HOST=127.0.0.1\n")]
    files.extend(extra_before)
    files.append((OURS, ours))
    files.extend(kw.get("after", []))
    return files


def test_vendor_unit_setting_the_same_var_loses_to_our_dropin():
    res = oe.resolve_environment(_files(), lambda p: [])
    overrides = oe.find_overrides(res, MANAGED, OURS)
    assert overrides == [{
        "variable": "OLLAMA_HOST", "ours": "0.0.0.0:11434", "winner": OURS, "winner_value": "0.0.0.0:11434",
        "winner_how": "Environment", "set_by": ["/usr/lib/systemd/system/ollama.service"], "ours_wins": True}]


def test_later_dropin_wins_and_is_named():
    later = ("/etc/systemd/system/ollama.service.d/99-local.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    res = oe.resolve_environment(_files(after=[later]), lambda p: [])
    lost = [o for o in oe.find_overrides(res, MANAGED, OURS) if not o["ours_wins"]]
    assert [(o["variable"], o["winner"], o["winner_value"]) for o in lost] == [("OLLAMA_NUM_PARALLEL", later[0], "1")]
    assert "99-local.conf wins with '1' (we set '4')" in oe.describe_override(lost[0])


def test_earlier_dropin_loses():
    earlier = ("/etc/systemd/system/ollama.service.d/10-old.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    res = oe.resolve_environment(_files(earlier), lambda p: [])
    assert all(o["ours_wins"] for o in oe.find_overrides(res, MANAGED, OURS))


def test_environment_file_wins_even_from_an_earlier_unit_file():
    vendor = ("/usr/lib/systemd/system/ollama.service.d/10-vendor.conf", "[Service]\nEnvironmentFile=-/etc/default/ollama\n")
    env_files = {"/etc/default/ollama": "OLLAMA_HOST=127.0.0.1:9999\n"}
    res = oe.resolve_environment(_files(vendor), lambda p: [(p, env_files[p])] if p in env_files else [])
    lost = [o for o in oe.find_overrides(res, MANAGED, OURS) if not o["ours_wins"]]
    assert len(lost) == 1
    assert lost[0]["winner"] == "/etc/default/ollama" and lost[0]["winner_how"] == "EnvironmentFile"
    assert "the EnvironmentFile /etc/default/ollama wins with '127.0.0.1:9999'" in oe.describe_override(lost[0])


def test_later_environment_file_beats_earlier_environment_file():
    a = ("/etc/systemd/system/ollama.service.d/60-a.conf", "[Service]\nEnvironmentFile=/etc/a.env\nEnvironmentFile=/etc/b.env\n")
    env_files = {"/etc/a.env": "OLLAMA_NUM_PARALLEL=2\n", "/etc/b.env": "OLLAMA_NUM_PARALLEL=3\n"}
    res = oe.resolve_environment(_files(after=[a]), lambda p: [(p, env_files[p])])
    assert res["winners"]["OLLAMA_NUM_PARALLEL"]["file"] == "/etc/b.env"


def test_empty_environment_resets_earlier_assignments_and_our_values():
    reset = ("/etc/systemd/system/ollama.service.d/90-reset.conf", "[Service]\nEnvironment=\nEnvironment=OLLAMA_OTHER=1\n")
    res = oe.resolve_environment(_files(after=[reset]), lambda p: [])
    overrides = oe.find_overrides(res, MANAGED, OURS)
    assert [o["winner"] for o in overrides] == [None, None]
    assert all(not o["ours_wins"] for o in overrides)
    assert "not read by systemd" in oe.describe_override(overrides[0])


def test_empty_environment_file_resets_the_list():
    files = [("/u/ollama.service", "[Service]\nEnvironmentFile=/etc/a.env\n"),
             ("/d/20.conf", "[Service]\nEnvironmentFile=\n"), (OURS, oe.render_dropin(MANAGED))]
    res = oe.resolve_environment(files, lambda p: [(p, "OLLAMA_HOST=x\n")])
    assert all(o["ours_wins"] for o in oe.find_overrides(res, MANAGED, OURS))


def test_unset_environment_wins():
    unset = ("/etc/systemd/system/ollama.service.d/95-unset.conf", "[Service]\nUnsetEnvironment=OLLAMA_HOST\n")
    res = oe.resolve_environment(_files(after=[unset]), lambda p: [])
    lost = [o for o in oe.find_overrides(res, MANAGED, OURS) if not o["ours_wins"]]
    assert [(o["variable"], o["winner_how"]) for o in lost] == [("OLLAMA_HOST", "UnsetEnvironment")]


def test_missing_and_unreadable_environment_files_are_reported():
    files = [("/u/ollama.service", "[Service]\nEnvironmentFile=/etc/missing.env\nEnvironmentFile=-/etc/optional.env\nEnvironmentFile=/etc/denied.env\n")]

    def loader(pattern):
        if pattern == "/etc/denied.env":
            raise OSError(13, "Permission denied")
        return []
    res = oe.resolve_environment(files, loader)
    assert [u["file"] for u in res["unreadable"]] == ["/etc/missing.env", "/etc/denied.env"]
    assert "Permission denied" in res["unreadable"][1]["error"]


# --------------------------------------------------------------------------- verification
def test_compare_environment_reports_only_managed_vars():
    effective, mismatches = oe.compare_environment(MANAGED, {"OLLAMA_HOST": "0.0.0.0:11434", "SECRET": "x"})
    assert effective == {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_NUM_PARALLEL": None}
    assert mismatches == [{"variable": "OLLAMA_NUM_PARALLEL", "expected": "4", "actual": None}]


def test_diagnose_not_restarted_since_the_change():
    mismatches = [{"variable": "OLLAMA_NUM_PARALLEL", "expected": "4", "actual": "1"}]
    msg = oe.diagnose(mismatches, "ollama", dropin_mtime=2000.0, started_at=1000.0, dropin_path=OURS)
    assert "OLLAMA_NUM_PARALLEL: expected '4', running process has '1'" in msg
    assert "not restarted since the change" in msg and "restart ollama.service" in msg


def test_diagnose_changed_in_this_run_and_daemon_reload():
    mismatches = [{"variable": "OLLAMA_HOST", "expected": "a", "actual": None}]
    assert "changed by this task" in oe.diagnose(mismatches, "ollama", changed=True)
    assert "running process has it unset" in oe.diagnose(mismatches, "ollama", changed=True)
    assert "NeedDaemonReload=yes" in oe.diagnose(mismatches, "ollama", need_daemon_reload=True)


def test_diagnose_overridden_names_the_file():
    later = ("/etc/systemd/system/ollama.service.d/99-local.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    res = oe.resolve_environment(_files(after=[later]), lambda p: [])
    overrides = oe.find_overrides(res, MANAGED, OURS)
    mismatches = [{"variable": "OLLAMA_NUM_PARALLEL", "expected": "4", "actual": "1"}]
    msg = oe.diagnose(mismatches, "ollama", overrides=overrides, dropin_mtime=1.0, started_at=2.0, dropin_path=OURS)
    assert "overridden by another file" in msg and "99-local.conf" in msg
    assert "something else changes the environment" not in msg


def test_diagnose_unexplained_mismatch():
    mismatches = [{"variable": "OLLAMA_HOST", "expected": "a", "actual": "b"}]
    msg = oe.diagnose(mismatches, "ollama", dropin_mtime=1.0, started_at=2.0, dropin_path=OURS)
    assert "something else changes the environment" in msg
