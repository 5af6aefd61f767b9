#!/usr/bin/python
# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_facts
short_description: Read NVIDIA PCI devices, listening TCP ports with their owners, free disk space, CPUs, paths, packages and groups
version_added: "0.1.0"
description:
  - Read-only host discovery that the roles of this collection share, in place of shell loops over sysfs and of
    parsing C(ss) and C(df) output. Each part runs only when it is named in O(gather).
  - V(gpus) reads C(<sysfs_root>/bus/pci/devices/*/{vendor,device,class}). A GPU is a function with vendor
    C(0x10de) (NVIDIA) and PCI class C(0x03xxxx) (VGA or 3D controller). An NVSwitch is a function with vendor
    C(0x10de) whose device id is in O(nvswitch_device_ids) (NVSwitches are bridges, class C(0x0680xx), a class other
    NVIDIA functions share, so the device id decides). Needs no driver, so it works before the first driver install.
  - V(listeners) reads the listening TCP sockets (IPv4 and IPv6) from C(/proc/net/tcp) and C(/proc/net/tcp6), and
    finds the processes that hold each socket through the C(/proc/PID/fd) links, with their name (C(comm), as C(ss)
    shows it) and their systemd unit (from C(/proc/PID/cgroup), cgroup v1 C(name=systemd) or v2 unified).
  - V(disk) measures, for each path in O(paths), the free and total space of the file system holding it
    (C(statvfs)). A path that does not exist yet is measured on its nearest existing parent, the file system it
    will be created on.
  - V(cpus) reads the online CPUs (C(<sysfs_root>/devices/system/cpu/online)), the CPUs the module's process may run
    on (C(Cpus_allowed_list) in C(<proc_root>/self/status), narrowed by a cpuset or an affinity mask) and the NUMA
    nodes with their CPUs (C(<sysfs_root>/devices/system/node/node*/cpulist)); a kernel without NUMA has one node
    holding every online CPU. The vllm role sizes tensor x pipeline parallel on CPU hosts with it.
  - V(files) reads, for each path in O(files), whether it exists (symlinks followed, as C(ansible.builtin.stat) with
    C(follow=true)), its type, whether the path itself is a symlink, and the canonical path it resolves to (as
    C(realpath)), so a role checks many paths in the call that reads the rest, not in one C(stat) per path.
  - V(packages) reads, for each name in O(packages), whether the OS package is installed and its version, from dpkg's
    status database (O(dpkg_status_path), read as text) on Debian and Ubuntu, from C(rpm -q) on RPM hosts. It loads
    no package lists, so a role decides whether its C(ansible.builtin.apt) or C(ansible.builtin.dnf) task must run at
    all in a fraction of a second (those modules load every list of the host first, over a second per call on a host with a
    distribution's full archive). The P(onprem.llm_serving.packages_missing#filter) filter names what is still missing.
  - V(groups) reads, for each name in O(groups), whether the group exists, its gid and its listed members, through the
    host's name service (NSS, as C(getent group) reads it, LDAP or SSSD included where configured).
  - Returns values, not C(ansible_facts), because listeners change by the second; register the result where it is used.
author:
  - onprem.llm_serving maintainers (@onprem)
attributes:
  check_mode:
    support: full
    description: The module only reads; check mode runs it in full.
  diff_mode:
    support: none
    description: Nothing is changed, so there is no diff.
  idempotent:
    support: full
    description: Always returns RV(ignore:changed=false).
options:
  gather:
    description:
      - The parts to read. V(gpus) returns RV(gpus), RV(nvswitches) and RV(pci_devices_path); V(listeners) returns
        RV(listeners); V(disk) returns RV(disk); V(cpus) returns RV(cpus), V(files) returns RV(files), V(packages)
        returns RV(packages) and V(groups) returns RV(groups) (these four only when named).
    type: list
    elements: str
    choices: [gpus, listeners, disk, cpus, files, packages, groups]
    default: [gpus, listeners, disk]
  sysfs_root:
    description:
      - Root of the sysfs tree; PCI devices are read from C(<sysfs_root>/bus/pci/devices), CPUs and NUMA nodes from
        C(<sysfs_root>/devices/system).
      - Tests point it at a fake tree.
    type: path
    default: /sys
  pci_devices_path:
    description:
      - Directory of PCI devices to read instead of C(<sysfs_root>/bus/pci/devices) (for callers that already
        name that directory, such as the nvidia_driver role's C(nvidia_driver_pci_devices_path)).
      - A directory that does not exist has no devices; it is not an error (containers often have no PCI tree).
    type: path
  nvswitch_device_ids:
    description: PCI device ids (vendor C(0x10de)) that identify an NVSwitch. Compared without regard to case.
    type: list
    elements: str
    default: ["0x1af1", "0x22a3", "0x22a4", "0x2901"]
  proc_root:
    description:
      - Root of the proc file system, for V(listeners), for the mount table used by V(disk) and for the allowed CPUs of
        V(cpus) (C(<proc_root>/self/status)).
      - Tests point it at a fake tree.
    type: path
    default: /proc
  ports:
    description: Only report listeners on these TCP ports. Empty reports every listening socket.
    type: list
    elements: int
    default: []
  paths:
    description:
      - Absolute paths to measure for V(disk). A relative path fails the task (it would be measured from wherever
        the module happens to run).
      - RV(disk) is keyed by each path exactly as given here; no C(~) or environment variable is expanded.
    type: list
    elements: str
    default: []
  files:
    description:
      - Absolute paths to read for V(files). A relative path fails the task.
      - RV(files) is keyed by each path exactly as given.
    type: list
    elements: str
    default: []
  packages:
    description:
      - OS package names to read for V(packages). RV(packages) is keyed by each name exactly as given.
    type: list
    elements: str
    default: []
  groups:
    description:
      - Group names to read for V(groups). RV(groups) is keyed by each name exactly as given.
    type: list
    elements: str
    default: []
  package_manager:
    description:
      - Where V(packages) reads. V(auto) reads dpkg's status database when O(dpkg_status_path) exists, else asks C(rpm).
    type: str
    choices: [auto, dpkg, rpm]
    default: auto
  dpkg_status_path:
    description: dpkg's status database. Tests point it at a fake file.
    type: path
    default: /var/lib/dpkg/status
notes:
  - Seeing the owner of another user's socket needs root (C(become)), as with C(ss -p). Without it such a listener
    is still reported, with an empty C(processes) list and null C(pid), C(process) and C(unit).
  - Process command lines are not returned on purpose; engines can carry secrets (API keys) in them.
  - Inside a container, listeners and processes are those of the container's network and PID namespaces.
seealso:
  - module: onprem.llm_serving.gpu_health
    description: GPU health through NVML, once a driver is loaded.
"""

EXAMPLES = r"""
- name: Read the NVIDIA GPUs and NVSwitches in PCI
  onprem.llm_serving.host_facts:
    gather: [gpus]
  register: __pci

- name: Fail on a GPU host without a GPU
  ansible.builtin.assert:
    that: __pci.gpus | length > 0
    fail_msg: "no NVIDIA GPU in {{ __pci.pci_devices_path }}"

- name: Who listens on the ports we want (become, to see every owner)
  onprem.llm_serving.host_facts:
    gather: [listeners]
    ports: [8000, 11434]
  become: true
  register: __ports

- name: Port 8000 must be free or held by our unit
  ansible.builtin.assert:
    that: >-
      __ports.listeners | selectattr('port', 'equalto', 8000) | map(attribute='unit')
      | reject('equalto', 'vllm-main.service') | list | length == 0

- name: Free space where the models will live (measured on /srv while /srv/models does not exist)
  onprem.llm_serving.host_facts:
    gather: [disk]
    paths: [/srv/models, /var/lib/containers]
  register: __disk

- name: Need 50 GiB for the models
  ansible.builtin.assert:
    that: __disk.disk['/srv/models'].free_mib >= 51200
    fail_msg: "{{ __disk.disk['/srv/models'].mount }} has {{ __disk.disk['/srv/models'].free_mib }} MiB free"

- name: The CPUs and NUMA nodes a CPU-only vLLM host offers its tensor-parallel ranks
  onprem.llm_serving.host_facts:
    gather: [cpus]
  register: __cpus

- name: Need a core per rank
  ansible.builtin.assert:
    that: __cpus.cpus.allowed | length >= 2

- name: Which of the toolkit packages are installed, and at which version (no package list is loaded)
  onprem.llm_serving.host_facts:
    gather: [packages]
    packages: [nvidia-container-toolkit, nvidia-container-toolkit-base]
  register: __pkgs

- name: Install them only when one is missing or at another version
  ansible.builtin.apt:
    name: [nvidia-container-toolkit=1.17.8-1, nvidia-container-toolkit-base=1.17.8-1]
  when: >-
    __pkgs.packages | onprem.llm_serving.packages_missing(['nvidia-container-toolkit', 'nvidia-container-toolkit-base'],
    '1.17.8-1') | length > 0

- name: Which of the GPU device groups exist here (one read, as getent group would answer)
  onprem.llm_serving.host_facts:
    gather: [groups]
    groups: [video, render]
  register: __groups

- name: The service account joins those that exist
  ansible.builtin.debug:
    msg: "{{ __groups.groups | dict2items | selectattr('value.exists') | map(attribute='key') | list }}"

- name: A test against a fake sysfs tree
  onprem.llm_serving.host_facts:
    gather: [gpus]
    sysfs_root: /tmp/fake-sys

- name: Is each model a directory with a config.json, and where does its served symlink point?
  onprem.llm_serving.host_facts:
    gather: [files]
    files: [/srv/llm/models/tiny-llama, /srv/llm/models/tiny-llama/config.json]
  register: __files

- name: The model's revision directory
  ansible.builtin.debug:
    msg: "{{ __files.files['/srv/llm/models/tiny-llama'].realpath }}"
"""

RETURN = r"""
gathered:
  description: The parts that were read, in the order of the O(gather) choices.
  returned: always
  type: list
  elements: str
  sample: [gpus, listeners, disk]
cpus:
  description: The host's CPUs and NUMA nodes.
  returned: when O(gather) contains V(cpus)
  type: dict
  contains:
    online:
      description: Online CPU ids.
      type: list
      elements: int
    allowed:
      description: The online CPU ids the module's process may run on (its cpuset and affinity), what a service started the same way gets.
      type: list
      elements: int
    numa_nodes:
      description: NUMA nodes and their CPU ids (all of them, allowed or not), sorted by node.
      type: list
      elements: dict
      contains:
        node:
          description: Node number.
          type: int
        cpus:
          description: CPU ids of the node.
          type: list
          elements: int
  sample:
    online: [0, 1]
    allowed: [0, 1]
    numa_nodes:
      - {node: 0, cpus: [0, 1]}
files:
  description: One entry per path of O(files), keyed by the path exactly as given.
  returned: when O(gather) contains V(files)
  type: dict
  contains:
    path:
      description: The path as given.
      type: str
    exists:
      description: Whether the path exists, symlinks followed (a dangling symlink does not).
      type: bool
    type:
      description: C(dir), C(file) or C(other) (symlinks followed); null when it does not exist.
      type: str
    islnk:
      description: Whether the path itself is a symlink.
      type: bool
    lnk_target:
      description: What the symlink points to, as written in it (relative or absolute); null when the path is not a symlink.
      type: str
    realpath:
      description: The canonical path, every symlink resolved; null when it does not exist.
      type: str
  sample:
    /srv/llm/models/tiny-llama:
      path: /srv/llm/models/tiny-llama
      exists: true
      type: dir
      islnk: true
      lnk_target: .revisions/tiny-llama/a1b2c3
      realpath: /srv/llm/models/.revisions/tiny-llama/a1b2c3
packages:
  description: One entry per name of O(packages), keyed by the name exactly as given.
  returned: when O(gather) contains V(packages)
  type: dict
  contains:
    name:
      description: The name as given.
      type: str
    installed:
      description: Whether the package is installed (dpkg's status C(installed), held or not; or known to C(rpm)).
      type: bool
    version:
      description: dpkg's version (epoch included, as apt spells it) or rpm's version; null when not installed.
      type: str
    release:
      description: rpm's release; empty for dpkg; null when not installed.
      type: str
    epoch:
      description: rpm's epoch when it is set, else null.
      type: int
    arch:
      description: The package's architecture; null when not installed.
      type: str
    full_version:
      description: The version a pin names (dpkg C(version); rpm C(version-release)); null when not installed.
      type: str
    selection:
      description:
        - dpkg's wanted state of the package, C(install) or C(hold) (what C(apt-mark showhold) lists); null on RPM hosts
          and when not installed.
      type: str
    manager:
      description: Where it was read, C(dpkg) or C(rpm).
      type: str
    instances:
      description:
        - Every installed architecture of the package (dicts with C(version), C(release), C(epoch), C(arch), C(manager),
          C(selection)).
      type: list
      elements: dict
  sample:
    nvidia-container-toolkit:
      name: nvidia-container-toolkit
      installed: true
      version: 1.17.8-1
      release: ""
      epoch: null
      arch: amd64
      full_version: 1.17.8-1
      selection: hold
      manager: dpkg
      instances: [{version: 1.17.8-1, release: "", epoch: null, arch: amd64, manager: dpkg, selection: hold}]
groups:
  description: One entry per name of O(groups), keyed by the name exactly as given.
  returned: when O(gather) contains V(groups)
  type: dict
  contains:
    name:
      description: The name as given.
      type: str
    exists:
      description: Whether the host's name service knows the group.
      type: bool
    gid:
      description: The group's id; null when it does not exist.
      type: int
    members:
      description: The members the group lists (sorted; users whose primary group it is are not listed, as in getent).
      type: list
      elements: str
  sample:
    video: {name: video, exists: true, gid: 44, members: []}
    render: {name: render, exists: false, gid: null, members: []}
pci_devices_path:
  description: The directory PCI devices were read from.
  returned: when O(gather) contains V(gpus)
  type: str
  sample: /sys/bus/pci/devices
gpus:
  description: NVIDIA GPUs (vendor C(0x10de), class C(0x03xxxx)), sorted by PCI address.
  returned: when O(gather) contains V(gpus)
  type: list
  elements: dict
  contains:
    address:
      description: PCI address (domain:bus:device.function), the directory name in sysfs.
      type: str
      sample: "0000:17:00.0"
    vendor:
      description: PCI vendor id, as sysfs writes it.
      type: str
      sample: "0x10de"
    device:
      description: PCI device id; empty when sysfs has none.
      type: str
      sample: "0x2330"
    class:
      description: PCI class code; empty when sysfs has none.
      type: str
      sample: "0x030200"
    driver:
      description: Kernel driver bound to the function (C(nvidia), C(nouveau), C(vfio-pci)), null when none.
      type: str
      sample: nvidia
  sample:
    - {address: "0000:17:00.0", vendor: "0x10de", device: "0x2330", class: "0x030200", driver: nvidia}
nvswitches:
  description: NVSwitches (vendor C(0x10de), device id in O(nvswitch_device_ids)), with the same keys as RV(gpus).
  returned: when O(gather) contains V(gpus)
  type: list
  elements: dict
  sample:
    - {address: "0000:05:00.0", vendor: "0x10de", device: "0x22a3", class: "0x068000", driver: null}
listeners:
  description:
    - Listening TCP sockets, IPv4 and IPv6, sorted by port, family and address; only those on O(ports) when set.
    - A dual-stack listener on V(::) appears once, as IPv6.
  returned: when O(gather) contains V(listeners)
  type: list
  elements: dict
  contains:
    protocol:
      description: C(tcp) (from /proc/net/tcp) or C(tcp6) (from /proc/net/tcp6).
      type: str
    family:
      description: C(ipv4) or C(ipv6).
      type: str
    address:
      description: Local address the socket is bound to; C(0.0.0.0) or C(::) for all addresses.
      type: str
    port:
      description: Local TCP port.
      type: int
    uid:
      description: User id that owns the socket.
      type: int
    inode:
      description: Socket inode (what C(/proc/PID/fd) links point at, C(socket:[inode])).
      type: int
    processes:
      description:
        - Every process holding the socket (forked workers share it), by PID. Empty when no owner could be read
          (another user's process without root, or the process exited while it was read).
      type: list
      elements: dict
      contains:
        pid:
          description: Process id.
          type: int
        name:
          description: Process name (C(comm), at most 15 characters), as C(ss -p) shows it.
          type: str
        unit:
          description: The systemd unit of the process (for example C(vllm-main.service), or a C(.scope)); null outside systemd.
          type: str
        user_unit:
          description: The unit inside a user manager when RV(listeners[].processes[].unit) is C(user@UID.service), else null.
          type: str
        cgroup:
          description: The cgroup path the unit was read from (cgroup v1 C(name=systemd), else v2 unified); null when unreadable.
          type: str
    pid:
      description: PID of the first process in C(processes) (the lowest PID), null when there is none.
      type: int
    process:
      description: Name of that process, null when there is none.
      type: str
    unit:
      description: systemd unit of that process, null when there is none or it is outside systemd.
      type: str
  sample:
    - protocol: tcp
      family: ipv4
      address: 0.0.0.0
      port: 8000
      uid: 999
      inode: 48213
      pid: 812
      process: python3
      unit: vllm-main.service
      processes:
        - {pid: 812, name: python3, unit: vllm-main.service, user_unit: null, cgroup: /system.slice/vllm-main.service}
    - protocol: tcp6
      family: ipv6
      address: "::"
      port: 11434
      uid: 998
      inode: 50120
      pid: 930
      process: ollama
      unit: ollama.service
      processes:
        - {pid: 930, name: ollama, unit: ollama.service, user_unit: null, cgroup: /system.slice/ollama.service}
disk:
  description: One entry per path of O(paths), keyed by the path exactly as given.
  returned: when O(gather) contains V(disk)
  type: dict
  contains:
    path:
      description: The path as given.
      type: str
    exists:
      description: Whether the path itself exists.
      type: bool
    measured_path:
      description: The path measured, the path itself or its nearest existing parent.
      type: str
    mount:
      description: Mount point of the file system holding it (as C(df --output=target) shows it).
      type: str
    fstype:
      description: File system type from the mount table, null when the mount table could not be read.
      type: str
    free_bytes:
      description: Bytes available to unprivileged users (C(f_bavail), what C(df) shows as available).
      type: int
    total_bytes:
      description: Size of the file system in bytes.
      type: int
    free_mib:
      description: C(free_bytes) in MiB, rounded down.
      type: int
    total_mib:
      description: C(total_bytes) in MiB, rounded down.
      type: int
  sample:
    /srv/models:
      path: /srv/models
      exists: false
      measured_path: /srv
      mount: /
      fstype: ext4
      free_bytes: 107374182400
      total_bytes: 214748364800
      free_mib: 102400
      total_mib: 204800
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.onprem.llm_serving.plugins.module_utils import _host_facts as hf


ARGUMENT_SPEC = dict(
    gather=dict(type="list", elements="str", choices=list(hf.GATHER_CHOICES), default=list(hf.DEFAULT_GATHER)),
    sysfs_root=dict(type="path", default="/sys"),
    pci_devices_path=dict(type="path"),
    nvswitch_device_ids=dict(type="list", elements="str", default=list(hf.DEFAULT_NVSWITCH_DEVICE_IDS)),
    proc_root=dict(type="path", default="/proc"),
    ports=dict(type="list", elements="int", default=[]),
    paths=dict(type="list", elements="str", default=[]),
    files=dict(type="list", elements="str", default=[]),
    packages=dict(type="list", elements="str", default=[]),
    groups=dict(type="list", elements="str", default=[]),
    package_manager=dict(type="str", choices=list(hf.PACKAGE_MANAGERS), default="auto"),
    dpkg_status_path=dict(type="path", default=hf.DPKG_STATUS),
)


def make_fs(module):
    """The filesystem the logic reads; unit tests may patch this to return a fake."""
    return hf.LocalFs()


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = dict((key, module.params[key]) for key in ARGUMENT_SPEC)
    bad_ports = [port for port in params["ports"] if not 0 < port < 65536]
    if bad_ports:
        module.fail_json(msg="host_facts: ports %s are not TCP ports (1-65535); fix the ports option" % bad_ports)
    try:
        result = hf.gather(make_fs(module), params, run=lambda argv: module.run_command(argv, environ_update={"LC_ALL": "C"}))
    except hf.HostFactsError as exc:
        module.fail_json(msg="host_facts could not read the host: %s" % exc)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
