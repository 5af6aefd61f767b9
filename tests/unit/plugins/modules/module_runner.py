# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module's main() as Ansible would (patch_module_args) and read back its JSON result, with its exit code in rc.
The module tests here share it (pytest puts this directory on sys.path)."""
from __future__ import annotations

import json

import pytest

from ansible.module_utils.testing import patch_module_args


def run_main(main, capsys, args, check_mode=False, diff=False):
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    if diff:
        args["_ansible_diff"] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = info.value.code
    return result
