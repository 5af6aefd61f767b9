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
import time

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

    def journal_tail(self, unit, lines):
        """The last ``lines`` log lines of ``unit`` (message text only), or "" when the journal cannot be read here
        (journalctl missing, or a user without access to the system journal)."""
        rc, out, _err = self._run(["journalctl", "--no-pager", "--quiet", "-o", "cat", "-n", str(int(lines)), "-u", unit])
        return out.rstrip() if rc == 0 else ""

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


# --- Restarts decided from the host's truth -------------------------------------------------------
# A unit must restart when any file it reads (its unit file, drop-ins, EnvironmentFile=s, and paths the
# caller names such as an install marker) changed after it became active. Deciding this from the host,
# not from this run's `changed` results, makes a re-run converge after a run that died between writing
# a file and restarting the service.

UNIT_STATE_PROPERTIES = ("LoadState", "ActiveState", "SubState", "MainPID", "NeedDaemonReload",
                         "ActiveEnterTimestampMonotonic", "FragmentPath", "DropInPaths", "EnvironmentFiles",
                         "UnitFileState")
RUNNING_STATES = ("active", "activating", "reloading")


def parse_environment_files(value):
    """``EnvironmentFiles=`` of ``systemctl show``: ``/path (ignore_errors=no)`` entries, space separated."""
    paths = []
    for token in (value or "").split():
        if token.startswith("/"):
            paths.append(token)
    return paths


def unit_files(props):
    """Every path systemd read to build the unit: fragment, drop-ins (and their directories, whose mtime
    moves when a drop-in is removed) and environment files, in that order, without duplicates."""
    paths = []
    if props.get("FragmentPath"):
        paths.append(props["FragmentPath"])
    dropins = [p for p in (props.get("DropInPaths") or "").split() if p.startswith("/")]
    paths.extend(dropins)
    paths.extend(sorted({os.path.dirname(p) for p in dropins}))
    paths.extend(parse_environment_files(props.get("EnvironmentFiles")))
    seen = set()
    return [p for p in paths if not (p in seen or seen.add(p))]


def decide_restart(props, mtimes, active_since):
    """Decide, from systemd's answers and file mtimes, what a unit needs.

    ``props``: ``systemctl show`` properties (UNIT_STATE_PROPERTIES); ``mtimes``: {path: mtime or None when
    missing}; ``active_since``: wall-clock time (epoch seconds) the unit entered the active state, or None.
    Returns a dict: ``action`` one of ``none`` (running, nothing newer), ``restart`` (running, something it
    reads is newer than its start), ``start`` (not running), ``absent`` (not known to systemd); ``reason``
    a sentence; ``newest`` the newest file and its mtime; ``daemon_reload`` whether systemd wants a reload.
    """
    load = props.get("LoadState", "")
    active = props.get("ActiveState", "")
    reload_needed = props.get("NeedDaemonReload") == "yes"
    present = {p: m for p, m in mtimes.items() if m is not None}
    newest_path = max(present, key=lambda p: present[p]) if present else None
    newest = {"path": newest_path, "mtime": present[newest_path] if newest_path else None}
    result = {"daemon_reload": reload_needed, "newest": newest, "active_since": active_since,
              "active_state": active, "load_state": load,
              # enabled, disabled, static, masked, ...: systemctl enable is needed unless it says enabled
              "enabled": props.get("UnitFileState", "") == "enabled"}
    if load == "not-found":
        result.update(action="absent", reason="not known to systemd (LoadState=not-found)")
    elif active not in RUNNING_STATES:
        result.update(action="start", reason="not running (ActiveState=%s)" % active)
    elif reload_needed:
        result.update(action="restart", reason="its unit changed on disk since systemd loaded it (NeedDaemonReload=yes)")
    elif active_since is None:
        result.update(action="restart", reason="running, but systemd gives no ActiveEnterTimestamp to compare with")
    elif newest_path and present[newest_path] > active_since:
        result.update(action="restart", reason="%s changed %.1f s after the service started" % (
            newest_path, present[newest_path] - active_since))
    else:
        result.update(action="none", reason="running since after its newest file changed")
    return result


def monotonic_to_epoch(monotonic_us, now_epoch, now_monotonic):
    """systemd's *TimestampMonotonic (µs of CLOCK_MONOTONIC) as epoch seconds, without parsing a locale date."""
    if not monotonic_us:
        return None
    return now_epoch - (now_monotonic - monotonic_us / 1e6)


class UnitState(object):
    """Reads what a unit reads and when it started; ``stat`` is ``os.lstat`` (a switched symlink counts)."""

    def __init__(self, systemd, stat=os.lstat, clock=None):
        self.systemd = systemd
        self.stat = stat
        self.clock = clock or (lambda: (time.time(), time.monotonic()))

    def mtime(self, path):
        try:
            return self.stat(path).st_mtime
        except OSError:
            return None

    def inspect(self, unit, extra_paths=()):
        props = self.systemd.show(unit, UNIT_STATE_PROPERTIES)
        files = unit_files(props) if props.get("LoadState") != "not-found" else []
        files.extend(p for p in extra_paths if p not in files)
        mtimes = {p: self.mtime(p) for p in files}
        now_epoch, now_mono = self.clock()
        try:
            mono = int(props.get("ActiveEnterTimestampMonotonic") or 0)
        except ValueError:
            mono = 0
        active_since = monotonic_to_epoch(mono, now_epoch, now_mono) if props.get("ActiveState") in RUNNING_STATES else None
        decision = decide_restart(props, mtimes, active_since)
        decision["unit"] = unit
        decision["files"] = [{"path": p, "mtime": mtimes[p]} for p in files]
        decision["main_pid"] = int(props.get("MainPID") or 0)
        return decision


# States of a unit whose process is gone and that systemd will not start again by itself.
UNIT_GONE_STATES = ("failed", "inactive")
UNIT_WATCH_PROPERTIES = ("LoadState", "ActiveState", "SubState", "Result", "NRestarts")
# Automatic restarts during one wait that mean a crash loop: one can be a kill from outside (systemd brings the service
# back and the wait goes on); a second is the same death again.
UNIT_WATCH_RESTARTS = 2


def unit_watch(systemd, unit, journal_lines=15, restarts_allowed=UNIT_WATCH_RESTARTS - 1):
    """A ``watch`` for module_utils._llm_endpoint.wait_ready: the serving unit's state, read through ``systemd`` (a
    SystemdHost) on the host the check runs on. It answers a message once the unit has failed or stopped (systemd will
    not start it again), or systemd restarted it more than ``restarts_allowed`` times since the first look (a crash
    loop): its process keeps dying before it answers, so the wait ends now, with the unit's last log lines, instead of at
    ready_timeout. Returns None when the unit is not known on this host (LoadState not-found): it is served elsewhere."""
    first = systemd.show(unit, UNIT_WATCH_PROPERTIES)
    if first.get("LoadState") == "not-found":
        return None

    def restarts(props):
        try:
            return int(props.get("NRestarts") or 0)
        except ValueError:
            return 0

    base = restarts(first)

    def watch():
        try:
            props = systemd.show(unit, UNIT_WATCH_PROPERTIES)
        except SystemdError:
            return None  # systemctl did not answer this time: the HTTP wait goes on, with its own deadline
        state, sub, count = props.get("ActiveState"), props.get("SubState"), restarts(props)
        if state not in UNIT_GONE_STATES and count - base <= restarts_allowed:
            return None
        log = systemd.journal_tail(unit, journal_lines)
        return ("unit %s is %s (%s, result %s; systemd restarted it %d time(s) while this check waited): its process exited before "
                "it answered. %s" % (unit, state, sub, props.get("Result"), count - base,
                                     ("Its last log lines:\n" + log) if log else "See `journalctl -u %s`." % unit))
    return watch
