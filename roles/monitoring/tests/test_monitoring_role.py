# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role: its scrape-config filter (targets, labels, refusals naming the variable), prometheus.yml and
alertmanager.yml rendered by Ansible's templar and checked by the tools the role's validate: runs on the host
(promtool check config, amtool check-config), the probe units, and the bundle's packages for monitored inventories.

Run: .venv/bin/pytest roles/monitoring/tests/
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(REPO, "roles", "monitoring")
sys.path.insert(0, os.path.join(REPO, "tests"))
import role_templates  # noqa: E402  pylint: disable=wrong-import-position
from ansible.errors import AnsibleFilterError  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.template import Templar, trust_as_template  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.filter.bundle import bundle_plan  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.filter.monitoring import (  # noqa: E402  pylint: disable=wrong-import-position
    monitoring_probe_endpoints, monitoring_scrape_configs, monitoring_status_queries, monitoring_status_table)

SETTINGS = {"node_exporter_port": 9100, "dcgm_exporter": False, "dcgm_exporter_port": 9400, "gateway_metrics": True,
            "prometheus_port": 9090, "alertmanager_port": 9093}
VLLM = {"name": "tiny", "instance": "tiny", "engine": "vllm", "url": "http://127.0.0.1:8000", "host": "0.0.0.0", "port": 8000,
        "model": "tiny", "unit": "vllm-tiny.service", "metrics_path": "/metrics", "api_key": "never-in-a-scrape-config"}
OLLAMA = {"name": "ollama", "instance": "ollama", "engine": "ollama", "url": "http://127.0.0.1:11434", "host": "127.0.0.1",
          "port": 11434, "model": "tiny", "unit": "ollama.service", "metrics_path": None}
SERVING = {"llm-1": {"endpoints": [VLLM], "address": "172.18.0.2", "node_exporter_address": "0.0.0.0", "gpu": True},
           "llm-2": {"endpoints": [OLLAMA], "address": "172.18.0.3", "node_exporter_address": "0.0.0.0", "gpu": False}}
GATEWAYS = {"gw-1": {"address": "172.18.0.4", "metrics_address": "0.0.0.0", "metrics_port": 8405}}


def tool(name):
    path = shutil.which(name) or "/usr/bin/" + name
    assert os.access(path, os.X_OK), "%s is missing: tools/setup.sh installs Debian's prometheus and prometheus-alertmanager" % name
    return path


def jobs(configs):
    return dict((c["job_name"], c) for c in configs)


# ---------------------------------------------------------------------------- the scrape configs
def test_scrape_configs_from_the_published_endpoints():
    configs = jobs(monitoring_scrape_configs(SERVING, GATEWAYS, "mon-1", SETTINGS))
    assert sorted(configs) == ["alertmanager", "haproxy", "node", "prometheus", "vllm"]
    assert configs["vllm"]["static_configs"] == [{"targets": ["172.18.0.2:8000"], "labels": {
        "llm_host": "llm-1", "llm_instance": "tiny", "llm_engine": "vllm", "llm_unit": "vllm-tiny.service", "llm_model": "tiny"}}]
    assert [s["targets"][0] for s in configs["node"]["static_configs"]] == ["172.18.0.2:9100", "172.18.0.3:9100"]
    assert configs["haproxy"]["static_configs"] == [{"targets": ["172.18.0.4:8405"], "labels": {"llm_host": "gw-1"}}]
    assert "never-in-a-scrape-config" not in repr(configs)


def test_on_the_prometheus_host_itself_loopback_is_used():
    configs = jobs(monitoring_scrape_configs({"llm-1": dict(SERVING["llm-1"], node_exporter_address="127.0.0.1")}, {}, "llm-1",
                                             dict(SETTINGS, dcgm_exporter=True)))
    assert configs["vllm"]["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert configs["node"]["static_configs"][0]["targets"] == ["127.0.0.1:9100"]
    assert configs["dcgm"]["static_configs"] == [{"targets": ["127.0.0.1:9400"], "labels": {"llm_host": "llm-1"}}]


def test_a_specific_bind_address_and_metrics_path_are_kept():
    endpoint = dict(VLLM, host="10.0.0.5", metrics_path="/custom")
    configs = jobs(monitoring_scrape_configs({"llm-1": dict(SERVING["llm-1"], endpoints=[endpoint])}, {}, "mon-1", SETTINGS))
    target = configs["vllm"]["static_configs"][0]
    assert target["targets"] == ["10.0.0.5:8000"] and target["labels"]["__metrics_path__"] == "/custom"


@pytest.mark.parametrize("serving, gateways, words", [
    ({"llm-1": dict(SERVING["llm-1"], endpoints=[dict(VLLM, host="127.0.0.1")])}, {}, "vllm_bind_address"),
    ({"llm-1": dict(SERVING["llm-1"], node_exporter_address="127.0.0.1")}, {}, "monitoring_node_exporter_address"),
    ({}, {"gw-1": dict(GATEWAYS["gw-1"], metrics_address="127.0.0.1")}, "gateway_metrics_address"),
    ({"llm-1": dict(SERVING["llm-1"], endpoints=None)}, {}, "--tags vllm_smoke,tgi_smoke,ollama_smoke,monitoring"),
    ({"llm-1": dict(SERVING["llm-1"], endpoints=[dict(VLLM, port=None)])}, {}, "has no port"),
])
def test_what_cannot_be_scraped_is_refused_naming_the_fix(serving, gateways, words):
    with pytest.raises(AnsibleFilterError, match=words.replace(".", "[.]")):
        monitoring_scrape_configs(serving, gateways, "mon-1", SETTINGS)


def test_an_engine_on_loopback_beside_a_gateway_is_scraped_through_its_metrics_listener():
    serving = {"llm-1": dict(SERVING["llm-1"], endpoints=[dict(VLLM, host="127.0.0.1")])}
    gateways = {"llm-1": {"address": "172.18.0.2", "metrics_address": "172.18.0.2", "metrics_port": 8405}}
    configs = jobs(monitoring_scrape_configs(serving, gateways, "mon-1", SETTINGS))
    assert configs["vllm"]["static_configs"] == [{"targets": ["172.18.0.2:8405"], "labels": {
        "llm_host": "llm-1", "llm_instance": "tiny", "llm_engine": "vllm", "llm_unit": "vllm-tiny.service", "llm_model": "tiny",
        "__metrics_path__": "/engines/llm-1-tiny/metrics"}}]
    assert configs["haproxy"]["static_configs"] == [{"targets": ["172.18.0.2:8405"], "labels": {"llm_host": "llm-1"}}]
    # the gateway's metrics listener itself on loopback: refused, naming its variable
    with pytest.raises(AnsibleFilterError, match="gateway_metrics_address"):
        monitoring_scrape_configs(serving, {"llm-1": dict(gateways["llm-1"], metrics_address="127.0.0.1")}, "mon-1", SETTINGS)
    # a loopback engine with no gateway beside it: the message names both ways out
    with pytest.raises(AnsibleFilterError, match="vllm_bind_address.*gateway on llm-1"):
        monitoring_scrape_configs(serving, {}, "mon-1", SETTINGS)


def test_gateway_metrics_off_are_left_out():
    configs = jobs(monitoring_scrape_configs({}, {"gw-1": dict(GATEWAYS["gw-1"], metrics_port=0)}, "mon-1", SETTINGS))
    assert "haproxy" not in configs
    configs = jobs(monitoring_scrape_configs({}, GATEWAYS, "mon-1", dict(SETTINGS, gateway_metrics=False)))
    assert "haproxy" not in configs


def test_probe_endpoints_by_engine():
    assert monitoring_probe_endpoints([VLLM, OLLAMA], ["ollama"]) == [
        {"name": "ollama", "engine": "ollama", "url": "http://127.0.0.1:11434", "model": "tiny"}]
    assert [e["name"] for e in monitoring_probe_endpoints([VLLM, OLLAMA], ["vllm", "ollama"])] == ["tiny", "ollama"]
    assert monitoring_probe_endpoints(None, ["ollama"]) == []


# ---------------------------------------------------------------------------- the rendered files
def render(template, overrides, facts=None):
    variables = role_templates.role_vars(ROLE, dict({"inventory_hostname": "mon-1", "groups": {"monitoring_hosts": ["mon-1"]}},
                                                    **(facts or {})), overrides)
    variables["ansible_managed"] = "Ansible managed"
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", template)) as handle:
        return templar.template(trust_as_template(handle.read()))


def test_prometheus_yml_passes_promtool_check_config(tmp_path):
    rules = tmp_path / "onprem-llm.rules.yml"
    rules.write_text(render("onprem-llm.rules.yml.j2", {}))
    scrape = monitoring_scrape_configs(SERVING, GATEWAYS, "mon-1", SETTINGS)
    text = render("prometheus.yml.j2", {"__monitoring_scrape_configs": scrape, "__monitoring_rules_file": str(rules)})
    assert text.startswith("#\n# Ansible managed\n")
    config = yaml.safe_load(text)
    assert config["rule_files"] == [str(rules)]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:9093"]
    assert config["global"]["scrape_interval"] == "15s"
    path = tmp_path / "prometheus.yml"
    path.write_text(text)
    result = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout + result.stderr
    # the check can fail: a scrape config Prometheus refuses
    path.write_text(text.replace("job_name: vllm", "job_name: node"))
    result = subprocess.run([tool("promtool"), "check", "config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "found multiple scrape configs with job name" in result.stdout + result.stderr


@pytest.mark.parametrize("hooks", [[], ["https://alerts.example/hook?token=secret"]])
def test_alertmanager_yml_passes_amtool(tmp_path, hooks):
    text = render("alertmanager.yml.j2", {"monitoring_alertmanager_webhook_urls": hooks})
    config = yaml.safe_load(text)
    assert config["route"]["receiver"] == "onprem-llm"
    assert config["receivers"][0].get("webhook_configs", []) == [{"url": h, "send_resolved": True} for h in hooks]
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    result = subprocess.run([tool("amtool"), "check-config", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_settings_files_and_dropins():
    prom = render("prometheus.env.j2", {"monitoring_prometheus_address": "::1"})
    assert 'ARGS="--config.file=/etc/prometheus/onprem-llm/prometheus.yml --web.listen-address=[::1]:9090 ' in prom
    assert "--storage.tsdb.retention.time=15d" in prom
    assert "--cluster.listen-address=" in render("alertmanager.env.j2", {})
    node = render("node-exporter.env.j2", {})
    assert "--web.listen-address=0.0.0.0:9100 --collector.textfile.directory=/var/lib/prometheus/node-exporter" in node
    dropin = render("dropin.conf.j2", {"__monitoring_dropin_env": "/etc/prometheus/onprem-llm/prometheus.env"})
    assert dropin.splitlines()[-2:] == ["[Service]", "EnvironmentFile=/etc/prometheus/onprem-llm/prometheus.env"]


def test_probe_units_and_timers():
    facts = {"groups": {"monitoring_hosts": [], "ollama_servers": ["mon-1"]}}
    units = render("onprem-llm-probe.service.j2", {"item": {"unit": "onprem-llm-probe-gpu", "kind": "gpu", "timeout": 70, "every": 50}},
                   facts)
    argv = role_templates.exec_start(units)
    assert argv == ["/usr/bin/python3", "-I", "/opt/onprem-llm/probe/onprem_llm_probe.py", "gpu", "--config",
                    "/etc/prometheus/onprem-llm/probe.json"]
    for line in ("Type=oneshot", "User=prometheus", "ProtectSystem=strict", "ReadWritePaths=/var/lib/prometheus/node-exporter",
                 "StateDirectory=onprem-llm-probe", "TimeoutStartSec=70", "NoNewPrivileges=true"):
        assert line in units.splitlines()
    timer = render("onprem-llm-probe.timer.j2", {"item": {"unit": "onprem-llm-probe-gpu", "kind": "gpu", "every": 50}}, facts)
    assert "OnUnitInactiveSec=50" in timer.splitlines() and "WantedBy=timers.target" in timer.splitlines()


def test_probe_units_follow_the_interval_and_the_endpoints():
    templar = Templar(loader=DataLoader(), variables=role_templates.role_vars(
        ROLE, {"inventory_hostname": "h", "groups": {}}, {"__monitoring_probe_endpoints": [OLLAMA]}))
    units = templar.template(trust_as_template("{{ __monitoring_probe_units }}"))
    assert units == [{"unit": "onprem-llm-probe", "kind": "endpoints", "every": 60, "timeout": 90},
                     {"unit": "onprem-llm-probe-gpu", "kind": "gpu", "timeout": 70, "every": 50}]
    templar = Templar(loader=DataLoader(), variables=role_templates.role_vars(
        ROLE, {"inventory_hostname": "h", "groups": {}}, {"__monitoring_probe_endpoints": []}))
    assert [u["unit"] for u in templar.template(trust_as_template("{{ __monitoring_probe_units }}"))] == ["onprem-llm-probe-gpu"]


# ---------------------------------------------------------------------------- the bundle
def packages(hosts):
    base = {"bundle_os_release": "debian-12", "common_python_wheels": []}
    return set(bundle_plan([{"name": n, "groups": g, "vars": base} for n, g in hosts], os.path.join(REPO, "roles"), "/b")["apt"][0]["packages"])


def test_bundle_has_the_monitoring_packages_of_a_monitored_inventory():
    got = packages([("mon", ["monitoring_hosts"]), ("tgi", ["llm_hosts", "tgi_servers"])])
    assert {"prometheus", "prometheus-alertmanager", "prometheus-node-exporter"} <= got


def test_bundle_of_an_inventory_without_monitoring_has_none():
    assert not {"prometheus", "prometheus-alertmanager", "prometheus-node-exporter"} & packages([("tgi", ["llm_hosts", "tgi_servers"])])


# ---------------------------------------------------------------------------- playbooks/status.yml's table
def answer(*series):
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [1700000000.0, str(value)]} for labels, value in series]}}


def status_answers(**overrides):
    answers = dict((q["key"], answer()) for q in monitoring_status_queries())
    answers.update({
        "up": answer(({"job": "vllm", "llm_host": "llm-1", "llm_instance": "tiny", "llm_engine": "vllm"}, 1),
                     ({"job": "tgi", "llm_host": "llm-3", "llm_instance": "big", "llm_engine": "tgi"}, 0)),
        "probe_up": answer(({"llm_host": "llm-2", "endpoint": "ollama", "engine": "ollama"}, 1)),
        "ttft_p50": answer(({"llm_host": "llm-1", "llm_instance": "tiny"}, 0.0421)),
        "ttft_p95": answer(({"llm_host": "llm-1", "llm_instance": "tiny"}, "NaN")),
        "probe_ttft": answer(({"llm_host": "llm-2", "endpoint": "ollama"}, 0.25)),
        "tokens_per_s": answer(({"llm_host": "llm-1", "llm_instance": "tiny"}, 312.44)),
        "kv_cache": answer(({"llm_host": "llm-1", "llm_instance": "tiny"}, 0.5)),
        "queue": answer(({"llm_host": "llm-1", "llm_instance": "tiny"}, 3)),
        "gpu_state": answer(({"llm_host": "llm-1", "state": "no_gpu"}, 1), ({"llm_host": "llm-2", "state": "no_gpu"}, 1)),
        "alerts": answer(({"alertname": "LlmEngineDown", "llm_host": "llm-3"}, 1), ({"alertname": "LlmNoEngineScraped"}, 1)),
    })
    answers.update(overrides)
    return answers


def test_status_table_one_line_per_endpoint():
    lines = monitoring_status_table(status_answers()).splitlines()
    assert lines[0].split()[:4] == ["host", "endpoint", "engine", "up"]
    assert lines[1].split() == ["llm-1", "tiny", "vllm", "yes", "42ms", "-", "312.4", "3", "50%", "no_gpu", "-"]
    assert lines[2].split() == ["llm-2", "ollama", "ollama", "yes", "250ms*", "-", "-", "-", "-", "no_gpu", "-"]
    assert lines[3].split() == ["llm-3", "big", "tgi", "NO", "-", "-", "-", "-", "-", "-", "LlmEngineDown"]
    assert lines[4] == "fleet-wide alerts firing: LlmNoEngineScraped"


def test_status_table_says_when_prometheus_refused_a_query():
    with pytest.raises(AnsibleFilterError, match="did not answer the query kv_cache"):
        monitoring_status_table(status_answers(kv_cache={"status": "error", "error": "parse error"}))


def test_status_queries_parse_in_promtool(tmp_path):
    rules = {"groups": [{"name": "status", "rules": [{"record": "status:" + q["key"], "expr": q["query"]}
                                                     for q in monitoring_status_queries()]}]}
    path = tmp_path / "status.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "SUCCESS: 11 rules found" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("interval, timeout, refused", [
    ("5s", "4s", False), ("15s", "15s", False), ("1m", "30s", False), ("5s", "10s", True), ("5", "4s", True), ("5s", "1h", True)])
def test_a_scrape_timeout_above_the_interval_is_refused_naming_both(tmp_path, interval, timeout, refused):
    """Prometheus refuses it ("global scrape timeout greater than scrape interval"); the role says which variables."""
    proc = role_templates.run_role(tmp_path, "monitoring", "monitoring_preflight", {
        "monitoring_server_group": "all", "monitoring_serving_groups": [], "monitoring_scrape_interval": interval,
        "monitoring_scrape_timeout": timeout})
    message = "monitoring_scrape_timeout (%s) must be at most monitoring_scrape_interval (%s)" % (timeout, interval)
    assert (message in proc.stdout) == refused, proc.stdout[-3000:]
