# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils._managed_files import (
    ManagedFilesError, converge, parse_mode)


def run(cmd):
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def mode_of(path):
    return "%04o" % stat.S_IMODE(os.lstat(path).st_mode)


def test_creates_directories_with_parents_and_files_then_nothing_on_a_second_run(tmp_path):
    dirs = [dict(path=str(tmp_path / "a" / "b"), mode="0750")]
    files = [dict(dest=str(tmp_path / "a" / "b" / "x.conf"), content="one\n", mode="0640"),
             dict(dest=str(tmp_path / "y.conf"), content="two\n", mode="0644")]
    first = converge(dirs, files, run)
    assert first["changed"] is True
    assert [d["state"] for d in first["directories"]] == ["created"]
    assert [f["state"] for f in first["files"]] == ["created", "created"]
    assert mode_of(tmp_path / "a") == "0750" and mode_of(tmp_path / "a" / "b") == "0750"
    assert (tmp_path / "a" / "b" / "x.conf").read_text() == "one\n"
    assert mode_of(tmp_path / "a" / "b" / "x.conf") == "0640"
    assert len(first["diff"]) == 3
    mtime = os.stat(tmp_path / "y.conf").st_mtime_ns
    second = converge(dirs, files, run)
    assert second["changed"] is False and second["changed_paths"] == [] and second["diff"] == []
    assert os.stat(tmp_path / "y.conf").st_mtime_ns == mtime
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".staged")]


def test_content_change_and_attribute_change_are_told_apart(tmp_path):
    dest = tmp_path / "f"
    dest.write_text("old\n")
    os.chmod(dest, 0o600)
    res = converge([], [dict(dest=str(dest), content="old\n", mode="0644")], run)
    assert res["files"][0]["state"] == "attributes"
    assert mode_of(dest) == "0644" and dest.read_text() == "old\n"
    assert res["diff"][0]["before"] == "mode: 0600\n" and res["diff"][0]["after"] == "mode: 0644\n"
    res = converge([], [dict(dest=str(dest), content="new\n", mode="0644")], run)
    assert res["files"][0]["state"] == "content"
    assert res["diff"][0]["before"] == "old\n" and res["diff"][0]["after"] == "new\n"
    assert dest.read_text() == "new\n"


def test_check_mode_reports_and_writes_nothing(tmp_path):
    dirs = [dict(path=str(tmp_path / "d"), mode="0755")]
    files = [dict(dest=str(tmp_path / "d" / "f"), content="x", mode="0644"),
             dict(dest=str(tmp_path / "g"), content="y", mode="0644", validate="false %s")]  # no check runs in check mode
    res = converge(dirs, files, run, check_mode=True)
    assert res["changed"] is True
    assert res["changed_paths"] == [str(tmp_path / "d"), str(tmp_path / "d" / "f"), str(tmp_path / "g")]
    assert os.listdir(tmp_path) == []


def test_files_go_in_one_by_one_and_a_failed_check_stops_at_that_file(tmp_path):
    first, bad, later = tmp_path / "first.conf", tmp_path / "bad.conf", tmp_path / "later.conf"
    for path in (first, bad, later):
        path.write_text("live\n")
    files = [dict(dest=str(first), content="new first\n", mode="0644", validate="grep -q first %s"),
             dict(dest=str(bad), content="broken\n", mode="0644", validate="grep -q valid %s"),
             dict(dest=str(later), content="new later\n", mode="0644")]
    with pytest.raises(ManagedFilesError) as err:
        converge([], files, run)
    message = str(err.value)
    assert str(bad) in message and "grep -q valid" in message and "left as it was" in message
    assert "already in place before it: %s" % first in message
    assert first.read_text() == "new first\n" and bad.read_text() == "live\n" and later.read_text() == "live\n"
    assert sorted(os.listdir(tmp_path)) == ["bad.conf", "first.conf", "later.conf"]


def test_a_later_check_sees_the_earlier_file_in_place(tmp_path):
    service, timer = tmp_path / "probe.service", tmp_path / "probe.timer"
    res = converge([], [dict(dest=str(service), content="[Service]\n", mode="0644"),
                        dict(dest=str(timer), content="[Timer]\n", mode="0644", validate="test -s %s -a -s " + str(service))],
                   run)
    assert [f["state"] for f in res["files"]] == ["created", "created"]


def test_the_check_sees_the_staged_content(tmp_path):
    dest = tmp_path / "unit.service"
    res = converge([], [dict(dest=str(dest), content="[Unit]\n", mode="0644", validate="grep -qx '\\[Unit\\]' %s")], run)
    assert res["files"][0]["state"] == "created" and dest.read_text() == "[Unit]\n"


@pytest.mark.parametrize("entry, words", [
    (dict(dest="relative/f", content="x", mode="0644"), ["relative/f", "absolute"]),
    (dict(dest="/tmp/x", content="x", mode="rw-r--r--"), ["rw-r--r--", "octal"]),
    (dict(dest="/tmp/x", content="x", mode="0644", owner="no-such-user-here"), ["no-such-user-here", "create"]),
    (dict(dest="/tmp/x", content="x", mode="0644", group="no-such-group-here"), ["no-such-group-here", "group"]),
    (dict(dest="/tmp/x", content="x", mode="0644", validate="true"), ["%s", "validate"]),
    (dict(dest="/tmp/x", mode="0644"), ["/tmp/x", "no content"]),
])
def test_bad_input_names_the_value_and_touches_nothing(tmp_path, entry, words):
    with pytest.raises(ManagedFilesError) as err:
        converge([dict(path=str(tmp_path / "never"), mode="0755")], [entry], run)
    for word in words:
        assert word in str(err.value)
    assert not (tmp_path / "never").exists()


def test_a_file_named_twice_is_refused(tmp_path):
    files = [dict(dest=str(tmp_path / "f"), content="a", mode="0644"), dict(dest=str(tmp_path / "f"), content="b", mode="0644")]
    with pytest.raises(ManagedFilesError, match="named twice"):
        converge([], files, run)


def test_a_missing_directory_and_a_wrong_type_are_refused(tmp_path):
    with pytest.raises(ManagedFilesError, match="does not exist"):
        converge([], [dict(dest=str(tmp_path / "nodir" / "f"), content="a", mode="0644")], run)
    # in check mode the task that creates it did not run either: reported as to be created, nothing written
    checked = converge([], [dict(dest=str(tmp_path / "nodir" / "f"), content="a", mode="0644")], run, check_mode=True,
                       links=[dict(path=str(tmp_path / "nodir" / "l"), target="f")])
    assert [f["state"] for f in checked["files"]] == ["created"] and [ln["state"] for ln in checked["links"]] == ["created"]
    assert not (tmp_path / "nodir").exists()
    (tmp_path / "isdir").mkdir()
    with pytest.raises(ManagedFilesError, match="not a regular file"):
        converge([], [dict(dest=str(tmp_path / "isdir"), content="a", mode="0644")], run)
    (tmp_path / "isfile").write_text("")
    with pytest.raises(ManagedFilesError, match="not a directory"):
        converge([dict(path=str(tmp_path / "isfile"), mode="0755")], [], run)


def test_parse_mode():
    assert parse_mode("0644", "x") == 0o644 and parse_mode("755", "x") == 0o755 and parse_mode(0o600, "x") == 0o600
    with pytest.raises(ManagedFilesError):
        parse_mode("99999", "x")


def test_absent_removes_files_and_links_and_refuses_directories(tmp_path):
    gone, link = tmp_path / "gone.sources", tmp_path / "link"
    gone.write_text("x")
    os.symlink("/nonexistent", str(link))
    res = converge([], [], run, check_mode=True, absent=[str(gone), str(link), str(tmp_path / "never")])
    assert res["changed"] is True and gone.exists() and os.path.lexists(link)
    res = converge([], [], run, absent=[str(gone), str(link), str(tmp_path / "never")])
    assert [a["state"] for a in res["absent"]] == ["removed", "removed", "ok"]
    assert not gone.exists() and not os.path.lexists(link)
    assert converge([], [], run, absent=[str(gone)])["changed"] is False
    (tmp_path / "adir").mkdir()
    with pytest.raises(ManagedFilesError, match="is a directory"):
        converge([], [], run, absent=[str(tmp_path / "adir")])
    with pytest.raises(ManagedFilesError, match="one list only"):
        converge([], [dict(dest=str(tmp_path / "f"), content="a", mode="0644")], run, absent=[str(tmp_path / "f")])


def test_owner_and_group_by_name(tmp_path):
    dest = tmp_path / "owned"
    res = converge([dict(path=str(tmp_path / "d"), owner="nobody", group="nogroup", mode="0750")],
                   [dict(dest=str(dest), content="x", owner="nobody", group="nogroup", mode="0640")], run)
    st = os.lstat(dest)
    assert (st.st_uid, st.st_gid) == (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid)
    assert os.lstat(tmp_path / "d").st_uid == pwd.getpwnam("nobody").pw_uid
    os.chown(dest, 0, 0)
    res = converge([], [dict(dest=str(dest), content="x", owner="nobody", group="nogroup", mode="0640")], run)
    assert res["files"][0]["state"] == "attributes"


def test_links_created_switched_by_rename_and_then_left_alone(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    current, cli = tmp_path / "current", tmp_path / "bin" / "tool"
    links = [dict(path=str(current), target=str(tmp_path / "v1")), dict(path=str(cli), target="../current/bin/tool")]
    dirs = [dict(path=str(tmp_path / "bin"), mode="0755")]
    checked = converge(dirs, [], run, check_mode=True, links=links)
    assert checked["changed"] is True and not os.path.lexists(current)
    assert [d["after"] for d in checked["diff"] if d["before_header"] == str(current)] == ["-> %s\n" % (tmp_path / "v1")]
    first = converge(dirs, [], run, links=links)
    assert [(r["state"], r["target"]) for r in first["links"]] == [("created", str(tmp_path / "v1")), ("created", "../current/bin/tool")]
    assert os.readlink(current) == str(tmp_path / "v1") and os.readlink(cli) == "../current/bin/tool"
    again = converge(dirs, [], run, links=links)
    assert again["changed"] is False and again["changed_paths"] == []
    # a new target: the old link's inode is replaced by a rename (a reader holding the path never finds it missing)
    inode = os.lstat(current).st_ino
    switched = converge([], [], run, links=[dict(path=str(current), target=str(tmp_path / "v2"))])
    assert switched["links"] == [dict(path=str(current), target=str(tmp_path / "v2"), state="changed", before=str(tmp_path / "v1"))]
    assert os.readlink(current) == str(tmp_path / "v2") and os.lstat(current).st_ino != inode
    assert switched["changed_paths"] == [str(current)]
    assert sorted(os.listdir(tmp_path)) == ["bin", "current", "v1", "v2"]        # nothing staged is left beside it
    # a file there is replaced, as ansible.builtin.file state=link force=true does
    (tmp_path / "afile").write_text("x")
    assert converge([], [], run, links=[dict(path=str(tmp_path / "afile"), target="v1")])["links"][0]["state"] == "changed"
    assert os.readlink(tmp_path / "afile") == "v1"


def test_links_refuse_a_directory_and_bad_input_before_anything_changes(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(ManagedFilesError, match="adir is a directory, not a symlink; move it away .nothing was changed"):
        converge([], [dict(dest=str(tmp_path / "first"), content="a", mode="0644")], run,
                 links=[dict(path=str(tmp_path / "adir"), target="x")])
    assert (tmp_path / "adir").is_dir() and not (tmp_path / "first").exists()
    for links, words in (([dict(path="rel/link", target="x")], "must be the absolute path of a symlink"),
                         ([dict(path=str(tmp_path / "l"), target="")], "has no target"),
                         ([dict(path=str(tmp_path / "l"), target="a"), dict(path=str(tmp_path / "l"), target="b")], "named twice"),
                         ([dict(path=str(tmp_path / "nodir" / "l"), target="a")], "its directory")):
        with pytest.raises(ManagedFilesError, match=words):
            converge([], [], run, links=links)
        assert not os.path.lexists(tmp_path / "l")
    with pytest.raises(ManagedFilesError, match="named twice"):
        converge([], [dict(dest=str(tmp_path / "f"), content="a", mode="0644")], run,
                 links=[dict(path=str(tmp_path / "f"), target="a")])
    assert not (tmp_path / "f").exists()
    with pytest.raises(ManagedFilesError, match="also in links"):
        converge([], [], run, links=[dict(path=str(tmp_path / "l"), target="a")], absent=[str(tmp_path / "l")])
