# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the monitoring role.

- monitoring_scrape_configs: Prometheus' scrape_configs from the endpoints the engine roles published (llm_endpoints,
  the contract of roles/smoke), the serving hosts' node_exporter, the gateways' HAProxy exporter and, when enabled,
  dcgm-exporter on the GPU hosts. Everything is scraped on the private side: an engine's own port, or, for an engine on
  loopback beside a gateway, the gateway's metrics listener (/engines/<host>-<instance>/metrics); never a gateway door.
- monitoring_probe_endpoints: the endpoints of one host the textfile probe generates on (by engine).
- monitoring_status_queries, monitoring_status_table: the instant queries playbooks/status.yml sends to Prometheus, and
  ONE table of the fleet from their answers.
"""

from __future__ import annotations

import math

from ansible.errors import AnsibleFilterError
from ansible_collections.onprem.llm_serving.plugins.module_utils._gateway import engine_metrics_path

WILDCARDS = ("0.0.0.0", "::", "[::]", "")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
ENGINE_JOBS = ("vllm", "tgi")


def _hostport(address, port):
    address = str(address)
    if ":" in address and not address.startswith("["):
        address = "[%s]" % address
    return "%s:%s" % (address, port)


def _reach(bind, host, host_address, monitor, variable):
    """The address Prometheus on ``monitor`` reaches a listener bound to ``bind`` on ``host`` at."""
    bind = "" if bind is None else str(bind)
    if host == monitor:
        return "127.0.0.1" if bind in WILDCARDS else bind
    if bind in LOOPBACK or bind.startswith("127."):
        raise AnsibleFilterError(
            "monitoring: %s on %s listens on loopback (%s), so Prometheus on %s cannot scrape it. Bind it to the host's "
            "private address with %s (never a public one: these ports have no authentication)" % (
                variable.split(" ")[0], host, bind, monitor, variable))
    return host_address if bind in WILDCARDS else bind


def monitoring_scrape_configs(serving, gateways, monitor, settings):
    """Prometheus scrape_configs (a list of dicts).

    ``serving``: {host: {"endpoints": llm_endpoints or None, "address": str, "node_exporter_address": str, "gpu": bool}}
    ``gateways``: {host: {"address": str, "metrics_address": str, "metrics_port": int}}
    ``monitor``: the inventory name of the Prometheus host.
    ``settings``: {"node_exporter_port", "dcgm_exporter" (bool), "dcgm_exporter_port", "gateway_metrics" (bool),
    "prometheus_port", "alertmanager_port"}.
    """
    if not isinstance(serving, dict):
        raise AnsibleFilterError("monitoring_scrape_configs: serving must be a dict of host -> facts, got %r" % (serving,))
    jobs = dict((name, []) for name in ("vllm", "tgi", "node", "haproxy", "dcgm"))
    for host in sorted(serving):
        facts = serving[host] or {}
        endpoints = facts.get("endpoints")
        if endpoints is None:
            raise AnsibleFilterError(
                "monitoring: %s published no llm_endpoints: the engines' stage must run in the same play run (site.yml, "
                "or --tags vllm_smoke,tgi_smoke,ollama_smoke,monitoring), or remove the host from monitoring_serving_groups"
                % host)
        address = facts.get("address") or host
        for endpoint in endpoints:
            engine = endpoint.get("engine")
            if engine not in ENGINE_JOBS or not endpoint.get("metrics_path"):
                continue
            if endpoint.get("port") is None:
                raise AnsibleFilterError("monitoring: endpoint %s of %s has no port in llm_endpoints; the engine roles "
                                         "publish it (the contract's port)" % (endpoint.get("name"), host))
            bind = "" if endpoint.get("host") is None else str(endpoint.get("host"))
            relay = (gateways or {}).get(host) or {}
            metrics_path, port = endpoint["metrics_path"], endpoint["port"]
            if host != monitor and (bind in LOOPBACK or bind.startswith("127.")) and int(relay.get("metrics_port") or 0):
                # on loopback behind the gateway of its own host: scraped through the gateway's metrics listener
                reach = _reach(relay.get("metrics_address"), host, relay.get("address") or address, monitor,
                               "gateway_metrics_address (the gateway on %s relays the /metrics of its loopback engines)" % host)
                metrics_path = engine_metrics_path(host, endpoint.get("instance") or endpoint.get("name"))
                port = int(relay["metrics_port"])
            else:
                reach = _reach(bind, host, address, monitor,
                               "%s_bind_address (or bind_address of the instance), or put the gateway on %s (gateway_hosts): "
                               "its metrics listener relays the /metrics of the engines beside it" % (engine, host))
            labels = {"llm_host": host, "llm_instance": str(endpoint.get("instance") or endpoint.get("name")),
                      "llm_engine": engine}
            if endpoint.get("unit"):
                labels["llm_unit"] = str(endpoint["unit"])
            if endpoint.get("model"):
                labels["llm_model"] = str(endpoint["model"])
            if metrics_path != "/metrics":
                labels["__metrics_path__"] = str(metrics_path)
            jobs[engine].append({"targets": [_hostport(reach, port)], "labels": labels})
        node = _reach(facts.get("node_exporter_address"), host, address, monitor, "monitoring_node_exporter_address")
        jobs["node"].append({"targets": [_hostport(node, settings["node_exporter_port"])], "labels": {"llm_host": host}})
        if settings.get("dcgm_exporter") and facts.get("gpu"):
            jobs["dcgm"].append({"targets": [_hostport(_reach("0.0.0.0", host, address, monitor, ""), settings["dcgm_exporter_port"])],
                                 "labels": {"llm_host": host}})
    if settings.get("gateway_metrics"):
        for host in sorted(gateways or {}):
            facts = gateways[host] or {}
            port = int(facts.get("metrics_port") or 0)
            if not port:
                continue
            reach = _reach(facts.get("metrics_address"), host, facts.get("address") or host, monitor, "gateway_metrics_address")
            jobs["haproxy"].append({"targets": [_hostport(reach, port)], "labels": {"llm_host": host}})
    configs = [
        {"job_name": "prometheus", "static_configs": [{"targets": [_hostport("127.0.0.1", settings["prometheus_port"])]}]},
        {"job_name": "alertmanager", "static_configs": [{"targets": [_hostport("127.0.0.1", settings["alertmanager_port"])]}]},
    ]
    for job in ("vllm", "tgi", "node", "haproxy", "dcgm"):
        if jobs[job]:
            configs.append({"job_name": job, "metrics_path": "/metrics", "static_configs": jobs[job]})
    return configs


def monitoring_probe_endpoints(endpoints, engines):
    """The endpoints of ``endpoints`` (llm_endpoints) whose engine is in ``engines``, with what the probe needs."""
    keep = ("name", "engine", "protocol", "url", "model", "api_key", "validate_certs", "ca_path")
    out = []
    for endpoint in endpoints or []:
        if endpoint.get("engine") in (engines or []):
            out.append(dict((k, endpoint.get(k)) for k in keep if endpoint.get(k) is not None))
    return out


# What playbooks/status.yml asks Prometheus (instant queries), by the key monitoring_status_table reads.
STATUS_QUERIES = {
    "up": 'up{job=~"vllm|tgi"}',
    "probe_up": "onprem_llm_probe_up",
    "ttft_p50": 'histogram_quantile(0.5, sum by (le, llm_host, llm_instance) (rate(vllm:time_to_first_token_seconds_bucket[5m])))',
    "ttft_p95": 'histogram_quantile(0.95, sum by (le, llm_host, llm_instance) (rate(vllm:time_to_first_token_seconds_bucket[5m])))',
    "probe_ttft": "onprem_llm_probe_ttft_seconds",
    "tokens_per_s": "sum by (llm_host, llm_instance) (rate(vllm:generation_tokens_total[5m]))",
    "probe_tokens_per_s": "onprem_llm_probe_tokens_per_second",
    "queue": "sum by (llm_host, llm_instance) (vllm:num_requests_waiting) or sum by (llm_host, llm_instance) (tgi_queue_size)",
    "kv_cache": "max by (llm_host, llm_instance) (vllm:kv_cache_usage_perc)",
    "gpu_state": "onprem_gpu_probe_state == 1",
    "alerts": 'ALERTS{alertstate="firing"}',
}
STATUS_FORMAT = "%-14s %-16s %-7s %-5s %9s %9s %8s %6s %6s %-10s %s"


def _series(answers, key):
    """[(labels, float value)] of one instant query's answer (the JSON of Prometheus' /api/v1/query)."""
    answer = (answers or {}).get(key) or {}
    if answer.get("status") != "success":
        raise AnsibleFilterError("monitoring_status_table: Prometheus did not answer the query %s (%s): %s" % (
            key, STATUS_QUERIES.get(key), answer.get("error") or answer.get("status") or "no answer"))
    out = []
    for item in answer.get("data", {}).get("result", []):
        try:
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        out.append((item.get("metric") or {}, value))
    return out


def _fmt(value, scale=1.0, digits=0, suffix=""):
    if value is None or math.isnan(value):  # None or NaN (a quantile without traffic)
        return "-"
    return ("%." + str(digits) + "f%s") % (value * scale, suffix)


def monitoring_status_table(answers):
    """ONE table of the fleet now from ``answers`` ({key of STATUS_QUERIES: Prometheus' JSON answer}): per endpoint up,
    TTFT p50/p95 over 5 min (vLLM; the probe's last TTFT for probed endpoints), tok/s, queue, KV cache, the host's GPU
    state and the alerts firing on the host."""
    rows = {}

    def row(host, name):
        return rows.setdefault((host, name), {"engine": "-", "up": None})

    for labels, value in _series(answers, "up"):
        r = row(labels.get("llm_host", labels.get("instance", "?")), labels.get("llm_instance", "?"))
        r.update({"engine": labels.get("llm_engine") or labels.get("job", "-"), "up": value})
    for labels, value in _series(answers, "probe_up"):
        r = row(labels.get("llm_host", "?"), labels.get("endpoint", "?"))
        r.update({"engine": labels.get("engine", "-"), "up": value, "probed": True})
    for key, source in (("ttft_p50", "ttft_p50"), ("ttft_p95", "ttft_p95"), ("tokens_per_s", "tokens_per_s"), ("queue", "queue"),
                        ("kv_cache", "kv_cache")):
        for labels, value in _series(answers, source):
            if (labels.get("llm_host"), labels.get("llm_instance")) in rows:
                rows[(labels["llm_host"], labels["llm_instance"])][key] = value
    for key, source in (("ttft_p50", "probe_ttft"), ("tokens_per_s", "probe_tokens_per_s")):
        for labels, value in _series(answers, source):
            if (labels.get("llm_host"), labels.get("endpoint")) in rows:
                rows[(labels["llm_host"], labels["endpoint"])][key] = value
    gpu = dict((labels.get("llm_host"), labels.get("state")) for labels, _value in _series(answers, "gpu_state"))
    alerts = {}
    for labels, _value in _series(answers, "alerts"):
        alerts.setdefault(labels.get("llm_host", "(fleet)"), set()).add(labels.get("alertname", "?"))
    lines = [STATUS_FORMAT % ("host", "endpoint", "engine", "up", "ttft_p50", "ttft_p95", "tok/s", "queue", "kv", "gpu", "alerts firing")]
    for (host, name) in sorted(rows):
        r = rows[(host, name)]
        up = "-" if r["up"] is None else ("yes" if r["up"] >= 1 else "NO")
        lines.append(STATUS_FORMAT % (
            host, name, r["engine"], up, _fmt(r.get("ttft_p50"), 1000, 0, "ms" if not r.get("probed") else "ms*"),
            _fmt(r.get("ttft_p95"), 1000, 0, "ms"), _fmt(r.get("tokens_per_s"), 1, 1), _fmt(r.get("queue")),
            _fmt(r.get("kv_cache"), 100, 0, "%"), gpu.get(host, "-"), ", ".join(sorted(alerts.get(host, []))) or "-"))
    if not rows:
        lines.append("(Prometheus knows no endpoint: is playbooks/monitoring.yml run, and are the targets up?)")
    fleet = sorted(alerts.get("(fleet)", []))
    if fleet:
        lines.append("fleet-wide alerts firing: " + ", ".join(fleet))
    lines.append("ms*: the synthetic probe's last TTFT (engines without /metrics); p50/p95 over the last 5 minutes of traffic.")
    return "\n".join(lines)


def monitoring_status_queries(_value=None):
    """The instant queries of playbooks/status.yml, as [{key, query}]."""
    return [{"key": k, "query": q} for k, q in STATUS_QUERIES.items()]


class FilterModule:
    def filters(self):
        return {"monitoring_scrape_configs": monitoring_scrape_configs, "monitoring_probe_endpoints": monitoring_probe_endpoints,
                "monitoring_status_queries": monitoring_status_queries, "monitoring_status_table": monitoring_status_table}
