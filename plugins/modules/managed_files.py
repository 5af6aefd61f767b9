#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: managed_files
short_description: A role's directories and small text files in one round trip, staged and checked before the swap
version_added: 0.3.0
description:
  - Converges a list of directories, a list of text files (rendered templates, files of the role, generated
    content) and a list of symlinks in one call, where C(ansible.builtin.file), C(template) and C(copy) would take one
    round trip per path.
  - Each directory is created with its owner, group and mode (missing parents too, as C(ansible.builtin.file) does),
    or has its attributes corrected.
  - Each file is compared by sha256; only a file whose content differs is rewritten, so an unchanged file keeps its
    mtime. Each changed file, in list order, is written beside its destination with its owner, group and mode,
    checked by its O(files[].validate) command, and only then renamed over the live file, before the next one is
    staged (what a sequence of C(template) tasks does, so a later file's check sees the earlier files in place). A failed
    check leaves that live file and every later one as they were and fails with the command's output, naming the files
    already put in place before it.
  - The action plugin renders O(files[].template) on the controller exactly as C(ansible.builtin.template) does (same
    search path, C(ansible_managed), O(files[].vars) added to the task's variables) and reads O(files[].src) from the
    role's C(files/); the module receives only content.
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  action:
    support: full
    description: The action plugin renders templates and reads files of the role on the controller.
  check_mode:
    support: full
    description: Reports what would change; writes nothing and runs no O(files[].validate) check (as C(ansible.builtin.copy)).
  diff_mode:
    support: full
    description: A diff per changed path (content up to 64 KiB of text; attributes as before/after).
  idempotent:
    support: full
    description: A second run with the same input changes nothing.
  platform:
    support: full
    platforms: posix
    description: Linux hosts (owner and group by name through the passwd and group databases).
options:
  directories:
    description: Directories, created in list order before any file is written.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path.
        type: path
        required: true
      owner:
        description: User name or uid.
        type: str
        default: root
      group:
        description: Group name or gid.
        type: str
        default: root
      mode:
        description: Octal mode as a string (V("0755")).
        type: raw
        required: true
  files:
    description: Files; each has exactly one of O(files[].content), O(files[].template), O(files[].src).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Absolute path of the file.
        type: path
        required: true
      content:
        description: The file's text.
        type: str
      template:
        description: A template of the role (C(templates/)), rendered on the controller by the action plugin.
        type: str
      src:
        description: A text file of the role (C(files/)) or an absolute path on the controller, read by the action plugin.
        type: str
      vars:
        description: Variables added to the task's when rendering O(files[].template) (for instance V(item)).
        type: dict
      owner:
        description: User name or uid.
        type: str
        default: root
      group:
        description: Group name or gid.
        type: str
        default: root
      mode:
        description: Octal mode as a string (V("0644")).
        type: raw
        required: true
      validate:
        description: Command run on the staged file (C(%s) is its path) before it replaces the live one.
        type: str
  links:
    description:
      - Symlinks, converged after the files. One that points elsewhere, or a file at its path, is replaced by a new
        symlink made beside it and renamed over it, so a reader never finds the path missing (as
        C(ansible.builtin.file) with O(ignore:state=link) and O(ignore:force=true)). A directory at the path is refused.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the symlink.
        type: path
        required: true
      target:
        description: What it points to, written as given (a relative target resolves from the symlink's directory).
        type: str
        required: true
  absent:
    description: Files or symlinks that must not exist, removed after the files are swapped in (a directory is refused).
    type: list
    elements: path
    default: []
notes:
  - Text only (UTF-8). Large or binary artefacts (wheelhouses, archives, model files) go through
    C(ansible.builtin.copy), which streams them.
  - A task that writes a secret sets C(no_log); this module never logs content itself, but its diff shows it.
  - SELinux contexts are not managed (the collection's tested platform is Debian).
"""

EXAMPLES = r"""
- name: Write the probe, its settings and its units
  onprem.llm_serving.managed_files:
    directories:
      - {path: /etc/onprem-llm/monitoring, mode: "0755"}
    files:
      - dest: /etc/onprem-llm/monitoring/node-exporter.env
        template: node-exporter.env.j2
        mode: "0644"
      - dest: /etc/systemd/system/onprem-llm-probe.service
        template: onprem-llm-probe.service.j2
        vars: {item: {unit: onprem-llm-probe}}
        mode: "0644"
        validate: systemd-analyze verify %s
  notify: monitoring run the probes

- name: Point the stable symlink at the version, and the CLI into the PATH
  onprem.llm_serving.managed_files:
    links:
      - {path: /opt/ollama/current, target: /opt/ollama/0.5.4}
      - {path: /usr/local/bin/ollama, target: /opt/ollama/current/bin/ollama}
"""

RETURN = r"""
directories:
  description: Per directory, C(ok), C(created) or C(attributes) (with the attributes corrected).
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/onprem-llm/monitoring, state: ok}]
files:
  description: Per file, C(ok), C(created), C(content) (rewritten) or C(attributes), and the sha256 of its content.
  returned: always
  type: list
  elements: dict
  sample: [{dest: /etc/onprem-llm/monitoring/node-exporter.env, state: content, sha256: 9f86d08...}]
links:
  description: Per symlink of O(links), C(ok), C(created) or C(changed) (with the target it had before, V(before)).
  returned: always
  type: list
  elements: dict
  sample: [{path: /opt/ollama/current, target: /opt/ollama/0.5.4, state: changed, before: /opt/ollama/0.5.3}]
absent:
  description: Per path of O(absent), C(ok) (not there) or C(removed).
  returned: always
  type: list
  elements: dict
  sample: [{path: /etc/apt/sources.list.d/onprem-llm-bundle.sources, state: ok}]
changed_paths:
  description: The directories, files and symlinks that changed or were removed (or would be, in check mode).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils._managed_files import ManagedFilesError, converge


def main():
    module = AnsibleModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="raw", required=True),
            )),
            files=dict(type="list", elements="dict", default=[], options=dict(
                dest=dict(type="path", required=True),
                content=dict(type="str"),
                template=dict(type="str"),
                src=dict(type="str"),
                vars=dict(type="dict"),
                owner=dict(type="str", default="root"),
                group=dict(type="str", default="root"),
                mode=dict(type="raw", required=True),
                validate=dict(type="str"),
            )),
            links=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                target=dict(type="str", required=True),
            )),
            absent=dict(type="list", elements="path", default=[]),
        ),
        supports_check_mode=True,
    )
    for entry in module.params["files"]:
        if entry.get("template") is not None or entry.get("src") is not None:
            module.fail_json(msg="managed_files: %s names template or src, which only the action plugin reads; call "
                                 "the module as onprem.llm_serving.managed_files" % entry["dest"])
    try:
        result = converge(module.params["directories"], module.params["files"],
                          run=module.run_command, check_mode=module.check_mode, absent=module.params["absent"],
                          links=module.params["links"])
    except ManagedFilesError as exc:
        module.fail_json(msg="managed_files: %s" % exc)
    except OSError as exc:
        module.fail_json(msg="managed_files: %s" % exc)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
