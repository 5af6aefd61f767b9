# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's packed copies (one tar of a directory, copied to every host in one transfer): made once per run
under a lock, refreshed when used, and the unused ones of the same family pruned by age.

Pure logic for the controller_pack module; the tar itself is made by a runner the caller passes (GNU tar)."""
from __future__ import annotations

import fcntl
import fnmatch
import os
import tempfile
import time

LOCK_SUFFIX = ".lock"
PART_INFIX = ".part-"


class PackError(Exception):
    """A pack could not be made; the message names the directory and the cause."""


def lock_path(dest):
    return dest + LOCK_SUFFIX


def make_pack(src, dest, run_tar, tries=3, pause=1.0):
    """Make ``dest`` (a tar of the directory ``src``) unless it is there, under an exclusive lock beside it, so that
    hosts reaching this together pack once and the others wait and find it. The tar is written under a part name in
    the same directory and renamed over ``dest`` only when tar succeeded; a failed try removes its part.

    ``run_tar(argv)`` runs tar and returns (rc, stderr). Returns True when ``dest`` was made, False when it was there
    (its modification time is then refreshed: the age the pruning reads is the time of the last use)."""
    if not os.path.isdir(src):
        raise PackError("%s is not a directory: nothing to pack. Fix: build the artefacts (tools/artefacts.py all) or "
                        "point the role's source variable at the directory" % src)
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with open(lock_path(dest), "a", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.path.isfile(dest):
                os.utime(dest)
                return False
            error = ""
            for attempt in range(tries):
                handle, part = tempfile.mkstemp(dir=directory, prefix=os.path.basename(dest) + PART_INFIX)
                os.close(handle)
                rc, error = run_tar(["tar", "--create", "--file", part, "--directory", src, "."])
                if rc == 0:
                    os.replace(part, dest)
                    return True
                os.unlink(part)
                if attempt + 1 < tries:
                    time.sleep(pause)
            raise PackError("packing %s into %s failed %d times: %s" % (src, dest, tries, error.strip() or "tar failed"))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _try_lock(path):
    """An open file holding an exclusive lock on ``path``, or None when another process holds it (in use)."""
    handle = open(path, "a", encoding="utf-8")  # pylint: disable=consider-using-with
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def _old(path, max_age, now):
    try:
        return now - os.lstat(path).st_mtime > max_age
    except FileNotFoundError:
        return False


def prune(directory, pattern, keep, max_age, now=None, dry_run=False):
    """Remove from ``directory`` what the family ``pattern`` (a glob of pack names) left and nothing uses, and return
    the removed paths, sorted (with ``dry_run``, what would be removed; nothing is).

    - A pack other than ``keep`` not used for ``max_age`` seconds (its modification time: each use refreshes it),
      with its lock file. Each is re-checked under its own lock, taken without waiting: a pack that a run is making
      or refreshing right now is skipped, and one refreshed since the listing is kept.
    - A part file of the family older than that (an interrupted pack: a pack being written has a fresh time).
    - A lock file of the family older than that whose pack is gone, when no process holds it."""
    now = time.time() if now is None else now
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    keep = os.path.basename(keep)
    removed = []
    for name in names:
        path = os.path.join(directory, name)
        if name in (keep, lock_path(keep)) or not _old(path, max_age, now):
            continue
        if fnmatch.fnmatchcase(name, pattern):
            if dry_run:  # no lock taken (it could create the lock file): what a run would remove now
                removed += [path, lock_path(path)] if lock_path(name) in names else [path]
                continue
            lock = _try_lock(lock_path(path))
            if lock is None:
                continue
            with lock:
                if _old(path, max_age, now):
                    remove([path, lock_path(path)])
                    removed += [path, lock_path(path)] if lock_path(name) in names else [path]
        elif name.endswith(LOCK_SUFFIX) and fnmatch.fnmatchcase(name[:-len(LOCK_SUFFIX)], pattern):
            if name[:-len(LOCK_SUFFIX)] in names:
                continue  # removed with its pack, or kept with it
            if dry_run:
                removed.append(path)
                continue
            lock = _try_lock(path)
            if lock is None:
                continue
            with lock:
                remove([path])
                removed.append(path)
        elif (PART_INFIX in name and fnmatch.fnmatchcase(name.split(PART_INFIX, 1)[0], pattern)
              or fnmatch.fnmatchcase(name, pattern + ".??????")):  # and mktemp's NAME.XXXXXX of the earlier shell tasks
            if not dry_run:
                remove([path])
            removed.append(path)
    return sorted(removed)


def remove(paths):
    """Remove each path (a file); one already gone is not an error. Returns those removed."""
    removed = []
    for path in paths:
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
