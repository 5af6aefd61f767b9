# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""roles/benchmark writes ONE HTML page per run beside its JSON reports, and none with benchmark_html_report: false.

playbooks/benchmark.yml runs with ansible-playbook on localhost (connection local) against two TGI replay servers
(tests/integration/replay): no lab, no engine needed.
"""
from __future__ import annotations

import json
import os
import re
import tempfile

import pytest

from test_secrets_not_logged import ROOT, TgiReplay, run


def benchmark(reports, extra):
    with TgiReplay(model="bigscience/bloom-560m") as a, TgiReplay(model="bigscience/bloom-560m") as b:
        with open(os.path.join(ROOT, "playbooks", "benchmark.yml")) as f:
            play = f.read()
        extra_vars = {"benchmark_report_dir": reports, "benchmark_concurrency": [1, 2], "benchmark_num_prompts": 2,
                      "benchmark_input_len": 8, "benchmark_output_len": 4}
        extra_vars.update(extra)
        rc, out = run(play, extra_vars, host_vars={"llm_endpoints": [{"name": "bloom-a", "engine": "tgi", "url": a.url},
                                                                     {"name": "bloom-b", "engine": "tgi", "url": b.url}]})
    assert rc == 0, out[-4000:]
    return sorted(os.listdir(reports)), out


def test_one_page_per_run_beside_the_json_reports():
    with tempfile.TemporaryDirectory() as reports:
        written, out = benchmark(reports, {})
        assert len(written) == 3, written
        stamp = re.match(r"benchmark-(\d{8}T\d{6}Z)\.html$", written[0]).group(1)
        assert written[1:] == ["leakhost-bloom-a-%s.json" % stamp, "leakhost-bloom-b-%s.json" % stamp]
        with open(os.path.join(reports, written[0])) as f:
            page = f.read()
        docs = []
        for name in written[1:]:
            with open(os.path.join(reports, name)) as f:
                docs.append(json.load(f))
    assert "Write the run's HTML page beside the JSON reports" in out
    assert re.findall(r'data-metric="([a-z0-9_]+)"', page) == ["ttft", "itl", "e2el", "output_throughput", "failed"]
    assert "Goodput not measured" in page  # no benchmark_goodput
    assert "<h3>leakhost / bloom-a</h3>" in page and "<h3>leakhost / bloom-b</h3>" in page
    assert page.count("<svg") == 5 and not re.search(r'(?:src|href)="https?:', page)
    failed = sum(lv["failed"] for doc in docs for lv in doc["levels"])
    if failed:
        assert "%d failed request" % failed in page
    else:
        assert "No failed requests" in page
    # the page shows the JSON's figures: the table's output tok/s of each level
    for doc in docs:
        for lv in doc["levels"]:
            assert "<td>%.1f</td>" % lv["output_throughput"] in page


@pytest.mark.parametrize("off", [False, "false"])
def test_no_page_when_turned_off(off):
    with tempfile.TemporaryDirectory() as reports:
        written, out = benchmark(reports, {"benchmark_html_report": off})
    assert [name.rsplit(".", 1)[1] for name in written] == ["json", "json"], written
