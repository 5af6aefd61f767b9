# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The shared filters (plugins/filter/llm_serving.py): the endpoint contract, the smoke table and curl lines, env files, unit verification."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys

import pytest
import yaml

from ansible.errors import AnsibleFilterError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(ROOT, "tests"))
# role_templates installs the collection finder, so the collection's filter plugin imports
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter import llm_serving as f  # noqa: E402  pylint: disable=wrong-import-position


def contract_spec():
    with open(os.path.join(ROOT, "roles", "smoke", "meta", "argument_specs.yml")) as fh:
        return yaml.safe_load(fh)["argument_specs"]["main"]["options"]["smoke_endpoints"]["options"]


def test_filter_defaults_and_keys_are_the_specs():
    spec = contract_spec()
    assert set(spec) == f.CONTRACT_KEYS
    for key, default in f.CONTRACT_DEFAULTS.items():
        assert spec[key].get("default") == default, key
    assert sorted(k for k, v in spec.items() if v.get("required")) == ["name", "url"]
    assert set(spec["engine"]["choices"]) == set(f.ENGINES) | {"auto", "openai"}
    assert set(spec["protocol"]["choices"]) == set(f.PROTOCOLS)
    assert spec["api_key"].get("no_log") is True


@pytest.mark.parametrize("engine, protocol, health, metrics", [
    ("vllm", "openai", "/health", "/metrics"), ("tgi", "tgi", "/health", "/metrics"), ("ollama", "ollama", "/api/version", None),
    ("auto", "auto", None, None), ("openai", "openai", None, None)])
def test_endpoints_apply_the_contract(engine, protocol, health, metrics):
    (out,) = f.endpoints([{"name": "a", "engine": engine, "url": "http://127.0.0.1:8000"}])
    assert (out["protocol"], out["health_path"], out["metrics_path"]) == (protocol, health, metrics)
    assert (out["min_tokens"], out["max_tokens"], out["ready_timeout"], out["ignore_eos"]) == (8, 32, 600, False)


def test_endpoints_keep_what_is_set():
    (out,) = f.endpoints([{"name": "a", "engine": "vllm", "url": "https://h:1", "min_tokens": "4", "api_key": "k"}])
    assert out["min_tokens"] == 4 and out["api_key"] == "k"


@pytest.mark.parametrize("items, message", [
    ({"name": "a"}, "must be a list"),
    ([["x"]], "must be a dict"),
    ([{"name": "a"}], "url missing"),
    ([{"name": "a", "url": "http://h:1", "colour": 1}], "unknown key(s) colour"),
    ([{"name": "a", "url": "http://h:1/v1"}], "is not http(s)://host:port"),
    ([{"name": "a", "url": "http://h:1", "engine": "llamacpp"}], "engine 'llamacpp' is not one of"),
    ([{"name": "a", "url": "http://h:1", "min_tokens": 40}], "min_tokens (40) <= max_tokens (32)"),
    ([{"name": "a", "url": "http://h:1", "ready_timeout": "soon"}], "ready_timeout must be a whole number"),
])
def test_endpoints_refuse_with_the_fix(items, message):
    with pytest.raises(AnsibleFilterError) as err:
        f.endpoints(items, "llm_endpoints")
    assert message in str(err.value)


@pytest.mark.parametrize("bind, port, url", [
    ("0.0.0.0", 8000, "http://127.0.0.1:8000"), ("::", 1, "http://127.0.0.1:1"), ("10.0.0.5", 80, "http://10.0.0.5:80"),
    ("fd00::1", 8000, "http://[fd00::1]:8000"), ("127.0.0.1", "8001", "http://127.0.0.1:8001")])
def test_endpoint_url(bind, port, url):
    assert f.endpoint_url(bind, port) == url


def test_replace_endpoints_keeps_inventory_ones_and_other_engines():
    current = [{"name": "a", "engine": "vllm", "instance": "a"}, {"name": "b", "engine": "vllm"},
               {"name": "c", "engine": "ollama", "instance": "c"}]
    out = f.replace_endpoints(current, "vllm", [{"name": "d", "engine": "vllm", "instance": "d"}])
    assert [e["name"] for e in out] == ["b", "c", "d"]


RESULTS = [["h1", [{"item": {"name": "tiny", "engine": "vllm", "url": "http://127.0.0.1:8000", "api_key": "SECRET"},
                    "checks": ["x"], "engine": "vllm", "engine_version": "0.32.0", "model": "tiny", "time_to_ready_s": 1.5,
                    "ttft_ms": 20.1, "itl_ms_mean": 3.2, "tokens_per_s": 300.0}]],
           ["h2", [{"item": {"name": "ol", "engine": "ollama", "url": "http://127.0.0.1:11434"}, "msg": "boom " * 100},
                   {"skipped": True, "item": {"name": "skipped"}}]]]


def test_smoke_table():
    lines = f.smoke_table(RESULTS).splitlines()
    assert lines[0].split() == ["host", "endpoint", "engine", "version", "model", "ready_s", "ttft_ms", "itl_ms", "tok/s", "result"]
    assert lines[1].split()[:5] == ["h1", "tiny", "vllm", "0.32.0", "tiny"] and lines[1].endswith("OK")
    assert "FAIL: boom" in lines[2] and lines[2].endswith("...") and len(lines) == 3
    assert "(no host defines llm_endpoints)" in f.smoke_table([["h", []]])


def test_curl_lines_never_print_the_key_and_use_the_curl_host():
    text = f.curl_lines(RESULTS, {"h1": "172.17.0.2"})
    assert "SECRET" not in text
    first, curl, second, curl2 = text.splitlines()
    assert first == "h1 tiny (vllm) http://172.17.0.2:8000"
    argv = shlex.split(curl)
    assert argv[:3] == ["curl", "-s", "http://172.17.0.2:8000/v1/chat/completions"]
    assert "Authorization: Bearer $API_KEY" in argv
    # pasted into a shell, the line sends the key from $API_KEY (double quotes: the shell expands it)
    shell = subprocess.run(["bash", "-c", "curl() { printf '%s\\n' \"$@\"; }; " + curl], env={"API_KEY": "k-from-env", "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert "Authorization: Bearer k-from-env" in shell and shell[1] == "http://172.17.0.2:8000/v1/chat/completions"
    assert curl2.strip().startswith("on h2: curl -s http://127.0.0.1:11434/api/generate")
    assert f.curl_lines([]) == "(no endpoints)"


def test_env_file_renders_and_refuses_without_showing_the_value():
    assert f.env_file({"A": "1", "B_2": True, "C": None, "D": "x=y:z/p"}) == "A=1\nB_2=1\nC=\nD=x=y:z/p\n"
    for bad in ("a\nb", 'say "hi"', "back\\slash", "$HOME", " lead", "trail "):
        with pytest.raises(AnsibleFilterError) as err:
            f.env_file({"VLLM_API_KEY": bad}, "vllm_instances[x].env")
        assert "VLLM_API_KEY" in str(err.value) and "vllm_instances[x].env" in str(err.value)
        assert bad.strip() not in str(err.value)
    with pytest.raises(AnsibleFilterError, match="not a valid environment variable name"):
        f.env_file({"1BAD": "x"})


def test_systemd_verify_command_runs_what_it_says(tmp_path):
    cmd = f.systemd_verify_command("vllm-a.service")
    argv = shlex.split(cmd.replace("%s", str(tmp_path / "staged")))
    assert argv[:2] == ["/bin/sh", "-c"] and "systemd-analyze verify" in argv[2]
    # the script copies the staged file under the unit's own name: run it with a stand-in systemd-analyze
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemd-analyze").write_text("#!/bin/sh\necho \"$@\" > %s/called\ntest -f \"$2\"\n" % tmp_path)
    (fake / "systemd-analyze").chmod(0o755)
    (tmp_path / "staged").write_text("[Service]\n")
    proc = subprocess.run(argv, env=dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"])), check=False)
    assert proc.returncode == 0
    called = (tmp_path / "called").read_text().split()
    assert called[0] == "verify" and called[1].endswith("/vllm-a.service")
    with pytest.raises(AnsibleFilterError):
        f.systemd_verify_command("x; rm -rf /")


def test_packages_missing_filter():
    found = {"docker.io": {"name": "docker.io", "installed": True, "version": "20.10.24+dfsg1-1+b3", "release": "",
                           "epoch": None, "arch": "amd64", "manager": "dpkg", "full_version": "20.10.24+dfsg1-1+b3",
                           "instances": [{"version": "20.10.24+dfsg1-1+b3", "release": "", "epoch": None, "arch": "amd64",
                                          "manager": "dpkg"}]},
             "podman": {"name": "podman", "installed": False, "instances": []}}
    assert f.packages_missing(found, ["docker.io"]) == []
    assert f.packages_missing(found, ["docker.io", "podman"]) == ["podman"]
    assert f.packages_missing(found, ["docker.io"], "20.10.25*") == ["docker.io"]
    assert f.packages_missing(found, ["docker.io"], None) == []
    with pytest.raises(AnsibleFilterError, match="needs host_facts' packages"):
        f.packages_missing(["docker.io"], ["docker.io"])
    with pytest.raises(AnsibleFilterError, match="needs a list of package names, got 'docker.io'"):
        f.packages_missing(found, "docker.io")
