# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Call a gateway door the way users and attackers would, and print what it answered (JSON). Run on a lab host by the
Molecule verify_gateway.yml playbooks; it asserts nothing itself (the playbook does). Python 3 stdlib only.

stdin: {"port", "key", "wrong_key", "tight_key", "tight_limit", "paths": [...], "tricks": [...], "generate": [{path, body}]}
(the keys come on stdin so they are never on a command line). stdout: {"routes": {path: {"GET": [none, wrong, right],
"POST": [...]}}, "tricks": {path: status}, "rate": [statuses], "retry_after": value, "generate": [{path, status, body}]}.

With "recover": {"pid", "path", "body", "timeout"} instead: SIGKILL the process pid, then POST body to path through the
door every half second until it answers 200 or timeout seconds have passed. stdout: {"killed": pid, "killed_at": the
kill's epoch time, "status": the last
status (0: no answer), "seconds": from the kill to that answer, "attempts", "statuses": {status: count}, "body": the last
answer's tail}.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import sys
import time


def call(port, method, path, key=None, body=None, headers=None):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab's self-signed certificate
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=120)
    sent = {"Content-Type": "application/json"}
    if key:
        sent["Authorization"] = "Bearer " + key
    sent.update(headers or {})
    data = json.dumps(body).encode() if body is not None else (b"{}" if method == "POST" else None)
    # skip_host/skip_accept_encoding not needed; the path is sent as it is (no normalisation by the client)
    conn.request(method, path, body=data, headers=sent)
    response = conn.getresponse()
    payload = response.read()
    conn.close()
    return response.status, dict((k.lower(), v) for k, v in response.getheaders()), payload


def recover(port, key, spec):
    """Kill the process with SIGKILL, then time how long until a request through the door answers 200 again."""
    os.kill(int(spec["pid"]), signal.SIGKILL)
    killed = time.monotonic()
    deadline = killed + float(spec["timeout"])
    out = {"killed": int(spec["pid"]), "killed_at": time.time(), "status": 0, "seconds": None, "attempts": 0, "statuses": {},
           "body": ""}
    while True:
        out["attempts"] += 1
        try:
            status, _headers, payload = call(port, "POST", spec["path"], key, body=spec["body"])
        except (OSError, http.client.HTTPException) as exc:  # the door itself did not answer: recorded as 0
            status, payload = 0, repr(exc).encode()
        out["status"] = status
        out["statuses"][str(status)] = out["statuses"].get(str(status), 0) + 1
        out["body"] = payload.decode("utf-8", "replace")[-2000:]
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out["seconds"] = round(time.monotonic() - killed, 1)
    return out


def main():
    spec = json.load(sys.stdin)
    port = spec["port"]
    if spec.get("recover"):
        json.dump(recover(port, spec["key"], spec["recover"]), sys.stdout)
        return
    out = {"routes": {}, "tricks": {}, "rate": [], "retry_after": None, "generate": []}
    for path in spec["paths"]:
        out["routes"][path] = {}
        for method in ("GET", "POST"):
            out["routes"][path][method] = [call(port, method, path)[0], call(port, method, path, spec["wrong_key"])[0],
                                           call(port, method, path, spec["key"])[0]]
    for path in spec["tricks"]:
        out["tricks"][path] = call(port, "GET", path, spec["key"])[0]
    for item in spec.get("generate", []):
        status, _headers, payload = call(port, "POST", item["path"], spec["key"], body=item["body"])
        out["generate"].append({"path": item["path"], "status": status, "body": payload.decode("utf-8", "replace")[-20000:]})
    for _attempt in range(int(spec["tight_limit"]) + 1):
        status, headers, _payload = call(port, "GET", spec["rate_path"], spec["tight_key"])
        out["rate"].append(status)
        if status == 429:
            out["retry_after"] = headers.get("retry-after")
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
