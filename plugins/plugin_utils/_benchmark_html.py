# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One self-contained HTML page from llm_benchmark's reports (controller side only).

Input: the documents roles/benchmark writes as JSON (``{"host", "endpoint", "url", "model", "plan", "levels": [...]}``,
``levels`` being llm_benchmark's ``report``: vllm bench serve's keys per level). Output: an HTML string with every chart
inlined as SVG (fonts as paths), inline CSS and no script: it opens without a network.

Charts, one per metric, one panel per endpoint side by side, against concurrency (closed loop) or request rate (open
loop): TTFT, ITL and E2E latency percentiles, output tok/s, goodput (when an SLO was set) and failed requests; failures
are also called out in a banner at the top. A document (or the ``comparisons`` argument) may carry an A/B comparison
(prefix caching on/off), rendered as its own section::

    {"title": "prefix caching", "parameters": {...}, "on": {"label": "on", "levels": [...]}, "off": {"label": "off", "levels": [...]}}

matplotlib is imported only when a page is rendered; without it ``MissingLibraryError`` names the fix.
"""

from __future__ import annotations

import html
import io
import math
import re

METRICS = (("ttft", "TTFT", "ms"), ("itl", "ITL", "ms"), ("e2el", "E2E latency", "ms"))
FIX = "install the controller requirements: make setup (or pip install -r requirements/controller.txt -c requirements/constraints.txt)"
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


class ReportError(Exception):
    """The reports cannot be rendered (bad input)."""


class MissingLibraryError(ReportError):
    """matplotlib is not installed on the controller."""


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError as exc:
        raise MissingLibraryError("benchmark HTML report: matplotlib is not installed for the controller's Python (%s); %s, "
                                  "or set benchmark_html_report: false" % (exc, FIX)) from exc
    return pyplot


def number(value):
    """A finite float, or None (None, "inf", NaN, text)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(value, digits=1):
    f = number(value)
    return "n/a" if f is None else "%.*f" % (digits, f)


def level_x(level):
    """(axis name, x value, tick label) of one level."""
    if level.get("mode") == "open_loop" or number(level.get("request_rate")) is not None:
        rate = number(level.get("request_rate"))
        return "request rate (req/s)", rate, _fmt(rate, 2).rstrip("0").rstrip(".")
    conc = level.get("max_concurrency")
    return "concurrency (requests in flight)", number(conc), str(conc)


def groups_of(docs):
    """One panel per endpoint and sweep kind: [{"label", "axis", "ticks", "levels"}], levels sorted by x."""
    if not isinstance(docs, (list, tuple)) or not docs:
        raise ReportError("benchmark HTML report: expected a non-empty list of benchmark reports, got %r" % (type(docs).__name__,))
    groups = []
    for doc in docs:
        if not isinstance(doc, dict) or not isinstance(doc.get("levels"), list):
            raise ReportError("benchmark HTML report: a report must be a dict with a list of levels (llm_benchmark's report), got %r"
                              % (sorted(doc) if isinstance(doc, dict) else type(doc).__name__,))
        label = "%s / %s" % (doc.get("host", "?"), doc.get("endpoint", "?"))
        by_axis = {}
        for level in doc["levels"]:
            axis, x, tick = level_x(level)
            by_axis.setdefault(axis, []).append((x if x is not None else float("inf"), tick, level))
        for axis in sorted(by_axis):
            rows = sorted(by_axis[axis], key=lambda r: r[0])
            groups.append({"label": label, "model": doc.get("model"), "axis": axis, "ticks": [r[1] for r in rows],
                           "levels": [r[2] for r in rows]})
    return groups


def percentile_keys(levels, metric):
    """[(label, key)] for a metric: p50 (the median) first, then each p<N>, in order."""
    found = {}
    pattern = re.compile(r"^p(\d+(?:\.\d+)?)_%s_ms$" % metric)
    for level in levels:
        for key in level:
            m = pattern.match(key)
            if m:
                found[float(m.group(1))] = key
        if "median_%s_ms" % metric in level and 50.0 not in found:
            found[50.0] = "median_%s_ms" % metric
    return [("p%s" % (int(p) if p == int(p) else p), found[p]) for p in sorted(found)]


def _svg(pyplot, fig, salt):
    buf = io.StringIO()
    with pyplot.rc_context({"svg.hashsalt": salt, "svg.fonttype": "path"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    pyplot.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE: the page is HTML
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    return re.sub(r"<svg ", '<svg role="img" ', text, count=1)


def _panels(pyplot, groups, ylabel):
    n = len(groups)
    fig, axes = pyplot.subplots(1, n, figsize=(max(4.2 * n, 6.0), 3.4), squeeze=False, sharey=True)
    for ax, group in zip(axes[0], groups):
        ax.set_title("%s (%s)" % (group["label"], group["model"]) if group.get("model") else group["label"], fontsize=9)
        ax.set_xticks(range(len(group["ticks"])))
        ax.set_xticklabels(group["ticks"])
        ax.set_xlabel(group["axis"], fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    return fig, axes[0]


def chart_percentiles(pyplot, groups, metric, title, unit, salt):
    fig, axes = _panels(pyplot, groups, "%s (%s)" % (title, unit))
    for ax, group in zip(axes, groups):
        xs = list(range(len(group["levels"])))
        for i, (label, key) in enumerate(percentile_keys(group["levels"], metric)):
            ys = [number(lv.get(key)) for lv in group["levels"]]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", color=COLOURS[i % len(COLOURS)], label=label)
        ax.legend(fontsize=7)
    fig.suptitle("%s percentiles" % title, fontsize=11)
    return _svg(pyplot, fig, salt)


def chart_bars(pyplot, groups, series, title, ylabel, salt):
    """Bars per level; ``series``: [(label, key, colour)]."""
    fig, axes = _panels(pyplot, groups, ylabel)
    width = 0.8 / len(series)
    for ax, group in zip(axes, groups):
        for i, (label, key, colour) in enumerate(series):
            ys = [number(lv.get(key)) or 0.0 for lv in group["levels"]]
            pos = [x - 0.4 + width * (i + 0.5) for x in range(len(ys))]
            bars = ax.bar(pos, ys, width=width, color=colour, label=label)
            ax.bar_label(bars, fmt=_label, fontsize=7)
        if len(series) > 1:
            ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=11)
    return _svg(pyplot, fig, salt)


def _label(value):
    return "%.3g" % value if abs(value) < 1000 else "%.0f" % value


def _figure(metric, title, svg, note=""):
    return ('<figure class="chart" data-metric="%s"><figcaption>%s</figcaption>%s%s</figure>'
            % (metric, html.escape(title), svg, '<p class="note">%s</p>' % html.escape(note) if note else ""))


def _table(header, rows, cls=""):
    out = ['<table class="%s"><tr>%s</tr>' % (cls, "".join("<th>%s</th>" % html.escape(h) for h in header))]
    for row in rows:
        out.append("<tr>%s</tr>" % "".join("<td>%s</td>" % html.escape(str(c)) for c in row))
    out.append("</table>")
    return "".join(out)


def failures(groups):
    """[(endpoint, level tick, failed, total, first errors)] for the levels that had failed requests."""
    out = []
    for group in groups:
        for tick, level in zip(group["ticks"], group["levels"]):
            failed = int(number(level.get("failed")) or 0)
            if failed:
                total = failed + int(number(level.get("completed")) or 0)
                errors = []
                for e in level.get("errors") or []:
                    if e and e not in errors and len(errors) < 3:
                        errors.append(e)
                out.append((group["label"], "%s %s" % (group["axis"].split(" (")[0], tick), failed, total, errors))
    return out


def ab_rows(comparison):
    """Per matched level: TTFT p50 and p95 ratios (on / off), throughput ratio, hit rates."""
    def key(lv):
        return (lv.get("mode"), str(lv.get("max_concurrency")), str(lv.get("request_rate")))

    def ratio(a, b):
        a, b = number(a), number(b)
        return None if a is None or not b else a / b

    off = dict((key(lv), lv) for lv in (comparison.get("off") or {}).get("levels") or [])
    rows = []
    for lv_on in (comparison.get("on") or {}).get("levels") or []:
        lv_off = off.get(key(lv_on))
        if lv_off is None:
            continue
        rows.append({
            "level": level_x(lv_on)[2], "axis": level_x(lv_on)[0],
            "ttft_p50_on": number(lv_on.get("median_ttft_ms")), "ttft_p50_off": number(lv_off.get("median_ttft_ms")),
            "ttft_p95_on": number(lv_on.get("p95_ttft_ms")), "ttft_p95_off": number(lv_off.get("p95_ttft_ms")),
            "ttft_p50_ratio": ratio(lv_on.get("median_ttft_ms"), lv_off.get("median_ttft_ms")),
            "ttft_p95_ratio": ratio(lv_on.get("p95_ttft_ms"), lv_off.get("p95_ttft_ms")),
            "throughput_ratio": ratio(lv_on.get("output_throughput"), lv_off.get("output_throughput")),
            "hit_rate_on": number(lv_on.get("prefix_cache_hit_rate")), "hit_rate_off": number(lv_off.get("prefix_cache_hit_rate")),
        })
    return rows


def ab_section(pyplot, comparison, salt):
    title = str(comparison.get("title") or "A/B comparison")
    on_label = str((comparison.get("on") or {}).get("label") or "on")
    off_label = str((comparison.get("off") or {}).get("label") or "off")
    rows = ab_rows(comparison)
    parts = ['<section class="ab"><h2>A/B: %s</h2>' % html.escape(title)]
    if comparison.get("parameters"):
        parts.append("<p>Workload: %s</p>" % html.escape(", ".join("%s=%s" % kv for kv in sorted(comparison["parameters"].items()))))
    if not rows:
        parts.append('<p class="note">No level was run on both sides: nothing to compare.</p></section>')
        return "".join(parts)
    fig, ax = pyplot.subplots(figsize=(7.0, 3.4))
    xs = list(range(len(rows)))
    series = [("TTFT p50 " + on_label, "ttft_p50_on", COLOURS[0]), ("TTFT p50 " + off_label, "ttft_p50_off", COLOURS[1]),
              ("TTFT p95 " + on_label, "ttft_p95_on", COLOURS[2]), ("TTFT p95 " + off_label, "ttft_p95_off", COLOURS[3])]
    series = [s for s in series if any(r[s[1]] is not None for r in rows)]
    width = 0.8 / len(series)
    for i, (label, k, colour) in enumerate(series):
        bars = ax.bar([x - 0.4 + width * (i + 0.5) for x in xs], [r[k] or 0.0 for r in rows], width=width, color=colour, label=label)
        ax.bar_label(bars, fmt=_label, fontsize=7)
    ax.set_xticks(xs)
    ax.set_xticklabels([r["level"] for r in rows])
    ax.set_xlabel(rows[0]["axis"], fontsize=8)
    ax.set_ylabel("TTFT (ms)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("%s: TTFT, %s vs %s" % (title, on_label, off_label), fontsize=11)
    parts.append(_figure("ab_ttft", "%s: TTFT %s vs %s" % (title, on_label, off_label), _svg(pyplot, fig, salt)))
    parts.append(_table(
        ["level", "TTFT p50 ratio (%s/%s)" % (on_label, off_label), "TTFT p95 ratio", "output throughput ratio",
         "hit rate (%s)" % on_label, "hit rate (%s)" % off_label],
        [[r["level"], _fmt(r["ttft_p50_ratio"], 3), _fmt(r["ttft_p95_ratio"], 3), _fmt(r["throughput_ratio"], 3),
          "n/a" if r["hit_rate_on"] is None else "%.1f %%" % (100 * r["hit_rate_on"]),
          "n/a" if r["hit_rate_off"] is None else "%.1f %%" % (100 * r["hit_rate_off"])] for r in rows], "ab"))
    if all(r["ttft_p95_on"] is None for r in rows):
        parts.append('<p class="note">TTFT p95 was not measured: add 95 to benchmark_percentiles.</p>')
    parts.append("</section>")
    return "".join(parts)


CSS = """
body{font-family:sans-serif;margin:1.5em;color:#222;max-width:1500px}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em}
table{border-collapse:collapse;margin:.5em 0;font-size:.85em}td,th{border:1px solid #bbb;padding:.2em .5em;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}
figure.chart{margin:1em 0;overflow-x:auto}figure.chart svg{max-width:100%;height:auto;min-height:200px}
figcaption{font-weight:bold;margin-bottom:.3em}.note{color:#555;font-size:.85em}
.failed{background:#fde2e1;border:3px solid #c62828;padding:.7em 1em;color:#8e0000}
.failed h2{color:#c62828;border:none;margin:0 0 .3em}.ok{background:#e6f4ea;border:1px solid #2e7d32;padding:.5em 1em}
"""


def render(docs, title=None, comparisons=None):
    """The HTML page (a string) for one benchmark run: ``docs`` are the run's reports (one per endpoint)."""
    groups = groups_of(docs)
    comparisons = list(comparisons or []) + [d["comparison"] for d in docs if isinstance(d.get("comparison"), dict)]
    pyplot = _pyplot()
    title = title or "Benchmark report"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>%s</title><style>%s</style></head><body>'
             % (html.escape(title), CSS), "<h1>%s</h1>" % html.escape(title)]
    plan = docs[0].get("plan") or {}
    parts.append("<p>Endpoints: %s. Workload %s, %s prompts, input %s / output %s tokens, api %s. Measured by llm_benchmark "
                 "(the definitions of vllm bench serve).</p>" % (
                     html.escape(", ".join("%s (%s)" % (d.get("endpoint"), d.get("url")) for d in docs)),
                     html.escape(str(plan.get("workload"))), html.escape(str(plan.get("num_prompts"))),
                     html.escape(str(plan.get("input_len"))), html.escape(str(plan.get("output_len"))), html.escape(str(plan.get("api")))))

    failed = failures(groups)
    if failed:
        total = sum(f[2] for f in failed)
        parts.append('<section class="failed" id="failed-requests"><h2>%d failed request%s</h2>%s</section>' % (
            total, "" if total == 1 else "s",
            _table(["endpoint", "level", "failed", "of", "first errors"],
                   [[f[0], f[1], f[2], f[3], " | ".join(f[4]) or "(no message)"] for f in failed])))
    else:
        parts.append('<p class="ok" id="failed-requests">No failed requests: every request of every level completed.</p>')

    parts.append("<h2>Latency and throughput</h2>")
    n = 0
    for metric, name, unit in METRICS:
        parts.append(_figure(metric, "%s percentiles (%s)" % (name, unit), chart_percentiles(pyplot, groups, metric, name, unit, "c%d" % n)))
        n += 1
    parts.append(_figure("output_throughput", "Output tokens per second",
                         chart_bars(pyplot, groups, [("output tok/s", "output_throughput", COLOURS[0])], "Output tokens per second",
                                    "tok/s", "c%d" % n)))
    n += 1
    if any(number(lv.get("request_goodput")) is not None for g in groups for lv in g["levels"]):
        parts.append(_figure("goodput", "Goodput (requests/s within the SLO) against request throughput",
                             chart_bars(pyplot, groups, [("request throughput", "request_throughput", COLOURS[0]),
                                                         ("goodput", "request_goodput", COLOURS[2])],
                                        "Goodput", "requests/s", "c%d" % n)))
    else:
        parts.append('<p class="note" id="goodput">Goodput not measured: no SLO was set (benchmark_goodput).</p>')
    n += 1
    parts.append(_figure("failed", "Failed requests per level",
                         chart_bars(pyplot, groups, [("failed", "failed", "#c62828")], "Failed requests", "requests", "c%d" % n)))
    n += 1

    for comparison in comparisons:
        parts.append(ab_section(pyplot, comparison, "c%d" % n))
        n += 1

    parts.append("<h2>Figures</h2>")
    for group in groups:
        rows = []
        for tick, lv in zip(group["ticks"], group["levels"]):
            hit = number(lv.get("prefix_cache_hit_rate"))
            rows.append([tick, lv.get("completed"), lv.get("failed"), _fmt(lv.get("median_ttft_ms")), _fmt(lv.get("p99_ttft_ms")),
                         _fmt(lv.get("median_itl_ms"), 2), _fmt(lv.get("median_e2el_ms")), _fmt(lv.get("output_throughput")),
                         _fmt(lv.get("request_goodput"), 2), "n/a" if hit is None else "%.1f %%" % (100 * hit)])
        parts.append("<h3>%s</h3>" % html.escape(group["label"]))
        parts.append(_table([group["axis"], "completed", "failed", "TTFT p50 ms", "TTFT p99 ms", "ITL p50 ms", "E2E p50 ms",
                             "output tok/s", "goodput req/s", "prefix-cache hit rate"], rows))
    parts.append("</body></html>\n")
    return "\n".join(parts)
