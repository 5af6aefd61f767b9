# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""gateway_server against a real HAProxy (Debian 12's 2.6, tools/setup.sh installs it) in front of two stand-in
engines on loopback: drain waits for a streamed request in flight to end while new requests go to the other replica,
min_ready refuses, ready waits for the health checks, weights shift traffic, check mode changes nothing."""
from __future__ import annotations

import http.client
import http.server
import shutil
import socket
import subprocess
import threading
import time

import pytest


from ansible_collections.onprem.llm_serving.plugins.module_utils import _haproxy_runtime as rt
from ansible_collections.onprem.llm_serving.plugins.modules import gateway_server
from module_runner import run_main  # noqa: E402  pylint: disable=wrong-import-position

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Slow(http.server.BaseHTTPRequestHandler):
    """/slow?s=N streams one chunk a tenth of a second for N seconds; anything else answers its server's name."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            seconds = float(self.path.split("=")[1])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                self.wfile.write(b"2\r\n.\n\r\n")
                self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
            return
        body = self.server.label.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def stand_in(label):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    server.label = label
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    d = tmp_path_factory.mktemp("gw")
    a, b = stand_in("a"), stand_in("b")
    port = free_port()
    sock = str(d / "admin.sock")
    (d / "haproxy.cfg").write_text("\n".join([
        "global", "    stats socket %s mode 600 level admin" % sock,
        "defaults", "    mode http", "    timeout connect 2s", "    timeout client 30s", "    timeout server 30s",
        "frontend fe_chat", "    bind 127.0.0.1:%d" % port, "    default_backend be_chat",
        # the stand-ins run in this test process: on a busy machine (xdist workers beside it) a check may take longer
        # than the 200 ms interval, and fall 3 took a stand-in DOWN mid-test (both streams went to the other replica):
        # a check may take 2 s, and a replica goes DOWN only after 10 failed checks in a row
        "backend be_chat", "    balance leastconn", "    option httpchk GET /health", "    timeout check 2s",
        "    default-server check inter 200ms fall 10 rise 2",
        "    server llm-01-tiny 127.0.0.1:%d" % a.server_address[1],
        "    server llm-01-spare 127.0.0.1:%d" % b.server_address[1], ""]))
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(d / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if all(r["status"] == "UP" for r in rt.servers(sock, "be_chat").values()):
                break
        except rt.HaproxyRuntimeError:
            pass
        time.sleep(0.1)
    yield {"socket": sock, "port": port}
    proc.terminate()
    proc.wait(10)
    a.shutdown()
    b.shutdown()


def run_module(capsys, args, check_mode=False, diff=False):
    return run_main(gateway_server.main, capsys, args, check_mode, diff)


def get(gateway, path="/"):
    conn = http.client.HTTPConnection("127.0.0.1", gateway["port"], timeout=30)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_parse_stat_reads_the_header_names():
    rows = rt.parse_stat("# pxname,svname,scur,status\nbe,a,3,UP\nbe,BACKEND,3,UP\n")
    assert rows == [{"pxname": "be", "svname": "a", "scur": "3", "status": "UP"},
                    {"pxname": "be", "svname": "BACKEND", "scur": "3", "status": "UP"}]
    with pytest.raises(rt.HaproxyRuntimeError, match="no CSV header"):
        rt.parse_stat("Unknown command\n")


def test_ready_count_leaves_out_drained_maint_down_and_the_named():
    rows = {"a": {"status": "UP"}, "b": {"status": "DRAIN"}, "c": {"status": "MAINT"}, "d": {"status": "DOWN"},
            "e": {"status": "UP 1/2"}, "f": {"status": "no check"}}
    assert rt.ready_count(rows) == 3
    assert rt.ready_count(rows, excluding=("a",)) == 2
    # weight 0 (a migration's door: the side with no share) is UP and takes nothing
    rows["e"]["weight"], rows["a"]["weight"] = 0, 1
    assert rt.ready_count(rows) == 2


def test_a_missing_socket_names_the_variable(capsys, tmp_path):
    result = run_module(capsys, {"socket": str(tmp_path / "none.sock"), "door": "chat", "server": "x"})
    assert result["rc"] == 1 and "gateway_runtime_socket" in result["msg"] and "none.sock" in result["msg"]


def test_unknown_door_and_server_name_what_there_is(gateway, capsys):
    result = run_module(capsys, {"socket": gateway["socket"], "door": "nope", "server": "x"})
    assert result["rc"] == 1 and "no backend be_nope" in result["msg"] and "be_chat" in result["msg"]
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-09-x"})
    assert result["rc"] == 1 and "no replica llm-09-x" in result["msg"] and "llm-01-spare, llm-01-tiny" in result["msg"]


def test_check_mode_says_what_would_change_and_changes_nothing(gateway, capsys):
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-tiny", "state": "drain",
                                 "weight": 7}, check_mode=True, diff=True)
    assert result["rc"] == 0 and result["changed"] is True
    assert "UP weight 1" in result["diff"]["before"] and "drain weight 7" in result["diff"]["after"]
    row = rt.server(gateway["socket"], "be_chat", "llm-01-tiny")
    assert row["status"] == "UP" and row["weight"] == 1


def wait_rows(gateway, done, timeout=10):
    """The door's rows once ``done(rows)``; the last rows after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    rows = rt.servers(gateway["socket"], "be_chat")
    while not done(rows) and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = rt.servers(gateway["socket"], "be_chat")
    return rows


def test_drain_waits_for_the_stream_in_flight_while_new_requests_go_to_the_other(gateway, capsys):
    # two slow streams, the second sent once the first holds a replica: leastconn gives one to each replica
    rows = wait_rows(gateway, lambda rows: all(r["status"] == "UP" for r in rows.values()))
    assert all(r["status"] == "UP" and r["scur"] == 0 for r in rows.values()), rows
    done = []
    threads = [threading.Thread(target=lambda: done.append(get(gateway, "/slow?s=2.5"))) for _i in range(2)]
    threads[0].start()
    wait_rows(gateway, lambda rows: sum(r["scur"] for r in rows.values()) == 1)
    threads[1].start()
    rows = wait_rows(gateway, lambda rows: [r["scur"] for r in rows.values()] == [1, 1])
    assert rows["llm-01-tiny"]["scur"] == 1 and rows["llm-01-spare"]["scur"] == 1, rows
    started = time.monotonic()
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-tiny", "state": "drain",
                                 "min_ready": 1})
    waited = time.monotonic() - started
    assert result["rc"] == 0 and result["changed"] is True and result["idle"] is True, result
    assert result["before"]["scur"] == 1 and result["after"]["scur"] == 0
    assert result["after"]["status"] == "DRAIN" and result["others_ready"] == 1
    assert waited >= 1.0 and result["waited"] >= 1.0  # it waited for the stream, which then ended whole
    for thread in threads:
        thread.join()
    assert [status for status, _body in done] == [200, 200] and all(body.count(b".") >= 20 for _s, body in done)
    # while drained, every new request goes to the other replica
    assert {get(gateway)[1] for _i in range(6)} == {b"b"}
    # a second drain changes nothing
    again = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-tiny", "state": "drain"})
    assert again["rc"] == 0 and again["changed"] is False


def test_min_ready_refuses_to_take_the_last_replica_out(gateway, capsys):
    # llm-01-tiny is drained by the test before
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-spare", "state": "maint",
                                 "min_ready": 1})
    assert result["rc"] == 1
    assert "would leave 0 replica(s)" in result["msg"] and "min_ready 1" in result["msg"] and "llm-01-tiny DRAIN" in result["msg"]
    assert rt.server(gateway["socket"], "be_chat", "llm-01-spare")["status"] == "UP"


def test_drain_that_times_out_reports_the_sessions_left(gateway, capsys):
    thread = threading.Thread(target=get, args=(gateway, "/slow?s=2"))
    thread.start()
    wait_rows(gateway, lambda rows: rows["llm-01-spare"]["scur"] == 1)
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-spare", "state": "drain",
                                 "drain_timeout": 0.5})
    thread.join()
    assert result["rc"] == 0 and result["idle"] is False and result["after"]["scur"] == 1


def test_ready_waits_until_up_and_weights_shift_traffic(gateway, capsys):
    for name in ("llm-01-tiny", "llm-01-spare"):
        result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": name, "state": "ready"})
        assert result["rc"] == 0 and result["after"]["status"] == "UP", result
    assert run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-spare", "weight": 0})["changed"]
    assert {get(gateway)[1] for _i in range(6)} == {b"a"}
    assert run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-spare", "weight": 1})["changed"]
    assert {get(gateway)[1] for _i in range(8)} == {b"a", b"b"}


def test_weight_outside_haproxys_range_is_refused(gateway, capsys):
    result = run_module(capsys, {"socket": gateway["socket"], "door": "chat", "server": "llm-01-spare", "weight": 300})
    assert result["rc"] == 1 and "weight 300" in result["msg"] and "0-256" in result["msg"]


@pytest.mark.parametrize("status, admin, state, change", [
    ("DOWN", rt.ADMIN_FDRAIN, "ready", True),   # drained and restarting: show stat says DOWN, the drain is still set
    ("UP", 0, "ready", False), ("DOWN", 0, "ready", False),
    ("DRAIN", rt.ADMIN_FDRAIN, "drain", False), ("UP", 0, "drain", True), ("MAINT", rt.ADMIN_FMAINT, "drain", True),
    ("MAINT", rt.ADMIN_FMAINT, "maint", False), ("DRAIN", rt.ADMIN_FDRAIN, "maint", True), ("MAINT", rt.ADMIN_FMAINT, "ready", True),
])
def test_changes_are_decided_from_the_admin_state_not_the_status(status, admin, state, change):
    assert gateway_server.wanted_change({"status": status, "admin": admin, "weight": 1}, state, None) == (change, False)


def test_admin_states_follow_the_runtime_api(gateway):
    rt.set_state(gateway["socket"], "be_chat", "llm-01-spare", "drain")
    assert rt.admin_states(gateway["socket"], "be_chat") == {"llm-01-tiny": 0, "llm-01-spare": rt.ADMIN_FDRAIN}
    rt.set_state(gateway["socket"], "be_chat", "llm-01-spare", "ready")
    assert rt.servers(gateway["socket"], "be_chat")["llm-01-spare"]["admin"] == 0
