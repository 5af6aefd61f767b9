# -*- coding: utf-8 -*-
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Logic of the textfile probes the monitoring role runs from systemd timers on the serving hosts.

node_exporter publishes every ``*.prom`` file of its textfile directory (Debian: /var/lib/prometheus/node-exporter)
on each scrape, with ``node_textfile_mtime_seconds`` telling how fresh each file is. Two probes write there:

- the endpoint probe (``onprem_llm_probe.prom``): a tiny real generation per endpoint through llm_endpoint's own
  checker (Ollama has no /metrics): up, TTFT, ITL, end-to-end time, tokens per second, output tokens;
- the GPU probe (``onprem_llm_gpu.prom``): gpu_health's per-GPU results (ECC, retired pages, remapped rows, XID
  events, PCIe link, temperature, clock-event reasons, each check's status); a host without a GPU says so
  (``onprem_gpu_probe_state{state="no_gpu"} 1``) instead of publishing numbers.

Standard library only (the probes run with the host's python3 and the collection's module_utils copied beside them).
A value the probe could not measure is left out, never written as 0. Files are written to a temporary name that
node_exporter ignores (it reads only ``*.prom``) in the same directory, flushed, then renamed over the old file.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import time

from ansible_collections.onprem.llm_serving.plugins.module_utils import _gpu_health as gh
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_endpoint import EndpointChecker
from ansible_collections.onprem.llm_serving.plugins.module_utils._llm_http import HttpClient, LlmError

PROBE_FILE = "onprem_llm_probe.prom"
GPU_FILE = "onprem_llm_gpu.prom"
GPU_STATES = ("ok", "unhealthy", "no_gpu", "error")
METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# Ollama answers its native API; vLLM and TGI their OpenAI-compatible one (the probe's engines are the contract's).
PROBE_APIS = {"ollama": ["generate"], "openai": ["completions"], "tgi": ["generate"]}


class ProbeError(Exception):
    """The probe cannot do its job (bad configuration, textfile directory not writable)."""


# --------------------------------------------------------------------------- text format
class Family(object):
    """One metric family: ``# HELP``, ``# TYPE`` and its samples (labels dict, value)."""

    def __init__(self, name, kind, help_text):
        if not METRIC_NAME.match(name):
            raise ProbeError("metric name %r is not valid in the Prometheus text format" % name)
        if kind not in ("gauge", "counter"):
            raise ProbeError("metric type %r: use gauge or counter" % kind)
        self.name = name
        self.kind = kind
        self.help = help_text
        self.samples = []

    def add(self, labels, value):
        """Add a sample; a value of None (not measured) is left out."""
        if value is None:
            return self
        if isinstance(value, bool):
            value = 1 if value else 0
        for key in labels:
            if not LABEL_NAME.match(key) or key.startswith("__"):
                raise ProbeError("label name %r of %s is not valid" % (key, self.name))
        self.samples.append((dict(labels), float(value)))
        return self


def escape_label_value(value):
    """Backslash, double quote and newline escaped as the text format wants."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def render(families):
    """The Prometheus text exposition format (version 0.0.4) of ``families``; a family without samples is left out."""
    lines = []
    seen = set()
    for family in families:
        if family.name in seen:
            raise ProbeError("metric family %s appears twice" % family.name)
        seen.add(family.name)
        if not family.samples:
            continue
        lines.append("# HELP %s %s" % (family.name, escape_help(family.help)))
        lines.append("# TYPE %s %s" % (family.name, family.kind))
        for labels, value in family.samples:
            if labels:
                text = ",".join('%s="%s"' % (k, escape_label_value(labels[k])) for k in sorted(labels))
                lines.append("%s{%s} %s" % (family.name, text, format_value(value)))
            else:
                lines.append("%s %s" % (family.name, format_value(value)))
    return "\n".join(lines) + "\n" if lines else ""


def write_atomic(directory, name, text, mode=0o644):
    """Write ``directory/name`` whole or not at all: a hidden temporary file beside it (node_exporter reads only
    ``*.prom``), flushed to disk, then renamed over the target. Returns the path."""
    if not name.endswith(".prom") or "/" in name:
        raise ProbeError("textfile name %r: node_exporter reads only NAME.prom files in its directory" % name)
    if not os.path.isdir(directory):
        raise ProbeError("the textfile directory %s does not exist: install prometheus-node-exporter, or set "
                         "monitoring_textfile_dir to its --collector.textfile.directory" % directory)
    target = os.path.join(directory, name)
    fd, tmp = tempfile.mkstemp(prefix="." + name + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target


# --------------------------------------------------------------------------- endpoint probe
def probe_endpoint(client, endpoint, prompt="Hello", max_tokens=16, timeout=30.0, sleep=time.sleep, monotonic=time.monotonic):
    """One tiny streamed generation through llm_endpoint's checker. Returns {"up", "result" or "error"}."""
    protocol = endpoint.get("protocol") or "ollama"
    try:
        result = EndpointChecker(client, sleep=sleep, monotonic=monotonic).run(
            engine=protocol, model=endpoint.get("model"), apis=PROBE_APIS.get(protocol), streaming="streamed",
            prompt=prompt, max_tokens=max_tokens, min_tokens=1, ready_timeout=timeout, collect_metrics=False)
    except LlmError as exc:
        return {"up": False, "error": str(exc)}
    return {"up": True, "result": result}


def _seconds(ms):
    return None if ms is None else ms / 1000.0


def endpoint_families(outcomes, now):
    """``outcomes``: [(endpoint dict, probe_endpoint() answer)] -> metric families."""
    up = Family("onprem_llm_probe_up", "gauge", "1 when the probe's tiny generation succeeded, else 0.")
    ttft = Family("onprem_llm_probe_ttft_seconds", "gauge", "Time to the first streamed token of the probe's generation.")
    itl = Family("onprem_llm_probe_itl_seconds", "gauge", "Mean gap between the probe's streamed tokens (needs 2 tokens).")
    e2e = Family("onprem_llm_probe_e2e_seconds", "gauge", "Duration of the probe's whole generation.")
    tps = Family("onprem_llm_probe_tokens_per_second", "gauge", "Output tokens per second of the probe's generation.")
    tokens = Family("onprem_llm_probe_output_tokens", "gauge", "Tokens the probe's generation returned.")
    stamp = Family("onprem_llm_probe_last_run_timestamp_seconds", "gauge", "When the probe last ran (Unix time).")
    for endpoint, outcome in outcomes:
        result = outcome.get("result") or {}
        labels = {"endpoint": endpoint["name"], "engine": endpoint.get("engine") or "auto",
                  "model": result.get("model") or endpoint.get("model") or ""}
        up.add(labels, outcome["up"])
        stamp.add(labels, now)
        if outcome["up"]:
            ttft.add(labels, _seconds(result.get("ttft_ms")))
            itl.add(labels, _seconds(result.get("itl_ms_mean")))
            e2e.add(labels, _seconds(result.get("e2e_ms")))
            tps.add(labels, result.get("tokens_per_s"))
            tokens.add(labels, result.get("output_tokens"))
    return [up, ttft, itl, e2e, tps, tokens, stamp]


# --------------------------------------------------------------------------- GPU probe
def _gpu_labels(gpu):
    return {"gpu": str(gpu["index"]), "uuid": gpu.get("uuid") or "", "pci_bus_id": gpu.get("pci_bus_id") or ""}


def gpu_families(state, result, xid_totals, now, reason=None):
    """gpu_health's result (``evaluate()`` or ``unavailable_result()``) -> metric families.

    ``state``: ok, unhealthy, no_gpu or error; ``xid_totals``: {uuid: XID events counted by this probe so far}."""
    if state not in GPU_STATES:
        raise ProbeError("GPU probe state %r is not one of %s" % (state, ", ".join(GPU_STATES)))
    fam = {}

    def family(name, kind, help_text):
        fam[name] = fam.get(name) or Family(name, kind, help_text)
        return fam[name]

    states = family("onprem_gpu_probe_state", "gauge", "1 for the GPU probe's current state (ok, unhealthy, no_gpu, error).")
    for name in GPU_STATES:
        states.add({"state": name}, name == state)
    family("onprem_gpu_probe_gpus", "gauge", "GPUs NVML reports on the host (0 on a host without GPUs).").add(
        {}, (result or {}).get("gpu_count", 0) if state != "error" else None)
    family("onprem_gpu_probe_last_run_timestamp_seconds", "gauge", "When the GPU probe last ran (Unix time).").add({}, now)
    if reason and state in ("no_gpu", "error"):
        family("onprem_gpu_probe_info", "gauge", "Why the GPU probe publishes no GPU (the reason as a label).").add(
            {"reason": reason[:200]}, 1)
    gpus = (result or {}).get("gpus") or []
    for gpu in gpus:
        labels = _gpu_labels(gpu)
        family("onprem_gpu_info", "gauge", "Per GPU: its name and driver (labels), always 1.").add(
            dict(labels, name=gpu.get("name") or "", driver=(result or {}).get("driver_version") or ""), 1)
        family("onprem_gpu_lost", "gauge", "1 when the GPU stopped answering NVML (GPU is lost).").add(labels, gpu.get("lost"))
        if gpu.get("lost"):
            continue
        ecc = gpu.get("ecc") or {}
        errors = family("onprem_gpu_ecc_errors", "gauge", "ECC error counts; scope volatile (since the last reset) or aggregate.")
        for scope in ("volatile", "aggregate"):
            for kind in ("corrected", "uncorrected"):
                errors.add(dict(labels, scope=scope, kind=kind), (ecc.get(scope) or {}).get(kind))
        retired = gpu.get("retired_pages") or {}
        pages = family("onprem_gpu_retired_pages", "gauge", "Retired memory pages by cause (sbe: single-bit ECC, dbe: double-bit).")
        pages.add(dict(labels, cause="sbe"), retired.get("single_bit_ecc"))
        pages.add(dict(labels, cause="dbe"), retired.get("double_bit_ecc"))
        family("onprem_gpu_retired_pages_pending", "gauge", "1 when a page retirement waits for a GPU reset.").add(
            labels, retired.get("pending"))
        remap = gpu.get("remapped_rows") or {}
        rows = family("onprem_gpu_remapped_rows", "gauge", "Remapped memory rows (correctable or uncorrectable errors).")
        rows.add(dict(labels, kind="correctable"), remap.get("correctable"))
        rows.add(dict(labels, kind="uncorrectable"), remap.get("uncorrectable"))
        family("onprem_gpu_remapped_rows_pending", "gauge", "1 when a row remap waits for a GPU reset.").add(labels, remap.get("pending"))
        family("onprem_gpu_remapped_rows_failure", "gauge", "1 when a row remap failed (take the GPU out of service).").add(
            labels, remap.get("failure"))
        pcie = gpu.get("pcie") or {}
        width = family("onprem_gpu_pcie_link_width", "gauge", "PCIe link width, now (current) and the most it can train to (max).")
        width.add(dict(labels, link="current"), pcie.get("width_current"))
        width.add(dict(labels, link="max"), pcie.get("width_max"))
        gen = family("onprem_gpu_pcie_link_gen", "gauge", "PCIe link generation, now (current; idle GPUs downclock) and max.")
        gen.add(dict(labels, link="current"), pcie.get("gen_current"))
        gen.add(dict(labels, link="max"), pcie.get("gen_max"))
        temp = gpu.get("temperature") or {}
        family("onprem_gpu_temperature_celsius", "gauge", "GPU temperature.").add(labels, temp.get("gpu_c"))
        family("onprem_gpu_slowdown_temperature_celsius", "gauge", "Temperature at which the GPU slows itself down.").add(
            labels, temp.get("slowdown_c"))
        active = (gpu.get("clock_event_reasons") or {}).get("active")
        if active is not None:
            reasons = family("onprem_gpu_clock_event_reason", "gauge", "1 for each clock-event reason active now (NVML).")
            for name in gh.CLOCK_EVENT_NAMES:
                reasons.add(dict(labels, reason=name), name in active)
        family("onprem_gpu_xid_events_total", "counter", "XID events the GPU probe's watches saw since the probe's state began.").add(
            labels, (xid_totals or {}).get(gpu.get("uuid") or str(gpu["index"]), 0))
    checks = family("onprem_gpu_check_failed", "gauge", "Per gpu_health check: 1 when it fails, 0 when it passes (skipped checks left out).")
    for check in (result or {}).get("checks") or []:
        if check["status"] == gh.SKIP:
            continue
        labels = {"check": check["name"], "gpu": "" if check.get("gpu") is None else str(check["gpu"])}
        checks.add(labels, check["status"] == gh.FAIL)
    last = family("onprem_gpu_last_xid", "gauge", "The last XID code the GPU probe's watch saw on the GPU.")
    by_index = dict((g["index"], g) for g in gpus)
    for event in (result or {}).get("xid_events") or []:
        gpu = by_index.get(event.get("index"))
        if gpu is not None:
            last.samples = [s for s in last.samples if s[0]["gpu"] != str(gpu["index"])]
            last.add(_gpu_labels(gpu), event["xid"])
    order = ["onprem_gpu_probe_state", "onprem_gpu_probe_gpus", "onprem_gpu_probe_last_run_timestamp_seconds"]
    return [fam[n] for n in order] + [fam[n] for n in sorted(fam) if n not in order]


def update_xid_totals(totals, result):
    """The persisted per-GPU XID counters plus this run's events (keyed by uuid, else index)."""
    totals = dict(totals or {})
    by_index = dict((g["index"], g) for g in (result or {}).get("gpus") or [])
    for gpu in by_index.values():
        totals.setdefault(gpu.get("uuid") or str(gpu["index"]), 0)
    for event in (result or {}).get("xid_events") or []:
        gpu = by_index.get(event.get("index"), {})
        key = gpu.get("uuid") or str(event.get("index"))
        totals[key] = totals.get(key, 0) + 1
    return totals


def gpu_probe(make_backend, options, expected):
    """Run gpu_health once. ``make_backend()`` returns an NVML interface or raises ImportError (no nvidia-ml-py).

    Returns (state, result, reason). A host where no GPU is expected and NVML is missing is ``no_gpu``; where a GPU is
    expected, the same is ``error``; an NVML that answers gives ``ok`` or ``unhealthy``."""
    params = dict(options or {})
    params["gpu_required"] = True
    params["fail_on_unhealthy"] = False
    try:
        backend = make_backend()
        result = gh.evaluate(backend, params)
    except ImportError as exc:
        reason = "nvidia-ml-py (pynvml) is not installed: %s" % exc
        return ("error" if expected else "no_gpu"), gh.unavailable_result(reason), reason
    except gh.NvmlUnavailable as exc:
        return ("error" if expected else "no_gpu"), gh.unavailable_result(str(exc)), str(exc)
    except gh.GpuHealthError as exc:
        raise ProbeError("monitoring_gpu_health_options are invalid: %s" % exc)
    return ("ok" if result["healthy"] else "unhealthy"), result, None


# --------------------------------------------------------------------------- the timers' entry points
def load_config(path):
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ProbeError("cannot read the probe configuration %s: %s (the monitoring role writes it)" % (path, exc))
    if not isinstance(config, dict) or not config.get("textfile_dir"):
        raise ProbeError("%s: textfile_dir is missing (the monitoring role writes it)" % path)
    return config


def run_endpoints(config, make_client=None, clock=time.time, sleep=time.sleep, monotonic=time.monotonic):
    """Probe every endpoint of ``config`` and write PROBE_FILE. Returns (path, outcomes)."""
    timeout = float(config.get("timeout", 30))
    if make_client is None:
        def make_client(endpoint):
            return HttpClient(endpoint["url"], api_key=endpoint.get("api_key"), timeout=timeout,
                              validate_certs=endpoint.get("validate_certs", True), ca_path=endpoint.get("ca_path"))
    outcomes = []
    for endpoint in config.get("endpoints") or []:
        outcome = probe_endpoint(make_client(endpoint), endpoint, prompt=config.get("prompt", "Hello"),
                                 max_tokens=int(config.get("max_tokens", 16)), timeout=timeout, sleep=sleep, monotonic=monotonic)
        outcomes.append((endpoint, outcome))
    path = write_atomic(config["textfile_dir"], PROBE_FILE, render(endpoint_families(outcomes, clock())))
    return path, outcomes


def run_gpu(config, make_backend, clock=time.time):
    """Run the GPU probe of ``config`` (its ``gpu`` section) and write GPU_FILE; the XID counters persist in
    ``state_dir``. Returns (path, state, reason)."""
    gpu = config.get("gpu") or {}
    options = dict(gpu.get("options") or {})
    options.setdefault("xid_watch_seconds", gpu.get("xid_watch_seconds", 0))
    state, result, reason = gpu_probe(make_backend, options, bool(gpu.get("expected")))
    totals = {}
    state_file = os.path.join(config["state_dir"], "xid_totals.json") if config.get("state_dir") else None
    if state_file and os.path.exists(state_file):
        try:
            with open(state_file) as handle:
                totals = json.load(handle)
        except (OSError, ValueError):
            totals = {}
    totals = update_xid_totals(totals, result)
    if state_file:
        tmp = state_file + ".tmp"
        with open(tmp, "w") as handle:
            json.dump(totals, handle)
        os.replace(tmp, state_file)
    text = render(gpu_families(state, result, totals, clock(), reason))
    return write_atomic(config["textfile_dir"], GPU_FILE, text), state, reason
