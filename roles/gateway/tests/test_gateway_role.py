# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gateway role: its template rendered by Ansible's templar and checked by a real haproxy -c, its filters through
Ansible's plugin loader, and its preflight run by ansible-playbook (the messages a user needs, and no key in the output,
even at -vvv).

Here, not in tests/unit: the filters import ansible.errors (the controller side).
Run: .venv/bin/pytest roles/gateway/tests/
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(REPO, "roles", "gateway")
sys.path.insert(0, os.path.join(REPO, "tests"))
import role_templates  # noqa: E402  pylint: disable=wrong-import-position
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.template import Templar, trust_as_template  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.filter.gateway import gateway_config, gateway_secrets  # noqa: E402  pylint: disable=wrong-import-position

KEY = "do-not-print-me-" + "x" * 24
ENGINE_KEY = "engine-secret-do-not-print"
ENDPOINTS = [{"name": "tiny", "instance": "tiny", "engine": "vllm", "url": "http://127.0.0.1:8000", "host": "0.0.0.0", "port": 8000,
              "model": "tiny", "api_key": ENGINE_KEY},
             {"name": "ollama", "instance": "ollama", "engine": "ollama", "url": "http://127.0.0.1:11434", "host": "127.0.0.1",
              "port": 11434, "model": "tiny:latest"}]
DOORS = [{"name": "chat", "engine": "vllm", "port": 8443, "group": "all"},
         {"name": "edge", "engine": "ollama", "port": 8444, "group": "all"}]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def render(name, overrides):
    variables = role_templates.role_vars(ROLE, {"inventory_hostname": "gw", "groups": {"all": ["gw"]}}, overrides)
    variables["ansible_managed"] = "Ansible managed"
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    plan = templar.template(trust_as_template(
        "{{ gateway_frontends | onprem.llm_serving.gateway_config(gateway_api_keys, groups, __gateway_serving, "
        "inventory_hostname, __gateway_settings) }}"))
    templar = Templar(loader=DataLoader(), variables=dict(variables, __gateway_plan=plan)).copy_with_new_env(
        searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", name)) as handle:
        return templar.template(trust_as_template(handle.read())), variables


def test_the_rendered_configuration_passes_haproxy_check(tmp_path):
    """The role's own settings (vars/main.yml, defaults): chroot, user haproxy, /dev/log; only its directory is moved."""
    config, _variables = render("haproxy.cfg.j2", {"gateway_frontends": DOORS, "gateway_api_keys": [{"name": "alice", "key": KEY}],
                                                   "__gateway_serving": {"gw": {"endpoints": ENDPOINTS}}})
    assert config.startswith("#\n# Ansible managed\n")
    assert KEY not in config and ENGINE_KEY not in config
    for needle in ("chroot /var/lib/haproxy", "user haproxy", "log /dev/log local0", "stats socket /run/haproxy/admin.sock",
                   "bind 0.0.0.0:8443 ssl crt /etc/haproxy/onprem-gateway/tls.pem", "server gw-tiny 127.0.0.1:8000",
                   "server gw-ollama 127.0.0.1:11434", "timeout server 15m", "balance leastconn",
                   "map_str_int(/etc/haproxy/onprem-gateway/rate-limits.map,600)"):
        assert needle in config
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=gw", "-keyout", str(tmp_path / "k"), "-out", str(tmp_path / "c")], check=True, capture_output=True)
    (tmp_path / "tls.pem").write_text((tmp_path / "c").read_text() + (tmp_path / "k").read_text())
    for name in ("api-keys.map", "rate-limits.map", "upstream-keys.map"):
        (tmp_path / name).write_text("")
    moved = config.replace("/etc/haproxy/onprem-gateway/", str(tmp_path) + "/").replace("/run/haproxy/admin.sock", str(tmp_path / "a.sock"))
    (tmp_path / "haproxy.cfg").write_text(moved)
    result = subprocess.run([HAPROXY, "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_drop_in_points_debians_unit_at_the_gateway_configuration():
    dropin, _variables = render("onprem-gateway.conf.j2", {
        "gateway_frontends": DOORS, "gateway_api_keys": [{"name": "a", "key": KEY}], "__gateway_serving": {"gw": {"endpoints": ENDPOINTS}}})
    assert '[Service]\nEnvironment="CONFIG=/etc/haproxy/onprem-gateway.cfg"' in dropin


def test_the_filters_split_what_may_be_shown_from_the_secrets():
    shown = gateway_config(DOORS, [{"name": "alice", "key": KEY}], {"all": ["gw"]}, {"gw": {"endpoints": ENDPOINTS}}, "gw")
    assert sorted(shown) == ["config", "doors", "rates_map"]
    assert KEY not in json.dumps(shown) and ENGINE_KEY not in json.dumps(shown)
    secrets = gateway_secrets(DOORS, [{"name": "alice", "key": KEY}], {"all": ["gw"]}, {"gw": {"endpoints": ENDPOINTS}}, "gw")
    assert secrets == {"keys_map": KEY + " alice\n", "upstream_map": "be_chat Bearer %s\n" % ENGINE_KEY}


def test_a_filter_error_names_the_host_and_the_variable():
    with pytest.raises(AnsibleFilterError, match="gateway on gw: gateway_api_keys is empty"):
        gateway_config(DOORS, [], {"all": ["gw"]}, {"gw": {"endpoints": ENDPOINTS}}, "gw")
    with pytest.raises(AnsibleFilterError, match="gateway on gw: gateway_frontends is empty"):
        gateway_secrets([], [{"name": "alice", "key": KEY}], {"all": ["gw"]}, {"gw": {"endpoints": ENDPOINTS}}, "gw")


GOOD = {"gateway_frontends": DOORS, "gateway_api_keys": [{"name": "alice", "key": KEY}], "gateway_tls_self_signed": True,
        "llm_endpoints": ENDPOINTS}


def run_preflight(tmp_path, **extra_vars):
    return role_templates.run_role(tmp_path, "gateway", "gateway_preflight", extra_vars, verbosity="-vvv")


@pytest.mark.parametrize("change, expect", [
    ({}, None),
    ({"gateway_frontends": []}, "gateway_frontends is empty"),
    ({"gateway_api_keys": [{"name": "alice", "key": KEY[:20]}]}, "gateway_api_keys[0] (alice): the key (not shown) must be at least 32"),
    ({"gateway_api_keys": [{"name": "alice", "key": KEY}, {"name": "bob", "key": KEY}]}, "the same key (not shown) is given to two names"),
    ({"gateway_tls_self_signed": False}, "Set gateway_tls_certificate (PEM, the chain) and"),
    ({"gateway_frontends": [dict(DOORS[0], port=8000)]}, "port 8000 is an engine's port on localhost"),
    ({"gateway_frontends": [dict(DOORS[0], extra_paths=["/api/delete"])], "llm_endpoints": ENDPOINTS}, None),
    ({"gateway_frontends": [dict(DOORS[1], extra_paths=["/api/delete"])]}, "extra_paths /api/delete changes the ollama server"),
    ({"llm_endpoints": None}, "host localhost of group all has published no endpoints"),
])
def test_preflight_refuses_and_never_prints_a_key(tmp_path, change, expect):
    extra = dict(GOOD, **change)
    if extra.get("llm_endpoints") is None:
        extra.pop("llm_endpoints")
    result = run_preflight(tmp_path, **extra)
    out = result.stdout + result.stderr
    if expect is None:
        assert result.returncode == 0, out[-3000:]
        assert "chat: https://0.0.0.0:8443 -> vllm tiny on localhost-tiny (readiness /health" in out and "engine key set" in out
    else:
        assert result.returncode != 0 and expect in out, out[-3000:]
    assert KEY not in out and KEY[:20] not in out and ENGINE_KEY not in out


def _tls_tasks(tmp_path, variables):
    """tasks/tls.yml as it is (its handler left out), run twice against this machine at -vvv; returns both results."""
    with open(os.path.join(ROLE, "tasks", "tls.yml"), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    for task in tasks:
        task.pop("notify", None)
    variables = dict(variables, __gateway_dir=str(tmp_path / "onprem-gateway"))
    return [role_templates.run_tasks(tmp_path, tasks, variables, env_extra={"ANSIBLE_VERBOSITY": "3"}) for _run in (1, 2)]


def test_the_provided_certificate_and_key_are_written_once_root_only_and_never_shown(tmp_path):
    cert = "-----BEGIN CERTIFICATE-----\nMIIcert\n-----END CERTIFICATE-----"
    key = "-----BEGIN PRIVATE KEY-----\n" + KEY + "\n-----END PRIVATE KEY-----"
    first, again = _tls_tasks(tmp_path, {"gateway_tls_self_signed": False, "gateway_tls_certificate": cert + "\n\n",
                                         "gateway_tls_private_key": key})
    for result in (first, again):
        assert result.returncode == 0, result.stdout + result.stderr
        assert KEY not in result.stdout + result.stderr
    pem = tmp_path / "onprem-gateway" / "tls.pem"
    assert pem.read_text() == cert + "\n" + key + "\n"
    assert oct(os.stat(pem).st_mode & 0o777) == "0o600" and oct(os.stat(pem.parent).st_mode & 0o777) == "0o700"
    assert "changed=1" in first.stdout and "changed=0" in again.stdout      # written once, then left alone


def _install_tasks(tmp_path, **variables):
    """tasks/install.yml as it is, against this machine (make setup installs haproxy and openssl from Debian's packages):
    the package read finds both, so nothing is installed and no `haproxy -v` runs."""
    with open(os.path.join(ROLE, "tasks", "install.yml"), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    layered = role_templates.role_vars(ROLE, {}, {})
    wanted = {k: layered[k] for k in ("__gateway_packages", "__gateway_haproxy_min_version")}
    return role_templates.run_tasks(tmp_path, tasks, dict(wanted, **variables))


def test_the_haproxy_version_comes_from_the_package_read_and_an_old_one_is_refused(tmp_path):
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "haproxy"], capture_output=True, text=True, check=True).stdout
    result = _install_tasks(tmp_path)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 0, out[-3000:]
    assert "skipping: [localhost]" in result.stdout and "Read the HAProxy version of a package just installed" in out
    refused = _install_tasks(tmp_path, __gateway_haproxy_min_version="99.0")
    out = " ".join((refused.stdout + refused.stderr).split())
    assert refused.returncode != 0, out[-3000:]
    assert "HAProxy 99.0 or newer is needed" in out and "the installed haproxy package is %s" % version in out, out[-3000:]


def test_the_smoke_fails_a_door_that_serves_without_a_key_names_it_and_never_shows_the_key(tmp_path):
    """tasks/smoke.yml as it is, against a stand-in 'door' on this machine that answers 200 to everything, with or without
    a key (what a door would do if its key check were lost): the smoke fails on the request without a key, before any
    generation, names the door and its port and where to look, and the key shows nowhere, even at -vvv."""
    import http.server  # pylint: disable=import-outside-toplevel
    import ssl  # pylint: disable=import-outside-toplevel
    import threading  # pylint: disable=import-outside-toplevel

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=door-test", "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    seen = []

    class Open(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  pylint: disable=invalid-name
            seen.append((self.command, self.path, self.headers.get("Authorization")))
            body = json.dumps({"version": "0.5.4", "models": [{"name": "tiny:latest"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Open)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with open(os.path.join(ROLE, "tasks", "smoke.yml"), encoding="utf-8") as handle:
            tasks = yaml.safe_load(handle)
        door = {"name": "edge", "engine": "ollama", "port": server.server_port, "bind_address": "127.0.0.1", "model": "tiny:latest",
                "health_path": "/api/version"}
        variables = {"gateway_smoke": True, "gateway_api_keys": [{"name": "alice", "key": KEY}], "gateway_runtime_socket": "/run/gw.sock",
                     "__gateway_plan": {"doors": [door]}, "gateway_tls_self_signed": True, "gateway_curl_host": "127.0.0.1"}
        result = role_templates.run_tasks(tmp_path, tasks, variables, env_extra={"ANSIBLE_VERBOSITY": "3"})
    finally:
        server.shutdown()
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out[-3000:]
    assert ("gateway on localhost: door edge (port %d): llm_endpoint https://127.0.0.1:%d (engine=ollama, model=tiny:latest): "
            "GET https://127.0.0.1:%d/api/tags returned HTTP 200: answered without an API key, where HTTP 401 was expected"
            % ((server.server_port,) * 3)) in out, out[-3000:]
    assert "the first key of gateway_api_keys (alice): a 503 means no replica passed its health check (/api/version)" in out
    assert "socat stdio /run/gw.sock" in out
    assert ("GET", "/api/tags", None) in seen and not [s for s in seen if s[0] == "POST"]  # refused before any generation
    assert KEY not in out and KEY[:20] not in out


def test_the_smoke_keeps_the_error_of_a_failure_that_is_no_door_s(tmp_path):
    """A failure before any door was called (here the plan has no doors list) keeps its own message in the rescue's."""
    with open(os.path.join(ROLE, "tasks", "smoke.yml"), encoding="utf-8") as handle:
        tasks = yaml.safe_load(handle)
    variables = {"gateway_smoke": True, "gateway_api_keys": [{"name": "alice", "key": KEY}], "gateway_runtime_socket": "/run/gw.sock",
                 "__gateway_plan": {}, "gateway_tls_self_signed": True, "gateway_curl_host": "127.0.0.1"}
    result = role_templates.run_tasks(tmp_path, tasks, variables)
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, out[-3000:]
    assert "gateway on localhost:" in out and "doors" in out.split("gateway on localhost:", 1)[1], out[-3000:]
    assert KEY not in out
