# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The prefix-caching A/B of roles/benchmark (controller side only): one comparison from two llm_benchmark runs.

The same prefix_repetition workload (same seed, so the same prompts) ran against an endpoint with vLLM's prefix caching on
and one with it off. Every number is llm_benchmark's own (``report``: the keys and definitions of ``vllm bench serve``,
percentiles included); this module only pairs the levels and divides (``_benchmark_html.ab_rows``, which the HTML page's A/B
section shows too), and checks the two endpoints really differ in prefix caching: vLLM counts prefix-cache queries and
hits (``vllm:prefix_cache_queries_total`` / ``vllm:prefix_cache_hits_total``) only where caching is on.

Output, the ``comparison`` a report document carries (``_benchmark_html`` renders it)::

    {"title", "parameters": {...workload...}, "on": {"label", "endpoint", "levels"}, "off": {...}, "rows": [...ab_rows...]}
"""

from __future__ import annotations

from ansible_collections.onprem.llm_serving.plugins.plugin_utils._benchmark_html import ab_rows, number

FIX_ON = "set enable_prefix_caching: true on that instance (vllm_instances), or name an instance that has it in benchmark_prefix_cache_ab_on"
FIX_OFF = "set enable_prefix_caching: false on that instance (vllm_instances), or name an instance that has it off in benchmark_prefix_cache_ab_off"


class AbError(ValueError):
    """The two runs cannot be compared; the message says why and what to change."""


def _sum(levels, key):
    values = [number(lv.get(key)) for lv in levels]
    return sum(v for v in values if v is not None)


def compare(on, off, parameters, title="prefix caching"):
    """``on``/``off``: ``{"endpoint": name, "levels": llm_benchmark's report}``; ``parameters``: the workload, as run."""
    for side, run in (("on", on), ("off", off)):
        if not isinstance(run, dict) or not run.get("levels"):
            raise AbError("the prefix-caching A/B has no levels for the %s side (%r): the benchmark of that endpoint returned no report"
                          % (side, (run or {}).get("endpoint") if isinstance(run, dict) else run))
    on_name, off_name = on.get("endpoint"), off.get("endpoint")
    failed = [(name, int(_sum(run["levels"], "failed"))) for name, run in ((on_name, on), (off_name, off)) if _sum(run["levels"], "failed")]
    if failed:
        raise AbError("the prefix-caching A/B had failed requests (%s): the ratios would compare different work. Read the errors in the "
                      "report, fix the endpoint, and run it again" % ", ".join("%s: %d" % f for f in failed))
    if _sum(off["levels"], "prefix_cache_hits") > 0:
        raise AbError("endpoint %s (benchmark_prefix_cache_ab_off) answered %d prefix-cache hit tokens: prefix caching is on there; %s"
                      % (off_name, int(_sum(off["levels"], "prefix_cache_hits")), FIX_OFF))
    if not any(number(lv.get("prefix_cache_queries")) for lv in on["levels"]):
        raise AbError("endpoint %s (benchmark_prefix_cache_ab_on) counted no prefix-cache queries (vllm:prefix_cache_queries_total did not "
                      "move, or its /metrics is not vLLM's): prefix caching is off there or the endpoint is not vLLM; %s" % (on_name, FIX_ON))
    comparison = {
        "title": title,
        "parameters": dict(parameters),
        "on": {"label": "on", "endpoint": on_name, "levels": on["levels"]},
        "off": {"label": "off", "endpoint": off_name, "levels": off["levels"]},
    }
    rows = ab_rows(comparison)
    if not rows:
        raise AbError("the prefix-caching A/B has no level run on both sides (on: %s, off: %s): run both with the same concurrency"
                      % ([lv.get("max_concurrency") for lv in on["levels"]], [lv.get("max_concurrency") for lv in off["levels"]]))
    comparison["rows"] = rows
    return comparison
