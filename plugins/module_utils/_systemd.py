# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Small, reusable access to systemd and /proc for modules of this collection.

Private (leading underscore): the API may change between releases.

``SystemdHost`` is the interface a module talks to; it only needs a ``run_command``
callable with the signature of ``AnsibleModule.run_command`` (args list -> (rc, out, err)).
Unit tests swap it for a fake with the same methods. The parsing helpers are pure.
"""

from __future__ import annotations

import os

# Unit search path of the system manager, highest priority first (systemd.unit(5), "Unit File Load Path").
# /lib/systemd/system is only distinct from /usr/lib/systemd/system on systems without merged /usr;
# callers that touch the disk should drop duplicates by realpath.
SYSTEM_UNIT_PATH = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator.late",
)


class SystemdError(Exception):
    """systemctl or /proc could not answer; the message says what was attempted."""


UNIT_SUFFIXES = (".service", ".socket", ".timer", ".mount", ".target", ".path", ".slice", ".scope")


def unit_name(service, suffix=".service"):
    """``ollama`` -> ``ollama.service``; a name that already ends in a unit suffix is kept."""
    if service.endswith(UNIT_SUFFIXES):
        return service
    return service + suffix


def parse_show(text):
    """Parse ``systemctl show -p A -p B unit`` output (``Key=Value`` lines) into a dict."""
    props = {}
    for line in text.splitlines():
        if "=" not in line:
            continue
        key, value = line.split("=", 1)
        props[key.strip()] = value
    return props


def parse_environ(data):
    """Parse the bytes of ``/proc/PID/environ`` (NUL separated ``KEY=VALUE``) into a dict of str."""
    if isinstance(data, bytes):
        data = data.decode("utf-8", errors="surrogateescape")
    env = {}
    for item in data.split("\0"):
        if not item or "=" not in item:
            continue
        key, value = item.split("=", 1)
        env[key] = value
    return env


def parse_stat_starttime(stat_text):
    """Field 22 (starttime, clock ticks since boot) of ``/proc/PID/stat``.

    The command name (field 2) may contain spaces and parentheses, so split after the last ``)``.
    """
    try:
        rest = stat_text[stat_text.rindex(")") + 2:].split()
        # rest[0] is field 3 (state); starttime is field 22 -> index 19.
        return int(rest[19])
    except (ValueError, IndexError):
        raise SystemdError("could not parse /proc/PID/stat: %r" % stat_text[:200])


def parse_btime(proc_stat_text):
    """Boot time (seconds since the epoch) from the ``btime`` line of ``/proc/stat``."""
    for line in proc_stat_text.splitlines():
        if line.startswith("btime "):
            return int(line.split()[1])
    raise SystemdError("no btime line in /proc/stat")


class SystemdHost(object):
    """Read-only questions to systemd and /proc about a service. Reusable by the engine roles' modules."""

    def __init__(self, run_command, systemctl="systemctl", proc="/proc", unit_path=SYSTEM_UNIT_PATH):
        self._run = run_command
        self.systemctl = systemctl
        self.proc = proc
        # where unit files and drop-ins live, highest priority first; a fake points it at a test tree
        self.unit_path = tuple(unit_path)

    def show(self, unit, properties):
        """Return the requested properties of ``unit`` as a dict of strings."""
        args = [self.systemctl, "show", "--no-pager"]
        for prop in properties:
            args.extend(["-p", prop])
        args.append(unit)
        rc, out, err = self._run(args)
        if rc != 0:
            raise SystemdError("`%s` failed (rc=%s): %s" % (" ".join(args), rc, (err or out).strip()))
        return parse_show(out)

    def main_pid(self, unit):
        """MainPID of ``unit`` as int (0 when it is not running)."""
        value = self.show(unit, ["MainPID"]).get("MainPID", "0")
        try:
            return int(value)
        except ValueError:
            raise SystemdError("systemctl show -p MainPID %s returned %r, not a PID" % (unit, value))

    def _read(self, path, binary=False):
        try:
            with open(path, "rb" if binary else "r") as handle:
                return handle.read()
        except (IOError, OSError) as exc:
            raise SystemdError("could not read %s: %s" % (path, exc))

    def environ(self, pid):
        """Environment of process ``pid`` as a dict (needs root for another user's process)."""
        return parse_environ(self._read(os.path.join(self.proc, str(pid), "environ"), binary=True))

    def process_start_time(self, pid):
        """Start time of process ``pid`` in seconds since the epoch (from /proc, no locale parsing)."""
        ticks = parse_stat_starttime(self._read(os.path.join(self.proc, str(pid), "stat")))
        btime = parse_btime(self._read(os.path.join(self.proc, "stat")))
        return btime + float(ticks) / os.sysconf("SC_CLK_TCK")
