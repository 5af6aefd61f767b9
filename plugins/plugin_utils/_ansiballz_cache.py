# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep Ansible's built module payloads (AnsiballZ) from one run to the next, on the controller (the preload callback).

Ansible builds each module's payload (the module and every module_utils it imports, found by walking their imports,
zipped) once per run, in the run's own temporary directory (``<local_tmp>/ansible-local-*/ansiballz_cache``), which is
removed when the run ends: every run builds again the same payloads from the same files. Here the payloads a run built
are kept in a store keyed by a fingerprint of every file a payload can be built from, and a later run with the same
fingerprint starts with them in its directory, so Ansible finds them built (its own lookup: a file of the module's
name there).

The fingerprint covers ansible-core's version and its own modules and module_utils, and the modules and module_utils of
every collection the run can load (path, size, mtime and ctime of each file, so an edit, a copy, a ``touch`` or a
``chmod`` of any of them gives another fingerprint, and another store). Only the payloads of modules named by a
collection or by ansible-core are kept (``ansible_collections.*``, ``ansible.modules.*``): a module from a role's
``library/`` (``ansible.legacy.*``) can change without the fingerprint seeing it, so it is built every run, as before.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time

KEPT_PREFIXES = ("ansible_collections.", "ansible.modules.")
SOURCE_DIRS = (("plugins", "modules"), ("plugins", "module_utils"))


def _stat_lines(top):
    """``relpath size mtime_ns ctime_ns`` of every file under ``top`` (following links), sorted; nothing when missing."""
    lines = []
    for base, dirs, files in os.walk(top, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            path = os.path.join(base, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            lines.append("%s %d %d %d" % (os.path.relpath(path, top), st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return sorted(lines)


def collection_source_dirs(collection_paths):
    """The modules and module_utils directories of every collection under the given collection paths (each holding an
    ``ansible_collections`` directory, or being one), real paths, sorted and without duplicates."""
    found = set()
    for path in collection_paths:
        root = path if os.path.basename(path.rstrip(os.sep)) == "ansible_collections" else os.path.join(path, "ansible_collections")
        if not os.path.isdir(root):
            continue
        for namespace in sorted(os.listdir(root)):
            ns_dir = os.path.join(root, namespace)
            if not os.path.isdir(ns_dir):
                continue
            for name in sorted(os.listdir(ns_dir)):
                for parts in SOURCE_DIRS:
                    src = os.path.join(ns_dir, name, *parts)
                    if os.path.isdir(src):
                        found.add(os.path.realpath(src))
    return sorted(found)


def fingerprint(ansible_version, ansible_dir, source_dirs, extra=""):
    """A hex digest of everything a payload is built from: ansible-core's version and its modules and module_utils
    (``ansible_dir``: the ``ansible`` package directory), and the collections' (``source_dirs``, from
    collection_source_dirs)."""
    digest = hashlib.sha256()
    digest.update(("ansible-core %s\n%s\n" % (ansible_version, extra)).encode())
    sources = [os.path.join(ansible_dir, "modules"), os.path.join(ansible_dir, "module_utils")]
    for top in sources + list(source_dirs):
        digest.update(("== %s\n" % os.path.realpath(top)).encode())
        digest.update("\n".join(_stat_lines(top)).encode())
    return digest.hexdigest()


def kept(name):
    """Whether a payload file of the run's cache is one to keep: a built payload (not a lock or a part being written)
    of a module named by a collection or by ansible-core."""
    return name.startswith(KEPT_PREFIXES) and not name.endswith((".lock", "-part"))


def restore(store, run_cache):
    """Put the stored payloads into the run's cache directory (made when missing): hard links where the filesystem
    allows, copies elsewhere. Returns how many."""
    if not os.path.isdir(store):
        return 0
    os.makedirs(run_cache, exist_ok=True)
    count = 0
    for name in sorted(os.listdir(store)):
        if not kept(name):
            continue
        src, dest = os.path.join(store, name), os.path.join(run_cache, name)
        if os.path.exists(dest):
            continue
        try:
            os.link(src, dest)
        except OSError:
            shutil.copy2(src, dest)
        count += 1
    os.utime(store)  # the store was used now (prune keeps the most recently used)
    return count


def save(run_cache, store):
    """Keep the payloads the run built that the store does not have: each written beside it, then renamed in, so a
    concurrent run never reads half a file. Returns how many."""
    if not os.path.isdir(run_cache):
        return 0
    os.makedirs(store, mode=0o700, exist_ok=True)
    count = 0
    for name in sorted(os.listdir(run_cache)):
        dest = os.path.join(store, name)
        if not kept(name) or os.path.exists(dest):
            continue
        fd, part = tempfile.mkstemp(prefix=".%s." % name, dir=store)
        os.close(fd)
        try:
            shutil.copyfile(os.path.join(run_cache, name), part)
            os.replace(part, dest)
        except OSError:
            if os.path.exists(part):
                os.unlink(part)
            raise
        count += 1
    return count


def prune(root, keep, now=None, min_age=3600):
    """Remove the stores under ``root`` beyond the ``keep`` most recently used, once unused for ``min_age`` seconds
    (a store another run is using now is never removed). Returns the removed names."""
    if not os.path.isdir(root):
        return []
    now = time.time() if now is None else now
    stores = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            stores.append((os.stat(path).st_mtime, name))
    removed = []
    for mtime, name in sorted(stores, reverse=True)[keep:]:
        if now - mtime >= min_age:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    return removed
