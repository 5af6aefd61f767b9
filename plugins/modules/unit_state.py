#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: unit_state
short_description: Decide from the host which systemd services must be (re)started
version_added: 0.2.0
description:
  - Reads, for each unit, what systemd knows (C(LoadState), C(ActiveState), C(NeedDaemonReload), when it became
    active) and the modification time of every file it reads (unit file, drop-ins and their directories,
    C(EnvironmentFile=)s, and the C(paths) the caller names in O(units), such as an install marker or a version symlink).
  - A running unit must restart when any of those files changed after it started, or when systemd says its unit
    changed on disk. Deciding from the host, not from the C(changed) results of this run, makes a re-run converge
    after a run that died between writing a file and restarting the service.
  - Read-only. Paths are read with C(lstat), so a switched symlink counts as a change.
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: Reads only; the same answer in check mode.
  diff_mode:
    support: none
    description: Nothing is written, so there is no diff.
  idempotent:
    support: full
    description: Never changes anything.
  platform:
    support: full
    platforms: posix
    description: Linux hosts managed by systemd.
options:
  units:
    description:
      - The units to inspect, each a name (V(vllm-tiny.service)) or a dict with C(name) and C(paths).
    type: list
    elements: raw
    required: true
notes:
  - The engine roles call it through the internal C(engine_common) role; RV(restart) feeds C(systemd_service) with
    C(state=restarted), RV(start) with C(state=started), RV(daemon_reload) with C(daemon_reload=true).
  - The engine, gateway and monitoring roles start and enable only the units it lists in RV(start), RV(absent) or
    RV(not_enabled), so a re-run with everything running and enabled makes no C(systemd_service) call.
"""

EXAMPLES = r"""
- name: Decide restarts from what is on the host
  onprem.llm_serving.unit_state:
    units:
      - name: vllm-tiny.service
        paths: [/opt/vllm/0.32.0/.onprem-installed]
      - ollama.service
  register: __state

- name: Restart what runs on older files
  ansible.builtin.systemd_service:
    name: "{{ item }}"
    state: restarted
    daemon_reload: "{{ __state.daemon_reload }}"
  loop: "{{ __state.restart }}"
"""

RETURN = r"""
units:
  description: Per unit, what was read and decided.
  returned: always
  type: dict
  sample:
    vllm-tiny.service:
      action: restart
      reason: /etc/onprem-llm/vllm-tiny.env changed 12.3 s after the service started
      active_state: active
      load_state: loaded
      active_since: 1796000000.5
      daemon_reload: false
      main_pid: 1234
      newest: {path: /etc/onprem-llm/vllm-tiny.env, mtime: 1796000012.8}
      files:
        - {path: /etc/systemd/system/vllm-tiny.service, mtime: 1795999000.0}
restart:
  description: Units that run on files older than the newest they read (or whose unit changed on disk).
  returned: always
  type: list
  elements: str
start:
  description: Units that are known to systemd but not running.
  returned: always
  type: list
  elements: str
absent:
  description: Units systemd does not know.
  returned: always
  type: list
  elements: str
enabled:
  description: Units enabled to start at boot (C(UnitFileState=enabled)).
  returned: always
  type: list
  elements: str
not_enabled:
  description: Units that are not (disabled, static, masked, or not known to systemd); C(systemctl enable) would change them.
  returned: always
  type: list
  elements: str
daemon_reload:
  description: Whether systemd wants a C(daemon-reload) for any of the units.
  returned: always
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.onprem.llm_serving.plugins.module_utils._systemd import (
    SystemdError, SystemdHost, UnitState, unit_name)


def normalise(units):
    """Each entry as (unit name, [paths]); refuses what is neither a name nor a {name, paths} dict."""
    out = []
    for entry in units:
        if isinstance(entry, str):
            out.append((unit_name(entry), []))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            paths = entry.get("paths") or []
            if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
                raise ValueError("units: paths of %s must be a list of absolute paths, got %r" % (entry["name"], paths))
            out.append((unit_name(entry["name"]), list(paths)))
        else:
            raise ValueError("units: each entry is a unit name or a dict with name (and paths), got %r" % (entry,))
    return out


def main():
    module = AnsibleModule(argument_spec=dict(units=dict(type="list", elements="raw", required=True)),
                           supports_check_mode=True)
    try:
        units = normalise(module.params["units"])
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    systemctl = module.get_bin_path("systemctl", required=True)
    state = UnitState(SystemdHost(module.run_command, systemctl=systemctl))
    result = {"changed": False, "units": {}, "restart": [], "start": [], "absent": [], "enabled": [], "not_enabled": [],
              "daemon_reload": False}
    try:
        for name, paths in units:
            decision = state.inspect(name, paths)
            result["units"][name] = decision
            if decision["action"] in ("restart", "start", "absent"):
                result[decision["action"]].append(name)
            result["enabled" if decision["enabled"] else "not_enabled"].append(name)
            result["daemon_reload"] = result["daemon_reload"] or decision["daemon_reload"]
    except SystemdError as exc:
        module.fail_json(msg="unit_state: asking systemd failed: %s. Fix: run on a host managed by systemd, with become: true" % exc,
                         **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
