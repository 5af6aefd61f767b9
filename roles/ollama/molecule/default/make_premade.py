# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make a pre-made Ollama models directory (blobs/ + manifests/) on the controller, as an air-gapped site
would: serve the extracted release archive on a free loopback port with OLLAMA_MODELS=OUT, create the
model from its GGUF and Modelfile, stop the server.

usage: make_premade.py OLLAMA_BINARY GGUF MODELFILE NAME OUT
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def main(binary: str, gguf: str, modelfile: str, name: str, out: str) -> int:
    os.makedirs(out, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "OLLAMA_HOST": "127.0.0.1:%d" % port, "OLLAMA_MODELS": out}
        shutil.copy(gguf, os.path.join(tmp, os.path.basename(gguf)))
        shutil.copy(modelfile, os.path.join(tmp, "Modelfile"))
        with open(os.path.join(tmp, "serve.log"), "w") as log:
            server = subprocess.Popen([binary, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/api/version" % port, timeout=2) as answer:
                        version = json.load(answer)["version"]
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        print(open(os.path.join(tmp, "serve.log")).read()[-2000:], file=sys.stderr)
                        return 1
                    time.sleep(0.1)
            subprocess.run([binary, "create", name, "-f", "Modelfile"], env=env, cwd=tmp, check=True, capture_output=True)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
    print(json.dumps({"version": version, "out": out, "name": name}))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
