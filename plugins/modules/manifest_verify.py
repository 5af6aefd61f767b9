#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: manifest_verify
short_description: Check every file a SHA256SUMS manifest lists, and name each one that differs
version_added: 0.2.0
description:
  - Hashes every file the manifest in O(path) lists (sha256sum(1) format, as the bundle and the artefacts write it)
    and fails when one is missing or differs, naming each file with its expected and actual sha256.
  - C(site.yml) runs it on the controller against the whole bundle before any host is touched, and on the hosts
    against what was copied to a staging directory, before it is swapped into place.
  - With O(stat_cache), a file already verified is not hashed again while its stat signature is unchanged (device,
    inode, size, modification and inode change times). A re-run reads each file's metadata, not its content, so it
    costs the same for a tiny model and a 140 GB one. Any write, replacement, C(touch), C(chmod) or C(chown) of the
    file changes its signature and it is hashed again. A check without O(stat_cache) hashes every file.
  - Changes nothing it checks. With O(stat_cache), it writes that one file (not in check mode).
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: Reads only; the same answer in check mode.
  diff_mode:
    support: none
    description: Nothing it checks is written; the O(stat_cache) file is bookkeeping, not reported as a change.
  idempotent:
    support: full
    description: Never changes what it checks; C(changed) is always V(false).
  platform:
    support: full
    platforms: posix
    description: The controller (the whole bundle) or a host (a staged copy).
options:
  path:
    description: The directory the manifest's paths are relative to.
    type: path
    required: true
  manifest:
    description: The manifest's file name inside O(path).
    type: str
    default: SHA256SUMS
  only:
    description: Check only the listed paths under these prefixes (V(apt/debian-12)); all when empty.
    type: list
    elements: str
    default: []
  fix:
    description: What the failure message tells the user to do.
    type: str
    default: Rebuild the bundle (ansible-playbook playbooks/bundle.yml) or copy the file again.
  expected:
    description:
      - The files to check, as relative path -> sha256, instead of a manifest file in O(path) (O(manifest) and
        O(only) are then not used). One call checks them all (the models role checks a revision directory with it).
    type: dict
  fail_on_mismatch:
    description: Fail when a file is missing or differs. V(false) only reports them (RV(mismatches), RV(matched)).
    type: bool
    default: true
  stat_cache:
    description:
      - A file (JSON) where each file that matched is recorded with its sha256 and stat signature; the next check reads
        it and hashes only the files whose signature or expected sha256 differ from the record. Written atomically
        when it changed (mode 0644; it holds paths, sizes, inode numbers and sha256 digests, nothing secret), never in
        check mode. Its directory must exist; when the file cannot be written, the module warns and the check stands.
      - Leave it unset (the default) to hash every file.
    type: path
"""

EXAMPLES = r"""
- name: Verify the bundle before anything is copied from it
  onprem.llm_serving.manifest_verify:
    path: /srv/bundle
  delegate_to: localhost
  run_once: true

- name: Which files of a model revision already have their pinned sha256 (one call, no failure)
  onprem.llm_serving.manifest_verify:
    path: /srv/llm/models/.revisions/tiny-llama/onprem-demo-1
    expected:
      config.json: 4f3c2a...
      model.safetensors: 9b1d0e...
    fail_on_mismatch: false
  register: revision_check

- name: The same, hashing only what changed since the last check (a re-run reads stat, not gigabytes)
  onprem.llm_serving.manifest_verify:
    path: /srv/llm/models/.revisions/tiny-llama/onprem-demo-1
    expected: "{{ pinned_checksums }}"
    fail_on_mismatch: false
    stat_cache: /srv/llm/models/.revisions/tiny-llama/onprem-demo-1/.verified-stat.json
"""

RETURN = r"""
files:
  description: How many files were checked.
  returned: always
  type: int
  sample: 212
bytes:
  description: How many bytes were hashed.
  returned: always
  type: int
  sample: 1012345678
mismatches:
  description: The files that differ (empty on success); C(actual) is V(missing) for a file that is not there.
  returned: always
  type: list
  elements: dict
  sample: [{path: /srv/bundle/apt/debian-12/pool/zstd_1.5.4+dfsg2-5_amd64.deb, expected: 5e0c..., actual: 91ab...}]
matched:
  description: The checked files (relative to O(path)) that have their expected sha256.
  returned: always
  type: list
  elements: str
  sample: [config.json, model.safetensors]
hashed_files:
  description: How many files were read and hashed (the others matched their O(stat_cache) record).
  returned: always
  type: int
  sample: 2
hashed_bytes:
  description: How many bytes were read and hashed.
  returned: always
  type: int
  sample: 1012345678
cached_files:
  description: How many files matched their O(stat_cache) record and were not read.
  returned: always
  type: int
  sample: 210
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils import _bundle


def write_stat_cache(module, path, cache, keep):
    """Write the stat cache when its content changed (_bundle.write_text_if_changed: staged, then renamed, no staged
    part left behind when that fails); a cache that cannot be written is warned about, not fatal."""
    try:
        if _bundle.write_text_if_changed(path, _bundle.stat_cache_text(cache, keep)):
            os.chmod(path, 0o644)
    except OSError as exc:
        module.warn("manifest_verify: the stat cache %s was not written (%s); the next check hashes every file again"
                    % (path, exc.strerror or exc))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            manifest=dict(type="str", default=_bundle.MANIFEST),
            only=dict(type="list", elements="str", default=[]),
            fix=dict(type="str", default="Rebuild the bundle (ansible-playbook playbooks/bundle.yml) or copy the file again."),
            expected=dict(type="dict"),
            fail_on_mismatch=dict(type="bool", default=True),
            stat_cache=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    root = module.params["path"]
    cache_path = module.params["stat_cache"]
    cache = _bundle.load_stat_cache(cache_path) if cache_path else None
    stats = _bundle.VerifyStats()
    try:
        if module.params["expected"] is not None:
            entries = {str(rel): str(digest) for rel, digest in module.params["expected"].items()}
            mismatches = _bundle.verify_entries(root, entries, cache, stats)
        else:
            entries, mismatches = _bundle.verify_tree(root, module.params["manifest"], module.params["only"], cache, stats)
    except (_bundle.BundleError, OSError) as exc:
        module.fail_json(msg="manifest_verify %s: %s" % (root, exc), files=0, bytes=0, mismatches=[], matched=[],
                         hashed_files=0, hashed_bytes=0, cached_files=0)
    if cache is not None and not module.check_mode and os.path.isdir(os.path.dirname(cache_path) or "."):
        write_stat_cache(module, cache_path, cache, set(entries))
    bad = {m.path for m in mismatches}
    result = dict(changed=False, files=len(entries), bytes=stats.bytes, mismatches=[m.as_dict() for m in mismatches],
                  matched=sorted(rel for rel in entries if os.path.join(root, rel) not in bad),
                  hashed_files=stats.hashed_files, hashed_bytes=stats.hashed_bytes, cached_files=stats.cached_files)
    if mismatches and module.params["fail_on_mismatch"]:
        module.fail_json(msg=_bundle.mismatch_message(root, mismatches, module.params["fix"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
