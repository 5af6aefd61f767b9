# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Read-only host discovery for the host_facts module: pure logic over a tiny filesystem interface.

Private (leading underscore): the API may change between releases.

* ``pci_devices``: NVIDIA GPUs and NVSwitches from ``<sysfs>/bus/pci/devices/*/{vendor,device,class}``.
  The rules are the ones the roles used in shell: vendor ``0x10de``; a GPU is a function of PCI
  class ``0x03xxxx`` (VGA or 3D controller); an NVSwitch is a function whose device id is in a list
  (NVSwitches are bridges, class ``0x0680xx``, which other NVIDIA functions share).
* ``listeners``: listening TCP sockets from ``<proc>/net/tcp`` and ``tcp6`` (state ``0A``), each
  with the processes holding the socket (``<proc>/PID/fd`` links ``socket:[inode]``), their name
  (``comm``) and their systemd unit (``<proc>/PID/cgroup``: cgroup v1 ``name=systemd`` or v2 ``0::``).
* ``disk_usage``: free and total space of the file system holding a path, measured on the nearest
  existing parent when the path does not exist yet.
* ``cpu_topology``: the online CPUs (``<sysfs>/devices/system/cpu/online``), the CPUs this process may run on
  (``Cpus_allowed_list`` of ``<proc>/self/status``: a cpuset or affinity narrows it) and the NUMA nodes with their CPUs
  (``<sysfs>/devices/system/node/node*/cpulist``; one node holding every online CPU where the kernel has no NUMA).
* ``installed_packages``: whether named OS packages are installed and at which version, from dpkg's status database
  (``/var/lib/dpkg/status``, read as text) or from ``rpm -q``: what a role needs to decide whether its package
  manager must run at all (apt and dnf load every package list of the host first: over a second per call on a host
  with a distribution's whole archive, tests/bench/package_reads.py).
  ``packages_missing`` says which of them an install task would still have to install.

Nothing here touches ``AnsibleModule``. ``LocalFs`` is the interface to the host; unit tests point
the roots at a tree under ``tmp_path`` or swap ``LocalFs`` for a subclass.
"""

from __future__ import annotations

import fnmatch
import grp
import os
import re
import socket
import stat
import struct
import sys

NVIDIA_VENDOR = "0x10de"
GPU_CLASS_PREFIX = "0x03"
DEFAULT_NVSWITCH_DEVICE_IDS = ("0x1af1", "0x22a3", "0x22a4", "0x2901")
GATHER_CHOICES = ("gpus", "listeners", "disk", "cpus", "files", "packages", "groups")
PACKAGE_MANAGERS = ("auto", "dpkg", "rpm")
DPKG_STATUS = "/var/lib/dpkg/status"
# rpm expands the \t and \n escapes of a query format itself
RPM_QUERY_FORMAT = r"%{NAME}\t%{EPOCHNUM}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\n"
# What the module reads when O(gather) is not given (cpus and files only on request: the roles that need them ask).
DEFAULT_GATHER = ("gpus", "listeners", "disk")
TCP_LISTEN = "0A"
MIB = 1024 * 1024
# Unit types a process can belong to (slices only group other units).
PROCESS_UNIT_SUFFIXES = (".service", ".scope", ".socket", ".mount", ".swap")


class HostFactsError(Exception):
    """The host could not answer; the message says what was attempted and how to fix it."""


class LocalFs(object):
    """The filesystem calls the logic makes. Each raises OSError (IOError) like the os module does."""

    def listdir(self, path):
        return os.listdir(path)

    def read_text(self, path):
        with open(path, "r") as handle:
            return handle.read()

    def readlink(self, path):
        return os.readlink(path)

    def exists(self, path):
        return os.path.exists(path)

    def realpath(self, path):
        return os.path.realpath(path)

    def ismount(self, path):
        return os.path.ismount(path)

    def statvfs(self, path):
        return os.statvfs(path)

    def stat(self, path):
        return os.stat(path)

    def lstat(self, path):
        return os.lstat(path)

    def getgrnam(self, name):
        """A group through the host's name service (NSS), as getent reads it; KeyError when there is none."""
        return grp.getgrnam(name)


# ---------------------------------------------------------------------------------------------
# PCI: GPUs and NVSwitches
# ---------------------------------------------------------------------------------------------

def _read_attr(fs, path):
    """A sysfs attribute, stripped; None when it cannot be read (missing, or the device went away)."""
    try:
        return fs.read_text(path).strip()
    except (IOError, OSError, UnicodeDecodeError):
        return None


def _driver(fs, device_dir):
    try:
        return os.path.basename(fs.readlink(os.path.join(device_dir, "driver")))
    except (IOError, OSError):
        return None


def pci_devices(fs, devices_path, nvswitch_device_ids=DEFAULT_NVSWITCH_DEVICE_IDS):
    """NVIDIA GPUs and NVSwitches under ``devices_path`` (normally ``/sys/bus/pci/devices``).

    Returns ``{"gpus": [...], "nvswitches": [...]}``, each entry
    ``{address, vendor, device, class, driver}``, sorted by PCI address. A missing or unreadable
    ``devices_path`` (a container without a PCI tree) has no devices; so has a device whose
    ``vendor`` cannot be read. A function that is both (class 0x03 and an NVSwitch id) is in both.
    """
    switch_ids = set(str(i).strip().lower() for i in nvswitch_device_ids)
    gpus, nvswitches = [], []
    try:
        names = sorted(fs.listdir(devices_path))
    except (IOError, OSError):
        names = []
    for name in names:
        device_dir = os.path.join(devices_path, name)
        vendor = _read_attr(fs, os.path.join(device_dir, "vendor"))
        if vendor is None or vendor.lower() != NVIDIA_VENDOR:
            continue
        device = _read_attr(fs, os.path.join(device_dir, "device")) or ""
        pci_class = _read_attr(fs, os.path.join(device_dir, "class")) or ""
        entry = {"address": name, "vendor": vendor, "device": device, "class": pci_class,
                 "driver": _driver(fs, device_dir)}
        if pci_class.lower().startswith(GPU_CLASS_PREFIX):
            gpus.append(dict(entry))
        if device.lower() in switch_ids:
            nvswitches.append(dict(entry))
    return {"gpus": gpus, "nvswitches": nvswitches}


# ---------------------------------------------------------------------------------------------
# Listening TCP sockets
# ---------------------------------------------------------------------------------------------

def decode_address(hex_address, byteorder=sys.byteorder):
    """An address of /proc/net/tcp{,6} as text.

    The kernel prints each 32-bit word of the address as the host reads it (``%08X``), so the
    bytes come back in the host's byte order: ``0100007F`` is 127.0.0.1 on a little-endian host.
    """
    fmt = "<I" if byteorder == "little" else ">I"
    if len(hex_address) == 8:
        return socket.inet_ntop(socket.AF_INET, struct.pack(fmt, int(hex_address, 16)))
    if len(hex_address) == 32:
        raw = b"".join(struct.pack(fmt, int(hex_address[i:i + 8], 16)) for i in range(0, 32, 8))
        return socket.inet_ntop(socket.AF_INET6, raw)
    raise ValueError("not an IPv4 or IPv6 address: %r" % hex_address)


def parse_proc_net_tcp(text, protocol="tcp", byteorder=sys.byteorder):
    """Listening sockets (state 0A) of a /proc/net/tcp or tcp6 text: address, port, uid, inode."""
    family = "ipv6" if protocol == "tcp6" else "ipv4"
    sockets = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3].upper() != TCP_LISTEN:
            continue
        try:
            address_hex, port_hex = fields[1].split(":")
            sockets.append({"protocol": protocol, "family": family,
                            "address": decode_address(address_hex, byteorder),
                            "port": int(port_hex, 16), "uid": int(fields[7]), "inode": int(fields[9])})
        except ValueError:
            continue  # a line this parser does not understand is not a listener it can report
    return sockets


def parse_cgroup(text):
    """The cgroup path systemd tracks a process by, from the text of /proc/PID/cgroup.

    cgroup v1 and hybrid hosts: the ``name=systemd`` hierarchy; cgroup v2 (unified): the ``0::``
    line. None when neither is there (kernel threads, no systemd).
    """
    unified = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if "name=systemd" in controllers.split(","):
            return path
        if hierarchy == "0" and controllers == "":
            unified = path
    return unified


def cgroup_root(pid1_cgroup_path):
    """The cgroup the system manager lives under (systemd's cg_get_root_path): PID 1's cgroup
    without its ``/init.scope``. ``""`` on a host; ``/docker/<id>`` or similar when systemd runs in
    a container that sees the host's cgroup paths (cgroupns host)."""
    path = pid1_cgroup_path or ""
    for suffix in ("/init.scope", "/system.slice", "/system"):
        if path.endswith(suffix):
            path = path[:-len(suffix)]
            break
    return path.rstrip("/")


def _unescape(name):
    # systemd prefixes a cgroup name with "_" when it would clash with a kernel file name
    return name[1:] if name.startswith("_") else name


def _first_unit(parts):
    """The first unit after any slices (systemd's cg_path_get_unit), and what follows it."""
    for index, part in enumerate(parts):
        name = _unescape(part)
        if name.endswith(".slice"):
            continue
        if name.endswith(PROCESS_UNIT_SUFFIXES) and not name.startswith("."):
            return name, parts[index + 1:]
        return None, []
    return None, []


def units_from_cgroup(path, root=""):
    """``(unit, user_unit)`` of a cgroup path: the system unit, and for a process of a user
    manager (``user@UID.service``) the unit in that manager. Paths outside ``root`` have none."""
    if not path:
        return None, None
    if root:
        if path != root and not path.startswith(root + "/"):
            return None, None
        path = path[len(root):]
    unit, rest = _first_unit([part for part in path.split("/") if part])
    user_unit = None
    if unit and unit.startswith("user@") and unit.endswith(".service"):
        user_unit = _first_unit(rest)[0]
    return unit, user_unit


def _read_proc_cgroup(fs, proc_root, pid):
    try:
        return parse_cgroup(fs.read_text(os.path.join(proc_root, str(pid), "cgroup")))
    except (IOError, OSError):
        return None


def socket_owners(fs, proc_root, inodes):
    """``{inode: [pid, ...]}`` for the socket inodes in ``inodes``, from the /proc/PID/fd links.

    A process that exits while it is read, or whose fds cannot be read (another user's process
    when not root), is skipped: the socket then has fewer owners, or none.
    """
    wanted = set(inodes)
    owners = {}
    try:
        names = fs.listdir(proc_root)
    except (IOError, OSError) as exc:
        raise HostFactsError("could not list the processes in %s: %s" % (proc_root, exc))
    for name in names:
        if not name.isdigit():
            continue
        fd_dir = os.path.join(proc_root, name, "fd")
        try:
            fds = fs.listdir(fd_dir)
        except (IOError, OSError):
            continue
        for fd in fds:
            try:
                target = fs.readlink(os.path.join(fd_dir, fd))
            except (IOError, OSError):
                continue
            if not (target.startswith("socket:[") and target.endswith("]")):
                continue
            try:
                inode = int(target[8:-1])
            except ValueError:
                continue
            if inode in wanted:
                owners.setdefault(inode, set()).add(int(name))
    return dict((inode, sorted(pids)) for inode, pids in owners.items())


def process_info(fs, proc_root, pid, root=""):
    """``{pid, name, unit, user_unit, cgroup}`` of a process; None when it has exited."""
    try:
        name = fs.read_text(os.path.join(proc_root, str(pid), "comm")).strip()
    except (IOError, OSError):
        return None
    cgroup = _read_proc_cgroup(fs, proc_root, pid)
    unit, user_unit = units_from_cgroup(cgroup, root)
    return {"pid": pid, "name": name, "unit": unit, "user_unit": user_unit, "cgroup": cgroup}


def listeners(fs, proc_root, ports=None, byteorder=sys.byteorder):
    """Listening TCP sockets (IPv4 and IPv6) with their owning processes and units.

    ``ports``: only sockets on these ports (all when empty). Sorted by port, family, address.
    ``<proc>/net/tcp`` must be readable; ``tcp6`` is optional (IPv6 may be disabled).
    """
    found = []
    for protocol in ("tcp", "tcp6"):
        path = os.path.join(proc_root, "net", protocol)
        try:
            text = fs.read_text(path)
        except (IOError, OSError) as exc:
            if protocol == "tcp6":
                continue
            raise HostFactsError("could not read the TCP sockets from %s: %s. Is proc_root (%s) a mounted /proc?"
                                 % (path, exc, proc_root))
        found.extend(parse_proc_net_tcp(text, protocol, byteorder))
    if ports:
        wanted_ports = set(int(p) for p in ports)
        found = [s for s in found if s["port"] in wanted_ports]
    found.sort(key=lambda s: (s["port"], s["family"], s["address"], s["inode"]))
    if not found:
        return []

    owners = socket_owners(fs, proc_root, [s["inode"] for s in found if s["inode"]])
    root = cgroup_root(_read_proc_cgroup(fs, proc_root, 1))
    infos = {}
    for pids in owners.values():
        for pid in pids:
            if pid not in infos:
                infos[pid] = process_info(fs, proc_root, pid, root)
    result = []
    for sock in found:
        processes = [infos[pid] for pid in owners.get(sock["inode"], []) if infos.get(pid)]
        first = processes[0] if processes else {}
        entry = dict(sock)
        entry.update({"processes": processes, "pid": first.get("pid"), "process": first.get("name"),
                      "unit": first.get("unit")})
        result.append(entry)
    return result


# ---------------------------------------------------------------------------------------------
# Disk space
# ---------------------------------------------------------------------------------------------

def require_absolute(path, what, why=""):
    """Refuse what is not an absolute path, naming it (``what``: disk, file) and the fix."""
    if not isinstance(path, str) or not path or not os.path.isabs(path):
        raise HostFactsError("%s path %r is not absolute: give the full path (starting with /)%s" % (what, path, why))


def nearest_existing(fs, path):
    """``path`` itself when it exists, else its nearest existing parent. Relative paths are refused."""
    require_absolute(path, "disk", ", a relative path would be measured from wherever the module runs")
    current = os.path.normpath(path)
    while not fs.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            raise HostFactsError("neither %s nor any of its parents exists" % path)
        current = parent
    return current


def _unescape_mount(field):
    # /proc/mounts escapes space, tab, newline and backslash as octal (\040, \011, \012, \134)
    out, i = [], 0
    while i < len(field):
        chunk = field[i + 1:i + 4]
        if field[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text):
    """``[(mount point, fstype)]`` of a /proc/mounts text, in mount order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append((_unescape_mount(fields[1]), fields[2]))
    return mounts


def mount_of(path, mounts):
    """The mount point holding the canonical ``path`` (the longest matching one; the last mounted wins)."""
    best = None
    for point, fstype in mounts:
        if point == "/" or path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= len(best[0]):
                best = (point, fstype)
    return best


def disk_usage(fs, paths, proc_root="/proc"):
    """``{path: {...}}`` for each path as given: free/total space of the file system holding it."""
    try:
        mounts = parse_mounts(fs.read_text(os.path.join(proc_root, "self", "mounts")))
    except (IOError, OSError):
        mounts = []
    result = {}
    for path in paths:
        measured = nearest_existing(fs, path)
        try:
            st = fs.statvfs(measured)
        except (IOError, OSError) as exc:
            raise HostFactsError("could not measure the file system of %s (statvfs %s): %s" % (path, measured, exc))
        canonical = fs.realpath(measured)
        found = mount_of(canonical, mounts)
        if found:
            mount, fstype = found
        else:
            mount, fstype = canonical, None
            while not fs.ismount(mount) and os.path.dirname(mount) != mount:
                mount = os.path.dirname(mount)
        free = st.f_bavail * st.f_frsize
        total = st.f_blocks * st.f_frsize
        result[path] = {"path": path, "exists": measured == os.path.normpath(path), "measured_path": measured,
                        "mount": mount, "fstype": fstype, "free_bytes": free, "total_bytes": total,
                        "free_mib": free // MIB, "total_mib": total // MIB}
    return result


# ---------------------------------------------------------------------------------------------
# Files: what a role would otherwise ask one stat (and one realpath) at a time
# ---------------------------------------------------------------------------------------------

def file_info(fs, paths):
    """``{path: {...}}`` for each absolute path as given: whether it exists (symlinks followed), its type, whether the
    path itself is a symlink (and then what it points to, as written), and the canonical path it resolves to. Relative
    paths are refused."""
    result = {}
    for path in paths:
        require_absolute(path, "file")
        try:
            islnk = stat.S_ISLNK(fs.lstat(path).st_mode)
        except (IOError, OSError):
            islnk = False
        try:
            mode = fs.stat(path).st_mode
        except (IOError, OSError):
            mode = None
        kind = None if mode is None else ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other")
        result[path] = {"path": path, "exists": mode is not None, "type": kind, "islnk": islnk,
                        "lnk_target": fs.readlink(path) if islnk else None,
                        "realpath": fs.realpath(path) if mode is not None else None}
    return result


# ---------------------------------------------------------------------------------------------
# OS packages: installed or not, and their versions, without loading the package manager's lists
# ---------------------------------------------------------------------------------------------

def parse_dpkg_status(text, names):
    """``{name: [{...}]}`` for each of ``names`` that dpkg's status database lists as installed (its Status field's
    third word is ``installed``: held packages, ``hold ok installed``, count). One entry per architecture."""
    wanted = set(names)
    found = {}
    for stanza in text.split("\n\n"):
        fields = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue  # a continuation line (descriptions, conffiles): nothing we read spans lines
            key, value = line.split(":", 1)
            fields[key] = value.strip()
        name = fields.get("Package")
        status = fields.get("Status", "").split()
        if name not in wanted or status[2:3] != ["installed"]:
            continue
        found.setdefault(name, []).append({"version": fields.get("Version", ""), "release": "", "epoch": None,
                                           "arch": fields.get("Architecture", ""), "manager": "dpkg",
                                           "selection": status[0]})
    return found


def parse_rpm_query(text, names):
    """``{name: [{...}]}`` from ``rpm -q --qf RPM_QUERY_FORMAT names...`` (a line per installed package; rpm prints
    ``package X is not installed`` for the others, which have no tab)."""
    wanted = set(names)
    found = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 5 or parts[0] not in wanted:
            continue
        name, epoch, version, release, arch = parts
        found.setdefault(name, []).append({"version": version, "release": release,
                                           "epoch": int(epoch) if epoch.isdigit() else None, "arch": arch,
                                           "manager": "rpm", "selection": None})
    return found


def _full_version(entry):
    """The version a pin names: dpkg's version as apt spells it (epoch included); rpm's version-release."""
    return entry["version"] if entry["manager"] == "dpkg" else "%s-%s" % (entry["version"], entry["release"])


def installed_packages(fs, names, manager="auto", run=None, dpkg_status=DPKG_STATUS):
    """``{name: {...}}`` for each of ``names``: ``installed`` and, when installed, ``version``, ``release``, ``epoch``,
    ``arch``, ``full_version`` (dpkg: the version as apt spells it, epoch included; rpm: version-release) and
    ``selection`` (dpkg's wanted state, ``install`` or ``hold``, what ``apt-mark showhold`` reads; null on rpm) of its
    first entry, with every architecture's entry in ``instances``. ``run(argv)`` returns ``(rc, stdout, stderr)``."""
    if manager == "auto":
        manager = "dpkg" if fs.exists(dpkg_status) else "rpm"
    if manager == "dpkg":
        try:
            found = parse_dpkg_status(fs.read_text(dpkg_status), names)
        except (IOError, OSError) as exc:
            raise HostFactsError("could not read dpkg's status database %s: %s; on an RPM host set package_manager=rpm"
                                 % (dpkg_status, exc))
    else:
        if run is None:
            raise HostFactsError("reading RPM packages needs the rpm command, which this caller cannot run")
        found = {}
        if names:
            rc, out, err = run(["rpm", "-q", "--qf", RPM_QUERY_FORMAT] + list(names))
            if rc != 0 and "is not installed" not in out + err:  # rc counts the packages not installed
                raise HostFactsError("rpm -q failed (rc %s): %s; is this an RPM host? On a Debian host set "
                                     "package_manager=dpkg" % (rc, (err or out).strip()))
            found = parse_rpm_query(out, names)
    result = {}
    for name in names:
        entries = found.get(name, [])
        first = entries[0] if entries else {}
        full = _full_version(first) if entries else None
        result[name] = {"name": name, "installed": bool(entries), "version": first.get("version"),
                        "release": first.get("release"), "epoch": first.get("epoch"), "arch": first.get("arch"),
                        "full_version": full, "selection": first.get("selection"), "manager": manager,
                        "instances": entries}
    return result


def _version_matches(package, wanted):
    """Whether an installed package is at ``wanted`` as the package manager would read the pin: apt compares the whole
    version (epoch included; ``*`` and ``?`` as globs, as the apt module allows); dnf accepts version, version-release
    or epoch:version-release."""
    full = _full_version(package)
    if package["manager"] == "dpkg":
        candidates = [full]
    else:
        candidates = [package["version"], full] + (["%s:%s" % (package["epoch"], full)] if package["epoch"] else [])
    return any(fnmatch.fnmatchcase(candidate, wanted) for candidate in candidates)


def packages_missing(found, names, version=""):
    """The names of ``names`` an install task would still have to act on: not installed, or (``version`` set) not at
    that version (every architecture's entry). ``found`` is what ``installed_packages`` returned. A name ``found`` does not describe counts as
    missing, so the caller's package manager runs: when in doubt, the slow and sure path."""
    missing = []
    for name in names:
        package = found.get(name)
        if not package or not package.get("installed"):
            missing.append(name)
        elif version and not all(_version_matches(entry, version) for entry in package.get("instances") or [package]):
            missing.append(name)
    return missing


# ---------------------------------------------------------------------------------------------
# CPUs and NUMA nodes
# ---------------------------------------------------------------------------------------------

def parse_cpulist(text):
    """A kernel cpulist (``0-3,8,10-11``) as sorted ids; empty text is no CPU."""
    out = set()
    for part in str(text).strip().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                start, end = (int(x) for x in part.split("-", 1))
                out.update(range(start, end + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise HostFactsError("%r is not a kernel CPU list" % text)
    return sorted(out)


def cpu_topology(fs, sysfs_root="/sys", proc_root="/proc"):
    """``{"online": [...], "allowed": [...], "numa_nodes": [{"node": N, "cpus": [...]}]}``."""
    online_path = os.path.join(sysfs_root, "devices", "system", "cpu", "online")
    try:
        online = parse_cpulist(fs.read_text(online_path))
    except (OSError, IOError) as exc:
        raise HostFactsError("reading %s: %s" % (online_path, exc))
    allowed = list(online)
    status_path = os.path.join(proc_root, "self", "status")
    try:
        for line in fs.read_text(status_path).splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed = [i for i in parse_cpulist(line.split(":", 1)[1]) if i in online]
                break
    except (OSError, IOError):
        pass
    nodes = []
    node_root = os.path.join(sysfs_root, "devices", "system", "node")
    try:
        names = fs.listdir(node_root)
    except (OSError, IOError):
        names = []
    for entry in sorted((n for n in names if re.match(r"^node[0-9]+$", n)), key=lambda n: int(n[4:])):
        try:
            cpus = parse_cpulist(fs.read_text(os.path.join(node_root, entry, "cpulist")))
        except (OSError, IOError):
            continue
        nodes.append({"node": int(entry[4:]), "cpus": cpus})
    if not nodes:
        nodes = [{"node": 0, "cpus": list(online)}]
    return {"online": online, "allowed": allowed, "numa_nodes": nodes}


def group_info(fs, names):
    """Each named group as the host's name service answers (NSS: /etc/group, and LDAP or SSSD where configured, as
    C(getent group NAME) reads it): whether it exists, its gid and its listed members. One read for the groups a role
    needs, in the call that reads the rest, where C(ansible.builtin.getent) costs a round trip of its own."""
    found = {}
    for name in names:
        try:
            entry = fs.getgrnam(name)
        except KeyError:
            found[name] = {"name": name, "exists": False, "gid": None, "members": []}
        else:
            found[name] = {"name": name, "exists": True, "gid": entry.gr_gid, "members": sorted(entry.gr_mem)}
    return found


# ---------------------------------------------------------------------------------------------
# Everything the module asks for
# ---------------------------------------------------------------------------------------------

def gather(fs, params, byteorder=sys.byteorder, run=None):
    """The sections named in ``params['gather']``; ``params`` carries the module's options; ``run(argv)`` runs a
    command (``rpm -q`` for V(packages) on an RPM host) and returns ``(rc, stdout, stderr)``."""
    wanted = params.get("gather") or list(DEFAULT_GATHER)
    result = {"gathered": [name for name in GATHER_CHOICES if name in wanted]}
    if "gpus" in wanted:
        sysfs_root = params.get("sysfs_root") or "/sys"
        devices_path = params.get("pci_devices_path") or os.path.join(sysfs_root, "bus", "pci", "devices")
        ids = params.get("nvswitch_device_ids")
        if ids is None:
            ids = DEFAULT_NVSWITCH_DEVICE_IDS
        found = pci_devices(fs, devices_path, ids)
        result.update(found)
        result["pci_devices_path"] = devices_path
    proc_root = params.get("proc_root") or "/proc"
    if "listeners" in wanted:
        result["listeners"] = listeners(fs, proc_root, params.get("ports") or [], byteorder)
    if "disk" in wanted:
        result["disk"] = disk_usage(fs, params.get("paths") or [], proc_root)
    if "cpus" in wanted:
        result["cpus"] = cpu_topology(fs, params.get("sysfs_root") or "/sys", proc_root)
    if "files" in wanted:
        result["files"] = file_info(fs, params.get("files") or [])
    if "packages" in wanted:
        result["packages"] = installed_packages(fs, params.get("packages") or [], params.get("package_manager") or "auto",
                                                run, params.get("dpkg_status_path") or DPKG_STATUS)
    if "groups" in wanted:
        result["groups"] = group_info(fs, params.get("groups") or [])
    return result
