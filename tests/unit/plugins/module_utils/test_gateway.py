# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gateway's configuration logic (_gateway): every refusal, the upstream addresses, the rendered doors.

tests/unit/plugins/module_utils/test_gateway_haproxy.py runs the rendered configurations in a real HAProxy."""
from __future__ import annotations

import copy
import json
import subprocess

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gateway as gw

KEY_A = "a" * 32
KEY_B = "b1" * 20
ENGINE_KEY = "engine-key-0123456789"
GROUPS = {"vllm_servers": ["gw", "h2"], "ollama_servers": ["gw"], "tgi_servers": [], "all": ["gw", "h2"]}


def vllm(name="tiny", bind="0.0.0.0", port=8000, model="tiny", api_key=None, url=None):
    host = "127.0.0.1" if bind in gw.WILDCARDS else bind
    return {"name": name, "instance": name, "engine": "vllm", "url": url or "http://%s:%d" % (host, port), "host": bind,
            "port": port, "model": model, "api_key": api_key, "health_path": "/health"}


def ollama(name="ollama", bind="127.0.0.1", port=11434):
    return {"name": name, "instance": name, "engine": "ollama", "url": "http://%s:%d" % (bind, port), "host": bind,
            "port": port, "model": "tiny:latest"}


def serving():
    return {"gw": {"address": "10.0.0.1", "endpoints": [vllm(), ollama()]},
            "h2": {"address": "10.0.0.2", "endpoints": [vllm()]}}


KEYS = [{"name": "alice", "key": KEY_A, "rate_limit": 5}, {"name": "bob", "key": KEY_B}]
DOORS = [{"name": "chat", "engine": "vllm", "port": 8443}, {"name": "local", "engine": "ollama", "port": 8444}]


def build(doors=None, keys=None, groups=None, serv=None, host="gw", settings=None):
    return gw.build(copy.deepcopy(DOORS if doors is None else doors), copy.deepcopy(KEYS if keys is None else keys),
                    GROUPS if groups is None else groups, serving() if serv is None else serv, host, settings)


def test_a_door_per_group_with_every_replica_behind_it():
    plan = build()
    chat, local = plan["doors"]
    # the gateway host reaches its own wildcard-bound engine on loopback, another host's at that host's address
    assert [(s["name"], s["address"], s["port"]) for s in chat["servers"]] == [
        ("gw-tiny", "127.0.0.1", 8000), ("h2-tiny", "10.0.0.2", 8000)]
    assert (chat["group"], chat["model"], chat["health_path"], chat["engine_key"]) == ("vllm_servers", "tiny", "/health", False)
    assert (local["group"], local["health_path"], local["servers"][0]["address"]) == ("ollama_servers", "/api/version", "127.0.0.1")
    config = plan["config"]
    assert "    server gw-tiny 127.0.0.1:8000\n    server h2-tiny 10.0.0.2:8000\n" in config
    assert config.count("balance leastconn") == 2
    assert "http-check send meth GET uri /health ver HTTP/1.1" in config
    assert "http-check send meth GET uri /api/version ver HTTP/1.1 hdr Host localhost" in config
    # Ollama on loopback refuses a Host that is not local: only its backend rewrites the client's Host
    assert config.count("http-request set-header Host localhost") == 1
    assert config.index("http-request set-header Host localhost") > config.index("backend be_local")
    assert "bind 0.0.0.0:8443 ssl crt /etc/haproxy/onprem-gateway/tls.pem alpn h2,http/1.1" in config
    assert "stats socket /run/haproxy/admin.sock mode 660 level admin" in config
    assert "timeout server 15m" in config and "timeout client 15m" in config
    assert "bind 127.0.0.1:8405" in config and "prometheus-exporter" in config
    assert config.count("    option http-buffer-request\n") == 2  # each door answers a refusal cleanly (HTTP/2)


def test_the_maps_and_what_holds_a_secret():
    plan = build()
    assert plan["keys_map"] == "%s alice\n%s bob\n" % (KEY_A, KEY_B)
    assert plan["rates_map"] == "alice 5\nbob 600\n"
    assert plan["upstream_map"] == ""
    for secret in (KEY_A, KEY_B):
        assert secret not in plan["config"] and secret not in repr(plan["doors"]) and secret not in plan["rates_map"]


def test_the_engine_key_goes_to_the_upstream_map_not_the_config():
    serv = serving()
    serv["gw"]["endpoints"][0]["api_key"] = ENGINE_KEY
    serv["h2"]["endpoints"][0]["api_key"] = ENGINE_KEY
    plan = build(serv=serv)
    assert plan["upstream_map"] == "be_chat Bearer %s\n" % ENGINE_KEY
    assert ENGINE_KEY not in plan["config"]
    assert 'http-request set-header Authorization "%[be_name,map(/etc/haproxy/onprem-gateway/upstream-keys.map)]"' in plan["config"]
    assert plan["doors"][0]["engine_key"] is True


def test_the_key_name_is_logged_and_no_header_is():
    config = build()["config"]
    assert "key=%[var(txn.gw_key)]" in config and "%HPO" in config
    assert "capture" not in config and "%hr" not in config and "%HU" not in config


@pytest.mark.parametrize("engine, allowed, forbidden", [
    ("vllm", ["acl gw_route path_beg /v1/"], "/v1/load_lora_adapter /v1/unload_lora_adapter"),
    ("ollama", ["acl gw_route path_beg /v1/", "acl gw_route path /api/chat /api/embed /api/generate /api/ps /api/show "
                "/api/tags /api/version"], "/api/create /api/delete /api/pull /api/push /api/copy /api/blobs"),
])
def test_the_route_allow_list_per_engine(engine, allowed, forbidden):
    doors = [{"name": "d", "engine": engine, "port": 9443, "group": "all"}]
    config = build(doors=doors)["config"]
    for line in allowed:
        assert line in config
    assert "acl gw_forbidden path_beg %s" % forbidden in config
    assert "if gw_forbidden || !gw_route" in config


def test_tgi_has_no_forbidden_list_and_refuses_what_is_not_v1():
    serv = {"t": {"address": "10.0.0.3", "endpoints": [{"name": "m", "instance": "m", "engine": "tgi", "url": "http://10.0.0.3:3000",
                                                        "host": "10.0.0.3", "port": 3000, "model": "/srv/m"}]}}
    plan = build(doors=[{"name": "t", "engine": "tgi", "port": 9443}], groups={"tgi_servers": ["t"]}, serv=serv, host="g")
    assert "unless gw_route" in plan["config"] and "gw_forbidden" not in plan["config"]
    assert plan["doors"][0]["servers"][0]["address"] == "10.0.0.3"
    assert "uri /health ver" in plan["config"]


def test_extra_paths_open_more_exact_routes():
    doors = [{"name": "d", "engine": "vllm", "port": 9443, "extra_paths": ["/tokenize"]}]
    assert "acl gw_route path /tokenize" in build(doors=doors)["config"]


def test_model_and_instances_pick_replicas():
    serv = serving()
    serv["gw"]["endpoints"].append(vllm("big", port=8001, model="big"))
    with pytest.raises(gw.GatewayError, match="serve different models .*big, tiny.*set model"):
        build(serv=serv)
    plan = build(doors=[{"name": "big", "engine": "vllm", "port": 9443, "model": "big"},
                        {"name": "tiny", "engine": "vllm", "port": 9444, "instances": ["tiny"]}], serv=serv)
    assert [s["name"] for s in plan["doors"][0]["servers"]] == ["gw-big"]
    assert [s["name"] for s in plan["doors"][1]["servers"]] == ["gw-tiny", "h2-tiny"]


def test_ollama_replicas_may_differ_in_their_first_model():
    serv = {"gw": {"endpoints": [ollama(), dict(ollama("two", port=11435), model="other:latest")]}}
    plan = build(doors=[DOORS[1]], groups={"ollama_servers": ["gw"]}, serv=serv)
    assert len(plan["doors"][0]["servers"]) == 2


def test_ipv6_addresses():
    serv = {"gw": {"endpoints": [vllm(bind="::1", url="http://[::1]:8000")]}, "h2": {"address": "fd00::2", "endpoints": [vllm(bind="::")]}}
    plan = build(doors=[{"name": "c", "engine": "vllm", "port": 8443, "bind_address": "::"}], serv=serv)
    assert "server gw-tiny ipv6@::1:8000" in plan["config"]
    assert "server h2-tiny ipv6@fd00::2:8000" in plan["config"]
    assert "bind :::8443 v4v6 ssl" in plan["config"]
    plan = build(doors=[{"name": "c", "engine": "vllm", "port": 8443, "bind_address": "fd00::1"}], serv=serv)
    assert "bind ipv6@fd00::1:8443 ssl" in plan["config"]


def test_the_address_comes_from_the_url_when_the_endpoint_has_no_host():
    endpoint = vllm(bind="10.0.0.2")
    del endpoint["host"], endpoint["port"]
    plan = build(doors=[DOORS[0]], serv={"gw": {"endpoints": []}, "h2": {"endpoints": [endpoint]}})
    assert plan["doors"][0]["servers"][0]["address"] == "10.0.0.2" and plan["doors"][0]["servers"][0]["port"] == 8000


def test_a_wildcard_engine_on_another_host_without_address_uses_the_inventory_name():
    plan = build(doors=[DOORS[0]], serv={"gw": {"endpoints": []}, "h2": {"endpoints": [vllm()]}})
    assert plan["doors"][0]["servers"][0]["address"] == "h2"


def test_settings_reach_the_config():
    config = build(settings={"chroot": None, "user": None, "group": None, "metrics_port": 0, "log_target": "stdout format raw",
                             "timeout_server": "1h", "rate_limit": 7, "rate_limit_period": 10})["config"]
    assert "chroot" not in config and "user haproxy" not in config and "prometheus" not in config
    assert "log stdout format raw local0" in config and "timeout server 1h" in config
    assert "store http_req_rate(10s)" in config and "expire 20s" in config and "hdr Retry-After 10 " in config
    assert "map_str_int(/etc/haproxy/onprem-gateway/rate-limits.map,7)" in config
    production = build()["config"]
    assert "chroot /var/lib/haproxy" in production and "user haproxy" in production and "log /dev/log local0" in production


BAD_SETTINGS = [
    ({"timeout_server": "forever"}, "gateway_timeout_server must be an HAProxy time"),
    ({"rate_limit": 0}, "gateway_rate_limit must be a whole number"),
    ({"rate_limit": True}, "gateway_rate_limit must be a whole number"),
    ({"rate_limit_period": "x"}, "gateway_rate_limit_period must be a whole number"),
    ({"key_min_length": 8}, "gateway_api_key_min_length"),
    ({"tls_pem": "relative.pem"}, "tls_pem must be an absolute path"),
    ({"nonsense": 1}, "unknown gateway setting"),
]


@pytest.mark.parametrize("settings, message", BAD_SETTINGS)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(gw.GatewayError, match=message):
        build(settings=settings)


BAD_KEYS = [
    ([], "gateway_api_keys is empty"),
    (None, "gateway_api_keys is empty"),
    (["just-a-key"], r"gateway_api_keys\[0\] must be a dict"),
    ([{"name": "a", "key": KEY_A, "scope": "x"}], "unknown field.*scope"),
    ([{"name": "bad name", "key": KEY_A}], "name 'bad name' must be"),
    ([{"key": KEY_A}], "name None must be"),
    ([{"name": "a", "key": "short"}], r"gateway_api_keys\[0\] \(a\): the key \(not shown\) must be at least 32"),
    ([{"name": "a", "key": "x" * 31 + " "}], "the key .not shown. must be"),
    ([{"name": "a", "key": 12345}], "the key .not shown. must be"),
    ([{"name": "a", "key": KEY_A}, {"name": "a", "key": KEY_B}], "the name a is used twice"),
    ([{"name": "a", "key": KEY_A}, {"name": "b", "key": KEY_A}], "same key .not shown. is given to two names"),
    ([{"name": "a", "key": KEY_A, "rate_limit": 0}], r"\(a\): rate_limit must be"),
]


@pytest.mark.parametrize("keys, message", BAD_KEYS)
def test_bad_keys_are_refused_without_showing_them(keys, message):
    with pytest.raises(gw.GatewayError, match=message) as err:
        gw.build(DOORS, keys, GROUPS, serving(), "gw")
    for key in (KEY_A, KEY_B, "x" * 31, "short"):
        assert key not in str(err.value)


def test_the_minimum_key_length_is_a_setting():
    plan = build(keys=[{"name": "a", "key": "k" * 16}], settings={"key_min_length": 16})
    assert plan["keys_map"] == "k" * 16 + " a\n"


BAD_DOORS = [
    ([], "gateway_frontends is empty"),
    (["chat"], r"gateway_frontends\[0\] must be a dict"),
    ([{"name": "c", "engine": "vllm", "port": 1, "tls": True}], "unknown field.*tls"),
    ([{"name": "Chat!", "engine": "vllm", "port": 1}], "name 'Chat!' must be"),
    ([{"name": "c", "engine": "sglang", "port": 1}], "engine 'sglang' must be one of vllm, tgi, ollama"),
    ([{"name": "c", "engine": "vllm", "port": 70000}], "port must be a whole number from 1 to 65535"),
    ([{"name": "c", "engine": "vllm", "port": 1, "group": "nowhere"}], "group nowhere is not in the inventory"),
    ([{"name": "c", "engine": "vllm", "port": 1, "instances": "tiny"}], "instances must be a list"),
    ([{"name": "c", "engine": "vllm", "port": 1, "extra_paths": "/x"}], "extra_paths must be a list"),
    ([{"name": "c", "engine": "vllm", "port": 1, "extra_paths": ["/v1/../metrics"]}], "must be a plain absolute path"),
    ([{"name": "c", "engine": "ollama", "port": 1, "extra_paths": ["/api/delete"]}], "changes the ollama server"),
    ([{"name": "c", "engine": "vllm", "port": 1, "extra_paths": ["/v1/load_lora_adapter/"]}], "changes the vllm server"),
    ([{"name": "c", "engine": "vllm", "port": 1}, {"name": "c", "engine": "ollama", "port": 2}], "the name is used twice"),
    ([{"name": "c", "engine": "vllm", "port": 1}, {"name": "d", "engine": "ollama", "port": 1}], r"port 1 is also used by gateway_frontends \(c\)"),
    ([{"name": "c", "engine": "vllm", "port": 8405}], "port 8405 is also used by gateway_metrics_port"),
    ([{"name": "c", "engine": "vllm", "port": 8000}], "port 8000 is an engine's port on gw"),
    ([{"name": "c", "engine": "tgi", "port": 1}], "no tgi instance in group tgi_servers has published"),
    ([{"name": "c", "engine": "vllm", "port": 1, "model": "huge"}], "no vllm instance in group vllm_servers serving huge"),
    ([{"name": "c", "engine": "vllm", "port": 1, "instances": ["x"]}], "no vllm instance in group vllm_servers named x"),
]


@pytest.mark.parametrize("doors, message", BAD_DOORS)
def test_bad_doors_are_refused(doors, message):
    with pytest.raises(gw.GatewayError, match=message):
        build(doors=doors)


def test_a_host_that_published_nothing_is_named_with_the_fix():
    serv = serving()
    serv["h2"] = {"address": "10.0.0.2", "endpoints": None}
    with pytest.raises(gw.GatewayError, match="host h2 of group vllm_servers has published no endpoints.*--tags vllm_smoke"):
        build(serv=serv)


def test_a_loopback_engine_on_another_host_is_refused():
    serv = serving()
    serv["h2"]["endpoints"] = [vllm(bind="127.0.0.1")]
    with pytest.raises(gw.GatewayError, match=r"instance tiny on h2 listens on loopback \(127.0.0.1\).*vllm_bind_address"):
        build(serv=serv)
    serv["h2"]["endpoints"] = [vllm(bind="localhost", url="http://localhost:8000")]
    with pytest.raises(gw.GatewayError, match="listens on loopback"):
        build(serv=serv)


def test_an_https_or_odd_upstream_url_is_refused():
    serv = serving()
    serv["h2"]["endpoints"] = [vllm(url="https://10.0.0.2:8000")]
    with pytest.raises(gw.GatewayError, match="over plain http"):
        build(serv=serv)
    serv["h2"]["endpoints"] = [vllm(url="not a url")]
    with pytest.raises(gw.GatewayError, match="over plain http"):
        build(serv=serv)


def test_replicas_with_different_engine_keys_are_refused_without_showing_them():
    serv = serving()
    serv["gw"]["endpoints"][0]["api_key"] = ENGINE_KEY
    with pytest.raises(gw.GatewayError, match="different engine API keys") as err:
        build(serv=serv)
    assert ENGINE_KEY not in str(err.value)


def test_an_engine_key_with_blanks_is_refused():
    serv = serving()
    for host in ("gw", "h2"):
        serv[host]["endpoints"][0]["api_key"] = "two words here"
    with pytest.raises(gw.GatewayError, match="api_key .not shown. has blanks") as err:
        build(serv=serv)
    assert "two words" not in str(err.value)


def test_replicas_with_different_readiness_paths_are_refused():
    serv = serving()
    serv["h2"]["endpoints"][0]["health_path"] = "/ready"
    with pytest.raises(gw.GatewayError, match="different readiness paths"):
        build(serv=serv)


def test_two_endpoints_on_one_address_and_port_are_refused():
    serv = {"gw": {"endpoints": [vllm(bind="10.0.0.5"), vllm("other", bind="10.0.0.5")]}, "h2": {"endpoints": []}}
    with pytest.raises(gw.GatewayError, match="share one address and port"):
        build(doors=[DOORS[0]], serv=serv)


def test_two_instances_with_one_server_name_are_refused():
    serv = {"gw": {"endpoints": [vllm("a b", port=8001), vllm("a_b", port=8002)]}, "h2": {"endpoints": []}}
    with pytest.raises(gw.GatewayError, match="one server name"):
        build(doors=[DOORS[0]], serv=serv)


def test_endpoints_of_other_engines_and_non_dicts_are_ignored():
    serv = serving()
    serv["h2"]["endpoints"] = ["junk", ollama(bind="10.0.0.2"), vllm(bind="10.0.0.2")]
    plan = build(serv=serv)
    assert [s["name"] for s in plan["doors"][0]["servers"]] == ["gw-tiny", "h2-tiny"]


def test_server_address_and_url_parts():
    assert gw.server_address("10.0.0.1", 80) == "10.0.0.1:80"
    assert gw.server_address("gpu-01.example", 80) == "gpu-01.example:80"
    assert gw.server_address("::1", 80) == "ipv6@::1:80"
    assert gw._url_parts("http://h") == ("http", "h", 80)
    assert gw._url_parts("https://h") == ("https", "h", 443)
    assert gw._url_parts("http://[::1]:8000") == ("http", "::1", 8000)
    assert gw._url_parts("ftp://h") == (None, None, None)


def test_loopback_engines_metrics_are_relayed_on_the_metrics_listener_only():
    config = build()["config"]
    metrics = config[config.index("frontend gateway_metrics"):config.index("frontend fe_chat")]
    # gw's own vLLM (reached on loopback) is relayed; h2's (reached on its address) and Ollama's are not
    assert "    acl gw_engine_metrics path /engines/gw-tiny/metrics\n" in metrics
    assert "    http-request return status 404 unless gw_engine_metrics\n" in metrics
    assert "    use_backend mx_gw-tiny if { path /engines/gw-tiny/metrics }\n" in metrics
    assert "backend mx_gw-tiny\n    http-request set-path /metrics\n    server gw-tiny 127.0.0.1:8000\n" in config
    assert "h2-tiny/metrics" not in config and "mx_gw-ollama" not in config
    assert gw.engine_metrics_path("host.a", "in st") == "/engines/host.a-in_st/metrics"
    # no metrics listener: nothing relayed
    assert "mx_" not in build(settings={"metrics_port": 0})["config"]


def test_a_door_without_loopback_engines_relays_nothing():
    config = build(doors=[{"name": "chat", "engine": "vllm", "port": 8443}], host="h3",
                   groups={"vllm_servers": ["h2"], "ollama_servers": [], "tgi_servers": []})["config"]
    assert "    http-request return status 404\n" in config and "mx_" not in config


def test_curl_lines_read_the_key_from_the_shell_and_never_hold_it():
    doors = build()["doors"]
    lines = gw.curl_lines(doors, "192.0.2.7", self_signed=True).splitlines()
    assert lines[0] == "door chat (vllm tiny, 2 replica(s)) https://192.0.2.7:8443"
    assert lines[1].startswith("    curl -s -k https://192.0.2.7:8443/v1/chat/completions -H \"Authorization: Bearer $API_KEY\"")
    assert "\"model\": \"tiny\"" in lines[1] and "\"max_tokens\": 16" in lines[1]
    assert lines[3].startswith("    curl -s -k https://192.0.2.7:8444/api/generate ")
    assert KEY_A not in "\n".join(lines) and KEY_B not in "\n".join(lines)
    shell = subprocess.run(["bash", "-c", "curl() { printf '%s\\n' \"$@\"; }; " + lines[1]], env={"API_KEY": "k-env", "PATH": "/usr/bin:/bin"},
                           capture_output=True, text=True, check=True).stdout.splitlines()
    assert shell[:2] == ["-s", "-k"] and "Authorization: Bearer k-env" in shell and json.loads(shell[-1])["model"] == "tiny"
    assert " -k " not in gw.curl_lines(doors, "gw.example")
    assert gw.door_requests(doors[0], "fd00::7", "/etc/ca.pem")["curl"].startswith("curl -s --cacert /etc/ca.pem https://[fd00::7]:8443/")
    assert gw.curl_lines([], "x") == "(no doors)"
