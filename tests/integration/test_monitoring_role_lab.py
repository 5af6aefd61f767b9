# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""roles/monitoring (playbooks/monitoring.yml) on a real systemd lab host: Debian's prometheus, prometheus-alertmanager and
prometheus-node-exporter installed and driven through the role's drop-ins, the probes' timers running as the prometheus
user, their files published by node_exporter and scraped, the rules loaded, an alert (LlmProbeDown: the published
Ollama endpoint does not run on this host) delivered to Alertmanager; a second run changes nothing; a rules file promtool
refuses fails the run and leaves the live one.

One lab host of its own (tools/lab.py up --online --prefix llm-mon-: its packages come from Debian's archive, not from
the bundle), removed at the end. Skipped without the lab's dockerd.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
VENV = os.path.join(ROOT, ".venv", "bin")
HOST = "llm-mon-1"

pytestmark = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `tools/lab.py up`")

INVENTORY = """
all:
  hosts:
    %(host)s:
      ansible_connection: community.docker.docker
      ansible_docker_extra_args: "-H unix://%(sock)s"
      ansible_python_interpreter: /usr/bin/python3
      # what an engine role would publish: an Ollama endpoint that does not run here (the probe must say up 0)
      llm_endpoints:
        - {name: ollama, instance: ollama, engine: ollama, protocol: ollama, url: "http://127.0.0.1:11434", host: 127.0.0.1,
           port: 11434, model: tiny, unit: ollama.service, metrics_path: null}
      monitoring_probe_interval_sec: 20
      monitoring_probe_timeout_sec: 3
      monitoring_gpu_xid_watch_sec: 0
      monitoring_alert_textfile_stale_sec: 60
      monitoring_alert_probe_down_for: 10s
      monitoring_evaluation_interval: 5s
      monitoring_scrape_interval: 5s
      monitoring_scrape_timeout: 5s
      monitoring_alertmanager_group_wait: 1s
  children:
    monitoring_hosts: {hosts: {%(host)s: {}}}
    ollama_servers: {hosts: {%(host)s: {}}}
"""


def docker(*args, check=True):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=check)


def on_host(script):
    return docker("exec", HOST, "sh", "-c", script, check=False)


def http_json(url):
    out = on_host("python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(\"%s\", timeout=5).read().decode())'" % url)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    subprocess.run([os.path.join(VENV, "python"), os.path.join(ROOT, "tools", "lab.py"), "up", "--hosts", "1", "--online",
                    "--prefix", "llm-mon-"], check=True)
    # the online lab host has Debian's archive, not the bundle's repository (the common role sets that up on real sites)
    prep = on_host("apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-apt >/dev/null 2>&1")
    assert prep.returncode == 0, prep.stderr
    path = tmp_path_factory.mktemp("monitoring") / "hosts.yml"
    path.write_text(INVENTORY % {"host": HOST, "sock": SOCK})
    yield str(path)
    docker("rm", "-f", HOST, check=False)


def playbook(inventory, *args):
    start = time.monotonic()
    proc = subprocess.run([os.path.join(VENV, "ansible-playbook"), "-i", inventory, "playbooks/monitoring.yml", *args], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    recap = [ln for ln in proc.stdout.splitlines() if ln.startswith(HOST + " ") and "ok=" in ln]
    return proc, (recap[-1] if recap else ""), time.monotonic() - start


def test_the_role_runs_then_changes_nothing(inventory):
    proc, recap, seconds = playbook(inventory)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    print("\nfirst run %.0f s: %s" % (seconds, recap))
    proc, recap, seconds = playbook(inventory)
    assert proc.returncode == 0 and "changed=0" in recap, proc.stdout[-4000:]
    print("second run %.0f s: %s" % (seconds, recap))


def test_services_probes_scrapes_and_an_alert_delivered(inventory):
    active = on_host("systemctl is-active prometheus prometheus-alertmanager prometheus-node-exporter onprem-llm-probe.timer "
                     "onprem-llm-probe-gpu.timer").stdout.split()
    assert active == ["active"] * 5
    argv = on_host("ps -o user:20=,args= -C prometheus").stdout
    assert "prometheus /usr/bin/prometheus --config.file=/etc/prometheus/onprem-llm/prometheus.yml" in " ".join(argv.split())
    files = on_host("stat -c '%U %a %n' /var/lib/prometheus/node-exporter/onprem_llm_probe.prom "
                    "/var/lib/prometheus/node-exporter/onprem_llm_gpu.prom").stdout.splitlines()
    assert [f.split()[:2] for f in files] == [["prometheus", "644"]] * 2
    targets = http_json("http://127.0.0.1:9090/api/v1/targets")["data"]["activeTargets"]
    assert sorted((t["labels"]["job"], t["health"]) for t in targets) == [("alertmanager", "up"), ("node", "up"), ("prometheus", "up")]
    rules = http_json("http://127.0.0.1:9090/api/v1/rules")["data"]["groups"]
    assert sum(len(g["rules"]) for g in rules) == 21
    start = time.monotonic()
    state = probe = alerts = None
    while time.monotonic() - start < 120:
        state = http_json("http://127.0.0.1:9090/api/v1/query?query=onprem_gpu_probe_state%3D%3D1")["data"]["result"]
        probe = http_json("http://127.0.0.1:9090/api/v1/query?query=onprem_llm_probe_up")["data"]["result"]
        alerts = [a["labels"]["alertname"] for a in http_json("http://127.0.0.1:9093/api/v2/alerts?active=true")]
        if "LlmProbeDown" in alerts and state and probe:
            break
        time.sleep(3)
    assert [s["metric"]["state"] for s in state] == ["no_gpu"]
    assert [(p["metric"]["endpoint"], p["value"][1]) for p in probe] == [("ollama", "0")]
    assert "LlmProbeDown" in alerts, alerts
    # nothing else: no GPU is expected here (no_gpu), the probe files are fresh, node_exporter is scraped
    assert set(alerts) == {"LlmProbeDown"}, alerts
    print("\nLlmProbeDown in Alertmanager %.0f s after the runs (probe every 20 s, for: 10s); alerts firing: %s"
          % (time.monotonic() - start, sorted(set(alerts))))


def test_a_rules_file_promtool_refuses_leaves_the_live_one(inventory):
    before = on_host("sha256sum /etc/prometheus/onprem-llm/onprem-llm.rules.yml").stdout
    proc, recap, _seconds = playbook(inventory, "--tags", "monitoring_configure", "-e", "monitoring_alert_latency_window=5x")
    assert proc.returncode == 2 and "failed=1" in recap
    assert "promtool check rules" in proc.stdout or "exit_status: 1" in proc.stdout
    assert on_host("sha256sum /etc/prometheus/onprem-llm/onprem-llm.rules.yml").stdout == before
    assert on_host("systemctl is-active prometheus").stdout.strip() == "active"
