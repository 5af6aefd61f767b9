# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_textfile_probe: the text format, the atomic write, the endpoint probe through llm_endpoint's checker (fake client)
and the GPU probe through gpu_health (the fake NVML built from the real H100 recording). The rendered files are also
read by promtool's own parser (`promtool check metrics`)."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _llm_http as h
from ansible_collections.onprem.llm_serving.plugins.module_utils import _textfile_probe as tp
from ansible_collections.onprem.llm_serving.tests.fixtures.nvml.fake_nvml import FakeNvml
from ansible_collections.onprem.llm_serving.tests.unit.plugins.module_utils.test_llm_endpoint import (
    Clock, FakeClient, ollama_routes)


def promtool_check_metrics(text):
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    assert os.access(promtool, os.X_OK), "promtool is missing: tools/setup.sh installs Debian's prometheus package"
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def parse(text):
    """{(name, frozenset(labels)): value} of a rendered file (values as floats)."""
    return dict(((name, frozenset(labels.items())), value) for name, labels, value in h_samples(text))


def h_samples(text):
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, value = line.rsplit(" ", 1)
        if "{" in head:
            name, rest = head.split("{", 1)
            labels = dict(pair.split("=", 1) for pair in rest.rstrip("}").split('",') if pair)
            labels = dict((k, v.strip('"')) for k, v in labels.items())
        else:
            name, labels = head, {}
        out.append((name, labels, float(value)))
    return out


# ---------------------------------------------------------------------------- text format
def test_render_families_escapes_and_leaves_out_unmeasured():
    up = tp.Family("x_up", "gauge", "Up.\nSecond line").add({"endpoint": 'a"b\\c\nd'}, True).add({"endpoint": "e"}, False)
    empty = tp.Family("x_never", "gauge", "Nothing measured.").add({"endpoint": "a"}, None)
    count = tp.Family("x_total", "counter", "Count.").add({}, 3).add({"k": "v"}, 0.25)
    text = tp.render([up, empty, count])
    assert text == (
        "# HELP x_up Up.\\nSecond line\n# TYPE x_up gauge\n"
        'x_up{endpoint="a\\"b\\\\c\\nd"} 1\nx_up{endpoint="e"} 0\n'
        "# HELP x_total Count.\n# TYPE x_total counter\nx_total 3\n"
        'x_total{k="v"} 0.25\n')
    assert "x_never" not in text
    rc, out = promtool_check_metrics(text)
    assert rc == 0, out


@pytest.mark.parametrize("value, text", [(1, "1"), (0.5, "0.5"), (float("nan"), "NaN"), (float("inf"), "+Inf"), (1e20, "1e+20")])
def test_format_value(value, text):
    assert tp.format_value(float(value)) == text


@pytest.mark.parametrize("build, words", [
    (lambda: tp.Family("bad-name", "gauge", "h"), "not valid"),
    (lambda: tp.Family("x", "histogram", "h"), "gauge or counter"),
    (lambda: tp.Family("x", "gauge", "h").add({"bad-label": "v"}, 1), "label name"),
    (lambda: tp.Family("x", "gauge", "h").add({"__name__": "v"}, 1), "label name"),
    (lambda: tp.render([tp.Family("x", "gauge", "h").add({}, 1), tp.Family("x", "gauge", "h").add({}, 2)]), "twice"),
])
def test_bad_families_are_refused(build, words):
    with pytest.raises(tp.ProbeError, match=words):
        build()


# ---------------------------------------------------------------------------- atomic write
def test_write_atomic_replaces_whole_file(tmp_path):
    path = tp.write_atomic(str(tmp_path), "a.prom", "x 1\n")
    assert open(path).read() == "x 1\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    tp.write_atomic(str(tmp_path), "a.prom", "x 2\n")
    assert open(path).read() == "x 2\n"
    assert sorted(os.listdir(str(tmp_path))) == ["a.prom"]


def test_write_atomic_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tp.write_atomic(str(tmp_path), "a.prom", "x 1\n")

    def broken_replace(src, dst):
        assert os.path.basename(src).startswith(".a.prom.") and not src.endswith(".prom")
        raise OSError("disk full")

    monkeypatch.setattr(tp.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        tp.write_atomic(str(tmp_path), "a.prom", "x 2\n")
    assert open(path).read() == "x 1\n"
    assert sorted(os.listdir(str(tmp_path))) == ["a.prom"]


@pytest.mark.parametrize("name, words", [("a.txt", "NAME.prom"), ("sub/a.prom", "NAME.prom"), ("a.prom", "does not exist")])
def test_write_atomic_refuses(tmp_path, name, words):
    directory = str(tmp_path) if name != "a.prom" else str(tmp_path / "missing")
    with pytest.raises(tp.ProbeError, match=words):
        tp.write_atomic(directory, name, "x 1\n")


# ---------------------------------------------------------------------------- endpoint probe
OLLAMA = {"name": "ollama", "engine": "ollama", "protocol": "ollama", "url": "http://127.0.0.1:11434", "model": "tiny"}


def test_endpoint_probe_publishes_timings_of_a_real_generation(tmp_path):
    clock = Clock()
    client = FakeClient(ollama_routes())
    config = {"textfile_dir": str(tmp_path), "endpoints": [OLLAMA], "max_tokens": 10, "timeout": 5}
    path, outcomes = tp.run_endpoints(config, make_client=lambda ep: client, clock=lambda: 1700000000.0,
                                      sleep=clock.sleep, monotonic=clock.monotonic)
    assert outcomes[0][1]["up"] is True
    # one streamed generation on Ollama's native API, nothing else generated
    assert [c[1] for c in client.calls if c[0] == "POST"] == ["/api/generate"]
    text = open(path).read()
    rc, out = promtool_check_metrics(text)
    assert rc == 0, out
    values = parse(text)
    labels = frozenset({"endpoint": "ollama", "engine": "ollama", "model": "tiny:latest"}.items())
    assert values[("onprem_llm_probe_up", labels)] == 1
    assert values[("onprem_llm_probe_ttft_seconds", labels)] == pytest.approx(0.01)
    assert values[("onprem_llm_probe_itl_seconds", labels)] == pytest.approx(0.01)
    assert values[("onprem_llm_probe_output_tokens", labels)] == 10
    assert values[("onprem_llm_probe_tokens_per_second", labels)] > 0
    assert values[("onprem_llm_probe_last_run_timestamp_seconds", labels)] == 1700000000


def test_endpoint_probe_down_publishes_up_0_and_no_timings(tmp_path):
    clock = Clock()
    refused = h.LlmConnectError("GET", "http://127.0.0.1:11434/api/version", "connection refused")
    client = FakeClient({("GET", "/api/version"): refused})
    config = {"textfile_dir": str(tmp_path), "endpoints": [OLLAMA], "timeout": 3}
    path, outcomes = tp.run_endpoints(config, make_client=lambda ep: client, clock=lambda: 5.0, sleep=clock.sleep,
                                      monotonic=clock.monotonic)
    assert "connection refused" in outcomes[0][1]["error"]
    assert sum(clock.sleeps) <= 3
    names = {name for name, _labels, _value in h_samples(open(path).read())}
    assert names == {"onprem_llm_probe_up", "onprem_llm_probe_last_run_timestamp_seconds"}
    labels = frozenset({"endpoint": "ollama", "engine": "ollama", "model": "tiny"}.items())
    assert parse(open(path).read())[("onprem_llm_probe_up", labels)] == 0


# ---------------------------------------------------------------------------- GPU probe
def gpu_config(tmp_path, expected=True, **options):
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    return {"textfile_dir": str(tmp_path), "state_dir": str(state),
            "gpu": {"expected": expected, "xid_watch_seconds": 2, "options": options}}


def test_gpu_probe_publishes_the_recorded_h100(tmp_path):
    path, state, reason = tp.run_gpu(gpu_config(tmp_path), FakeNvml, clock=lambda: 10.0)
    assert (state, reason) == ("ok", None)
    text = open(path).read()
    rc, out = promtool_check_metrics(text)
    assert rc == 0, out
    samples = h_samples(text)
    by = dict(((n, tuple(sorted((k, v) for k, v in labels.items() if k not in ("uuid", "pci_bus_id")))), v) for n, labels, v in samples)
    assert by[("onprem_gpu_probe_state", (("state", "ok"),))] == 1
    assert by[("onprem_gpu_probe_state", (("state", "no_gpu"),))] == 0
    assert by[("onprem_gpu_probe_gpus", ())] == 1
    assert by[("onprem_gpu_ecc_errors", (("gpu", "0"), ("kind", "uncorrected"), ("scope", "volatile")))] == 0
    assert by[("onprem_gpu_pcie_link_width", (("gpu", "0"), ("link", "max")))] == 16
    assert by[("onprem_gpu_remapped_rows_failure", (("gpu", "0"),))] == 0
    assert by[("onprem_gpu_xid_events_total", (("gpu", "0"),))] == 0
    assert 20 <= by[("onprem_gpu_temperature_celsius", (("gpu", "0"),))] <= 90
    assert by[("onprem_gpu_check_failed", (("check", "pcie_link"), ("gpu", "0")))] == 0
    reasons = [labels["reason"] for n, labels, v in samples if n == "onprem_gpu_clock_event_reason"]
    assert len(reasons) == 9
    uuid = [labels["uuid"] for n, labels, v in samples if n == "onprem_gpu_lost"][0]
    assert uuid.startswith("GPU-")


def test_gpu_probe_counts_xid_events_across_runs_and_reports_failures(tmp_path):
    def backend():
        fake = FakeNvml(count=2)
        fake.xid_events = [{"index": 1, "xid": 79, "seconds": 0.5}, {"index": 1, "xid": 48, "seconds": 1.0}]
        fake.set_value(0, "ecc_volatile_uncorrected", 3)
        return fake

    config = gpu_config(tmp_path)
    tp.run_gpu(config, backend)
    path, state, _reason = tp.run_gpu(config, backend)
    assert state == "unhealthy"
    samples = h_samples(open(path).read())
    xid = dict((labels["gpu"], v) for n, labels, v in samples if n == "onprem_gpu_xid_events_total")
    assert xid == {"0": 0, "1": 4}
    assert [(labels["gpu"], v) for n, labels, v in samples if n == "onprem_gpu_last_xid"] == [("1", 48)]
    failed = dict(((labels["check"], labels["gpu"]), v) for n, labels, v in samples if n == "onprem_gpu_check_failed")
    assert failed[("ecc_uncorrected", "0")] == 1 and failed[("ecc_uncorrected", "1")] == 0 and failed[("xid_events", "1")] == 1
    assert json.load(open(str(tmp_path / "state" / "xid_totals.json")))


@pytest.mark.parametrize("expected, state", [(False, "no_gpu"), (True, "error")])
def test_gpu_probe_without_nvml(tmp_path, expected, state):
    def no_library():
        raise ImportError("No module named 'pynvml'")

    path, got, reason = tp.run_gpu(gpu_config(tmp_path, expected=expected), no_library)
    assert got == state and "pynvml" in reason
    text = open(path).read()
    rc, out = promtool_check_metrics(text)
    assert rc == 0, out
    names = {n for n, _labels, _v in h_samples(text)}
    # a clear state, and no per-GPU number at all
    assert names == {"onprem_gpu_probe_state", "onprem_gpu_probe_last_run_timestamp_seconds", "onprem_gpu_probe_info"} | (
        {"onprem_gpu_probe_gpus"} if state == "no_gpu" else set())
    assert ("onprem_gpu_probe_state", {"state": state}, 1.0) in h_samples(text)


def test_gpu_probe_driver_not_loaded_is_an_error_on_a_gpu_host(tmp_path):
    def backend():
        fake = FakeNvml()
        fake.fail_init(9, "Driver Not Loaded")
        return fake

    _path, state, reason = tp.run_gpu(gpu_config(tmp_path), backend)
    assert state == "error" and "Driver Not Loaded" in reason


def test_gpu_probe_bad_options_name_the_variable(tmp_path):
    with pytest.raises(tp.ProbeError, match="monitoring_gpu_health_options"):
        tp.run_gpu(gpu_config(tmp_path, pcie_min_width=0), FakeNvml)


def test_load_config(tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(json.dumps({"textfile_dir": "/x"}))
    assert tp.load_config(str(path)) == {"textfile_dir": "/x"}
    path.write_text("{}")
    with pytest.raises(tp.ProbeError, match="textfile_dir"):
        tp.load_config(str(path))
    with pytest.raises(tp.ProbeError, match="cannot read"):
        tp.load_config(str(tmp_path / "none.json"))
