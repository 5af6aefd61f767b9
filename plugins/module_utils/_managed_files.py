# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Directories and small text files of a role, converged in one module call (one round trip).

Private (leading underscore): the API may change between releases.

``converge`` compares each wanted directory and file with the host (type, owner, group, mode, sha256 of the content)
and changes only what differs. Each changed file, in list order, is written to a temporary file beside its destination,
given its owner, group and mode, checked by its ``validate`` command, and only then renamed over the live one, before
the next file is staged: exactly what a sequence of template tasks does, so a later file's check sees the earlier files
in place. A failed check removes its staged file and leaves that live file (and every later one) as it was. A file
whose content is unchanged is never rewritten (its mtime stays: the engine roles decide restarts from mtimes, see
``_systemd``). Symlinks come after the files: one whose target differs is made beside the path and renamed over it.
``run`` is the ``AnsibleModule.run_command`` signature, so tests pass a fake.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import stat
import tempfile

from ansible_collections.onprem.llm_serving.plugins.module_utils._bundle import sha256_file

DIFF_MAX_BYTES = 64 * 1024


class ManagedFilesError(Exception):
    """Bad input or a failed check; the message names the path, the value and the fix."""


def parse_mode(value, where):
    """``"0644"`` / ``"644"`` / ``0o644`` -> 0o644. Symbolic modes are refused: the roles state octal modes."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(c not in "01234567" for c in text):
            raise ManagedFilesError(
                "%s: mode %r is not an octal mode; quote it as a string such as \"0644\"" % (where, value))
        mode = int(text, 8)
    if mode < 0 or mode > 0o7777:
        raise ManagedFilesError("%s: mode %r is out of range (0000-7777)" % (where, value))
    return mode


def resolve_ids(owner, group, where):
    """Owner and group names (or numeric ids) -> (uid, gid), with an error that names the missing one."""
    try:
        uid = int(owner) if str(owner).isdigit() else pwd.getpwnam(str(owner)).pw_uid
    except KeyError:
        raise ManagedFilesError(
            "%s: owner %r does not exist on this host; create the account first (the common role creates the "
            "service account) or name an existing owner" % (where, owner))
    try:
        gid = int(group) if str(group).isdigit() else grp.getgrnam(str(group)).gr_gid
    except KeyError:
        raise ManagedFilesError(
            "%s: group %r does not exist on this host; create it first or name an existing group" % (where, group))
    return uid, gid


def _attr_diff_entry(path, attrs):
    """A diff entry for attribute changes ({name: (before, after)})."""
    return dict(before_header=path, after_header=path,
                before="".join("%s: %s\n" % (k, v[0]) for k, v in sorted(attrs.items())),
                after="".join("%s: %s\n" % (k, v[1]) for k, v in sorted(attrs.items())))


def _text_for_diff(data):
    if len(data) > DIFF_MAX_BYTES:
        return "(%d bytes, not shown)\n" % len(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "(binary, %d bytes, not shown)\n" % len(data)


def _attr_diff(before_st, uid, gid, mode):
    """The attributes that differ, as {name: (before, after)}."""
    out = {}
    if before_st.st_uid != uid:
        out["owner"] = (before_st.st_uid, uid)
    if before_st.st_gid != gid:
        out["group"] = (before_st.st_gid, gid)
    if stat.S_IMODE(before_st.st_mode) != mode:
        out["mode"] = ("%04o" % stat.S_IMODE(before_st.st_mode), "%04o" % mode)
    return out


def _set_attrs(path, uid, gid, mode):
    os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def normalise(directories, files):
    """Check the input before anything is touched; returns the lists with ids and modes resolved."""
    dirs, seen = [], set()
    for entry in directories or []:
        path = entry.get("path")
        if not path or not os.path.isabs(path):
            raise ManagedFilesError("directories: path %r must be an absolute path" % (path,))
        uid, gid = resolve_ids(entry.get("owner", "root"), entry.get("group", "root"), path)
        dirs.append(dict(path=os.path.normpath(path), uid=uid, gid=gid, mode=parse_mode(entry.get("mode"), path)))
    out = []
    for entry in files or []:
        dest = entry.get("dest")
        if not dest or not os.path.isabs(dest) or dest.endswith("/"):
            raise ManagedFilesError("files: dest %r must be the absolute path of a file" % (dest,))
        dest = os.path.normpath(dest)
        if dest in seen:
            raise ManagedFilesError("files: %s is named twice; each file may be written once per call" % dest)
        seen.add(dest)
        content = entry.get("content")
        if content is None:
            raise ManagedFilesError("files: %s has no content" % dest)
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
        uid, gid = resolve_ids(entry.get("owner", "root"), entry.get("group", "root"), dest)
        validate = entry.get("validate")
        if validate and "%s" not in validate:
            raise ManagedFilesError("files: %s: validate %r must contain %%s (the staged file's path)" % (dest, validate))
        out.append(dict(dest=dest, data=data, sha256=hashlib.sha256(data).hexdigest(), uid=uid, gid=gid, mode=parse_mode(entry.get("mode"), dest),
                        validate=validate or None))
    return dirs, out


def _converge_directory(entry, check_mode, diffs):
    """mkdir -p with the entry's owner, group and mode on every directory it creates (as ansible's file module)."""
    path = entry["path"]
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        before = None
    if before is not None and not stat.S_ISDIR(before.st_mode):
        raise ManagedFilesError("%s exists and is not a directory; remove it or choose another path" % path)
    if before is None:
        missing, cur = [], path
        while not os.path.lexists(cur):
            missing.append(cur)
            cur = os.path.dirname(cur)
        diffs.append(dict(before_header=path, after_header=path, before="absent\n",
                          after="directory %s %d:%d\n" % ("%04o" % entry["mode"], entry["uid"], entry["gid"])))
        if not check_mode:
            for created in reversed(missing):
                os.mkdir(created, 0o700)
                _set_attrs(created, entry["uid"], entry["gid"], entry["mode"])
        return dict(path=path, state="created")
    attrs = _attr_diff(before, entry["uid"], entry["gid"], entry["mode"])
    if not attrs:
        return dict(path=path, state="ok")
    diffs.append(_attr_diff_entry(path, attrs))
    if not check_mode:
        _set_attrs(path, entry["uid"], entry["gid"], entry["mode"])
    return dict(path=path, state="attributes", changed_attributes=sorted(attrs))


def _file_state(entry):
    """(state, before bytes or None, lstat or None) of a wanted file against the host."""
    dest = entry["dest"]
    try:
        before = os.lstat(dest)
    except FileNotFoundError:
        return "created", None, None
    if not stat.S_ISREG(before.st_mode):
        raise ManagedFilesError("%s exists and is not a regular file (a directory or a link); remove it or choose "
                                "another dest" % dest)
    if before.st_size == len(entry["data"]) and sha256_file(dest) == entry["sha256"]:
        return ("attributes" if _attr_diff(before, entry["uid"], entry["gid"], entry["mode"]) else "ok"), None, before
    with open(dest, "rb") as handle:
        return "content", handle.read(), before


def _stage(entry, run):
    """Write entry's data beside its dest with its attributes, run its check; returns the staged path."""
    dest = entry["dest"]
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(dest), suffix=".staged", dir=os.path.dirname(dest))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(entry["data"])
            handle.flush()
            os.fsync(handle.fileno())
        _set_attrs(tmp, entry["uid"], entry["gid"], entry["mode"])
        if entry["validate"]:
            rc, out, err = run(entry["validate"] % tmp)
            if rc != 0:
                raise ManagedFilesError(
                    "%s: the new content failed its check (%s), rc=%s: %s; the live file is left as it was"
                    % (dest, entry["validate"], rc, (err or out or "").strip()[-2000:]))
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return tmp


def _remove(path, check_mode, diffs):
    """A file or symlink that must not exist; a directory is refused (removing trees is not this module's job)."""
    if not os.path.isabs(path):
        raise ManagedFilesError("absent: path %r must be an absolute path" % (path,))
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        return dict(path=path, state="ok")
    if stat.S_ISDIR(before.st_mode):
        raise ManagedFilesError("absent: %s is a directory; managed_files removes files and links only" % path)
    diffs.append(dict(before_header=path, after_header=path, before="present\n", after="absent\n"))
    if not check_mode:
        os.unlink(path)
    return dict(path=path, state="removed")


def normalise_links(links, names_taken):
    """Each link's absolute path and its target (kept as given: relative targets resolve from the link's directory)."""
    out = []
    for entry in links or []:
        path, target = entry.get("path"), entry.get("target")
        if not path or not os.path.isabs(path) or path.endswith("/"):
            raise ManagedFilesError("links: path %r must be the absolute path of a symlink" % (path,))
        path = os.path.normpath(path)
        if not target:
            raise ManagedFilesError("links: %s has no target; set links[].target (the path the symlink points to)" % path)
        if path in names_taken:
            raise ManagedFilesError("links: %s is named twice (or also in files); name each path once per call" % path)
        names_taken.add(path)
        out.append(dict(path=path, target=str(target)))
    return out


def _converge_link(entry, check_mode, diffs):
    """The symlink points at its target, or a new one is made beside it and renamed over it (readers never see the path
    missing). A file or a symlink elsewhere is replaced (as ansible.builtin.file state=link force=true); converge refused a
    directory there before anything changed."""
    path, target = entry["path"], entry["target"]
    try:
        before = os.lstat(path)
    except FileNotFoundError:
        before = None
    was = os.readlink(path) if before is not None and stat.S_ISLNK(before.st_mode) else None
    if was == target:
        return dict(path=path, target=target, state="ok")
    diffs.append(dict(before_header=path, after_header=path,
                      before="absent\n" if before is None else ("-> %s\n" % was if was is not None else "file\n"),
                      after="-> %s\n" % target))
    if not check_mode:
        tmp = os.path.join(os.path.dirname(path), ".%s.link-%d" % (os.path.basename(path), os.getpid()))
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        try:
            os.rename(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
    return dict(path=path, target=target, state="created" if before is None else "changed", before=was)


def converge(directories, files, run, check_mode=False, absent=(), links=()):
    """Directories first, then each file in order (staged, checked, swapped in), then each symlink, then ``absent``
    removed; returns the module's result. Check mode writes nothing and runs no check (as ansible.builtin.copy)."""
    dirs, wanted = normalise(directories, files)
    wanted_links = normalise_links(links, {e["dest"] for e in wanted})
    listed = dict([(e["dest"], "files") for e in wanted] + [(e["path"], "links") for e in wanted_links])
    for path in absent or ():
        if os.path.normpath(str(path)) in listed:
            raise ManagedFilesError("absent: %s is also in %s; name it in one list only" % (path, listed[os.path.normpath(str(path))]))
    for where, path in [("", e["dest"]) for e in wanted] + [("links: ", e["path"]) for e in wanted_links]:
        parent = os.path.dirname(path)
        # a listed directory, or one created on the way to a listed directory; in check mode an earlier task (not run)
        # may have been the one to create it: the file is reported as created
        if not check_mode and not os.path.isdir(parent) and not any(d["path"] == parent or d["path"].startswith(parent + "/")
                                                                    for d in dirs):
            raise ManagedFilesError("%s%s: its directory %s does not exist; list it under directories or create it first"
                                    % (where, path, parent))
    for entry in wanted_links:
        if os.path.isdir(entry["path"]) and not os.path.islink(entry["path"]):
            raise ManagedFilesError("links: %s is a directory, not a symlink; move it away (nothing was changed)"
                                    % entry["path"])
    diffs, dir_results, file_results = [], [], []
    for entry in dirs:
        dir_results.append(_converge_directory(entry, check_mode, diffs))
    for entry in wanted:
        parent = os.path.dirname(entry["dest"])
        state, before_data, before_st = ("created", None, None) if not os.path.isdir(parent) else _file_state(entry)
        if state in ("content", "created"):
            diffs.append(dict(before_header=entry["dest"], after_header=entry["dest"],
                              before="" if before_data is None else _text_for_diff(before_data),
                              after=_text_for_diff(entry["data"])))
            if not check_mode:
                # staged and checked, then renamed over the live file, before the next file is staged: a later file's
                # check sees this one in place (a timer's check needs its service, a configuration's its rules file)
                try:
                    tmp = _stage(entry, run)
                except ManagedFilesError as exc:
                    done = [r["dest"] for r in file_results if r["state"] != "ok"]
                    before_it = (" (already in place before it: %s)" % ", ".join(done)) if done else ""
                    raise ManagedFilesError("%s%s" % (exc, before_it))
                os.rename(tmp, entry["dest"])
                dir_fd = os.open(parent, os.O_RDONLY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        elif state == "attributes":
            attrs = _attr_diff(before_st, entry["uid"], entry["gid"], entry["mode"])
            diffs.append(_attr_diff_entry(entry["dest"], attrs))
            if not check_mode:
                _set_attrs(entry["dest"], entry["uid"], entry["gid"], entry["mode"])
        file_results.append(dict(dest=entry["dest"], state=state, sha256=entry["sha256"]))
    link_results = [_converge_link(entry, check_mode, diffs) for entry in wanted_links]
    absent_results = [_remove(os.path.normpath(str(path)), check_mode, diffs) for path in absent or ()]
    changed_files = [r["dest"] for r in file_results if r["state"] != "ok"]
    changed_dirs = [r["path"] for r in dir_results if r["state"] != "ok"]
    changed_links = [r["path"] for r in link_results if r["state"] != "ok"]
    removed = [r["path"] for r in absent_results if r["state"] != "ok"]
    return dict(changed=bool(changed_files or changed_dirs or changed_links or removed), directories=dir_results,
                files=file_results, links=link_results, absent=absent_results,
                changed_paths=changed_dirs + changed_files + changed_links + removed, diff=diffs)
