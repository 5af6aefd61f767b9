# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""benchmark_prefix_cache_ab: the prefix-caching A/B from two llm_benchmark reports (levels built by llm_benchmark's own
summarize_level/vllm_report in fixtures/benchmark_run.json): ratios on/off, vLLM's hit rates, refusals."""
from __future__ import annotations

import copy
import json
import os
import sys

import pytest

from ansible.errors import AnsibleFilterError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tests"))
import role_templates  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import
from ansible_collections.onprem.llm_serving.plugins.filter.benchmark import FilterModule  # noqa: E402  pylint: disable=wrong-import-position

HERE = os.path.dirname(os.path.abspath(__file__))
FILTERS = FilterModule().filters()
AB = FILTERS["benchmark_prefix_cache_ab"]
WORKLOAD = {"workload": "prefix_repetition", "num_prefixes": 2, "num_prompts": 16, "prefix_len": 256, "suffix_len": 32, "output_len": 16}


@pytest.fixture
def on_levels():
    with open(os.path.join(HERE, "fixtures", "benchmark_run.json")) as f:
        return json.load(f)[0]["levels"]


def off_of(levels):
    off = copy.deepcopy(levels)
    for lv in off:
        lv["median_ttft_ms"] *= 2.0
        lv["p95_ttft_ms"] *= 4.0
        lv["output_throughput"] *= 0.5
        lv["prefix_cache_queries"], lv["prefix_cache_hits"], lv["prefix_cache_hit_rate"] = 0.0, 0.0, None
    return off


def test_ratios_are_on_over_off_per_level(on_levels):
    c = AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "nocache", "levels": off_of(on_levels)}, WORKLOAD)
    assert [r["level"] for r in c["rows"]] == [str(lv["max_concurrency"]) for lv in on_levels]
    for row, lv in zip(c["rows"], on_levels):
        assert row["ttft_p50_ratio"] == pytest.approx(0.5) and row["ttft_p95_ratio"] == pytest.approx(0.25)
        assert row["throughput_ratio"] == pytest.approx(2.0)
        # vLLM's own counters, as llm_benchmark reported them: never recomputed here
        assert row["hit_rate_on"] == lv["prefix_cache_hit_rate"] and row["hit_rate_off"] is None
        assert row["ttft_p50_on"] == lv["median_ttft_ms"]
    assert c["parameters"] == WORKLOAD
    assert c["on"]["endpoint"] == "tiny" and c["off"]["endpoint"] == "nocache"


def test_the_page_shows_the_comparison(on_levels):
    c = AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "nocache", "levels": off_of(on_levels)}, WORKLOAD)
    doc = {"host": "h", "endpoint": "tiny (prefix caching on)", "url": "http://127.0.0.1:8000", "model": "tiny",
           "plan": {"workload": "prefix_repetition"}, "levels": on_levels, "comparison": c}
    page = FILTERS["benchmark_report_html"]([doc])
    assert "prefix caching" in page and "prefix_len=256" in page and "0.500" in page and "0.250" in page and "2.000" in page


def test_off_endpoint_with_hits_is_refused(on_levels):
    with pytest.raises(AnsibleFilterError, match="endpoint tiny2 .benchmark_prefix_cache_ab_off. answered 1024 prefix-cache hit tokens"):
        AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "tiny2", "levels": on_levels[:1]}, WORKLOAD)


def test_on_endpoint_without_queries_is_refused(on_levels):
    with pytest.raises(AnsibleFilterError, match="endpoint nocache2 .benchmark_prefix_cache_ab_on. counted no prefix-cache queries"):
        AB({"endpoint": "nocache2", "levels": off_of(on_levels)}, {"endpoint": "nocache", "levels": off_of(on_levels)}, WORKLOAD)


def test_failed_requests_are_refused(on_levels):
    off = off_of(on_levels)
    off[0]["failed"] = 3
    with pytest.raises(AnsibleFilterError, match="failed requests .nocache: 3."):
        AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "nocache", "levels": off}, WORKLOAD)


def test_no_common_level_is_refused(on_levels):
    off = off_of(on_levels)
    for lv in off:
        lv["max_concurrency"] = 99
    with pytest.raises(AnsibleFilterError, match="no level run on both sides"):
        AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "nocache", "levels": off}, WORKLOAD)


def test_an_empty_side_is_refused(on_levels):
    with pytest.raises(AnsibleFilterError, match="no levels for the off side"):
        AB({"endpoint": "tiny", "levels": on_levels}, {"endpoint": "nocache", "levels": []}, WORKLOAD)
