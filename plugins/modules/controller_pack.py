#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: controller_pack
short_description: Pack a directory into one tar on the controller, once per run, and prune the packs nothing used
version_added: 0.3.0
description:
  - Makes O(dest), a tar of the directory O(src) (its members C(./...)), so that a role copies a wheelhouse or a
    package repository to each host as one file instead of one transfer per file. Run it on the controller
    (C(delegate_to) V(localhost)).
  - Hosts that reach it together pack once. The pack is made under an exclusive lock (O(dest) with C(.lock)); the
    others wait for the lock and find it. It is written under a part name beside O(dest) and renamed over it only when
    C(tar) succeeded (three tries), so a copy never reads half a pack.
  - A pack already there is not made again; its modification time is refreshed, so that its age is the time since it
    was last used.
  - With O(prune_pattern), the packs of the same family (the glob, in the directory of O(dest)) other than O(dest)
    not used for O(prune_after_days) are removed with their lock files, and the part files an interrupted pack left.
    Each pack is re-checked under its own lock taken without waiting, so a pack another host of this run is making or
    has just used is kept. A pack removed too early is made again by the next run that needs it.
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: Reports whether the pack would be made and what would be pruned, and changes nothing.
  diff_mode:
    support: none
    description: A tar has no useful text diff; RV(packed) and RV(pruned) say what changed.
  idempotent:
    support: full
    description: A second run finds the pack and changes nothing (only the pack's modification time is refreshed).
  platform:
    support: full
    platforms: posix
    description: The controller; needs GNU tar and flock(2).
options:
  src:
    description: The directory to pack.
    type: path
    required: true
  dest:
    description: The tar to make. Its directory is created (mode 0700) when missing; the tar is mode 0600.
    type: path
    required: true
  prune_pattern:
    description:
      - A glob of the file names of this family of packs in the directory of O(dest) (V(vllm-wheelhouse-*.tar)). Empty
        prunes nothing.
    type: str
    default: ""
  prune_after_days:
    description: A pack of the family not used for this many days is removed (0 removes every other unused one).
    type: int
    default: 7
"""

EXAMPLES = r"""
- name: Pack the wheelhouse on the controller, and remove the packs of other locks not used for a week
  onprem.llm_serving.controller_pack:
    src: /srv/bundle/wheels/vllm
    dest: /tmp/onprem-llm-serving/vllm-wheelhouse-vllm-0.32.0-620eb10debf582a9.tar
    prune_pattern: vllm-wheelhouse-*.tar
    prune_after_days: 7
  delegate_to: localhost
  become: false
"""

RETURN = r"""
dest:
  description: The pack.
  returned: always
  type: str
  sample: /tmp/onprem-llm-serving/vllm-wheelhouse-vllm-0.32.0-620eb10debf582a9.tar
packed:
  description: Whether this run made the pack (in check mode, whether it would).
  returned: always
  type: bool
  sample: false
size:
  description: The pack's size in bytes (0 in check mode when it is not there yet).
  returned: always
  type: int
  sample: 612331520
pruned:
  description: The files removed (in check mode, that would be removed).
  returned: always
  type: list
  elements: str
  sample: [/tmp/onprem-llm-serving/vllm-wheelhouse-vllm-0.31.0-4c1d9e0a7b2f3e11.tar]
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils import _controller_pack


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            dest=dict(type="path", required=True),
            prune_pattern=dict(type="str", default=""),
            prune_after_days=dict(type="int", default=7),
        ),
        supports_check_mode=True,
    )
    src, dest = module.params["src"], module.params["dest"]
    if module.params["prune_after_days"] < 0:
        module.fail_json(msg="controller_pack: prune_after_days=%d is negative. Fix: give the days (0 or more) after which an "
                         "unused pack is removed." % module.params["prune_after_days"])
    pattern = module.params["prune_pattern"]
    if pattern and ("/" in pattern or not pattern.endswith(".tar")):
        module.fail_json(msg="controller_pack: prune_pattern=%r must be a file name glob ending in .tar, without a directory "
                         "(vllm-wheelhouse-*.tar)." % pattern)
    if module.check_mode:
        packed = not os.path.isfile(dest)
    else:
        def run_tar(argv):
            rc, _out, err = module.run_command(argv)
            return rc, err
        try:
            packed = _controller_pack.make_pack(src, dest, run_tar)
        except (_controller_pack.PackError, OSError) as exc:
            module.fail_json(msg="controller_pack: %s" % exc, dest=dest)
    pruned = []
    if pattern:
        pruned = _controller_pack.prune(os.path.dirname(dest), pattern, dest, module.params["prune_after_days"] * 86400,
                                        dry_run=module.check_mode)
    size = os.path.getsize(dest) if os.path.isfile(dest) else 0
    module.exit_json(changed=packed or bool(pruned), dest=dest, packed=packed, size=size, pruned=pruned)


if __name__ == "__main__":
    main()
