# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""controller_pack main() through patch_module_args: a pack made once, check mode changing nothing, bad input named."""
from __future__ import annotations

import os
import tarfile
import time

from ansible_collections.onprem.llm_serving.plugins.modules import controller_pack
from module_runner import run_main  # noqa: E402  pylint: disable=wrong-import-position


def run_module(capsys, args, check_mode=False):
    return run_main(controller_pack.main, capsys, args, check_mode)


def setup_tree(tmp_path):
    src = tmp_path / "repo"
    src.mkdir()
    (src / "Packages").write_text("Package: zstd\n")
    packs = tmp_path / "packs"
    packs.mkdir()
    old = packs / "os-repository-debian-12-old.tar"
    old.write_text("old")
    then = time.time() - 9 * 86400
    os.utime(old, (then, then))
    return src, packs, old


def test_packs_once_and_prunes_the_unused(tmp_path, capsys):
    src, packs, old = setup_tree(tmp_path)
    dest = packs / "os-repository-debian-12-new.tar"
    args = {"src": str(src), "dest": str(dest), "prune_pattern": "os-repository-*.tar", "prune_after_days": 7}
    checked = run_module(capsys, args, check_mode=True)
    assert checked["rc"] == 0 and checked["changed"] and checked["packed"] and checked["pruned"] == [str(old)]
    assert not dest.exists() and old.exists()
    first = run_module(capsys, args)
    assert first["rc"] == 0 and first["changed"] and first["packed"] and first["pruned"] == [str(old)]
    assert first["size"] == os.path.getsize(dest) and tarfile.is_tarfile(dest) and not old.exists()
    again = run_module(capsys, args)
    assert again["rc"] == 0 and not again["changed"] and not again["packed"] and again["pruned"] == []


def test_bad_input_is_named(tmp_path, capsys):
    src, packs, _old = setup_tree(tmp_path)
    dest = str(packs / "x.tar")
    result = run_module(capsys, {"src": str(src), "dest": dest, "prune_pattern": "/etc/*"})
    assert result["rc"] == 1 and "prune_pattern='/etc/*'" in result["msg"]
    result = run_module(capsys, {"src": str(src), "dest": dest, "prune_after_days": -1})
    assert result["rc"] == 1 and "prune_after_days=-1" in result["msg"] and "Fix:" in result["msg"]
    result = run_module(capsys, {"src": str(tmp_path / "missing"), "dest": dest})
    assert result["rc"] == 1 and "missing is not a directory" in result["msg"]
    assert not os.path.exists(dest)
