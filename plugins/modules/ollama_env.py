#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: ollama_env
short_description: Set Ollama server settings in a systemd drop-in and verify the running server uses them
version_added: 0.1.0
description:
  - Ollama reads its settings from environment variables of C(ollama serve), and a typo fails silently
    (for example C(OLLAMA_NUM_PARALLEL:10) leaves the default in place). This module makes them declarative.
  - Validates each setting (names from Ollama's C(envconfig) and FAQ), renders one systemd drop-in with
    correctly quoted C(Environment=) lines and writes it atomically, only when its content changes.
    It never edits the vendor unit.
  - Reads the service's unit file, every drop-in (C(/etc), C(/run), C(/usr/lib) ... in systemd's order) and every
    C(EnvironmentFile=) to find other files that set the same variables, and says which file wins.
    A file that wins over this drop-in fails the task by default (O(override_policy)).
  - With O(verify=true) (after the service was restarted) it compares every managed variable with the
    environment of the service's running main process (C(/proc/PID/environ)) and fails with the cause.
  - The module does not reload systemd nor restart the service. When RV(restart_required) is true, run
    C(ansible.builtin.systemd_service) with C(daemon_reload=true) and C(state=restarted) (a handler).
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: Reports what would change and which files would override it; writes nothing.
  diff_mode:
    support: full
    description: Shows the drop-in before and after.
  idempotent:
    support: full
    description: The drop-in is rendered deterministically; a second run with the same options reports no change.
  platform:
    support: full
    platforms: posix
    description: Linux hosts managed by systemd.
options:
  state:
    description:
      - V(present) writes the drop-in; V(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  service:
    description:
      - Name of the systemd service running C(ollama serve), with or without the C(.service) suffix.
    type: str
    default: ollama
  path:
    description:
      - Path of the drop-in to manage. Must end in C(.conf).
      - Defaults to C(/etc/systemd/system/<service>.service.d/50-ollama-env.conf). Drop-ins apply in lexical order of
        their file names, so a C(99-*.conf) drop-in of the same service wins over the default name.
    type: path
  host:
    description:
      - C(OLLAMA_HOST), the address the server binds, as C([http://|https://]host[:port]).
      - O(host) is an IPv4 address, an IPv6 address in brackets (V([::]:11434)) or a hostname. No path.
      - Without a port Ollama uses 11434, but 80 with C(http://) and 443 with C(https://).
    type: str
  num_parallel:
    description:
      - C(OLLAMA_NUM_PARALLEL), requests each loaded model serves at once. A whole number >= 1.
      - Integers and strings of digits are accepted; anything else (V(10:), V(0)) is refused.
    type: raw
  max_loaded_models:
    description:
      - C(OLLAMA_MAX_LOADED_MODELS), models loaded at the same time. A whole number >= 1 (omit it for Ollama's automatic choice).
    type: raw
  max_queue:
    description:
      - C(OLLAMA_MAX_QUEUE), requests queued before Ollama answers busy. A whole number >= 1 (Ollama's default is 512).
    type: raw
  keep_alive:
    description:
      - C(OLLAMA_KEEP_ALIVE), how long a model stays loaded after its last request.
      - A Go duration (V(5m), V(1h30m), V(90s)) or whole seconds (V(300)); negative means forever (V(-1)), V(0) unloads at once.
      - Words (V(5 minutes)) are refused.
    type: raw
  flash_attention:
    description:
      - C(OLLAMA_FLASH_ATTENTION), rendered as C(1) or C(0). Required true for a quantised O(kv_cache_type).
    type: bool
  kv_cache_type:
    description:
      - C(OLLAMA_KV_CACHE_TYPE), the K/V cache quantisation. V(q8_0) and V(q4_0) need O(flash_attention=true).
    type: str
    choices: [f16, q8_0, q4_0]
  context_length:
    description:
      - C(OLLAMA_CONTEXT_LENGTH), the default context window in tokens. A whole number >= 1.
    type: raw
  models:
    description:
      - C(OLLAMA_MODELS), the absolute path of the models directory. The service user must be able to write it.
    type: str
  origins:
    description:
      - C(OLLAMA_ORIGINS), extra allowed CORS origins, rendered comma separated. One origin per item.
    type: list
    elements: str
  load_timeout:
    description:
      - C(OLLAMA_LOAD_TIMEOUT), how long a model load may stall before Ollama gives up. Same format as O(keep_alive).
    type: raw
  sched_spread:
    description:
      - C(OLLAMA_SCHED_SPREAD), always spread a model across all GPUs. Rendered as C(1) or C(0).
    type: bool
  gpu_overhead:
    description:
      - C(OLLAMA_GPU_OVERHEAD), VRAM in bytes to keep free on each GPU. A whole number >= 0.
    type: raw
  extra_env:
    description:
      - Other variables, as a mapping. Keys must match C(^OLLAMA_[A-Z0-9_]+$) or be a GPU visibility variable
        (C(CUDA_VISIBLE_DEVICES), C(HIP_VISIBLE_DEVICES), C(ROCR_VISIBLE_DEVICES), C(GPU_DEVICE_ORDINAL),
        C(GGML_VK_VISIBLE_DEVICES), C(HSA_OVERRIDE_GFX_VERSION)). A variable that has its own option is refused here.
      - Booleans are rendered as C(1) and C(0).
    type: dict
    default: {}
  override_policy:
    description:
      - What to do when another drop-in, the unit file or an C(EnvironmentFile=) wins over this drop-in for a managed variable.
      - V(fail) stops before writing and names the file; V(warn) writes and warns. RV(overrides) lists them either way.
    type: str
    choices: [fail, warn]
    default: fail
  verify:
    description:
      - Compare every managed variable with the environment of the service's running main process and fail on a mismatch,
        naming the cause (not running, not restarted since the change, overridden by a file).
      - Run it after the service was restarted, for example after flushing handlers. Needs root to read C(/proc/PID/environ).
      - Only with O(state=present). In check mode a missing or stopped service, and a mismatch while the drop-in would change,
        are warnings, because the tasks before it only pretended to install, start or restart it.
    type: bool
    default: false
notes:
  - "systemd semantics used to find the winner: drop-ins from all unit directories apply in lexical order of their
    file names (a name in C(/etc) masks the same name in C(/run) and C(/usr/lib)); a later C(Environment=) assignment
    wins; variables read from C(EnvironmentFile=) override C(Environment=); C(UnsetEnvironment=) removes them."
  - Values are written as C(Environment="KEY=value") with backslash and double quote escaped and C(%) doubled,
    so systemd hands Ollama exactly the value given. Line breaks and control characters are refused.
seealso:
  - name: "Ollama FAQ: How do I configure Ollama server?"
    description: The environment variables Ollama reads and how to set them with systemd.
    link: https://github.com/ollama/ollama/blob/main/docs/faq.md
  - name: systemd.exec(5), Environment
    description: Environment=, EnvironmentFile= and their precedence.
    link: https://www.freedesktop.org/software/systemd/man/latest/systemd.exec.html#Environment
  - module: ansible.builtin.systemd_service
"""

EXAMPLES = r"""
- name: Configure the Ollama server
  onprem.llm_serving.ollama_env:
    host: 0.0.0.0:11434
    num_parallel: 4
    max_loaded_models: 2
    keep_alive: 30m
    flash_attention: true
    kv_cache_type: q8_0
    models: /srv/ollama/models
    origins:
      - https://chat.example.com
    extra_env:
      CUDA_VISIBLE_DEVICES: "0,1"
  notify: Restart ollama

- name: Restart Ollama now if its settings changed
  ansible.builtin.meta: flush_handlers

- name: Prove the running server uses them
  onprem.llm_serving.ollama_env:
    host: 0.0.0.0:11434
    num_parallel: 4
    max_loaded_models: 2
    keep_alive: 30m
    flash_attention: true
    kv_cache_type: q8_0
    models: /srv/ollama/models
    origins:
      - https://chat.example.com
    extra_env:
      CUDA_VISIBLE_DEVICES: "0,1"
    verify: true
  register: ollama_env_check

# The handler, in the play or role:
# - name: Restart ollama
#   ansible.builtin.systemd_service:
#     name: ollama
#     state: restarted
#     daemon_reload: true
#   listen: Restart ollama

- name: Remove the managed drop-in
  onprem.llm_serving.ollama_env:
    state: absent
  notify: Restart ollama
"""

RETURN = r"""
path:
  description: Path of the managed drop-in.
  returned: always
  type: str
  sample: /etc/systemd/system/ollama.service.d/50-ollama-env.conf
service:
  description: The systemd unit the drop-in belongs to.
  returned: always
  type: str
  sample: ollama.service
env:
  description: The managed variables as rendered (empty with O(state=absent)).
  returned: always
  type: dict
  sample: {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_NUM_PARALLEL": "4"}
restart_required:
  description:
    - True when the drop-in was (or in check mode would be) written or removed. Reload systemd and restart the service.
  returned: always
  type: bool
  sample: true
overrides:
  description:
    - One item per managed variable that another file also sets, or for which our drop-in does not win.
  returned: always
  type: list
  elements: dict
  contains:
    variable:
      description: The variable.
      type: str
      sample: OLLAMA_NUM_PARALLEL
    ours:
      description: The value this module sets.
      type: str
      sample: "4"
    winner:
      description: The file whose value the service gets (None when nothing sets it, e.g. the drop-in is not read).
      type: str
      sample: /etc/systemd/system/ollama.service.d/99-local.conf
    winner_value:
      description: The value in the winning file.
      type: str
      sample: "1"
    winner_how:
      description: V(Environment), V(EnvironmentFile) or V(UnsetEnvironment).
      type: str
      sample: Environment
    set_by:
      description: Other files that set the variable.
      type: list
      elements: str
      sample: [/etc/systemd/system/ollama.service.d/99-local.conf]
    ours_wins:
      description: Whether the service gets our value.
      type: bool
      sample: false
unit_files:
  description:
    - The unit file and drop-ins of the service, in the order systemd applies them (with this drop-in as it will be).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [/usr/lib/systemd/system/ollama.service, /etc/systemd/system/ollama.service.d/50-ollama-env.conf]
effective:
  description: The managed variables as the running main process has them (None = not set). Only the managed ones.
  returned: when O(verify=true)
  type: dict
  sample: {"OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_NUM_PARALLEL": "4"}
main_pid:
  description: The main PID whose environment was read.
  returned: when O(verify=true) and the service runs
  type: int
  sample: 4242
mismatches:
  description:
    - Managed variables whose running value differs, each with C(variable), C(expected) and C(actual).
    - A non-empty list fails the task, except in check mode when the drop-in would change (then it is a warning).
  returned: when O(verify=true) and the service runs
  type: list
  elements: dict
  sample: []
"""

import errno
import glob
import os
import posixpath
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.onprem.llm_serving.plugins.module_utils._ollama_env import (
    InvalidOption,
    OllamaEnvError,
    OverriddenError,
    build_env,
    compare_environment,
    default_path,
    describe_override,
    diagnose,
    dropin_dirs,
    find_overrides,
    order_dropins,
    render_dropin,
    resolve_environment,
    validate_path,
    validate_service,
)
from ansible_collections.onprem.llm_serving.plugins.module_utils._systemd import (
    SystemdError,
    SystemdHost,
    unit_name,
)


def read_text(path):
    """Text of ``path``, or None when it does not exist."""
    try:
        with open(path, "r") as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def load_env_files(pattern):
    """EnvironmentFile= may name a glob; return [(path, text)] of the files that exist."""
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    found = []
    for path in paths:
        text = read_text(path)
        if text is not None:
            found.append((path, text))
    return found


def make_systemd(module):
    """The systemd/proc interface; unit tests replace this factory with a fake."""
    return SystemdHost(module.run_command)


class VerifyFailed(OllamaEnvError):
    """verify found managed variables the running process does not have; ``result`` goes into fail_json."""

    def __init__(self, message, result):
        self.result = result
        super(VerifyFailed, self).__init__(message)


class OllamaEnv(object):
    """Validate, check overrides, write (or remove) the drop-in and verify; raises OllamaEnvError subclasses."""

    def __init__(self, module, systemd):
        self.module = module
        self.systemd = systemd
        self.params = module.params
        self.service = validate_service(self.params["service"])
        self.unit = unit_name(self.service)
        self.path = validate_path(self.params["path"] or default_path(self.service))
        self.unit_path = self._unit_path()

    def _unit_path(self):
        seen, dirs = set(), []
        for directory in self.systemd.unit_path:
            real = os.path.realpath(directory)
            if real not in seen:
                seen.add(real)
                dirs.append(directory)
        return dirs

    # ---- reading the unit as systemd would
    def unit_files(self, our_text):
        """[(path, text)] of the fragment and drop-ins in application order, with ours as it will be."""
        files = []
        names = [self.unit]
        if "@" in self.unit:
            names.append(self.unit.split("@", 1)[0] + "@." + self.unit.rsplit(".", 1)[1])
        for name in names:
            fragment = next((posixpath.join(d, name) for d in self.unit_path if os.path.lexists(posixpath.join(d, name))), None)
            if fragment:
                files.append((fragment, read_text(fragment) or ""))
                break
        our_dir, our_name = posixpath.split(self.path)
        listing, ours_listed = [], False
        for directory in dropin_dirs(self.unit, self.unit_path):
            names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
            if self._same_dir(directory, our_dir):
                ours_listed = True
                names = [n for n in names if n != our_name]
                if our_text is not None:
                    names.append(our_name)
            listing.append((directory, names))
        for dropin in order_dropins(listing):
            if posixpath.basename(dropin) == our_name and self._same_dir(posixpath.dirname(dropin), our_dir):
                files.append((self.path, our_text))
            else:
                files.append((dropin, read_text(dropin) or ""))
        return files, ours_listed

    @staticmethod
    def _same_dir(left, right):
        return os.path.realpath(left) == os.path.realpath(right)

    # ---- writing
    def write(self, text):
        directory = posixpath.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix=".ollama_env.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(tmp, 0o644)
            self.module.atomic_move(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def run(self):
        params = self.params
        present = params["state"] == "present"
        result = {"changed": False, "path": self.path, "service": self.unit, "env": {}, "overrides": [], "restart_required": False}
        if params["verify"] and not present:
            raise InvalidOption("verify", True, "verify compares the variables this drop-in sets, and state=absent sets none",
                                "use verify: false with state: absent")
        new = None
        if present:
            env = build_env(params)
            if not env:
                raise InvalidOption("state", "present", "no variable to manage was given",
                                    "set at least one of host, num_parallel, ..., extra_env; or use state: absent")
            result["env"] = env
            new = render_dropin(env, self.service)
        try:
            old = read_text(self.path)
        except (IOError, OSError) as exc:
            raise OllamaEnvError("reading the existing drop-in %s failed: %s" % (self.path, to_native(exc)))
        changed = old != new
        result["changed"] = result["restart_required"] = changed

        if present:
            self.check_overrides(result, new)

        if changed and not self.module.check_mode:
            try:
                if present:
                    self.write(new)
                else:
                    os.unlink(self.path)
            except (IOError, OSError) as exc:
                raise OllamaEnvError("writing the drop-in %s failed: %s. Fix: run the task with become: true, or choose another path"
                                     % (self.path, to_native(exc)))
        if self.module._diff:
            result["diff"] = {"before": old or "", "after": new or "",
                              "before_header": self.path if old is not None else "%s (absent)" % self.path,
                              "after_header": self.path if new is not None else "%s (absent)" % self.path}
        if params["verify"]:
            self.verify(result)
        return result

    def check_overrides(self, result, new):
        try:
            files, ours_listed = self.unit_files(new)
            resolution = resolve_environment(files, load_env_files)
        except (IOError, OSError) as exc:
            raise OllamaEnvError("reading the unit files of %s failed: %s. Fix: run the task with become: true" % (self.unit, to_native(exc)))
        if not ours_listed:
            self.module.warn("%s is not in a drop-in directory of %s (%s): systemd will not read it"
                             % (self.path, self.unit, ", ".join(dropin_dirs(self.unit, self.unit_path)[:2])))
        for item in resolution["unreadable"]:
            self.module.warn("EnvironmentFile %s (named in %s) could not be read: %s; its variables were not checked"
                             % (item["file"], item["unit_file"], item["error"]))
        overrides = find_overrides(resolution, result["env"], self.path)
        result["overrides"] = overrides
        result["unit_files"] = [path for path, _text in files]
        lost = [o for o in overrides if not o["ours_wins"]]
        if lost:
            message = "%s does not win for %d variable(s) of %s:\n  %s" % (
                self.path, len(lost), self.unit, "\n  ".join(describe_override(o) for o in lost))
            if self.params["override_policy"] == "fail":
                raise OverriddenError(message + "\nNothing was written. Fix: remove the variable from the winning file, give this drop-in a "
                                      "later file name with path, or set override_policy: warn", overrides)
            self.module.warn(message)

    def verify(self, result):
        module = self.module
        try:
            props = self.systemd.show(self.unit, ["LoadState", "ActiveState", "SubState", "MainPID", "NeedDaemonReload"])
        except SystemdError as exc:
            raise OllamaEnvError("verify: asking systemd about %s failed: %s" % (self.unit, exc))
        problem = None
        pid = int(props.get("MainPID") or 0)
        if props.get("LoadState") == "not-found":
            problem = ("verify: %s is not known to systemd (LoadState=not-found). Fix: install the service first, "
                       "or set service to the unit that runs `ollama serve`" % self.unit)
        elif pid <= 0:
            problem = ("verify: %s is not running (ActiveState=%s, SubState=%s, MainPID=0), so its environment cannot be "
                       "checked. Fix: start it (systemctl start %s) and look at `journalctl -u %s`" % (
                           self.unit, props.get("ActiveState"), props.get("SubState"), self.unit, self.unit))
        if problem:
            if module.check_mode:
                # earlier tasks of a check-mode run only pretend to install or start the service
                result["effective"] = {}
                module.warn(problem + " (check mode: reported, not failed)")
                return
            raise OllamaEnvError(problem)
        try:
            actual = self.systemd.environ(pid)
        except SystemdError as exc:
            raise OllamaEnvError("verify: reading the environment of %s (MainPID %d) failed: %s. Fix: run with become: true"
                                 % (self.unit, pid, exc))
        effective, mismatches = compare_environment(result["env"], actual)
        result["effective"] = effective
        result["main_pid"] = pid
        result["mismatches"] = mismatches
        if not mismatches:
            return
        try:
            started_at = self.systemd.process_start_time(pid)
        except SystemdError:
            started_at = None
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            mtime = None
        message = diagnose(mismatches, self.service, overrides=result["overrides"], changed=result["changed"],
                           need_daemon_reload=props.get("NeedDaemonReload") == "yes",
                           dropin_mtime=mtime, started_at=started_at, dropin_path=self.path)
        if module.check_mode and result["changed"]:
            module.warn(message)
            return
        raise VerifyFailed(message, result)


def main():
    argument_spec = dict(
        state=dict(type="str", default="present", choices=["present", "absent"]),
        service=dict(type="str", default="ollama"),
        path=dict(type="path"),
        host=dict(type="str"),
        num_parallel=dict(type="raw"),
        max_loaded_models=dict(type="raw"),
        max_queue=dict(type="raw"),
        keep_alive=dict(type="raw"),
        flash_attention=dict(type="bool"),
        kv_cache_type=dict(type="str", choices=["f16", "q8_0", "q4_0"]),
        context_length=dict(type="raw"),
        models=dict(type="str"),
        origins=dict(type="list", elements="str"),
        load_timeout=dict(type="raw"),
        sched_spread=dict(type="bool"),
        gpu_overhead=dict(type="raw"),
        extra_env=dict(type="dict", default={}),
        override_policy=dict(type="str", default="fail", choices=["fail", "warn"]),
        verify=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        manager = OllamaEnv(module, make_systemd(module))
        result = manager.run()
    except InvalidOption as exc:
        module.fail_json(msg=str(exc), option=exc.option, changed=False)
    except OverriddenError as exc:
        module.fail_json(msg=str(exc), overrides=exc.overrides, changed=False)
    except VerifyFailed as exc:
        exc.result.pop("diff", None)
        module.fail_json(msg=str(exc), **exc.result)
    except OllamaEnvError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
