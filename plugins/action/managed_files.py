# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""managed_files on the controller: render each file's template and read each src, then one module call.

Templates are rendered the way ansible.builtin.template renders them (search path, ansible_managed, trim_blocks,
newline "\\n"), with the file's ``vars`` added, so converting a role's template tasks to this module leaves the files
on the hosts byte for byte the same (and a re-run changed=0).
"""
from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
# ansible.builtin.template's own helper for ansible_managed and the template_* variables (ansible-core's internal API:
# the collection pins ansible-core 2.19, and tests/unit/plugins/action compares the output with the template module's)
from ansible._internal._templating import _template_vars


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _requires_connection = True

    def _render(self, entry, task_vars):
        source = self._find_needle("templates", entry["template"])
        template_data = trust_as_template(self._loader.get_text_file_contents(source))
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader._basedir, os.path.dirname(source)]
        paths = []
        for path in searchpath:
            paths.extend([os.path.join(path, "templates"), path])
        temp_vars = task_vars.copy()
        temp_vars.update(entry.get("vars") or {})
        temp_vars.update(_template_vars.generate_ansible_template_vars(
            path=entry["template"], fullpath=source, dest_path=entry.get("dest"),
            include_ansible_managed="ansible_managed" not in temp_vars))
        templar = self._templar.copy_with_new_env(searchpath=paths, available_variables=temp_vars)
        rendered = templar.template(template_data, escape_backslashes=False,
                                    overrides=dict(trim_blocks=True, lstrip_blocks=False, newline_sequence="\n"))
        return "" if rendered is None else to_text(rendered)

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        args = dict(self._task.args)
        files = []
        for entry in args.get("files") or []:
            if not isinstance(entry, dict):
                raise AnsibleActionFail("managed_files: each entry of files must be a dict with dest, got %r" % (entry,))
            entry = dict(entry)
            sources = [k for k in ("content", "template", "src") if entry.get(k) is not None]
            if len(sources) != 1:
                raise AnsibleActionFail("managed_files: %s must have exactly one of content, template, src (has %s)"
                                        % (entry.get("dest"), ", ".join(sources) or "none"))
            try:
                if "template" in sources:
                    entry["content"] = self._render(entry, task_vars)
                elif "src" in sources:
                    path = self._find_needle("files", entry["src"])
                    with open(path, "rb") as handle:
                        data = handle.read()
                    try:
                        entry["content"] = data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise AnsibleActionFail("managed_files: %s is not UTF-8 text; copy binary files with "
                                                "ansible.builtin.copy" % path)
            except AnsibleActionFail:
                raise
            except AnsibleError as exc:
                raise AnsibleActionFail("managed_files: %s: %s" % (entry.get("dest"), to_text(exc)))
            for key in ("template", "src", "vars"):
                entry.pop(key, None)
            files.append(entry)
        args["files"] = files
        result.update(self._execute_module(module_name="onprem.llm_serving.managed_files", module_args=args,
                                           task_vars=task_vars))
        return result
