# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Proof on a real NVIDIA GPU: gpu_health, run through Ansible, agrees with nvidia-smi.

    python3 tests/gpu/prove_gpu_health.py --out DIR [--load-mib 4096]

1. Links this checkout as ansible_collections/onprem/llm_serving in a temp dir and points
   ANSIBLE_COLLECTIONS_PATH there (ansible-core must be importable: see tests/gpu/device_run.sh).
2. Optionally starts a CUDA process that holds --load-mib MiB (PyTorch), so the compute process
   list and the used memory have something to agree on.  Allocating memory is the only thing
   done to the GPU: nothing here changes persistence, clocks, power limits, compute or MIG
   modes, and nothing resets the GPU.
3. Runs `ansible localhost -c local -m onprem.llm_serving.gpu_health` (report only, 2 s XID
   watch), then nvidia-smi (--query-gpu field by field, -q -x, --query-compute-apps, --version).
4. Prints a side-by-side table with PASS/FAIL per field, then runs the module once more in
   check mode with thresholds that must fail, to show the one failure message.

Exit status 0 when every compared field passed.  Without a GPU, --module-result FILE and a
fake nvidia-smi on PATH exercise the comparison alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

NA = ("[N/A]", "N/A", "[Not Supported]", "Not Supported", "[Unknown Error]", "")

LOAD_SCRIPT = r"""
import sys, time, torch
x = torch.empty(int(sys.argv[1]) * 1024 * 1024, dtype=torch.uint8, device="cuda")
x.fill_(1)
torch.cuda.synchronize()
print("LOADED", flush=True)
time.sleep(600)
"""


# ------------------------------------------------------------------ running things
def sh(argv, env=None, timeout=120):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=timeout,
                          universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def collection_env(tmp):
    """A temp collections dir with this checkout as onprem.llm_serving, and the env to use it."""
    target = os.path.join(tmp, "ansible_collections", "onprem")
    os.makedirs(target)
    os.symlink(REPO, os.path.join(target, "llm_serving"))
    env = dict(os.environ)
    env.update({
        "ANSIBLE_COLLECTIONS_PATH": tmp,
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_HOME": os.path.join(tmp, "ansible_home"),
        "LC_ALL": "C.UTF-8",
        "LANG": "C.UTF-8",
    })
    return env


def run_module(tmp, env, args, check_mode=False, tag="run"):
    tree = os.path.join(tmp, "tree-" + tag)
    argv = [sys.executable, "-m", "ansible", "adhoc", "localhost", "-c", "local", "-m", "onprem.llm_serving.gpu_health",
            "-a", json.dumps(args), "-t", tree]
    if check_mode:
        argv.append("--check")
    start = time.time()
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp,
                          universal_newlines=True, timeout=300, check=False)
    wall = time.time() - start
    path = os.path.join(tree, "localhost")
    if not os.path.exists(path):
        return proc.returncode, {"msg": "no result: " + (proc.stdout + proc.stderr)[-3000:]}, wall
    with open(path) as handle:
        result = json.load(handle)
    rc = proc.returncode
    return rc, result, wall


def start_load(mib):
    """Start a CUDA process holding `mib` MiB; None when PyTorch/CUDA is not there."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the carried wheels are for Ansible, not for PyTorch
    proc = subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, str(mib)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, universal_newlines=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            print("load process ended: rc %s" % proc.returncode)
            return None
        if line.startswith("LOADED"):
            return proc
    proc.kill()
    return None


# ------------------------------------------------------------------ nvidia-smi
QUERY_FIELDS = (
    "index", "name", "uuid", "serial", "pci.bus_id", "vbios_version", "compute_cap", "driver_version",
    "persistence_mode", "compute_mode", "mig.mode.current", "mig.mode.pending", "ecc.mode.current", "ecc.mode.pending",
    "ecc.errors.corrected.volatile.total", "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.aggregate.total", "ecc.errors.uncorrected.aggregate.total",
    "retired_pages.single_bit_ecc.count", "retired_pages.double_bit.count", "retired_pages.pending",
    "remapped_rows.correctable", "remapped_rows.uncorrectable", "remapped_rows.pending", "remapped_rows.failure",
    "pcie.link.gen.current", "pcie.link.gen.max", "pcie.link.gen.gpumax", "pcie.link.width.current", "pcie.link.width.max",
    "memory.total", "memory.used", "memory.free", "memory.reserved", "temperature.gpu",
    "power.draw", "power.draw.average", "power.draw.instant", "enforced.power.limit",
    "utilization.gpu", "utilization.memory", "clocks_event_reasons.active", "clocks.sm", "clocks.max.sm",
)


def smi_query(index):
    values = {}
    for field in QUERY_FIELDS:
        rc, out, err = sh(["nvidia-smi", "-i", str(index), "--query-gpu=" + field, "--format=csv,noheader,nounits"])
        values[field] = out.strip() if rc == 0 else "QUERY-FAILED: " + (out + err).strip()[:80]
    return values


def smi_xml_gpu(xml_text, bus_id):
    root = ET.fromstring(xml_text)
    for gpu in root.findall("gpu"):
        if gpu.get("id", "").lower() == bus_id.lower():
            return root, gpu
    return root, root.find("gpu")


def _num(text):
    return int(str(text).split()[0])


def xml_thresholds(gpu):
    """Slowdown and shutdown thresholds from nvidia-smi -q -x, in either format.

    Drivers 560+ print them relative to T.Limit: slowdown = gpu_temp + tlimit - slow_tlimit.
    """
    temp = gpu.find("temperature")
    old_slow, old_shut = temp.findtext("gpu_temp_slow_threshold"), temp.findtext("gpu_temp_max_threshold")
    if old_slow and old_slow not in NA:
        return _num(old_slow), _num(old_shut), "gpu_temp_slow_threshold / gpu_temp_max_threshold"
    cur, tlimit = _num(temp.findtext("gpu_temp")), _num(temp.findtext("gpu_temp_tlimit"))
    slow, shut = _num(temp.findtext("gpu_temp_slow_tlimit_threshold")), _num(temp.findtext("gpu_temp_max_tlimit_threshold"))
    return cur + tlimit - slow, cur + tlimit - shut, "gpu_temp %d + tlimit %d - {slow,max}_tlimit (%d, %d)" % (cur, tlimit, slow, shut)


def smi_apps():
    rc, out, _err = sh(["nvidia-smi", "--query-compute-apps=gpu_bus_id,pid,used_memory", "--format=csv,noheader,nounits"])
    apps = []
    for line in out.strip().splitlines() if rc == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit():
            apps.append({"bus_id": parts[0], "pid": int(parts[1]), "used_mib": None if parts[2] in NA else int(parts[2])})
    return apps


# ------------------------------------------------------------------ comparing
class Table(object):
    def __init__(self):
        self.rows = []

    def add(self, field, ours, theirs, ok, note=""):
        self.rows.append((field, ours, theirs, "PASS" if ok else "FAIL", note))

    def render(self):
        head = ("field", "gpu_health (NVML)", "nvidia-smi", "result", "note")
        rows = [head] + [tuple(str(c) for c in r) for r in self.rows]
        widths = [min(max(len(r[i]) for r in rows), 46) for i in range(4)]
        lines = []
        for r in rows:
            cells = [r[i][:46].ljust(widths[i]) for i in range(4)] + [r[4]]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    @property
    def failed(self):
        return [r for r in self.rows if r[3] == "FAIL"]


def smi_value(text, kind):
    """Parse one nvidia-smi CSV value: None for N/A, else int/float/bool/str."""
    if text is None or text.strip() in NA:
        return None
    text = text.strip()
    if kind == "int":
        return int(float(text))
    if kind == "float":
        return float(text)
    if kind == "bool":
        return {"enabled": True, "disabled": False, "yes": True, "no": False, "1": True, "0": False}[text.lower()]
    if kind == "hex":
        return int(text, 16)
    return text


def compare_gpu(table, gpu, q, xml_gpu, apps, top):
    p = "gpu%d." % gpu["index"]

    def exact(field, ours, smi_field, kind="str", note=""):
        try:
            theirs = smi_value(q.get(smi_field), kind)
        except (ValueError, KeyError) as exc:
            table.add(p + field, ours, q.get(smi_field), False, "unparsable: %s" % exc)
            return
        table.add(p + field, _show(ours), _show(theirs) if theirs is not None else q.get(smi_field), ours == theirs,
                  note or smi_field)

    def near(field, ours, smi_field, tol, kind="int", note=""):
        theirs = smi_value(q.get(smi_field), kind)
        ok = ours is not None and theirs is not None and abs(ours - theirs) <= tol
        table.add(p + field, ours, theirs, ok, (note or smi_field) + " (within %s)" % tol)

    exact("index", gpu["index"], "index", "int")
    exact("name", gpu["name"], "name")
    exact("uuid", gpu["uuid"], "uuid")
    exact("serial", gpu["serial"], "serial")
    exact("pci_bus_id", gpu["pci_bus_id"], "pci.bus_id")
    exact("vbios_version", gpu["vbios_version"], "vbios_version")
    exact("compute_capability", gpu["compute_capability"], "compute_cap")
    exact("persistence_mode", gpu["persistence_mode"], "persistence_mode", "bool")
    exact("compute_mode", gpu["compute_mode"], "compute_mode")
    exact("mig_mode.current", gpu["mig_mode"]["current"], "mig.mode.current", "bool")
    exact("mig_mode.pending", gpu["mig_mode"]["pending"], "mig.mode.pending", "bool")
    exact("ecc.enabled", gpu["ecc"]["enabled"], "ecc.mode.current", "bool")
    exact("ecc.pending_enabled", gpu["ecc"]["pending_enabled"], "ecc.mode.pending", "bool")
    for scope in ("volatile", "aggregate"):
        for kind in ("corrected", "uncorrected"):
            exact("ecc.%s.%s" % (scope, kind), gpu["ecc"][scope][kind], "ecc.errors.%s.%s.total" % (kind, scope), "int")
    exact("retired_pages.single_bit_ecc", gpu["retired_pages"]["single_bit_ecc"], "retired_pages.single_bit_ecc.count", "int",
          "N/A on both sides = unsupported")
    exact("retired_pages.double_bit_ecc", gpu["retired_pages"]["double_bit_ecc"], "retired_pages.double_bit.count", "int",
          "N/A on both sides = unsupported")
    exact("retired_pages.pending", gpu["retired_pages"]["pending"], "retired_pages.pending", "bool",
          "N/A on both sides = unsupported")
    rr = gpu["remapped_rows"]
    exact("remapped_rows.correctable", rr["correctable"], "remapped_rows.correctable", "int")
    exact("remapped_rows.uncorrectable", rr["uncorrectable"], "remapped_rows.uncorrectable", "int")
    exact("remapped_rows.pending", rr["pending"], "remapped_rows.pending", "bool")
    exact("remapped_rows.failure", rr["failure"], "remapped_rows.failure", "bool")
    pcie = gpu["pcie"]
    near("pcie.gen_current", pcie["gen_current"], "pcie.link.gen.current", 0, note="pcie.link.gen.current (idle downclock moves it)")
    exact("pcie.gen_max", pcie["gen_max"], "pcie.link.gen.max", "int")
    exact("pcie.gen_gpu_max", pcie["gen_gpu_max"], "pcie.link.gen.gpumax", "int")
    exact("pcie.width_current", pcie["width_current"], "pcie.link.width.current", "int")
    exact("pcie.width_max", pcie["width_max"], "pcie.link.width.max", "int")
    mem = gpu["memory"]
    exact("memory.total_mib", mem["total_mib"], "memory.total", "int")
    exact("memory.reserved_mib", mem["reserved_mib"], "memory.reserved", "int")
    # Every MiB field exactly: the helper's load holds still while both sides read, and both
    # round bytes up to whole MiB (tests/gpu/probe_mib_rounding.py).
    exact("memory.used_mib", mem["used_mib"], "memory.used", "int", note="memory.used (steady load, exact)")
    exact("memory.free_mib", mem["free_mib"], "memory.free", "int", note="memory.free (steady load, exact)")
    near("temperature.gpu_c", gpu["temperature"]["gpu_c"], "temperature.gpu", 3)
    slow, shut, how = xml_thresholds(xml_gpu)
    table.add(p + "temperature.slowdown_c", gpu["temperature"]["slowdown_c"], slow, gpu["temperature"]["slowdown_c"] == slow,
              "-q -x: " + how)
    table.add(p + "temperature.shutdown_c", gpu["temperature"]["shutdown_c"], shut, gpu["temperature"]["shutdown_c"] == shut,
              "-q -x: " + how)
    draw = gpu["power"]["draw_w"]
    candidates = [smi_value(q.get(f), "float") for f in ("power.draw", "power.draw.average", "power.draw.instant")]
    candidates = [c for c in candidates if c is not None]
    ok = draw is not None and any(abs(draw - c) <= max(10.0, 0.15 * c) for c in candidates)
    table.add(p + "power.draw_w", draw, "/".join("%.2f" % c for c in candidates), ok,
              "power.draw / .average / .instant (within 15% or 10 W of one)")
    limit = smi_value(q.get("enforced.power.limit"), "float")
    table.add(p + "power.limit_w", gpu["power"]["limit_w"], limit, limit is not None and abs(gpu["power"]["limit_w"] - limit) < 0.01,
              "enforced.power.limit")
    near("utilization.gpu_pct", gpu["utilization"]["gpu_pct"], "utilization.gpu", 25, note="utilization.gpu (sampled)")
    near("utilization.memory_pct", gpu["utilization"]["memory_pct"], "utilization.memory", 25, note="utilization.memory (sampled)")
    mask = smi_value(q.get("clocks_event_reasons.active"), "hex")
    ours_mask = gpu["clock_event_reasons"]["mask"]
    reasons = xml_gpu.find("clocks_event_reasons") if xml_gpu.find("clocks_event_reasons") is not None \
        else xml_gpu.find("clocks_throttle_reasons")
    xml_active = sorted(_reason_name(e.tag) for e in (reasons if reasons is not None else []) if e.text == "Active")
    table.add(p + "clock_event_reasons.mask", "0x%x" % ours_mask, "0x%x" % mask if mask is not None else None,
              ours_mask == mask, "clocks_event_reasons.active")
    table.add(p + "clock_event_reasons.active", ",".join(sorted(gpu["clock_event_reasons"]["active"])), ",".join(xml_active),
              sorted(gpu["clock_event_reasons"]["active"]) == xml_active, "-q -x clocks_event_reasons (Active)")
    near("clocks.sm_max_mhz", gpu["clocks"]["sm_max_mhz"], "clocks.max.sm", 0)
    near("clocks.sm_mhz", gpu["clocks"]["sm_mhz"], "clocks.sm", 400, note="clocks.sm (changes with load)")
    mine = sorted((a["pid"], a["used_mib"]) for a in apps if a["bus_id"].lower() == gpu["pci_bus_id"].lower())
    ours = sorted((pr["pid"], pr["used_memory_mib"]) for pr in gpu["processes"] or [])
    ok = ours == mine
    table.add(p + "processes", ours or "none", mine or "none", ok, "--query-compute-apps pid,used_memory (exact)")
    table.add(p + "xid_events_supported", gpu["xid_events_supported"], "(no nvidia-smi field)", gpu["xid_events_supported"] is not None,
              "informative: NVML only")
    table.add(p + "unsupported", ",".join(gpu["unsupported"]) or "none", "", True, "fields NVML answered Not Supported")
    table.add(p + "errors", json.dumps(gpu["errors"]) if gpu["errors"] else "none", "", not gpu["errors"],
              "fields that failed with another NVML error")
    del top


_REASON_TAGS = {
    "gpu_idle": "gpu_idle", "applications_clocks_setting": "applications_clocks_setting", "sw_power_cap": "sw_power_cap",
    "hw_slowdown": "hw_slowdown", "hw_thermal_slowdown": "hw_thermal_slowdown",
    "hw_power_brake_slowdown": "hw_power_brake_slowdown", "sync_boost": "sync_boost",
    "sw_thermal_slowdown": "sw_thermal_slowdown", "display_clocks_setting": "display_clock_setting",
}


def _reason_name(tag):
    for prefix in ("clocks_event_reason_", "clocks_throttle_reason_"):
        if tag.startswith(prefix):
            tag = tag[len(prefix):]
    return _REASON_TAGS.get(tag, tag)


def _show(value):
    return value


def compare_host(table, result, root, version_text):
    table.add("driver_version", result["driver_version"], root.findtext("driver_version"),
              result["driver_version"] == root.findtext("driver_version"), "-q -x driver_version")
    table.add("cuda_driver_version", result["cuda_driver_version"], root.findtext("cuda_version"),
              result["cuda_driver_version"] == root.findtext("cuda_version"), "-q -x cuda_version")
    smi_nvml = None
    for line in version_text.splitlines():
        if line.lower().startswith("nvml version"):
            smi_nvml = line.split(":", 1)[1].strip()
    ok = smi_nvml is not None and result["nvml_version"] is not None and smi_nvml in result["nvml_version"]
    table.add("nvml_version", result["nvml_version"], smi_nvml, ok, "nvidia-smi --version (NVML's prefix is the CUDA major)")
    count = len(root.findall("gpu"))
    table.add("gpu_count", result["gpu_count"], count, result["gpu_count"] == count, "-q -x attached_gpus")


# ------------------------------------------------------------------ main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--out", required=True, help="directory for the report and raw outputs")
    parser.add_argument("--load-mib", type=int, default=4096, help="MiB a CUDA process holds during the run (0: none)")
    parser.add_argument("--module-result", help="use this stored module result instead of running Ansible")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    report = []

    def say(text=""):
        print(text)
        report.append(text)

    say("gpu_health proof on %s, %s UTC" % (os.uname()[1], time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())))
    rc, out, _err = sh(["nvidia-smi", "-L"])
    say(out.strip())
    tmp = tempfile.mkdtemp(prefix="gpu_health_proof_")
    load = None
    try:
        env = collection_env(tmp)
        rc, out, err = sh([sys.executable, "-c", "import ansible, pynvml, sys; from importlib.metadata import version; "
                           "print(sys.version.split()[0], ansible.__version__ if hasattr(ansible, '__version__') else '', "
                           "version('ansible-core'), version('nvidia-ml-py'))"], env=env)
        say("python, ansible-core, nvidia-ml-py: %s %s" % (out.strip(), err.strip()[-200:]))
        if args.load_mib and not args.module_result:
            load = start_load(args.load_mib)
            say("CUDA load process: %s" % ("pid %d holding %d MiB" % (load.pid, args.load_mib) if load else "not started"))
        module_args = {"fail_on_unhealthy": False, "xid_watch_seconds": 2}
        if args.module_result:
            with open(args.module_result) as handle:
                result, mrc, wall = json.load(handle), 0, 0.0
        else:
            mrc, result, wall = run_module(tmp, env, module_args)
        say("ansible localhost -c local -m onprem.llm_serving.gpu_health -a '%s': rc %s, %.1f s wall, changed=%s, "
            "healthy=%s, msg=%r" % (json.dumps(module_args), mrc, wall, result.get("changed"), result.get("healthy"),
                                    result.get("msg")))
        say("module timing_ms (in-process NVML): %s" % json.dumps(result.get("timing_ms")))
        say("xid watch: events=%s note=%s" % (json.dumps(result.get("xid_events")), result.get("xid_watch_note")))
        say("gpu_facts: %s" % json.dumps(result.get("gpu_facts")))
        with open(os.path.join(args.out, "module_result.json"), "w") as handle:
            json.dump(result, handle, indent=1, sort_keys=True)

        _rc, xml_text, _err = sh(["nvidia-smi", "-q", "-x"])
        _rc, version_text, _err = sh(["nvidia-smi", "--version"])
        apps = smi_apps()
        table = Table()
        root = ET.fromstring(xml_text)
        compare_host(table, result, root, version_text)
        smi_raw = {}
        for gpu in result.get("gpus", []):
            q = smi_query(gpu["index"])
            smi_raw[gpu["index"]] = q
            _root, xml_gpu = smi_xml_gpu(xml_text, gpu["pci_bus_id"] or "")
            compare_gpu(table, gpu, q, xml_gpu, apps, root)
        with open(os.path.join(args.out, "nvidia_smi.json"), "w") as handle:
            json.dump({"query": smi_raw, "compute_apps": apps, "version": version_text}, handle, indent=1, sort_keys=True)
        with open(os.path.join(args.out, "nvidia_smi_q.xml"), "w") as handle:
            handle.write(xml_text)
        say("")
        say(table.render())
        say("")
        say("fields compared: %d, PASS: %d, FAIL: %d" % (len(table.rows), len(table.rows) - len(table.failed), len(table.failed)))
        say("checks: " + ", ".join("%s%s=%s" % (c["name"], "" if c["gpu"] is None else "[%s]" % c["gpu"], c["status"])
                                   for c in result.get("checks", [])))

        if not args.module_result:
            strict = {"expected_gpu_count": result["gpu_count"] + 1, "min_free_memory_mib": 10 ** 7, "max_temperature_c": 1,
                      "allow_compute_processes": False, "min_compute_capability": "99.0"}
            frc, failed, fwall = run_module(tmp, env, strict, check_mode=True, tag="strict")
            say("")
            say("check mode with thresholds that must fail %s: rc %s (%.1f s), changed=%s"
                % (json.dumps(strict), frc, fwall, failed.get("changed")))
            say("its message:")
            say(failed.get("msg", ""))
            # rc 2: the host failed (the tree callback's copy of the result drops the "failed" key)
            ok = frc == 2 and failed.get("changed") is False and \
                str(failed.get("msg", "")).startswith("GPU health check failed:")
            say("failure demonstration: %s" % ("PASS" if ok else "FAIL"))
            if not ok:
                table.rows.append(("strict_run", frc, "", "FAIL", "expected a failure"))
        say("")
        say("RESULT: %s" % ("PASS" if not table.failed and mrc == 0 else "FAIL"))
    finally:
        if load is not None:
            load.kill()
            load.wait()
        shutil.rmtree(tmp, ignore_errors=True)
        with open(os.path.join(args.out, "proof.txt"), "w") as handle:
            handle.write("\n".join(report) + "\n")
    return 0 if not table.failed and mrc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
