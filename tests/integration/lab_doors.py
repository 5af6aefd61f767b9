# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lab's front doors, as a client on the controller sees them: the key from the lab's vault (`tools/lab.py key`),
each host's certificate (.lab/tls/<host>.crt, copied by `tools/lab.py doors`), the doors' addresses.

The lab's engines listen on loopback only; llm-lab-1's gateway serves vLLM on 8443, llm-lab-2's Ollama on 8444, and
each gateway's metrics listener (port 8405, the private bridge) relays the /metrics of the vLLM beside it."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "tools", "lab.py")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python") if os.path.exists(os.path.join(ROOT, ".venv", "bin", "python")) else sys.executable
DOORS = {"llm-lab-1": ("chat", "vllm", 8443), "llm-lab-2": ("edge", "ollama", 8444)}
METRICS_PORT = 8405


def lab(*args):
    out = subprocess.run([PYTHON, LAB, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    assert out.returncode == 0, "tools/lab.py %s: %s" % (" ".join(args), out.stderr[-2000:])
    return out.stdout


def key():
    return lab("key").strip()


def doors(hosts=tuple(DOORS)):
    """`tools/lab.py doors` (copies the certificates too): {host: {name, engine, port, address, cacert, url}}, for ``hosts``
    (default: every lab host)."""
    text = lab("doors")
    found = {}
    for host in hosts:
        name, engine, port = DOORS[host]
        line = next((line for line in text.splitlines() if line.startswith("%s door %s (%s" % (host, name, engine))), None)
        assert line is not None, text
        url = line.rsplit(": ", 1)[1]
        found[host] = {"name": name, "engine": engine, "port": port, "url": url, "address": url.split("//")[1].rsplit(":", 1)[0],
                       "cacert": os.path.join(ROOT, ".lab", "tls", host + ".crt"), "text": text}
    return found


def context(door):
    return ssl.create_default_context(cafile=door["cacert"])


def dumps(value):
    return json.dumps(value).encode()
