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
    # a replica that is out or changing state is checked every 500 ms: back in (or out) about a second after it changes
    assert "default-server check inter 2s fastinter 500ms downinter 500ms fall 3 rise 2" in production
    fast = build(settings={"check_interval": "5s", "check_fast_interval": "1s"})["config"]
    assert "default-server check inter 5s fastinter 1s downinter 1s fall 3 rise 2" in fast


BAD_SETTINGS = [
    ({"timeout_server": "forever"}, "gateway_timeout_server must be an HAProxy time"),
    ({"check_fast_interval": "soon"}, "gateway_check_fast_interval must be an HAProxy time"),
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


# A door in the middle of a TGI -> vLLM migration (migrate_to): TGI and vLLM replicas of one model behind one backend.
TGI_MODEL = "org/tiny-7b"


def tgi(name="chat", bind="0.0.0.0", port=3000, model=TGI_MODEL, api_key=ENGINE_KEY):
    host = "127.0.0.1" if bind in gw.WILDCARDS else bind
    return {"name": name, "instance": name, "engine": "tgi", "url": "http://%s:%d" % (host, port), "host": bind,
            "port": port, "model": model, "api_key": api_key, "health_path": "/health"}


def migration_serving(vllm_key=ENGINE_KEY):
    """gw and h2 each run TGI instance chat and, beside it, vLLM instance chat-vllm (the tgi_to_vllm translation of it
    under a name and port of its own) serving the same model under its served name."""
    return {"gw": {"address": "10.0.0.1", "endpoints": [tgi(), vllm("chat-vllm", port=8000, model="tiny-7b", api_key=vllm_key)]},
            "h2": {"address": "10.0.0.2", "endpoints": [tgi(), vllm("chat-vllm", port=8000, model="tiny-7b", api_key=vllm_key)]}}


MIGRATION_GROUPS = {"tgi_servers": ["gw", "h2"], "vllm_servers": ["h3"], "all": ["gw", "h2", "h3"]}


def migrating(weight=10, **migrate_to):
    return [{"name": "chat", "engine": "tgi", "port": 8443, "migrate_to": dict({"engine": "vllm", "weight": weight}, **migrate_to)}]


def build_migration(doors=None, serv=None, groups=None, **kwargs):
    return build(doors=migrating() if doors is None else doors, groups=groups or MIGRATION_GROUPS,
                 serv=migration_serving() if serv is None else serv, **kwargs)


def backend(config, name="chat"):
    start = config.index("\nbackend be_%s\n" % name) + 1
    end = config.find("\n\n", start)
    return config[start:] if end < 0 else config[start:end + 1]


def test_a_migrating_door_holds_both_engines_replicas_weighted_by_roundrobin():
    plan = build_migration()
    door = plan["doors"][0]
    # the door engine's replicas first, then migrate_to's, found the same way (its group defaults to the door's)
    assert [(s["name"], s["engine"], s["address"], s["port"], s["weight"]) for s in door["servers"]] == [
        ("gw-chat", "tgi", "127.0.0.1", 3000, 9), ("h2-chat", "tgi", "10.0.0.2", 3000, 9),
        ("gw-chat-vllm", "vllm", "127.0.0.1", 8000, 1), ("h2-chat-vllm", "vllm", "10.0.0.2", 8000, 1)]
    be = backend(plan["config"])
    assert "    balance roundrobin\n" in be and "balance leastconn" not in be
    assert ("    server gw-chat 127.0.0.1:3000 weight 9\n    server h2-chat 10.0.0.2:3000 weight 9\n"
            "    server gw-chat-vllm 127.0.0.1:8000 weight 1\n    server h2-chat-vllm 10.0.0.2:8000 weight 1\n") in be
    assert "leastconn does not follow weights" in be  # the why, for whoever reads the file
    assert "http-check send meth GET uri /health ver HTTP/1.1" in be
    # one key upstream for both sides, from the upstream map (never in the config)
    assert plan["upstream_map"] == "be_chat Bearer %s\n" % ENGINE_KEY and ENGINE_KEY not in plan["config"]
    assert 'http-request set-header Authorization "%[be_name,map(' in be
    assert "set-header Host localhost" not in be
    assert "migrating to the vllm instances of group tgi_servers (10% of new requests)" in plan["config"]


def test_a_migrating_door_opens_what_both_engines_allow_and_refuses_what_either_forbids():
    config = build_migration()["config"]
    front = config[config.index("frontend fe_chat"):config.index("backend be_chat")]
    assert "    acl gw_route path_beg /v1/\n" in front and "acl gw_route path " not in front
    # TGI forbids nothing, vLLM its runtime LoRA loading: the door refuses it
    assert "    acl gw_forbidden path_beg /v1/load_lora_adapter /v1/unload_lora_adapter\n" in front
    assert "if gw_forbidden || !gw_route" in front
    assert gw.door_routes({"engine": "tgi", "extra_paths": ["/generate"], "migrate_to": {"engine": "vllm"}}) == (
        ["/v1/"], ["/generate"], ["/v1/load_lora_adapter", "/v1/unload_lora_adapter"])
    # a path the migrate_to engine forbids is refused as an extra path too
    doors = migrating()
    doors[0]["extra_paths"] = ["/v1/load_lora_adapter"]
    with pytest.raises(gw.GatewayError, match="extra_paths /v1/load_lora_adapter changes the vllm server"):
        build_migration(doors=doors)


def test_the_doors_description_of_a_migrating_door_and_of_a_plain_one():
    door = build_migration()["doors"][0]
    assert sorted(door) == ["bind_address", "engine", "engine_key", "group", "health_path", "migrate_to", "model", "name",
                            "port", "servers"]
    assert door["migrate_to"] == {"engine": "vllm", "weight": 10}
    # the door's model is the door engine's (what clients send; the vLLM side serves it under its served names too)
    assert (door["engine"], door["model"], door["engine_key"]) == ("tgi", TGI_MODEL, True)
    assert door["servers"][2] == {"name": "gw-chat-vllm", "host": "gw", "instance": "chat-vllm", "address": "127.0.0.1",
                                  "port": 8000, "model": "tiny-7b", "engine": "vllm", "weight": 1}
    assert ENGINE_KEY not in json.dumps(door)
    # a door that is not migrating: migrate_to null, each server its engine and HAProxy's default weight (no weight line)
    plain = build()
    assert [d["migrate_to"] for d in plain["doors"]] == [None, None]
    assert [(s["engine"], s["weight"]) for s in plain["doors"][0]["servers"]] == [("vllm", 1), ("vllm", 1)]
    assert " weight " not in plain["config"]
    assert sorted(plain["doors"][0]["servers"][0]) == ["address", "engine", "host", "instance", "model", "name", "port", "weight"]


@pytest.mark.parametrize("weight, tgi_weight, vllm_weight", [(0, 1, 0), (None, 1, 0), (50, 1, 1), ("25", 3, 1), (100, 0, 1)])
def test_the_weight_sets_each_sides_haproxy_weight(weight, tgi_weight, vllm_weight):
    doors = migrating()
    doors[0]["migrate_to"]["weight"] = weight
    plan = build_migration(doors=doors)
    assert [s["weight"] for s in plan["doors"][0]["servers"]] == [tgi_weight] * 2 + [vllm_weight] * 2
    be = backend(plan["config"])
    assert "    server gw-chat 127.0.0.1:3000 weight %d\n" % tgi_weight in be
    assert "    server h2-chat-vllm 10.0.0.2:8000 weight %d\n" % vllm_weight in be
    assert plan["doors"][0]["migrate_to"]["weight"] == int(weight or 0)


def test_migrate_to_has_a_group_and_instances_of_its_own():
    serv = migration_serving()
    serv["h3"] = {"address": "10.0.0.3", "endpoints": [
        vllm("a", bind="10.0.0.3", port=8001, model="tiny-7b", api_key=ENGINE_KEY),
        vllm("b", bind="10.0.0.3", port=8002, model="tiny-7b", api_key=ENGINE_KEY),
        vllm("other", bind="10.0.0.3", port=8003, model="other", api_key=ENGINE_KEY)]}
    plan = build_migration(doors=migrating(weight=50, group="vllm_servers", instances=["a", "b"]), serv=serv)
    servers = plan["doors"][0]["servers"]
    assert [(s["name"], s["weight"]) for s in servers] == [("gw-chat", 1), ("h2-chat", 1), ("h3-a", 1), ("h3-b", 1)]
    # one model per side: the vLLM side serving two models is refused, with the field that fixes it
    with pytest.raises(gw.GatewayError, match=r"migrate_to: the vllm instances of group vllm_servers serve different models "
                                              r"\(other, tiny-7b\).*set migrate_to.instances"):
        build_migration(doors=migrating(group="vllm_servers"), serv=serv)
    # the door's model picks the TGI side only (the vLLM side serves it under another name)
    doors = migrating(weight=50, group="vllm_servers", instances=["a"])
    doors[0]["model"] = TGI_MODEL
    assert [s["name"] for s in build_migration(doors=doors, serv=serv)["doors"][0]["servers"]] == ["gw-chat", "h2-chat", "h3-a"]


def test_the_migration_weights_of_uneven_sides_reach_the_servers():
    serv = migration_serving()
    serv["h2"]["endpoints"] = [tgi()]  # 2 TGI + 1 vLLM at 50%: the vLLM replica weighs as much as both TGI ones
    plan = build_migration(doors=migrating(weight=50), serv=serv)
    assert [(s["name"], s["weight"]) for s in plan["doors"][0]["servers"]] == [("gw-chat", 1), ("h2-chat", 1), ("gw-chat-vllm", 2)]


def test_both_sides_loopback_engines_metrics_are_relayed_each_by_its_own_engine():
    config = build_migration()["config"]
    assert "    acl gw_engine_metrics path /engines/gw-chat/metrics /engines/gw-chat-vllm/metrics\n" in config
    assert "backend mx_gw-chat-vllm\n    http-request set-path /metrics\n    server gw-chat-vllm 127.0.0.1:8000\n" in config
    assert "backend mx_gw-chat\n" in config and "mx_h2-" not in config


def test_the_curl_line_of_a_migrating_door_says_so():
    lines = gw.curl_lines(build_migration()["doors"], "192.0.2.7").splitlines()
    assert lines[0] == "door chat (tgi %s, 4 replica(s); migrating: 10%% of new requests to vllm) https://192.0.2.7:8443" % TGI_MODEL
    assert '"model": "%s"' % TGI_MODEL in lines[1]


BAD_MIGRATIONS = [
    ("vllm", r"gateway_frontends\[0\] \(chat\): migrate_to must be a dict \{engine, group, instances, weight\}.*got 'vllm'"),
    ({"engine": "vllm", "percent": 10}, r"gateway_frontends\[0\] \(chat\): migrate_to: unknown field\(s\) percent; "
                                        r"migrate_to has engine, group, instances, weight"),
    ({"weight": 10}, r"\(chat\): migrate_to.engine None must be one of vllm, tgi"),
    ({"engine": "sglang"}, r"migrate_to.engine 'sglang' must be one of vllm, tgi"),
    ({"engine": "tgi"}, r"migrate_to.engine 'tgi' is the door's own engine; migrate_to names the OTHER engine"),
    ({"engine": "ollama"}, r"\(chat\): migrate_to: a migration mixes two OpenAI-API engines that serve the same model.*"
                           r"ollama cannot be on either side.*migrate_to.engine: 'ollama'"),
    ({"engine": "vllm", "group": "nowhere"}, r"migrate_to.group 'nowhere' is not in the inventory; set it to the inventory "
                                             r"group whose vllm instances"),
    ({"engine": "vllm", "instances": "chat-vllm"}, r"migrate_to.instances must be a list of vllm instance names, got 'chat-vllm'"),
    ({"engine": "vllm", "weight": 101}, r"migrate_to.weight \(the percent of new requests sent to vllm\) must be a whole "
                                        r"number from 0 to 100, got 101"),
    ({"engine": "vllm", "weight": -1}, r"migrate_to.weight .* got -1"),
    ({"engine": "vllm", "weight": True}, r"migrate_to.weight .* got True"),
    ({"engine": "vllm", "weight": "ten"}, r"migrate_to.weight .* got 'ten'"),
    ({"engine": "vllm", "weight": 12.5}, r"migrate_to.weight .* got 12.5"),
    ({"engine": "vllm", "instances": ["nope"]}, r"gateway_frontends \(chat\): migrate_to: no vllm instance in group "
                                                r"tgi_servers named nope has published an endpoint; check the "
                                                r"migrate_to.group and migrate_to.instances"),
    ({"engine": "vllm", "group": "vllm_servers"}, r"migrate_to: host h3 of group vllm_servers has published no endpoints"),
]


@pytest.mark.parametrize("migrate_to, message", BAD_MIGRATIONS)
def test_bad_migrate_to_values_are_refused_with_the_fix(migrate_to, message):
    doors = [{"name": "chat", "engine": "tgi", "port": 8443, "migrate_to": migrate_to}]
    with pytest.raises(gw.GatewayError, match=message):
        build_migration(doors=doors)


def test_an_ollama_door_cannot_migrate():
    doors = [{"name": "local", "engine": "ollama", "port": 8444, "migrate_to": {"engine": "vllm"}}]
    with pytest.raises(gw.GatewayError, match=r"gateway_frontends\[0\] \(local\): migrate_to: a migration mixes two "
                                              r"OpenAI-API engines.*\(this door: ollama"):
        build(doors=doors)


def test_a_door_without_migrate_to_or_with_null_is_not_migrating():
    doors = [{"name": "chat", "engine": "vllm", "port": 8443, "migrate_to": None}]
    plan = build(doors=doors)
    assert plan["doors"][0]["migrate_to"] is None and "balance leastconn" in plan["config"]
    assert plan["config"] == build(doors=[{"name": "chat", "engine": "vllm", "port": 8443}])["config"]


@pytest.mark.parametrize("vllm_key", ["another-engine-key-0123", None])
def test_the_two_sides_must_share_one_engine_key(vllm_key):
    with pytest.raises(gw.GatewayError, match=r"gateway_frontends \(chat\): the vllm instances \(migrate_to\) and the tgi "
                                              r"instances behind this door have different engine API keys \(not shown\).*"
                                              r"give the vllm instances the tgi instances' api_key \(the tgi_to_vllm "
                                              r"filter carries it over\)") as err:
        build_migration(serv=migration_serving(vllm_key=vllm_key))
    assert ENGINE_KEY not in str(err.value) and "another-engine-key" not in str(err.value)


def test_no_engine_key_on_either_side_is_one_key():
    serv = migration_serving(vllm_key=None)
    for host in serv.values():
        host["endpoints"][0]["api_key"] = None
    plan = build_migration(serv=serv)
    assert plan["upstream_map"] == "" and plan["doors"][0]["engine_key"] is False


def test_the_two_sides_must_share_one_readiness_path():
    serv = migration_serving()
    for host in serv.values():
        host["endpoints"][1]["health_path"] = "/ready"
    with pytest.raises(gw.GatewayError, match=r"\(chat\): the instances behind this door have different readiness paths "
                                              r"\(/health, /ready\)"):
        build_migration(serv=serv)


def test_a_server_name_or_address_used_by_both_sides_is_refused():
    serv = migration_serving()
    serv["gw"]["endpoints"][1] = vllm("chat", port=8000, model="tiny-7b", api_key=ENGINE_KEY)  # tgi_to_vllm kept the name
    with pytest.raises(gw.GatewayError, match=r"two instances map to one server name \(gw-chat, h2-chat, gw-chat, "
                                              r"h2-chat-vllm\); rename an instance \(beside a tgi instance on the same "
                                              r"host, give the vllm instance a name and a port of its own\)"):
        build_migration(serv=serv)
    serv = migration_serving()
    serv["gw"]["endpoints"][1] = vllm("chat-vllm", port=3000, model="tiny-7b", api_key=ENGINE_KEY)  # and the port
    with pytest.raises(gw.GatewayError, match=r"two endpoints share one address and port .*127.0.0.1:3000.*127.0.0.1:3000.*"
                                              r"a name and a port of its own"):
        build_migration(serv=serv)


@pytest.mark.parametrize("n_from, n_to, percent, weights", [
    (1, 1, 10, (9, 1)),      # the first step of a migration: 9:1
    (1, 1, 50, (1, 1)),
    (2, 1, 50, (1, 2)),      # 2 TGI + 1 vLLM: the vLLM replica weighs as much as both TGI ones
    (1, 2, 50, (2, 1)),
    (3, 2, 33, (134, 99)),   # exact: 2 * 99 / (3 * 134 + 2 * 99) = 198 / 600
    (1, 1, 25, (3, 1)),
    (4, 4, 90, (1, 9)),
    (1, 1, 0, (1, 0)),       # 0: the migrate_to side takes no new request
    (5, 3, 0, (1, 0)),
    (1, 1, 100, (0, 1)),     # 100: the door's own engine takes none
    (5, 3, 100, (0, 1)),
])
def test_migration_weights(n_from, n_to, percent, weights):
    assert gw.migration_weights(n_from, n_to, percent) == weights
    assert gw.migrate_share(n_from, n_to, weights) == pytest.approx(percent / 100.0)


@pytest.mark.parametrize("n_from, n_to, percent", [(7, 3, 1), (4, 1, 99), (1, 4, 1), (300, 1, 50), (3, 7, 43)])
def test_migration_weights_are_the_nearest_when_not_exact(n_from, n_to, percent):
    from fractions import Fraction
    w_from, w_to = gw.migration_weights(n_from, n_to, percent)
    assert 1 <= w_from <= 256 and 1 <= w_to <= 256

    def error(a, b):
        return abs(Fraction(n_to * b, n_from * a + n_to * b) - Fraction(percent, 100))
    # no pair of HAProxy weights (both >= 1: neither side is shut off) comes closer
    best = min(error(a, b) for a in range(1, 257) for b in range(1, 257))
    assert error(w_from, w_to) == best


def test_migration_weights_keep_both_sides_alive_strictly_between_0_and_100():
    for n_from, n_to in ((1, 1), (2, 1), (1, 2), (8, 1), (1, 8), (3, 5)):
        for percent in range(1, 100):
            w_from, w_to = gw.migration_weights(n_from, n_to, percent)
            assert 1 <= w_from <= 256 and 1 <= w_to <= 256, (n_from, n_to, percent)
            if max(n_from, n_to) <= 2:  # within HAProxy's 256 every step is met to half a percent
                assert abs(gw.migrate_share(n_from, n_to, (w_from, w_to)) * 100 - percent) < 0.5, (n_from, n_to, percent)
    # 8 TGI + 1 vLLM at 98%: the vLLM replica's 256 against 1 per TGI replica is as far as HAProxy's weights go
    assert gw.migration_weights(8, 1, 98) == (1, 256)


@pytest.mark.parametrize("args, message", [
    ((0, 1, 10), r"n_from\) must be a whole number from 1"),
    ((1, 0, 10), r"n_to\) must be a whole number from 1"),
    ((1, 1, 101), "percent of new requests sent to the migrate_to side must be a whole number from 0 to 100, got 101"),
    ((1, 1, 10.5), "got 10.5"),
    ((1, 1, None), "got None"),
    ((True, 1, 10), "got True"),
])
def test_migration_weights_refuse_bad_arguments(args, message):
    with pytest.raises(gw.GatewayError, match=message):
        gw.migration_weights(*args)


# --- the gate of one traffic-shift step (roles/migrate/tasks/step.yml) -------------------------------------------------

GATE_SERVERS = [{"name": "h1-tiny", "engine": "tgi"}, {"name": "h1-tiny-vllm", "engine": "vllm"}]


def _rows(tgi, vllm, vllm_5xx=0, vllm_econ=0, vllm_eresp=0):
    return {"h1-tiny": {"stot": tgi, "hrsp_5xx": 0, "econ": 0, "eresp": 0},
            "h1-tiny-vllm": {"stot": vllm, "hrsp_5xx": vllm_5xx, "econ": vllm_econ, "eresp": vllm_eresp}}


def test_migration_gate_passes_on_clean_answers_and_counts_the_share():
    gate = gw.migration_gate(GATE_SERVERS, _rows(100, 3), _rows(145, 8), probe={"completed": 20, "failed": 0, "p99_ttft_ms": 9.87},
                             step=10)
    assert gate["passed"] and gate["reasons"] == []
    assert (gate["door_requests"], gate["requests"], gate["errors"]) == (50, 5, 0)
    assert gate["probe_completed"] == 20 and gate["probe_ttft_p99_ms"] == 9.9 and not gate["counters_reset"]


def test_migration_gate_fails_on_errors_of_the_new_side_only():
    # TGI's own errors are not the new side's; vLLM's 5xx, failed connections and broken responses are
    start, end = _rows(0, 0), _rows(40, 10, vllm_5xx=1, vllm_econ=1, vllm_eresp=1)
    end["h1-tiny"]["hrsp_5xx"] = 7
    gate = gw.migration_gate(GATE_SERVERS, start, end, step=50)
    assert not gate["passed"] and gate["errors"] == 3
    assert "answered 3 of 10 requests with an error" in gate["reasons"][0] and "migrate_gate_max_errors" in gate["reasons"][0]
    assert gw.migration_gate(GATE_SERVERS, start, end, max_errors=3, step=50)["passed"]


def test_migration_gate_fails_on_a_failed_probe_and_on_no_traffic_to_the_new_side():
    gate = gw.migration_gate(GATE_SERVERS, _rows(0, 0), _rows(20, 0),
                             probe={"completed": 19, "failed": 1, "errors": ["HTTP 503: no server"]}, step=10)
    assert not gate["passed"] and len(gate["reasons"]) == 2
    assert "1 of 20 probe requests" in gate["reasons"][0] and "HTTP 503" in gate["reasons"][0]
    assert "no request reached the vllm replicas" in gate["reasons"][1] and "migrate_gate_requests" in gate["reasons"][1]
    # going back to 0%: no request to vLLM is what was asked
    assert gw.migration_gate(GATE_SERVERS, _rows(0, 0), _rows(20, 0), step=0)["passed"]


def test_migration_gate_reads_a_counter_reset_as_a_reload_and_needs_every_replica():
    gate = gw.migration_gate(GATE_SERVERS, _rows(500, 300), _rows(12, 4), step=50)
    assert gate["counters_reset"] and gate["requests"] == 4 and gate["door_requests"] == 16 and gate["passed"]
    with pytest.raises(gw.GatewayError, match="no counters of replica h1-tiny-vllm"):
        gw.migration_gate(GATE_SERVERS, _rows(0, 0), {"h1-tiny": _rows(1, 1)["h1-tiny"]}, step=50)
