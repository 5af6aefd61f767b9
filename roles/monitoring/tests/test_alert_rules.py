# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The monitoring role's alert rules: rendered by Ansible's templar from the role's defaults, then checked by
Debian's promtool (`check rules`) and unit-tested by it (`test rules` with alerts.test.yml: every alert fires on a bad
series and stays quiet on a good one beside it).

promtool comes from Debian's prometheus package (tools/setup.sh installs it): without it these tests FAIL, they never
skip. Run: .venv/bin/pytest roles/monitoring/tests/
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
TESTS = os.path.join(ROLE, "tests")
sys.path.insert(0, os.path.join(REPO, "tests"))
import role_templates  # noqa: E402  pylint: disable=wrong-import-position
from ansible.parsing.dataloader import DataLoader  # noqa: E402  pylint: disable=wrong-import-position
from ansible.template import Templar, trust_as_template  # noqa: E402  pylint: disable=wrong-import-position

RULES = "onprem-llm.rules.yml"


def promtool():
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert os.access(path, os.X_OK), ("promtool is missing: install Debian's prometheus package (tools/setup.sh does: "
                                      "apt-get install prometheus)")
    return path


def render(template, overrides=None):
    variables = role_templates.role_vars(ROLE, {"inventory_hostname": "mon-1", "groups": {}}, overrides or {})
    variables["ansible_managed"] = "Ansible managed"
    templar = Templar(loader=DataLoader(), variables=variables).copy_with_new_env(searchpath=[os.path.join(ROLE, "templates")])
    with open(os.path.join(ROLE, "templates", template)) as handle:
        return templar.template(trust_as_template(handle.read()))


def write_rules(directory, overrides=None):
    text = render(RULES + ".j2", overrides)
    path = os.path.join(str(directory), RULES)
    with open(path, "w") as handle:
        handle.write(text)
    shutil.copy(os.path.join(TESTS, "alerts.test.yml"), str(directory))
    return path, yaml.safe_load(text)


def run(*argv, cwd=None):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def alert_names(rules):
    return [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_rendered_rules_pass_promtool_check(tmp_path):
    path, rules = write_rules(tmp_path)
    names = alert_names(rules)
    assert len(names) == len(set(names)) == 21
    result = run(promtool(), "check", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 21 rules found" in result.stdout


def test_every_alert_has_a_promtool_test_that_fires_it():
    rules = yaml.safe_load(render(RULES + ".j2"))
    with open(os.path.join(TESTS, "alerts.test.yml")) as handle:
        tests = yaml.safe_load(handle)["tests"]
    fired = {case["alertname"] for test in tests for case in test["alert_rule_test"] if case.get("exp_alerts")}
    assert sorted(set(alert_names(rules)) - fired) == [], "alerts without a test that fires them"
    # each test that fires an alert also feeds a series that must stay quiet: more input series than expected alerts
    for test in tests:
        expected = sum(len(case.get("exp_alerts") or []) for case in test["alert_rule_test"])
        series = {s["series"].split("{")[1] for s in test["input_series"]}
        if expected and test["name"].split(" ")[0] != "LlmNoEngineScraped":
            assert len(series) > expected, "%s: no good series beside the bad one" % test["name"]


def test_promtool_unit_tests_pass_with_the_defaults(tmp_path):
    write_rules(tmp_path)
    result = run(promtool(), "test", "rules", "alerts.test.yml", cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("variable, value, needle, alert", [
    ("monitoring_alert_kv_cache_usage", 0.96, "vllm:kv_cache_usage_perc > 0.96", "LlmKvCacheFull"),
    ("monitoring_alert_ttft_p95_seconds", 6.0, "> 6.0", "LlmTtftP95High"),
    ("monitoring_alert_queue_depth", 40, "(vllm:num_requests_waiting) > 40", "LlmQueueDeep"),
    ("monitoring_alert_gateway_5xx_ratio", 0.2, "> 0.2", "LlmGateway5xxRatioHigh"),
    # also the time TextfileMetricsMissing waits ("for"): both of their tests fail
    ("monitoring_alert_textfile_stale_sec", 900, "> 900", "TextfileMetricsStale"),
])
def test_thresholds_are_the_role_variables(tmp_path, variable, value, needle, alert):
    """A threshold set above the test's bad series keeps its alert quiet: promtool's test of that alert then fails."""
    path, rules = write_rules(tmp_path, {variable: value})
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert needle in exprs[alert]
    result = run(promtool(), "test", "rules", "alerts.test.yml", cwd=str(tmp_path))
    assert result.returncode == 1
    output = result.stdout + result.stderr
    failed = [line.split("alertname: ")[1].split(",")[0] for line in output.splitlines() if "alertname: " in line]
    also = {"TextfileMetricsStale": {"TextfileMetricsMissing"}}.get(alert, set())
    assert set(failed) == {alert} | also, output


def test_gpu_rules_and_panels_name_what_the_probe_wrote_on_a_real_h200(tmp_path):
    """The GPU probe's textfile from a real H200 (tests/gpu/prove_gpu_probe.py on the device machine, 2026-11-29): it is
    valid Prometheus text (promtool check metrics), and every onprem_gpu_* name and label the alert rules and the
    dashboard use is in it, so the GPU alerts and panels read series that really exist."""
    import re
    sys.path.insert(0, TESTS)
    from test_dashboard import dashboard, expand, queries  # pylint: disable=import-outside-toplevel
    recorded = os.path.join(REPO, "tests", "gpu", "results", "2026-11-29", "gpu_probe", "gpu_probe.prom")
    text = open(recorded).read()
    check = subprocess.run([promtool(), "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    names = set(re.findall(r"^(onprem_gpu_[a-z_]+)", text, re.M))
    labels = set(re.findall(r'([a-z_]+)="', text))
    used = render(RULES + ".j2") + "\n".join(expand(expr) for _title, _ref, expr in queries(dashboard()))
    # onprem_gpu_last_xid appears only after an XID event, onprem_gpu_probe_info only without a GPU, and
    # onprem_gpu_retired_pages only on GPUs before Ampere (NVML: NOT_SUPPORTED on the H200, which remaps rows instead)
    wanted = set(re.findall(r"\b(onprem_gpu_[a-z_]+)", used)) - {"onprem_gpu_last_xid", "onprem_gpu_probe_info", "onprem_gpu_retired_pages"}
    assert wanted and wanted <= names, sorted(wanted - names)
    for selector in re.findall(r"onprem_gpu_[a-z_]+\{([^}]*)\}", used):
        for label in re.findall(r"([a-z_]+)\s*[=!~]", selector):
            assert label in labels | {"llm_host", "instance", "job"}, (label, selector)
