"""benchmark_report_html: one self-contained page from a run's JSON reports (fixtures/benchmark_run.json, built by
benchmark_fixture.py through llm_benchmark's own summarize_level/vllm_report)."""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import pytest

from ansible.errors import AnsibleFilterError

# (with the role tests, in their own process: importing the controller side in tests/unit changes how the modules'
# tests there collect warnings)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests"))
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter.benchmark import FilterModule  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_benchmark import levels_from, summarize_level  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.onprem.llm_serving.plugins.plugin_utils import _benchmark_html as bh  # noqa: E402  pylint: disable=wrong-import-position

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "fixtures", "benchmark_run.json")
render_filter = FilterModule().filters()["benchmark_report_html"]


@pytest.fixture
def run():
    with open(FIXTURE) as f:
        return json.load(f)


def comparison_of(run):
    """An A/B as the prefix-caching playbook reports it: the same workload with caching on (run[0]) and off."""
    on = run[0]["levels"]
    off = copy.deepcopy(on)
    for lv in off:
        for key in ("median_ttft_ms", "p95_ttft_ms"):
            lv[key] *= 2.5
        lv["output_throughput"] *= 0.8
        lv["prefix_cache_hit_rate"] = 0.0
    return {"title": "prefix caching", "parameters": {"workload": "prefix_repetition", "prefix_len": 256, "suffix_len": 64},
            "on": {"label": "caching on", "levels": on}, "off": {"label": "caching off", "levels": off}}


def charts(page):
    return re.findall(r'<figure class="chart" data-metric="([a-z0-9_]+)">', page)


def test_fixture_has_the_modules_level_keys(run):
    # the fixture stays the module's shape: a level summarised now has exactly the keys of the fixture's levels
    level = levels_from([1], [], None)[0]
    fresh = summarize_level(level, [], 1.0, [50, 90, 95, 99], {"ttft": 400.0, "e2el": 3000.0}, {}, 0)
    for doc in run:
        assert set(doc) == {"host", "endpoint", "url", "model", "plan", "levels"}
        for lv in doc["levels"]:
            assert set(fresh) <= set(lv), ("the module reports new keys %s: regenerate the fixture with "
                                           "roles/benchmark/tests/benchmark_fixture.py" % sorted(set(fresh) - set(lv)))


def test_page_is_self_contained(run):
    page = render_filter(run, title="lab run")
    assert page.startswith("<!DOCTYPE html>")
    refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page, flags=re.I)
    assert refs, "the SVGs' internal references were expected"
    assert all(ref.startswith("#") for ref in refs), [r for r in refs if not r.startswith("#")]
    assert not re.search(r"<script|<link|<iframe|@import|url\(\s*['\"]?https?:", page, flags=re.I)
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page


def test_one_chart_per_metric_with_a_panel_per_endpoint(run):
    page = render_filter(run)
    assert charts(page) == ["ttft", "itl", "e2el", "output_throughput", "goodput", "failed"]
    assert page.count("<svg") == 6
    for doc in run:  # each endpoint is named in the panels' titles (text drawn as paths) and in the figures' tables
        assert "<h3>%s / %s</h3>" % (doc["host"], doc["endpoint"]) in page
    # percentile lines: the percentiles the run measured, p50 first
    assert [label for label, _key in bh.percentile_keys(run[0]["levels"], "ttft")] == ["p50", "p90", "p95", "p99"]


def test_failed_requests_are_called_out_first(run):
    page = render_filter(run)
    banner = re.search(r'<section class="failed" id="failed-requests"><h2>(\d+) failed requests</h2>(.*?)</section>', page, flags=re.S)
    assert banner, "no failed-requests banner"
    assert int(banner.group(1)) == sum(lv["failed"] for doc in run for lv in doc["levels"]) == 4
    assert "lab-2 / tiny-ollama" in banner.group(2) and "HTTP 503 Service Unavailable" in banner.group(2)
    assert "<td>concurrency 32</td><td>4</td><td>24</td>" in banner.group(2)
    assert page.index("failed-requests") < page.index('data-metric="ttft"')


def test_no_failures_and_no_goodput(run):
    for doc in run:
        for lv in doc["levels"]:
            lv["completed"] += lv["failed"]
            lv["failed"] = 0
            lv["request_goodput"] = None
    page = render_filter(run)
    assert 'class="failed"' not in page and "No failed requests" in page
    assert "goodput" not in charts(page) and "Goodput not measured" in page


def test_open_loop_levels_plot_against_request_rate(run):
    for lv, rate in zip(run[0]["levels"], (2.0, 4.0, 8.0)):
        lv["mode"], lv["request_rate"] = "open_loop", rate
    groups = bh.groups_of(run)
    assert [(g["axis"].split(" (")[0], g["ticks"]) for g in groups] == [("request rate", ["2", "4", "8"]), ("concurrency", ["1", "8", "32"])]
    assert "request rate (req/s)" in render_filter(run)


def test_ab_section_ratios_and_hit_rate(run):
    comparison = comparison_of(run)
    rows = bh.ab_rows(comparison)
    assert [r["level"] for r in rows] == ["1", "8", "32"]
    for r in rows:
        assert r["ttft_p50_ratio"] == pytest.approx(0.4) and r["ttft_p95_ratio"] == pytest.approx(0.4)
        assert r["throughput_ratio"] == pytest.approx(1.25)
        assert r["hit_rate_on"] == pytest.approx(1 / 3.0) and r["hit_rate_off"] == 0.0
    page = render_filter(run, comparisons=[comparison])
    assert charts(page)[-1] == "ab_ttft"
    assert "<h2>A/B: prefix caching</h2>" in page and "<td>0.400</td><td>0.400</td><td>1.250</td><td>33.3 %</td><td>0.0 %</td>" in page
    # carried by a report instead of the argument
    run[0]["comparison"] = comparison
    assert charts(render_filter(run))[-1] == "ab_ttft"


@pytest.mark.parametrize("bad, words", [
    ([], "non-empty list"),
    ({"levels": []}, "non-empty list"),
    ([{"endpoint": "x"}], "list of levels"),
])
def test_bad_input_says_what_was_expected(bad, words):
    with pytest.raises(AnsibleFilterError, match=words):
        render_filter(bad)


def test_the_collection_loads_without_matplotlib_and_the_filter_names_the_fix(run):
    # a fresh interpreter where matplotlib cannot be imported: the filter plugin imports; rendering fails naming the fix
    code = (
        "import sys, json\n"
        "sys.modules['matplotlib'] = None\n"
        "sys.path.insert(0, %r)\n"
        "import role_templates\n"
        "from ansible_collections.onprem.llm_serving.plugins.filter.benchmark import FilterModule\n"
        "f = FilterModule().filters()['benchmark_report_html']\n"
        "try:\n"
        "    f(json.load(open(%r)))\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n" % (os.path.join(HERE, "..", "..", "..", "tests"), FIXTURE))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # AnsibleFilterError (ansible-core 2.19 names it AnsibleTemplatePluginError, its subclass)
    assert re.match(r"Ansible\w*Error benchmark HTML report: matplotlib is not installed for the controller's Python", out), out
    assert "make setup" in out and "benchmark_html_report: false" in out
