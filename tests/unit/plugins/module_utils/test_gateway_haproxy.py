# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The gateway's rendered configuration in a real HAProxy (Debian 12's 2.6, tools/setup.sh installs it).

``haproxy -c`` accepts the configurations the role writes; then one HAProxy runs in the foreground with a rendered
configuration (TLS with a self-signed certificate made by openssl, the real map files) in front of two recording
stand-in engines on loopback, and every route is called with no key, a wrong key and a right key. The log is read
for the key's name and searched for the keys themselves. Nothing here needs a lab host: the lab proof against the
real vLLM and Ollama is roles/*/molecule/default/verify_gateway.yml."""
from __future__ import annotations

import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gateway as gw
from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_endpoint as endpoint
from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_http as llm_http

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
KEY = "right-key-" + "k" * 30
TIGHT_KEY = "tight-key-" + "t" * 30
WRONG_KEY = "wrong-key-" + "w" * 30
ENGINE_KEY = "engine-own-key-0123456789"

VLLM_OPEN = ["/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings"]
# vLLM 0.32 routes its --api-key does not guard, and the rest of what it serves outside /v1
VLLM_CLOSED = ["/invocations", "/metrics", "/health", "/ping", "/tokenize", "/detokenize", "/load", "/version", "/pooling",
               "/classify", "/score", "/rerank", "/docs", "/openapi.json", "/v1/load_lora_adapter",
               "/v1/unload_lora_adapter", "/v2/rerank", "/", "/v1"]
OLLAMA_OPEN = ["/api/chat", "/api/generate", "/api/embed", "/api/tags", "/api/show", "/api/ps", "/api/version",
               "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/embeddings"]
OLLAMA_CLOSED = ["/api/create", "/api/delete", "/api/pull", "/api/push", "/api/copy", "/api/blobs/sha256-00",
                 "/api/embeddings", "/", "/api/chat/", "/API/chat"]
# paths that would walk around an allow-list if the gateway did not refuse them (sent as they are, not normalised)
TRICKS = ["/v1/../api/delete", "/v1/%2e%2e/metrics", "//api/delete", "/v1/./../invocations", "/api/tags/..",
          "/v1/models%00", "/v1\\..\\metrics"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in engine: 200 on everything, remembering each path and Authorization header it received."""
    seen = None  # set per server

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.headers.get("User-Agent") is not None:  # the gateway's health checks send none
            self.server.seen.append((self.path, self.headers.get("Authorization"), self.headers.get("Host")))
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args):
        pass


class Engine(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a health check that hangs up after the status line is no error


def engine():
    server = Engine(("127.0.0.1", 0), Recorder)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=gateway-test", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    (d / "tls.pem").write_text((d / "cert.pem").read_text() + (d / "key.pem").read_text())
    return d


def settings(d, metrics_port=0):
    return {"log_target": "stdout format raw", "chroot": None, "user": None, "group": None,
            "runtime_socket": str(d / "admin.sock"), "tls_pem": str(d / "tls.pem"), "keys_map": str(d / "keys.map"),
            "rates_map": str(d / "rates.map"), "upstream_map": str(d / "upstream.map"), "metrics_port": metrics_port,
            "rate_limit_period": 30, "check_interval": "200ms"}


def write(d, plan):
    for name in ("keys_map", "rates_map", "upstream_map"):
        (d / (name.replace("_map", "") + ".map")).write_text(plan[name])
    (d / "haproxy.cfg").write_text(plan["config"])
    return d / "haproxy.cfg"


def haproxy_check(path):
    return subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True, check=False)


def test_haproxy_is_installed():
    assert os.access(HAPROXY, os.X_OK), "haproxy is not installed: run tools/setup.sh (it installs Debian's haproxy)"


@pytest.mark.parametrize("engine_name, extra", [("vllm", {}), ("ollama", {}), ("tgi", {"extra_paths": ["/generate"]})])
def test_haproxy_accepts_the_production_config(tmp_path, tls, engine_name, extra):
    """The production settings (chroot, user haproxy, /dev/log) with only the file paths moved to a scratch directory."""
    shutil.copy(tls / "tls.pem", tmp_path / "tls.pem")
    s = {k: v for k, v in settings(tmp_path, metrics_port=8405).items()
         if k in ("tls_pem", "keys_map", "rates_map", "upstream_map", "runtime_socket", "metrics_port")}
    endpoints = [{"name": "a", "instance": "a", "engine": engine_name, "url": "http://127.0.0.1:8000", "host": "0.0.0.0",
                  "port": 8000, "model": "m", "api_key": ENGINE_KEY},
                 {"name": "b", "instance": "b", "engine": engine_name, "url": "http://10.1.2.3:8001", "host": "10.1.2.3",
                  "port": 8001, "model": "m", "api_key": ENGINE_KEY}]
    door = dict({"name": "door", "engine": engine_name, "port": 8443, "group": "g", "bind_address": "::"}, **extra)
    plan = gw.build([door], [{"name": "alice", "key": KEY}], {"g": ["gw"]}, {"gw": {"endpoints": endpoints}}, "gw", s)
    result = haproxy_check(write(tmp_path, plan))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


def test_haproxy_refuses_a_config_whose_certificate_is_missing(tmp_path):
    """What the role's template validate: catches (the live file is then left as it was)."""
    s = settings(tmp_path)
    endpoints = [{"name": "a", "engine": "vllm", "url": "http://127.0.0.1:8000", "host": "127.0.0.1", "port": 8000, "model": "m"}]
    plan = gw.build([{"name": "d", "engine": "vllm", "port": 8443, "group": "g"}], [{"name": "alice", "key": KEY}],
                    {"g": ["gw"]}, {"gw": {"endpoints": endpoints}}, "gw", s)
    result = haproxy_check(write(tmp_path, plan))
    assert result.returncode != 0 and "tls.pem" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, tls):
    """One HAProxy with two doors: vLLM-like (two replicas, an engine key) and Ollama-like (one instance, no key)."""
    d = tmp_path_factory.mktemp("gateway")
    shutil.copy(tls / "tls.pem", d / "tls.pem")
    v1, v2, ol = engine(), engine(), engine()
    ports = {"vllm": free_port(), "ollama": free_port(), "metrics": free_port()}
    endpoints = [
        {"name": "one", "instance": "one", "engine": "vllm", "url": "http://127.0.0.1:%d" % v1.server_port, "host": "127.0.0.1",
         "port": v1.server_port, "model": "tiny", "api_key": ENGINE_KEY},
        {"name": "two", "instance": "two", "engine": "vllm", "url": "http://127.0.0.1:%d" % v2.server_port, "host": "0.0.0.0",
         "port": v2.server_port, "model": "tiny", "api_key": ENGINE_KEY},
        {"name": "ollama", "instance": "ollama", "engine": "ollama", "url": "http://127.0.0.1:%d" % ol.server_port,
         "host": "127.0.0.1", "port": ol.server_port, "model": "tiny:latest"},
    ]
    keys = [{"name": "alice", "key": KEY, "rate_limit": 1000}, {"name": "tight", "key": TIGHT_KEY, "rate_limit": 2}]
    doors = [{"name": "chat", "engine": "vllm", "port": ports["vllm"], "group": "g", "bind_address": "127.0.0.1"},
             {"name": "local", "engine": "ollama", "port": ports["ollama"], "group": "g", "bind_address": "127.0.0.1"}]
    plan = gw.build(doors, keys, {"g": ["gw"]}, {"gw": {"endpoints": endpoints}}, "gw", settings(d, ports["metrics"]))
    cfg = write(d, plan)
    log = open(d / "haproxy.log", "w")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    context = ssl.create_default_context(cafile=str(tls / "cert.pem"))
    gateway = {"dir": d, "proc": proc, "ports": ports, "context": context, "engines": {"one": v1, "two": v2, "ollama": ol},
               "plan": plan}
    up, stat = wait_chat_up(gateway)  # listening, and both vLLM servers UP by their health checks
    if not up:
        proc.kill()
        pytest.fail("haproxy did not come up: %s %s" % ((d / "haproxy.log").read_text(), stat))
    yield gateway
    proc.terminate()
    proc.wait(10)
    log.close()
    for server in (v1, v2, ol):
        server.shutdown()


def wait_chat_up(gateway, count=2, timeout=20):
    """(True, show stat) once HAProxy answers on its socket and ``count`` replicas of door chat are UP; (False, the last
    show stat or None) after ``timeout`` seconds."""
    deadline, stat = time.time() + timeout, None
    while time.time() < deadline:
        try:
            stat = runtime(gateway, "show stat")
        except OSError:
            time.sleep(0.1)
            continue
        if sum(1 for line in stat.splitlines() if line.startswith("be_chat,gw-") and ",UP," in line) == count:
            return True, stat
        time.sleep(0.1)
    return False, stat


def runtime(gateway, command):
    """The runtime API on the admin socket, as an operator's socat would use it."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(gateway["dir"] / "admin.sock"))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)


def call(gateway, door, path, key=None, method="GET"):
    conn = http.client.HTTPSConnection("127.0.0.1", gateway["ports"][door], context=gateway["context"], timeout=10)
    headers = {"Content-Type": "application/json", "User-Agent": "gateway-test"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn.request(method, path, body=b"{}" if method == "POST" else None, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), body


@pytest.mark.parametrize("door, path, open_", [("vllm", p, True) for p in VLLM_OPEN] + [("vllm", p, False) for p in VLLM_CLOSED]
                         + [("ollama", p, True) for p in OLLAMA_OPEN] + [("ollama", p, False) for p in OLLAMA_CLOSED])
def test_every_route_with_no_key_a_wrong_key_and_the_right_key(gateway, door, path, open_):
    for method in ("GET", "POST"):
        assert call(gateway, door, path, method=method)[0] == 401
        assert call(gateway, door, path, WRONG_KEY, method=method)[0] == 401
        status, _headers, body = call(gateway, door, path, KEY, method=method)
        if open_:
            assert status == 200 and json.loads(body)["path"] == path
        else:
            assert status == 403 and b"not open at the gateway" in body


def test_llm_endpoints_refused_without_key_passes_at_a_door_and_fails_at_the_engine_behind_it(gateway):
    """What the gateway's smoke asks of each door (llm_endpoint refused_without_key), against the real HAProxy: the door
    answers 401 to the request without the key; the engine behind it, reached directly, serves it, and the check says so."""
    for door, path in (("vllm", "/v1/models"), ("ollama", "/api/tags")):
        client = llm_http.HttpClient("https://127.0.0.1:%d" % gateway["ports"][door], api_key=KEY, validate_certs=False)
        endpoint.refuse_without_key(client, path)
        assert client.call("GET", path).status == 200  # the same client, with its key
    behind = llm_http.HttpClient("http://127.0.0.1:%d" % gateway["engines"]["ollama"].server_port, api_key=KEY)
    with pytest.raises(llm_http.LlmAuthError, match=r"/api/tags returned HTTP 200: answered without an API key"):
        endpoint.refuse_without_key(behind, "/api/tags")


@pytest.mark.parametrize("path", TRICKS)
def test_paths_that_would_walk_around_the_allow_list_are_refused(gateway, path):
    seen = sum(len(e.seen) for e in gateway["engines"].values())
    for door in ("vllm", "ollama"):
        assert call(gateway, door, path, KEY)[0] in (400, 403)
    assert sum(len(e.seen) for e in gateway["engines"].values()) == seen


def test_the_authorization_scheme_is_bearer_in_any_case_and_nothing_else(gateway):
    conn = http.client.HTTPSConnection("127.0.0.1", gateway["ports"]["vllm"], context=gateway["context"], timeout=10)
    for value, status in (("bearer " + KEY, 200), ("BEARER  " + KEY, 200), (KEY, 401), ("Basic " + KEY, 401),
                          ("Bearer " + KEY + " extra", 401), ("Bearer", 401)):
        conn.request("GET", "/v1/models", headers={"Authorization": value})
        response = conn.getresponse()
        response.read()
        assert (value[:12], response.status) == (value[:12], status)
    conn.close()


def test_the_engine_gets_its_own_key_and_never_the_clients(gateway):
    for server in gateway["engines"].values():
        server.seen.clear()
    for _attempt in range(6):
        assert call(gateway, "vllm", "/v1/models", KEY)[0] == 200
        assert call(gateway, "ollama", "/api/tags", KEY)[0] == 200
    vllm_seen = gateway["engines"]["one"].seen + gateway["engines"]["two"].seen
    assert {auth for _path, auth, _host in vllm_seen} == {"Bearer " + ENGINE_KEY}
    assert {auth for _path, auth, _host in gateway["engines"]["ollama"].seen} == {None}
    # Ollama gets a local Host (it refuses others when bound to loopback); vLLM the client's
    assert {host for _path, _auth, host in gateway["engines"]["ollama"].seen} == {"localhost"}
    assert {host for _path, _auth, host in vllm_seen} == {"127.0.0.1:%d" % gateway["ports"]["vllm"]}
    # several replicas behind one backend: both answered
    assert gateway["engines"]["one"].seen and gateway["engines"]["two"].seen


def test_a_key_over_its_rate_gets_429_with_retry_after(gateway):
    assert [call(gateway, "vllm", "/v1/models", TIGHT_KEY)[0] for _attempt in range(2)] == [200, 200]
    status, headers, body = call(gateway, "vllm", "/v1/models", TIGHT_KEY)
    assert status == 429 and headers["retry-after"] == "30" and b"rate limit" in body
    # the other key is not limited by it
    assert call(gateway, "vllm", "/v1/models", KEY)[0] == 200


def test_the_log_names_the_key_and_never_holds_a_key(gateway):
    call(gateway, "vllm", "/v1/models?api_key_name_probe=1", KEY)
    call(gateway, "vllm", "/v1/models", WRONG_KEY)
    time.sleep(0.3)
    log = (gateway["dir"] / "haproxy.log").read_text()
    assert "key=alice" in log and "key=tight" in log and "key=- " in log
    assert '"GET /v1/models HTTP/1.1"' in log  # the path without its query string
    for secret in (KEY, TIGHT_KEY, WRONG_KEY, ENGINE_KEY, KEY[10:30]):
        assert secret not in log


def test_the_runtime_api_drains_and_readies_a_replica(gateway):
    assert runtime(gateway, "set server be_chat/gw-one state drain") == "\n"
    assert "DRAIN" in next(line for line in runtime(gateway, "show stat").splitlines() if line.startswith("be_chat,gw-one,"))
    gateway["engines"]["one"].seen.clear()
    for _attempt in range(4):
        assert call(gateway, "vllm", "/v1/models", KEY)[0] == 200
    assert gateway["engines"]["one"].seen == []  # a draining server takes no new request
    assert runtime(gateway, "set server be_chat/gw-one state ready") == "\n"
    assert ",UP," in next(line for line in runtime(gateway, "show stat").splitlines() if line.startswith("be_chat,gw-one,"))


def test_a_dead_engine_is_taken_out_by_its_health_check(gateway):
    ollama = gateway["engines"]["ollama"]
    ollama.shutdown()
    ollama.server_close()
    deadline = time.time() + 10
    while time.time() < deadline:
        line = next(line for line in runtime(gateway, "show stat").splitlines() if line.startswith("be_local,gw-ollama,"))
        if ",DOWN," in line:
            break
        time.sleep(0.2)
    assert ",DOWN," in line
    assert call(gateway, "ollama", "/api/tags", KEY)[0] == 503


def test_the_gateway_metrics_answer_on_the_private_side(gateway):
    conn = http.client.HTTPConnection("127.0.0.1", gateway["ports"]["metrics"], timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read().decode()
    assert response.status == 200 and "haproxy_backend_active_servers" in body
    conn.close()


def test_the_metrics_listener_relays_the_loopback_engines_metrics(gateway):
    """An engine on loopback beside the gateway is scraped through the metrics listener (the doors refuse /metrics)."""
    def get(path):
        conn = http.client.HTTPConnection("127.0.0.1", gateway["ports"]["metrics"], timeout=10)
        conn.request("GET", path, headers={"User-Agent": "prometheus-test"})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        return response.status, body
    one = gateway["engines"]["one"]
    one.seen.clear()
    status, body = get(gw.engine_metrics_path("gw", "one"))
    assert status == 200 and json.loads(body) == {"path": "/metrics"}
    # the engine got /metrics, and no key (neither a client's nor its own)
    assert [(path, auth) for path, auth, _host in one.seen] == [("/metrics", None)]
    assert get(gw.engine_metrics_path("gw", "two"))[0] == 200
    # Ollama has no /metrics to relay; an unknown replica and any other path are 404
    for path in (gw.engine_metrics_path("gw", "ollama"), "/engines/gw-nope/metrics", "/engines/gw-one/tokenize", "/invocations"):
        assert get(path)[0] == 404, path
    assert call(gateway, "vllm", "/metrics", KEY)[0] == 403


# A door in the middle of a TGI -> vLLM migration: one stand-in "tgi" and one stand-in "vllm" behind one backend,
# balance roundrobin with the weights of migration_weights; the share of sequential requests follows them, and the
# runtime API moves it without a reload (what playbooks/migrate_tgi_to_vllm.yml does step by step).
def migration_plan(d, tgi_port, vllm_port, weight, door_port=8443, s=None):
    endpoints = [{"name": "chat", "instance": "chat", "engine": "tgi", "url": "http://127.0.0.1:%d" % tgi_port,
                  "host": "127.0.0.1", "port": tgi_port, "model": "org/tiny", "api_key": ENGINE_KEY},
                 {"name": "chat-vllm", "instance": "chat-vllm", "engine": "vllm", "url": "http://127.0.0.1:%d" % vllm_port,
                  "host": "127.0.0.1", "port": vllm_port, "model": "tiny", "api_key": ENGINE_KEY}]
    door = {"name": "chat", "engine": "tgi", "port": door_port, "group": "g", "bind_address": "127.0.0.1",
            "migrate_to": {"engine": "vllm", "weight": weight}}
    return gw.build([door], [{"name": "alice", "key": KEY, "rate_limit": 1000}], {"g": ["gw"]},
                    {"gw": {"endpoints": endpoints}}, "gw", s or settings(d))


def test_haproxy_accepts_a_migrating_door_in_the_production_config(tmp_path, tls):
    shutil.copy(tls / "tls.pem", tmp_path / "tls.pem")
    s = {k: v for k, v in settings(tmp_path, metrics_port=8405).items()
         if k in ("tls_pem", "keys_map", "rates_map", "upstream_map", "runtime_socket", "metrics_port")}
    plan = migration_plan(tmp_path, 3000, 8000, 10, s=s)
    assert "balance roundrobin" in plan["config"] and "weight 9" in plan["config"] and "weight 1" in plan["config"]
    result = haproxy_check(write(tmp_path, plan))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout


class Migration:
    """One HAProxy in the foreground with a migrating door in front of a stand-in tgi and a stand-in vllm."""

    def __init__(self, d, tls, weight):
        shutil.copy(tls / "tls.pem", d / "tls.pem")
        self.dir, self.tgi, self.vllm, self.port = d, engine(), engine(), free_port()
        self.plan = migration_plan(d, self.tgi.server_port, self.vllm.server_port, weight, self.port)
        self.cfg = write(d, self.plan)
        self.log = open(d / "haproxy.log", "w")
        self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.cfg)], stdout=self.log, stderr=subprocess.STDOUT)
        self.gateway = {"dir": d, "ports": {"chat": self.port}, "context": ssl.create_default_context(cafile=str(tls / "cert.pem"))}
        up, stat = wait_chat_up(self.gateway)  # both replicas UP by their health checks (a weight 0 one too)
        if up:
            return
        self.close()
        pytest.fail("haproxy did not come up: %s %s" % ((d / "haproxy.log").read_text(), stat))

    def share(self, count=20):
        """How many of ``count`` sequential requests reached each engine: (tgi, vllm)."""
        self.tgi.seen.clear()
        self.vllm.seen.clear()
        for _attempt in range(count):
            status, _headers, body = call(self.gateway, "chat", "/v1/chat/completions", KEY, method="POST")
            assert status == 200 and json.loads(body)["path"] == "/v1/chat/completions"
        assert len(self.tgi.seen) + len(self.vllm.seen) == count
        return len(self.tgi.seen), len(self.vllm.seen)

    def weights(self):
        """{server: weight} of the door's backend, as show stat reads it."""
        lines = runtime(self.gateway, "show stat").splitlines()
        header = lines[0][2:].split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line.startswith("be_chat,")]
        return {row["svname"]: int(row["weight"]) for row in rows if row["svname"] not in ("FRONTEND", "BACKEND")}

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()
        for server in (self.tgi, self.vllm):
            server.shutdown()
            server.server_close()


@pytest.fixture
def migration(tmp_path, tls):
    made = []

    def start(weight):
        made.append(Migration(tmp_path, tls, weight))
        return made[-1]
    yield start
    for item in made:
        item.close()


@pytest.mark.parametrize("weight, to_vllm", [(0, 0), (50, 10), (100, 20), (10, 2)])
def test_the_share_of_requests_follows_the_migration_weight(migration, weight, to_vllm):
    door = migration(weight)
    w_from, w_to = gw.migration_weights(1, 1, weight)
    assert door.weights() == {"gw-chat": w_from, "gw-chat-vllm": w_to}
    assert door.share(20) == (20 - to_vllm, to_vllm)
    # both sides get the engine's key, never the client's
    seen = door.tgi.seen + door.vllm.seen
    assert {auth for _path, auth, _host in seen} == {"Bearer " + ENGINE_KEY}


def test_the_runtime_api_moves_the_traffic_without_a_reload(migration):
    from ansible_collections.onprem.llm_serving.plugins.module_utils import _haproxy_runtime as rt
    door = migration(0)
    socket_path = str(door.dir / "admin.sock")
    assert door.share(20) == (20, 0)
    for percent, to_vllm in ((10, 2), (50, 10), (100, 20), (0, 0)):
        w_from, w_to = gw.migration_weights(1, 1, percent)
        rt.set_weight(socket_path, "be_chat", "gw-chat", w_from)
        rt.set_weight(socket_path, "be_chat", "gw-chat-vllm", w_to)
        assert door.weights() == {"gw-chat": w_from, "gw-chat-vllm": w_to}
        assert {name: row["weight"] for name, row in rt.servers(socket_path, "be_chat").items()} == {
            "gw-chat": w_from, "gw-chat-vllm": w_to}
        # HAProxy's weighted round robin places a server whose weight changed at a new position of its cycle: the first
        # cycle after a change may give it one request less (seen: the first vllm request of a 9:1 cycle came 16th).
        # From then on the share is exact: a warm-up of two cycles, then 20 requests.
        warm_tgi, warm_vllm = door.share(20)
        assert abs(warm_vllm - to_vllm) <= 1, (percent, warm_tgi, warm_vllm)
        assert door.share(20) == (20 - to_vllm, to_vllm), percent
    # the same process all along, its configuration untouched: no reload
    assert door.proc.poll() is None
    assert door.cfg.read_text() == door.plan["config"] and "weight 0" in door.plan["config"]
