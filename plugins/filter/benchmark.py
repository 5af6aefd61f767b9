# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the benchmark role.

- benchmark_report_html: ONE self-contained HTML page (charts inlined as SVG, no script, no network) from the JSON
  reports of a benchmark run: TTFT/ITL/E2E percentiles, output tok/s, goodput and failed requests against concurrency
  or request rate, one panel per endpoint; an A/B section when a report carries a comparison. Rendered with matplotlib
  on the controller only; matplotlib is imported when the filter runs, not when the collection loads.
- benchmark_prefix_cache_ab: the prefix-caching A/B comparison (TTFT p50/p95 ratio on/off, output throughput ratio, vLLM's own
  hit rates, the workload) from two llm_benchmark results of the same workload, one endpoint with prefix caching and one
  without; refused when the endpoints do not differ in prefix caching or requests failed.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.plugin_utils._benchmark_ab import AbError, compare
from ansible_collections.onprem.llm_serving.plugins.plugin_utils._benchmark_html import ReportError, render


def benchmark_report_html(reports, title=None, comparisons=None):
    """The page (a string) for ``reports``: the documents roles/benchmark writes as JSON, one per endpoint."""
    try:
        return render(reports, title=title, comparisons=comparisons)
    except ReportError as exc:
        raise AnsibleFilterError(str(exc)) from exc


def benchmark_prefix_cache_ab(on, off, parameters, title="prefix caching"):
    """``on``/``off``: {"endpoint": name, "levels": llm_benchmark's report}; returns the comparison a report carries."""
    try:
        return compare(on, off, parameters, title=title)
    except AbError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule(object):
    def filters(self):
        return {"benchmark_report_html": benchmark_report_html, "benchmark_prefix_cache_ab": benchmark_prefix_cache_ab}
