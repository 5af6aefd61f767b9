# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""HAProxy's runtime API (the gateway's admin socket), for rolling updates and traffic shifts.

What one replica behind a front door is (``show stat``: status, current sessions, queue, weight), and the three
changes an update makes: ``set server <backend>/<server> state drain|ready|maint`` and ``set server ... weight N``.
``wait_idle`` polls until a drained replica holds no session and no queued request (a streamed generation is one
session until its last chunk). Nothing here knows Ansible: plugins/modules/gateway_server.py is the module."""
from __future__ import annotations

import socket
import time

STATES = ("ready", "drain", "maint")
# show stat: the columns read here (HAProxy 2.6's names; the header line names them, the positions are not assumed)
COLUMNS = ("pxname", "svname", "status", "scur", "qcur", "weight", "check_status", "stot", "eresp", "econ", "wretr", "wredis",
           "hrsp_5xx")


class HaproxyRuntimeError(Exception):
    """The socket could not be reached, or HAProxy refused a command (its own words in the message)."""


def send(socket_path, command, timeout=5.0):
    """One command on the admin socket (non-interactive mode: HAProxy answers and closes). Returns the answer text."""
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(command.encode("ascii") + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
    except (OSError, socket.timeout) as exc:
        raise HaproxyRuntimeError("HAProxy's runtime API at %s did not answer %r: %s. Is the gateway running on this host "
                                  "(gateway_runtime_socket)?" % (socket_path, command.split()[0], exc))
    return b"".join(chunks).decode("utf-8", "replace")


def parse_stat(text):
    """``show stat`` CSV into a list of dicts keyed by the header's column names (values as text)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# "):
        raise HaproxyRuntimeError("unexpected answer to 'show stat' (no CSV header): %r" % text[:200])
    header = lines[0][2:].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def _num(row, key):
    try:
        return int(row.get(key) or 0)
    except ValueError:
        return 0


def servers(socket_path, backend):
    """Every server of one backend: {name: {status, scur, qcur, weight, check_status, stot, ...}}."""
    rows = parse_stat(send(socket_path, "show stat"))
    if not any(r.get("pxname") == backend and r.get("svname") == "BACKEND" for r in rows):
        known = sorted({r.get("pxname") for r in rows if r.get("svname") == "BACKEND"})
        raise HaproxyRuntimeError("the gateway has no backend %s (it has %s); check the door's name (be_<door>)"
                                  % (backend, ", ".join(known) or "none"))
    admin = admin_states(socket_path, backend)
    out = {}
    for row in rows:
        if row.get("pxname") != backend or row.get("svname") in ("FRONTEND", "BACKEND"):
            continue
        out[row["svname"]] = {"status": row.get("status", ""), "scur": _num(row, "scur"), "qcur": _num(row, "qcur"),
                              "weight": _num(row, "weight"), "check_status": row.get("check_status", ""),
                              "stot": _num(row, "stot"), "eresp": _num(row, "eresp"), "econ": _num(row, "econ"),
                              "wretr": _num(row, "wretr"), "wredis": _num(row, "wredis"), "hrsp_5xx": _num(row, "hrsp_5xx"),
                              "admin": admin.get(row["svname"], 0)}
    return out


# srv_admin_state bits (HAProxy's SRV_ADMF_*): forced maintenance and forced drain are what the runtime API sets
ADMIN_FMAINT = 0x01
ADMIN_FDRAIN = 0x08


def admin_states(socket_path, backend):
    """{server: srv_admin_state} from ``show servers state <backend>``: what an operator (or this module) asked,
    whatever the health checks say (a drained replica that is restarting shows DOWN in show stat, not DRAIN)."""
    out = {}
    header = None
    for line in send(socket_path, "show servers state %s" % backend).splitlines():
        if line.startswith("# be_id"):
            header = line[2:].split()
        elif header and line and not line.startswith("#") and len(line.split()) >= len(header) - 2:
            row = dict(zip(header, line.split()))
            try:
                out[row["srv_name"]] = int(row["srv_admin_state"])
            except (KeyError, ValueError):
                continue
    return out


def server(socket_path, backend, name):
    found = servers(socket_path, backend)
    if name not in found:
        raise HaproxyRuntimeError("backend %s has no server %s (it has %s); a replica is named <host>-<instance>"
                                  % (backend, name, ", ".join(sorted(found)) or "none"))
    return found[name]


def _check_answer(answer, command):
    text = answer.strip()
    # a successful set server answers nothing (or a note about the change); errors name what is wrong
    if text and any(word in text.lower() for word in ("no such", "unknown", "require", "invalid", "error", "expects",
                                                      "cannot", "not found", "permission denied")):
        raise HaproxyRuntimeError("HAProxy refused %r: %s" % (command, text))


def set_state(socket_path, backend, name, state):
    if state not in STATES:
        raise HaproxyRuntimeError("state %r is not one of %s" % (state, ", ".join(STATES)))
    command = "set server %s/%s state %s" % (backend, name, state)
    _check_answer(send(socket_path, command), command)


def set_weight(socket_path, backend, name, weight):
    if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 256:
        raise HaproxyRuntimeError("weight %r must be an integer from 0 to 256 (HAProxy's range)" % (weight,))
    command = "set server %s/%s weight %d" % (backend, name, weight)
    _check_answer(send(socket_path, command), command)


def is_serving(status):
    """UP (or UP going down) and not drained or in maintenance: takes new requests."""
    return status.startswith("UP") or status == "no check"


def wait_for(socket_path, backend, name, done, timeout, poll=0.25, clock=time.monotonic, sleep=time.sleep):
    """Poll ``show stat`` until ``done(row)``; returns (row, seconds waited) or raises with the last row seen."""
    start = clock()
    while True:
        row = server(socket_path, backend, name)
        if done(row):
            return row, clock() - start
        if clock() - start >= timeout:
            raise TimeoutError(row)
        sleep(poll)


def wait_idle(socket_path, backend, name, timeout, **kwargs):
    """Until the replica holds no session and no queued request."""
    return wait_for(socket_path, backend, name, lambda r: r["scur"] == 0 and r["qcur"] == 0, timeout, **kwargs)


def wait_up(socket_path, backend, name, timeout, **kwargs):
    """Until the replica's health checks put it UP (after a restart it is DOWN until they pass)."""
    return wait_for(socket_path, backend, name, lambda r: r["status"] == "UP", timeout, **kwargs)


def ready_count(rows, excluding=()):
    """How many replicas take new requests, leaving out the named ones. A replica of weight 0 (a migration's side that
    gets no share yet, or no more) is UP but takes none: it does not count."""
    return sum(1 for name, row in rows.items()
               if name not in excluding and is_serving(row["status"]) and row.get("weight", 1) != 0)
