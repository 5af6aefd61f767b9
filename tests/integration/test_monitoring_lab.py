# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role's pieces against the lab's REAL engines, with Debian's real Prometheus 2.42, Alertmanager 0.25 and
node_exporter 1.5 (run here on the controller, ports of their own, nothing installed on the lab hosts):

- the endpoint probe makes a real generation on the lab's Ollama and writes its textfile; the GPU probe on this GPU-less
  machine writes the no_gpu state; node_exporter publishes both;
- Prometheus runs the role's rendered prometheus.yml and rules (scrape configs from the monitoring_scrape_configs
  filter: the lab's vLLM on its own port) and a few streamed requests go to the lab's vLLM;
- every dashboard query returns data, except those whose source the lab does not have (TGI, HAProxy, dcgm-exporter, a
  GPU), which are listed with the reason;
- a vLLM target that does not answer fires LlmEngineDown in Alertmanager, and the alert resolves once it answers.

Needs the lab (tools/lab.py up, make lab: llm-lab-1 serving vLLM, llm-lab-2 Ollama, each on loopback behind its host's
gateway); skipped without it. The probe calls Ollama through its door with the lab's key; Prometheus scrapes the vLLM
through the gateway's metrics listener (/engines/llm-lab-1-tiny/metrics on 8405), as a monitoring host would.
Numbers (time to fire, to resolve, Prometheus' memory) are printed: run with -s to see them.
"""
from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ROLE = os.path.join(ROOT, "roles", "monitoring")
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROLE, "tests"))
import role_templates  # noqa: E402  pylint: disable=wrong-import-position
sys.path.insert(0, HERE)
import lab_doors  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.template import Templar, trust_as_template  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.filter.monitoring import monitoring_scrape_configs  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.module_utils import _textfile_probe as tp  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_benchmark as bench  # noqa: E402  pylint: disable=wrong-import-position
from test_dashboard import dashboard, expand, queries  # noqa: E402  pylint: disable=wrong-import-position

pytestmark = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `tools/lab.py up`")
BINARIES = {"prometheus": "/usr/bin/prometheus", "alertmanager": "/usr/bin/prometheus-alertmanager",
            "node_exporter": "/usr/bin/prometheus-node-exporter"}
# Sources the lab does not have: their queries may come back empty.
NOT_IN_THE_LAB = {"tgi_": "no TGI instance in the lab", "DCGM_": "no dcgm-exporter (no GPU)",
                  "onprem_gpu_temperature": "no GPU", "onprem_gpu_slowdown": "no GPU", "onprem_gpu_ecc": "no GPU",
                  "onprem_gpu_remapped": "no GPU", "onprem_gpu_retired": "no GPU", "onprem_gpu_xid": "no GPU", "onprem_gpu_pcie": "no GPU",
                  "onprem_gpu_check_failed": "no GPU", "onprem_gpu_clock_event_reason": "no GPU"}


def lab_address(host):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    out = subprocess.run(["docker", "inspect", host, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0 or not out.stdout.split():
        pytest.skip("lab host %s is not running (make lab)" % host)
    return out.stdout.split()[0]


def free_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def get(url, data=None, timeout=10):
    body = urllib.parse.urlencode(data).encode() if data else None
    with urllib.request.urlopen(url, data=body, timeout=timeout) as resp:
        return json.loads(resp.read().decode())


def render(template, overrides):
    variables = role_templates.role_vars(ROLE, {"inventory_hostname": "controller", "groups": {}}, overrides)
    variables["ansible_managed"] = "Ansible managed"
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", template)) as handle:
        return templar.template(trust_as_template(handle.read()))


def wait_for(what, check, timeout, step=0.5):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        value = check()
        if value:
            return value, time.monotonic() - start
        time.sleep(step)
    raise AssertionError("%s: not within %s s" % (what, timeout))


class StubVllm(http.server.BaseHTTPRequestHandler):
    """A vLLM /metrics that comes back (the 'engine is back' half of the alert test)."""

    def do_GET(self):  # noqa: N802  pylint: disable=invalid-name
        body = b'vllm:num_requests_running{model_name="gone",engine="0"} 0\n'
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def stack():
    for name, path in BINARIES.items():
        assert os.access(path, os.X_OK), "%s is missing: tools/setup.sh installs Debian's prometheus, prometheus-alertmanager " \
                                         "and prometheus-node-exporter" % name
    vllm, ollama = lab_address("llm-lab-1"), lab_address("llm-lab-2")
    doors, api_key = lab_doors.doors(), lab_doors.key()
    work = tempfile.mkdtemp(prefix="monitoring-lab-")
    textfile = os.path.join(work, "textfile")
    os.makedirs(os.path.join(work, "state"))
    os.makedirs(textfile)
    ports = dict((name, free_port()) for name in ("prometheus", "alertmanager", "node", "dead"))
    config = {"textfile_dir": textfile, "state_dir": os.path.join(work, "state"), "timeout": 60, "max_tokens": 8,
              "endpoints": [{"name": "ollama", "engine": "ollama", "protocol": "ollama", "url": doors["llm-lab-2"]["url"], "model": "tiny",
                             "api_key": api_key, "ca_path": doors["llm-lab-2"]["cacert"]}],
              "gpu": {"expected": False, "xid_watch_seconds": 0}}
    _path, outcomes = tp.run_endpoints(config)

    def no_nvml():
        raise ImportError("No module named 'pynvml'")

    tp.run_gpu(config, no_nvml)
    endpoints = [{"name": "tiny", "instance": "tiny", "engine": "vllm", "host": "127.0.0.1", "port": 8000, "unit": "vllm-tiny.service",
                  "model": "tiny", "metrics_path": "/metrics"}]
    serving = {"llm-lab-1": {"endpoints": endpoints, "address": vllm, "node_exporter_address": "0.0.0.0"}}
    settings = {"node_exporter_port": ports["node"], "dcgm_exporter": False, "dcgm_exporter_port": 9400, "gateway_metrics": True,
                "prometheus_port": ports["prometheus"], "alertmanager_port": ports["alertmanager"]}
    gateways = {"llm-lab-1": {"address": vllm, "metrics_address": vllm, "metrics_port": lab_doors.METRICS_PORT}}
    scrape = monitoring_scrape_configs(serving, gateways, "controller", settings)
    for job in scrape:
        if job["job_name"] == "node":  # node_exporter runs here, with the probes' files of this test
            job["static_configs"] = [{"targets": ["127.0.0.1:%d" % ports["node"]], "labels": {"llm_host": "controller"}}]
        if job["job_name"] == "vllm":  # an engine that does not answer yet
            job["static_configs"].append({"targets": ["127.0.0.1:%d" % ports["dead"]],
                                          "labels": {"llm_host": "dead", "llm_instance": "gone", "llm_engine": "vllm"}})
    overrides = {"monitoring_scrape_interval": "2s", "monitoring_scrape_timeout": "2s", "monitoring_evaluation_interval": "2s",
                 "monitoring_alert_engine_down_for": "10s", "monitoring_alertmanager_group_wait": "1s",
                 "monitoring_alertmanager_port": ports["alertmanager"], "__monitoring_scrape_configs": scrape,
                 "__monitoring_rules_file": os.path.join(work, "onprem-llm.rules.yml")}
    with open(os.path.join(work, "onprem-llm.rules.yml"), "w") as handle:
        handle.write(render("onprem-llm.rules.yml.j2", overrides))
    with open(os.path.join(work, "prometheus.yml"), "w") as handle:
        handle.write(render("prometheus.yml.j2", overrides))
    with open(os.path.join(work, "alertmanager.yml"), "w") as handle:
        handle.write(render("alertmanager.yml.j2", overrides))
    logs = open(os.path.join(work, "services.log"), "w")
    procs = [
        subprocess.Popen([BINARIES["node_exporter"], "--web.listen-address=127.0.0.1:%d" % ports["node"], "--collector.disable-defaults",
                          "--collector.textfile", "--collector.textfile.directory=" + textfile], stdout=logs, stderr=subprocess.STDOUT),
        subprocess.Popen([BINARIES["alertmanager"], "--config.file=" + os.path.join(work, "alertmanager.yml"),
                          "--storage.path=" + os.path.join(work, "am"), "--web.listen-address=127.0.0.1:%d" % ports["alertmanager"],
                          "--cluster.listen-address="], stdout=logs, stderr=subprocess.STDOUT),
        subprocess.Popen([BINARIES["prometheus"], "--config.file=" + os.path.join(work, "prometheus.yml"),
                          "--storage.tsdb.path=" + os.path.join(work, "tsdb"), "--web.listen-address=127.0.0.1:%d" % ports["prometheus"]],
                         stdout=logs, stderr=subprocess.STDOUT),
    ]
    info = {"work": work, "ports": ports, "vllm": vllm, "probe": outcomes[0][1], "procs": procs, "door": doors["llm-lab-1"],
            "key": api_key,
            "prom": "http://127.0.0.1:%d" % ports["prometheus"], "am": "http://127.0.0.1:%d" % ports["alertmanager"]}
    try:
        wait_for("Prometheus ready", lambda: _ready(info["prom"] + "/-/ready"), 120)
        yield info
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        logs.close()


def _ready(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def query(stack, expr):
    answer = get(stack["prom"] + "/api/v1/query", {"query": expr})
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def benchmark(stack, n, concurrency):
    """A benchmark through the lab's vLLM door with the lab's key: llm_benchmark's own client and workload (the module's
    code), n streamed chat requests of 32 prompt and 16 output tokens at this concurrency. Returns its metrics."""
    client = bench.AsyncStreamClient(stack["door"]["url"], api_key=stack["key"], ca_path=stack["door"]["cacert"])
    reqs = bench.build_workload("random", n, 32, 16, 0)
    records, duration = bench.run_level(client, "chat", "tiny", reqs, 1, concurrency, ignore_eos=True)
    out = bench.calculate_metrics(records, duration, percentiles=[50, 95])
    assert out["completed"] == n, [r["error"] for r in records if not r["success"]][:3]
    return out


def test_the_probe_generated_on_the_real_ollama(stack):
    assert stack["probe"]["up"] is True, stack["probe"].get("error")
    result = stack["probe"]["result"]
    print("\nOllama probe: TTFT %s ms, ITL %s ms, %s tok/s, %s tokens"
          % (result["ttft_ms"], result["itl_ms_mean"], result["tokens_per_s"], result["output_tokens"]))
    assert result["ttft_ms"] > 0 and result["output_tokens"] >= 1


def lab_vllm_up(stack):
    try:
        with urllib.request.urlopen("http://%s:%d/engines/llm-lab-1-tiny/metrics" % (stack["vllm"], lab_doors.METRICS_PORT),
                                    timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_every_dashboard_query_returns_data_after_traffic(stack):
    # (tests/integration/conftest.py runs this file after test_readme_commands.py's `make lab`)
    assert lab_vllm_up(stack), "the lab's vLLM (llm-lab-1, relayed on 8405) does not answer: make lab"
    wait_for("first scrape of the lab's vLLM", lambda: query(stack, 'up{job="vllm", llm_host="llm-lab-1"} == 1'), 120)
    out = benchmark(stack, 24, 4)
    print("\nbenchmark through the gateway: 24 requests at concurrency 4, TTFT p50 %.1f ms, %.0f output tok/s"
          % (out["p50_ttft_ms"], out["output_throughput"]))
    wait_for("TTFT histogram in Prometheus", lambda: [r for r in query(
        stack, 'histogram_quantile(0.95, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))') if r["value"][1] != "NaN"], 120)
    # rate() needs two scrapes of the gateway's exporter in its window
    wait_for("two scrapes of the lab gateway", lambda: query(stack, 'rate(haproxy_backend_http_responses_total[1m])'), 120)
    wait_for("the probe files through node_exporter", lambda: query(stack, 'onprem_llm_probe_up == 1')
             and query(stack, 'onprem_gpu_probe_state{state="no_gpu"} == 1'), 120)
    empty, missing, rows = [], [], []
    for title, ref, expr in queries(dashboard()):
        promql = expand(expr)
        if promql.startswith("label_values("):
            promql = promql[len("label_values("):promql.rindex(",")]
        result = query(stack, promql)
        reason = next((why for needle, why in NOT_IN_THE_LAB.items() if needle in promql), None)
        rows.append("%-55s %s %3d series%s" % (title[:55], ref, len(result), " (%s)" % reason if reason and not result else ""))
        if not result:
            (empty if reason else missing).append("%s %s: %s" % (title, ref, promql))
    print("\n".join(rows))
    assert missing == [], "dashboard queries without data in the lab:\n" + "\n".join(missing)
    assert len(empty) < len(rows) / 2


def test_a_dead_engine_fires_in_alertmanager_and_resolves_when_back(stack):
    def firing():
        alerts = get(stack["am"] + "/api/v2/alerts?active=true")
        return [a for a in alerts if a["labels"].get("alertname") == "LlmEngineDown" and a["labels"].get("llm_host") == "dead"]

    alerts, fired_after = wait_for("LlmEngineDown in Alertmanager", firing, 180)
    assert alerts[0]["labels"]["severity"] == "critical" and alerts[0]["labels"]["llm_instance"] == "gone"
    assert "does not answer /metrics" in alerts[0]["annotations"]["summary"]
    # the lab's own vLLM: an alert exactly when it does not answer (a real engine down, when someone stopped it)
    lab_up = query(stack, 'up{job="vllm", llm_host="llm-lab-1"}')[0]["value"][1] == "1"
    if lab_up:
        assert not [a for a in get(stack["am"] + "/api/v2/alerts?active=true") if a["labels"].get("llm_host") == "llm-lab-1"]
    else:
        wait_for("LlmEngineDown of the lab's stopped vLLM", lambda: [
            a for a in get(stack["am"] + "/api/v2/alerts?active=true")
            if a["labels"].get("alertname") == "LlmEngineDown" and a["labels"].get("llm_host") == "llm-lab-1"], 30)
        print("\nthe lab's vLLM is stopped: LlmEngineDown fired for llm-lab-1 too")
    server = http.server.HTTPServer(("127.0.0.1", stack["ports"]["dead"]), StubVllm)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _gone, resolved_after = wait_for("LlmEngineDown resolved", lambda: not query(stack, 'ALERTS{alertname="LlmEngineDown", llm_host="dead"}'), 180)
        _gone, am_after = wait_for("Alertmanager resolved it", lambda: not firing(), 180)
    finally:
        server.shutdown()
    rss = 0
    with open("/proc/%d/status" % stack["procs"][2].pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) // 1024
    print("\nLlmEngineDown (for: 10s, scrape and evaluation every 2 s) in Alertmanager %.1f s after the test began waiting; "
          "gone from Prometheus %.1f s after the engine answered, from Alertmanager %.1f s after that; Prometheus RSS %d MiB"
          % (fired_after, resolved_after, am_after, rss))


def lab(host, *argv):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    return subprocess.run(["docker", "exec", host, *argv], env=env, capture_output=True, text=True, check=False)


def test_killing_the_lab_vllm_fires_engine_down_and_it_resolves_when_back(stack):
    """A real engine killed on purpose: kill -9 of the lab's vLLM (systemd restarts it, Restart=always); while it loads
    again its /metrics (relayed by the gateway) fails, LlmEngineDown (for: 10s) reaches Alertmanager, and it resolves
    once the engine answers again."""
    def alert(state):
        return [a for a in get(stack["am"] + "/api/v2/alerts?active=true")
                if a["labels"].get("alertname") == "LlmEngineDown" and a["labels"].get("llm_host") == "llm-lab-1"] if state else \
            not query(stack, 'ALERTS{alertname="LlmEngineDown", llm_host="llm-lab-1"}')

    wait_for("the lab's vLLM scraped up", lambda: query(stack, 'up{job="vllm", llm_host="llm-lab-1"} == 1'), 180)
    pid = lab("llm-lab-1", "systemctl", "show", "-p", "MainPID", "--value", "vllm-tiny.service").stdout.strip()
    assert pid not in ("", "0")
    killed = lab("llm-lab-1", "kill", "-9", pid)
    assert killed.returncode == 0, killed.stderr
    _alerts, fired_after = wait_for("LlmEngineDown of the killed lab vLLM in Alertmanager", lambda: alert(True), 300, step=1)
    _gone, resolved_after = wait_for("LlmEngineDown of the lab vLLM resolved", lambda: alert(False), 900, step=1)
    new_pid = lab("llm-lab-1", "systemctl", "show", "-p", "MainPID", "--value", "vllm-tiny.service").stdout.strip()
    assert new_pid not in ("", "0", pid)

    def door_ready():
        try:
            return lab_doors.context(stack["door"]) and urllib.request.urlopen(urllib.request.Request(
                stack["door"]["url"] + "/v1/models", headers={"Authorization": "Bearer " + stack["key"]}),
                timeout=5, context=lab_doors.context(stack["door"])).status == 200
        except OSError:
            return False

    # the door's health checks (rise 2, every 2 s) put the replica back a few seconds after its /metrics answers again
    _ready, door_after = wait_for("the door routes to the restarted vLLM", door_ready, 300)
    out = benchmark(stack, 4, 2)
    print("\nkill -9 of the lab's vLLM (pid %s): LlmEngineDown in Alertmanager %.1f s later; resolved in Prometheus %.1f s after "
          "that (the new process %s answers); the door routes to it %.1f s after that; a benchmark through the gateway: "
          "%d/4 completed" % (pid, fired_after, resolved_after, new_pid, door_after, out["completed"]))
