# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Grafana dashboard: every panel query (Grafana's variables replaced by what Grafana sends) parses in promtool
(written as recording rules: `promtool check rules` runs Prometheus' own parser), names only metrics that exist (vLLM
0.32, TGI, HAProxy 2.6, node_exporter, dcgm-exporter, the role's probes), and uses the provisioned data source.

No Prometheus runs here: the proof that every query returns data is a lab step (the role's README says how).
Run: .venv/bin/pytest roles/monitoring/tests/
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(REPO, "roles", "monitoring")
DASHBOARD = os.path.join(ROLE, "files", "grafana", "onprem-llm-fleet.json")
sys.path.insert(0, os.path.join(REPO, "tests"))
import role_templates  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.template import Templar, trust_as_template  # noqa: E402  pylint: disable=wrong-import-position

# Metric names of the engines and exporters (../shared/OPERATIONS.md: vLLM 0.32 V1, TGI 3.x, HAProxy 2.6, node_exporter
# 1.5, dcgm-exporter); histograms also as _bucket, _sum and _count.
VLLM_HISTOGRAMS = ("time_to_first_token_seconds", "inter_token_latency_seconds", "request_time_per_output_token_seconds",
                   "e2e_request_latency_seconds", "request_queue_time_seconds", "request_prefill_time_seconds",
                   "request_decode_time_seconds", "request_prompt_tokens", "request_generation_tokens")
KNOWN = {"up", "ALERTS", "vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
         "vllm:prompt_tokens_total", "vllm:generation_tokens_total", "vllm:request_success_total", "vllm:num_preemptions_total",
         "vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total", "tgi_queue_size", "tgi_batch_current_size",
         "haproxy_backend_http_responses_total", "node_textfile_mtime_seconds", "node_textfile_scrape_error",
         "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_ROW_REMAP_FAILURE"}
KNOWN |= {"vllm:%s%s" % (h, s) for h in VLLM_HISTOGRAMS for s in ("_bucket", "_sum", "_count")}
KNOWN |= {"%s%s" % (h, s) for h in ("tgi_request_duration", "tgi_request_queue_duration", "tgi_request_mean_time_per_token_duration",
                                    "tgi_request_generated_tokens") for s in ("_bucket", "_sum", "_count")}
GONE = ("vllm:gpu_cache_usage_perc", "vllm:time_per_output_token_seconds", "vllm:gpu_prefix_cache")
METRIC = re.compile(r"\b(vllm:[a-z_:]+|tgi_[a-z_]+|haproxy_[a-z_]+|node_[a-z_]+|onprem_[a-z_]+|DCGM_[A-Z_]+)\b")
# Grafana's own variables, as Grafana sends them to Prometheus.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "3h", "$host": ".*", "$instance": ".*"}


def probe_metrics():
    """The metric families the role's probes write (plugins/module_utils/_textfile_probe.py)."""
    with open(os.path.join(REPO, "plugins", "module_utils", "_textfile_probe.py")) as handle:
        return set(re.findall(r'[Ff]amily\("(onprem_[a-z_]+)"', handle.read()))


def promtool():
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert os.access(path, os.X_OK), "promtool is missing: tools/setup.sh installs Debian's prometheus package"
    return path


def dashboard():
    with open(DASHBOARD) as handle:
        return json.load(handle)


def queries(dash):
    out = []
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["refId"], target["expr"]))
    for variable in dash["templating"]["list"]:
        out.append(("variable " + variable["name"], "-", variable["definition"]))
    return out


def expand(expr):
    for name, value in sorted(GRAFANA_VARS.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(name, value)
    left = re.findall(r"\$[A-Za-z_]+", expr)
    assert not left, "Grafana variables the test does not know: %s" % left
    return expr


def check_as_rules(tmp_path, exprs):
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": "dashboard:query_%d" % i, "expr": e} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    return subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)


def test_panels_have_ids_positions_and_the_provisioned_datasource():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]) and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": "onprem-llm-prometheus"}
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    titles = " ".join(p["title"] for p in dash["panels"])
    for words in ("TTFT", "ITL", "End-to-end", "Tokens per second", "running and waiting", "KV cache", "Prefix-cache", "GPU"):
        assert words in titles


def test_every_panel_query_parses_in_promtool(tmp_path):
    exprs = [expand(e) for _title, _ref, e in queries(dashboard()) if not e.startswith("label_values(")]
    exprs += [expand(re.match(r"label_values\((.*), [a-z_]+\)$", e).group(1))
              for _title, _ref, e in queries(dashboard()) if e.startswith("label_values(")]
    assert len(exprs) >= 40
    result = check_as_rules(tmp_path, exprs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: %d rules found" % len(exprs) in result.stdout


def test_the_parse_check_can_fail(tmp_path):
    result = check_as_rules(tmp_path, ['sum by (llm_host) (rate(vllm:generation_tokens_total[1m])'])
    assert result.returncode == 1 and "parse error" in result.stdout + result.stderr


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_only_metrics_that_exist(source):
    if source == "dashboard":
        text = " ".join(e for _t, _r, e in queries(dashboard()))
    else:
        text = " ".join(r["expr"] for g in yaml.safe_load(render_rules())["groups"] for r in g["rules"])
    names = set(METRIC.findall(re.sub(r'"[^"]*"', '""', text)))  # label values are not metrics
    assert names, "no metric found"
    unknown = sorted(names - KNOWN - probe_metrics())
    assert unknown == [], "metrics no engine, exporter or probe publishes: %s" % unknown
    assert not [g for g in GONE if g in text]


def render_text(template):
    variables = role_templates.role_vars(ROLE, {"inventory_hostname": "mon-1", "groups": {}}, {})
    variables["ansible_managed"] = "Ansible managed"
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", template)) as handle:
        return templar.template(trust_as_template(handle.read()))


def render_rules():
    return render_text("onprem-llm.rules.yml.j2")


def render(template):
    return yaml.safe_load(render_text(template))


def test_provisioning_files_point_at_the_dashboards_and_prometheus():
    datasources = render("grafana-datasources.yml.j2")
    assert datasources["datasources"][0]["uid"] == "onprem-llm-prometheus"
    assert datasources["datasources"][0]["url"] == "http://127.0.0.1:9090"
    providers = render("grafana-dashboards.yml.j2")
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/onprem-llm"
    assert providers["apiVersion"] == 1
