# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters of the benchmark role.

- benchmark_report_html: ONE self-contained HTML page (charts inlined as SVG, no script, no network) from the JSON
  reports of a benchmark run: TTFT/ITL/E2E percentiles, output tok/s, goodput and failed requests against concurrency
  or request rate, one panel per endpoint; an A/B section when a report carries a comparison. Rendered with matplotlib
  on the controller only; matplotlib is imported when the filter runs, not when the collection loads.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.onprem.llm_serving.plugins.plugin_utils._benchmark_html import ReportError, render


def benchmark_report_html(reports, title=None, comparisons=None):
    """The page (a string) for ``reports``: the documents roles/benchmark writes as JSON, one per endpoint."""
    try:
        return render(reports, title=title, comparisons=comparisons)
    except ReportError as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule(object):
    def filters(self):
        return {"benchmark_report_html": benchmark_report_html}
