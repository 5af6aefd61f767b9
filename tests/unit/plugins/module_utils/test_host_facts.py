# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests of host_facts' logic against fake sysfs and /proc trees under tmp_path."""
from __future__ import annotations

import collections
import errno
import os
import socket
import struct

import pytest

from ansible_collections.onprem.llm_serving.plugins.module_utils import _host_facts as hf

TCP_HEADER = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
TCP6_HEADER = ("  sl  local_address                         remote_address                        st tx_queue rx_queue"
               " tr tm->when retrnsmt   uid  timeout inode\n")


def proc_hex(address, byteorder="little"):
    """An address as the kernel prints it in /proc/net/tcp{,6}: each 32-bit word in host order."""
    fmt = "<I" if byteorder == "little" else ">I"
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    raw = socket.inet_pton(family, address)
    return "".join("%08X" % struct.unpack(fmt, raw[i:i + 4])[0] for i in range(0, len(raw), 4))


def tcp_line(index, address, port, inode, state="0A", uid=0, byteorder="little"):
    remote = "0" * (8 if ":" not in address else 32) + ":0000"
    return ("%4d: %s:%04X %s %s 00000000:00000000 00:00000000 00000000 %5d        0 %d 1 0000000000000000 100 0 0 10 0\n"
            % (index, proc_hex(address, byteorder), port, remote, state, uid, inode))


# ---------------------------------------------------------------------------------------------
# fake trees
# ---------------------------------------------------------------------------------------------

def make_sysfs(root, devices):
    """devices: {address: {vendor, device, class, driver}}; a None value leaves that file out."""
    base = root / "bus" / "pci" / "devices"
    base.mkdir(parents=True)
    for address, attrs in devices.items():
        device_dir = base / address
        device_dir.mkdir()
        for key in ("vendor", "device", "class"):
            if attrs.get(key) is not None:
                (device_dir / key).write_text(attrs[key] + "\n")
        if attrs.get("driver"):
            os.symlink("../../../bus/pci/drivers/" + attrs["driver"], str(device_dir / "driver"))
    return base


SYSFS = {
    "0000:17:00.0": {"vendor": "0x10de", "device": "0x2330", "class": "0x030200", "driver": "nvidia"},  # H100 (3D)
    "0000:18:00.0": {"vendor": "0x10de", "device": "0x2684", "class": "0x030000"},  # a VGA GeForce, no driver
    "0000:18:00.1": {"vendor": "0x10de", "device": "0x22ba", "class": "0x040300"},  # its HDMI audio function
    "0000:05:00.0": {"vendor": "0x10de", "device": "0x22a3", "class": "0x068000"},  # NVSwitch (bridge)
    "0000:06:00.0": {"vendor": "0x10de", "device": "0x1ad1", "class": "0x068000"},  # an NVIDIA bridge, no NVSwitch
    "0000:00:02.0": {"vendor": "0x8086", "device": "0x1234", "class": "0x030000"},  # Intel VGA
    "0000:00:1f.0": {"vendor": "0x1af4", "device": "0x22a3", "class": "0x068000"},  # NVSwitch id, other vendor
    "0000:99:00.0": {"vendor": None, "device": "0x2330", "class": "0x030200"},  # vendor unreadable (going away)
    "0000:9a:00.0": {"vendor": "0x10de", "device": None, "class": None},  # a half-gone NVIDIA function
}


def make_proc(root, tcp="", tcp6=None, processes=None, pid1_cgroup="0::/init.scope\n", mounts=None):
    """processes: {pid: {comm, cgroup, fds: {fd: link target}}}; a None comm/cgroup/fds leaves it out."""
    (root / "net").mkdir(parents=True)
    (root / "net" / "tcp").write_text(TCP_HEADER + tcp)
    if tcp6 is not None:
        (root / "net" / "tcp6").write_text(TCP6_HEADER + tcp6)
    (root / "self").mkdir()
    if mounts is not None:
        (root / "self" / "mounts").write_text(mounts)
    procs = {1: {"comm": "systemd", "cgroup": pid1_cgroup, "fds": {}}}
    procs.update(processes or {})
    for pid, info in procs.items():
        pid_dir = root / str(pid)
        pid_dir.mkdir()
        if info.get("comm") is not None:
            (pid_dir / "comm").write_text(info["comm"] + "\n")
        if info.get("cgroup") is not None:
            (pid_dir / "cgroup").write_text(info["cgroup"])
        if info.get("fds") is not None:
            (pid_dir / "fd").mkdir()
            for fd, target in info["fds"].items():
                os.symlink(target, str(pid_dir / "fd" / str(fd)))
    return root


# ---------------------------------------------------------------------------------------------
# PCI
# ---------------------------------------------------------------------------------------------

def test_pci_gpus_nvswitches_and_other_devices(tmp_path):
    base = make_sysfs(tmp_path, SYSFS)
    found = hf.pci_devices(hf.LocalFs(), str(base))
    assert [g["address"] for g in found["gpus"]] == ["0000:17:00.0", "0000:18:00.0"]
    assert found["gpus"][0] == {"address": "0000:17:00.0", "vendor": "0x10de", "device": "0x2330",
                                "class": "0x030200", "driver": "nvidia"}
    assert found["gpus"][1]["driver"] is None
    assert found["nvswitches"] == [{"address": "0000:05:00.0", "vendor": "0x10de", "device": "0x22a3",
                                    "class": "0x068000", "driver": None}]


def test_pci_nvswitch_ids_are_an_option_and_case_insensitive(tmp_path):
    base = make_sysfs(tmp_path, SYSFS)
    found = hf.pci_devices(hf.LocalFs(), str(base), ["0x1AD1"])
    assert [s["address"] for s in found["nvswitches"]] == ["0000:06:00.0"]


def test_pci_function_in_both_lists_like_the_shell_it_replaces(tmp_path):
    base = make_sysfs(tmp_path, {"0000:01:00.0": {"vendor": "0x10de", "device": "0x22a3", "class": "0x030200"}})
    found = hf.pci_devices(hf.LocalFs(), str(base))
    assert len(found["gpus"]) == 1 and len(found["nvswitches"]) == 1


@pytest.mark.parametrize("make", [False, True])
def test_pci_missing_or_empty_tree_has_no_devices(tmp_path, make):
    path = tmp_path / "devices"
    if make:
        path.mkdir()
    assert hf.pci_devices(hf.LocalFs(), str(path)) == {"gpus": [], "nvswitches": []}


def test_pci_device_vanishing_while_read(tmp_path):
    base = make_sysfs(tmp_path, SYSFS)

    class VanishingFs(hf.LocalFs):
        def read_text(self, path):
            if "0000:17:00.0" in path and path.endswith("class"):
                raise IOError(errno.ENODEV, "No such device")
            return super(VanishingFs, self).read_text(path)

    found = hf.pci_devices(VanishingFs(), str(base))
    assert [g["address"] for g in found["gpus"]] == ["0000:18:00.0"]


# ---------------------------------------------------------------------------------------------
# /proc/net/tcp parsing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, address", [
    ("0100007F", "127.0.0.1"),
    ("00000000", "0.0.0.0"),
    ("0A01A8C0", "192.168.1.10"),
    ("00000000000000000000000000000000", "::"),
    ("00000000000000000000000001000000", "::1"),
    ("0000000000000000FFFF00000100007F", "::ffff:127.0.0.1"),
    ("000080FE000000000000000001000000", "fe80::1"),
    ("B80D0120000000000000000001000000", "2001:db8::1"),
])
def test_decode_address_little_endian(text, address):
    assert hf.decode_address(text, "little") == address
    assert proc_hex(address, "little") == text


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "2001:db8::8:800:200c:417a"])
def test_decode_address_big_endian(address):
    assert hf.decode_address(proc_hex(address, "big"), "big") == address


def test_decode_address_rejects_other_lengths():
    with pytest.raises(ValueError):
        hf.decode_address("0100", "little")


def test_parse_proc_net_tcp_keeps_listeners_only():
    text = (TCP_HEADER
            + tcp_line(0, "127.0.0.1", 8000, 111)
            + tcp_line(1, "0.0.0.0", 22, 222, uid=0)
            + tcp_line(2, "10.0.0.5", 22, 333, state="01")  # ESTABLISHED
            + tcp_line(3, "10.0.0.5", 40000, 0, state="06")  # TIME_WAIT
            + "   4: garbage\n"
            + "   5: ZZZZZZZZ:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 5 1\n")
    assert hf.parse_proc_net_tcp(text, "tcp", "little") == [
        {"protocol": "tcp", "family": "ipv4", "address": "127.0.0.1", "port": 8000, "uid": 0, "inode": 111},
        {"protocol": "tcp", "family": "ipv4", "address": "0.0.0.0", "port": 22, "uid": 0, "inode": 222},
    ]


def test_parse_proc_net_tcp6():
    text = TCP6_HEADER + tcp_line(0, "::", 11434, 50120, uid=998) + tcp_line(1, "::1", 631, 77)
    got = hf.parse_proc_net_tcp(text, "tcp6", "little")
    assert [(s["family"], s["address"], s["port"], s["uid"], s["inode"]) for s in got] == [
        ("ipv6", "::", 11434, 998, 50120), ("ipv6", "::1", 631, 0, 77)]


# ---------------------------------------------------------------------------------------------
# cgroups and units
# ---------------------------------------------------------------------------------------------

V1_HYBRID = ("12:pids:/system.slice/vllm-main.service\n"
             "1:name=systemd:/system.slice/vllm-main.service\n"
             "0::/system.slice/vllm-main.service\n")


@pytest.mark.parametrize("text, path", [
    (V1_HYBRID, "/system.slice/vllm-main.service"),
    ("0::/system.slice/ollama.service\n", "/system.slice/ollama.service"),
    ("4:memory:/x\n3:cpu,cpuacct:/y\n", None),  # v1 without the systemd hierarchy
    ("", None),  # a kernel thread
    ("1:name=systemd:/user.slice/a.scope\n0::/\n", "/user.slice/a.scope"),  # hybrid: name=systemd wins
    ("2:cpu,name=systemd:/system.slice/b.service\n", "/system.slice/b.service"),
])
def test_parse_cgroup(text, path):
    assert hf.parse_cgroup(text) == path


@pytest.mark.parametrize("path, root, units", [
    ("/system.slice/vllm-main.service", "", ("vllm-main.service", None)),
    ("/system.slice/tgi-a.service/payload", "", ("tgi-a.service", None)),  # delegated subgroup
    ("/system.slice/docker-0123abcd.scope", "", ("docker-0123abcd.scope", None)),
    ("/system.slice/system-vllm.slice/vllm@a.service", "", ("vllm@a.service", None)),
    ("/system.slice/_cpu.service", "", ("cpu.service", None)),  # systemd's escape of kernel names
    ("/user.slice/user-1000.slice/user@1000.service/app.slice/jupyter.service", "",
     ("user@1000.service", "jupyter.service")),
    ("/user.slice/user-1000.slice/session-4.scope", "", ("session-4.scope", None)),
    ("/init.scope", "", ("init.scope", None)),
    ("/", "", (None, None)),
    ("/system.slice", "", (None, None)),
    ("/docker/abc123", "", (None, None)),  # not a systemd cgroup
    # systemd in a container that sees the host's cgroup paths (the lab: cgroupns host)
    ("/docker/abc123/system.slice/preflight-test-listener.service", "/docker/abc123",
     ("preflight-test-listener.service", None)),
    ("/docker/other/system.slice/x.service", "/docker/abc123", (None, None)),
    ("", "", (None, None)),
    (None, "", (None, None)),
])
def test_units_from_cgroup(path, root, units):
    assert hf.units_from_cgroup(path, root) == units


@pytest.mark.parametrize("pid1, root", [
    ("/init.scope", ""),
    ("/", ""),
    (None, ""),
    ("/docker/abc123/init.scope", "/docker/abc123"),
    ("/docker/abc123", "/docker/abc123"),
    ("/lxc/c1/system.slice", "/lxc/c1"),
])
def test_cgroup_root(pid1, root):
    assert hf.cgroup_root(pid1) == root


# ---------------------------------------------------------------------------------------------
# listeners from a fake /proc
# ---------------------------------------------------------------------------------------------

LITTLE = "little"


@pytest.fixture
def proc(tmp_path):
    tcp = (tcp_line(0, "0.0.0.0", 8000, 1001, uid=999, byteorder=LITTLE)
           + tcp_line(1, "127.0.0.1", 9000, 1002, byteorder=LITTLE)  # owner not visible (another user, no root)
           + tcp_line(2, "0.0.0.0", 7000, 1003, byteorder=LITTLE)  # owner exits while read
           + tcp_line(3, "10.0.0.5", 8000, 1004, state="01", byteorder=LITTLE))  # a connection, not a listener
    tcp6 = (tcp_line(0, "::", 11434, 2001, uid=998, byteorder=LITTLE)
            + tcp_line(1, "::1", 8000, 2002, uid=999, byteorder=LITTLE))
    processes = {
        812: {"comm": "python3", "cgroup": "0::/system.slice/vllm-main.service\n",
              "fds": {0: "/dev/null", 1: "pipe:[5]", 3: "socket:[1001]", 4: "socket:[2002]", 5: "anon_inode:[eventfd]"}},
        930: {"comm": "ollama", "cgroup": V1_HYBRID.replace("vllm-main", "ollama"), "fds": {7: "socket:[2001]"}},
        931: {"comm": "ollama", "cgroup": V1_HYBRID.replace("vllm-main", "ollama"), "fds": {7: "socket:[2001]"}},
        # the listener of port 7000 has exited: fd still listed, comm already gone
        1500: {"comm": None, "cgroup": None, "fds": {3: "socket:[1003]"}},
        # a process without a readable fd directory (exited, or not ours)
        1600: {"comm": "sshd", "cgroup": "0::/system.slice/ssh.service\n", "fds": None},
    }
    root = make_proc(tmp_path / "proc", tcp, tcp6, processes)
    (root / "sys").mkdir()  # a non-PID entry
    return root


def test_listeners_with_owners_units_and_races(proc):
    got = hf.listeners(hf.LocalFs(), str(proc), byteorder=LITTLE)
    summary = [(s["protocol"], s["address"], s["port"], s["pid"], s["process"], s["unit"],
                [p["pid"] for p in s["processes"]]) for s in got]
    assert summary == [
        ("tcp", "0.0.0.0", 7000, None, None, None, []),
        ("tcp", "0.0.0.0", 8000, 812, "python3", "vllm-main.service", [812]),
        ("tcp6", "::1", 8000, 812, "python3", "vllm-main.service", [812]),
        ("tcp", "127.0.0.1", 9000, None, None, None, []),
        ("tcp6", "::", 11434, 930, "ollama", "ollama.service", [930, 931]),
    ]
    ollama = got[-1]
    assert ollama["uid"] == 998 and ollama["inode"] == 2001 and ollama["family"] == "ipv6"
    assert ollama["processes"][1] == {"pid": 931, "name": "ollama", "unit": "ollama.service", "user_unit": None,
                                      "cgroup": "/system.slice/ollama.service"}


def test_listeners_restricted_to_ports(proc):
    got = hf.listeners(hf.LocalFs(), str(proc), ports=[8000, 12345], byteorder=LITTLE)
    assert [(s["address"], s["port"]) for s in got] == [("0.0.0.0", 8000), ("::1", 8000)]
    assert hf.listeners(hf.LocalFs(), str(proc), ports=[12345], byteorder=LITTLE) == []


def test_listeners_without_tcp6(tmp_path):
    root = make_proc(tmp_path / "proc", tcp_line(0, "0.0.0.0", 22, 5, byteorder=LITTLE), tcp6=None)
    assert [s["port"] for s in hf.listeners(hf.LocalFs(), str(root), byteorder=LITTLE)] == [22]


def test_listeners_without_proc_net_tcp_is_an_error(tmp_path):
    with pytest.raises(hf.HostFactsError, match="could not read the TCP sockets from .*net/tcp"):
        hf.listeners(hf.LocalFs(), str(tmp_path))


def test_listeners_unit_inside_a_container_that_sees_host_cgroups(tmp_path):
    cgroup = "1:name=systemd:/docker/abc123/system.slice/preflight-test-listener.service\n0::/\n"
    root = make_proc(tmp_path / "proc", tcp_line(0, "0.0.0.0", 8011, 42, byteorder=LITTLE),
                     processes={77: {"comm": "python3", "cgroup": cgroup, "fds": {3: "socket:[42]"}}},
                     pid1_cgroup="1:name=systemd:/docker/abc123/init.scope\n0::/\n")
    got = hf.listeners(hf.LocalFs(), str(root), byteorder=LITTLE)
    assert got[0]["unit"] == "preflight-test-listener.service"
    assert got[0]["processes"][0]["cgroup"] == "/docker/abc123/system.slice/preflight-test-listener.service"


def test_listeners_user_manager_unit(tmp_path):
    cgroup = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/jupyter.service\n"
    root = make_proc(tmp_path / "proc", tcp_line(0, "127.0.0.1", 8888, 42, uid=1000, byteorder=LITTLE),
                     processes={77: {"comm": "jupyter-lab", "cgroup": cgroup, "fds": {3: "socket:[42]"}}})
    proc_entry = hf.listeners(hf.LocalFs(), str(root), byteorder=LITTLE)[0]["processes"][0]
    assert (proc_entry["unit"], proc_entry["user_unit"]) == ("user@1000.service", "jupyter.service")


def test_listeners_fd_directory_permission_denied_and_vanishing_links(proc):
    class DeniedFs(hf.LocalFs):
        def listdir(self, path):
            if path.endswith(os.path.join("930", "fd")):
                raise OSError(errno.EACCES, "Permission denied")
            return super(DeniedFs, self).listdir(path)

        def readlink(self, path):
            if path.endswith(os.path.join("931", "fd", "7")):
                raise OSError(errno.ENOENT, "No such file or directory")  # closed between listdir and readlink
            return super(DeniedFs, self).readlink(path)

    got = hf.listeners(DeniedFs(), str(proc), ports=[11434], byteorder=LITTLE)
    assert got[0]["processes"] == [] and got[0]["pid"] is None


def test_listeners_proc_not_listable(tmp_path):
    root = make_proc(tmp_path / "proc", tcp_line(0, "0.0.0.0", 22, 5, byteorder=LITTLE))

    class NoListFs(hf.LocalFs):
        def listdir(self, path):
            if path == str(root):
                raise OSError(errno.EACCES, "Permission denied")
            return super(NoListFs, self).listdir(path)

    with pytest.raises(hf.HostFactsError, match="could not list the processes"):
        hf.listeners(NoListFs(), str(root), byteorder=LITTLE)


# ---------------------------------------------------------------------------------------------
# disk
# ---------------------------------------------------------------------------------------------

StatVfs = collections.namedtuple("StatVfs", "f_frsize f_blocks f_bavail")


class FixedStatFs(hf.LocalFs):
    """Real tree, fixed numbers: 4 KiB blocks, 100 GiB, 30 GiB + 1 KiB available."""

    def __init__(self):
        self.measured = []

    def statvfs(self, path):
        self.measured.append(path)
        return StatVfs(4096, 100 * 262144, 30 * 262144)


@pytest.mark.parametrize("path", ["", "srv/models", "./models", "../models", "~models"])
def test_disk_refuses_relative_paths(tmp_path, path):
    with pytest.raises(hf.HostFactsError, match="is not absolute"):
        hf.disk_usage(FixedStatFs(), [path], str(tmp_path))


def test_disk_nearest_existing_parent(tmp_path):
    (tmp_path / "srv").mkdir()
    missing = str(tmp_path / "srv" / "models" / "not" / "yet")
    fs = FixedStatFs()
    got = hf.disk_usage(fs, [missing, str(tmp_path / "srv")], str(tmp_path / "noproc"))
    assert fs.measured == [str(tmp_path / "srv")] * 2
    entry = got[missing]
    assert entry["exists"] is False and entry["measured_path"] == str(tmp_path / "srv")
    assert (entry["free_mib"], entry["total_mib"]) == (30 * 1024, 100 * 1024)
    assert (entry["free_bytes"], entry["total_bytes"]) == (30 * 1024 ** 3, 100 * 1024 ** 3)
    assert got[str(tmp_path / "srv")]["exists"] is True


def test_disk_keys_are_the_paths_as_given(tmp_path):
    given = str(tmp_path) + "/a/../b/"
    got = hf.disk_usage(FixedStatFs(), [given], str(tmp_path))
    assert list(got) == [given]
    assert got[given]["measured_path"] == str(tmp_path)


def test_disk_mount_from_the_mount_table(tmp_path):
    data = tmp_path / "data dir"
    (data / "models").mkdir(parents=True)
    proc = tmp_path / "proc"
    (proc / "self").mkdir(parents=True)
    (proc / "self" / "mounts").write_text(
        "overlay / overlay rw 0 0\n"
        "/dev/sda1 %s ext4 rw 0 0\n"
        "/dev/sdb1 %s xfs rw 0 0\n"
        "/dev/sdc1 %s xfs rw 0 0\n" % (str(tmp_path).replace(" ", "\\040"),
                                       str(data).replace(" ", "\\040"),
                                       str(tmp_path / "data").replace(" ", "\\040")))
    got = hf.disk_usage(FixedStatFs(), [str(data / "models" / "x"), str(tmp_path / "datax")], str(proc))
    assert (got[str(data / "models" / "x")]["mount"], got[str(data / "models" / "x")]["fstype"]) == (str(data), "xfs")
    # /.../datax is not under /.../data: a prefix must end at a path separator
    assert (got[str(tmp_path / "datax")]["mount"], got[str(tmp_path / "datax")]["fstype"]) == (str(tmp_path), "ext4")


def test_disk_mount_without_a_mount_table_walks_up_to_a_mount_point(tmp_path):
    class MountAtTmp(FixedStatFs):
        def ismount(self, path):
            return path in (str(tmp_path), "/")

    (tmp_path / "a").mkdir()
    got = hf.disk_usage(MountAtTmp(), [str(tmp_path / "a" / "b")], str(tmp_path / "noproc"))
    assert (got[str(tmp_path / "a" / "b")]["mount"], got[str(tmp_path / "a" / "b")]["fstype"]) == (str(tmp_path), None)


def test_disk_stops_at_the_root_when_nothing_exists(tmp_path):
    class NothingFs(FixedStatFs):
        def exists(self, path):
            return False

    with pytest.raises(hf.HostFactsError, match="nor any of its parents exists"):
        hf.disk_usage(NothingFs(), ["/srv/models"], str(tmp_path))


def test_disk_statvfs_failure(tmp_path):
    class BrokenFs(hf.LocalFs):
        def statvfs(self, path):
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(hf.HostFactsError, match="could not measure the file system of"):
        hf.disk_usage(BrokenFs(), [str(tmp_path)], str(tmp_path))


def test_disk_real_statvfs(tmp_path):
    got = hf.disk_usage(hf.LocalFs(), [str(tmp_path / "x")], "/proc")[str(tmp_path / "x")]
    assert got["total_mib"] > 0 and 0 <= got["free_mib"] <= got["total_mib"]


@pytest.mark.parametrize("text, mounts", [
    ("/dev/sda1 / ext4 rw 0 0\n", [("/", "ext4")]),
    ("srv:/x /mnt/with\\040space nfs4 rw 0 0\n", [("/mnt/with space", "nfs4")]),
    ("a /b\\134c ext4 rw 0 0\nbroken\n", [("/b\\c", "ext4")]),
])
def test_parse_mounts(text, mounts):
    assert hf.parse_mounts(text) == mounts


# ---------------------------------------------------------------------------------------------
# gather
# ---------------------------------------------------------------------------------------------

def test_gather_only_what_is_asked(tmp_path):
    make_sysfs(tmp_path / "sys", SYSFS)
    got = hf.gather(hf.LocalFs(), {"gather": ["gpus"], "sysfs_root": str(tmp_path / "sys")})
    assert sorted(got) == ["gathered", "gpus", "nvswitches", "pci_devices_path"]
    assert got["gathered"] == ["gpus"]
    assert got["pci_devices_path"] == str(tmp_path / "sys" / "bus" / "pci" / "devices")
    assert len(got["gpus"]) == 2 and len(got["nvswitches"]) == 1


def test_gather_pci_devices_path_wins_over_sysfs_root(tmp_path):
    base = make_sysfs(tmp_path / "sys", SYSFS)
    got = hf.gather(hf.LocalFs(), {"gather": ["gpus"], "sysfs_root": "/nonexistent", "pci_devices_path": str(base),
                                   "nvswitch_device_ids": []})
    assert len(got["gpus"]) == 2 and got["nvswitches"] == []


# ---------------------------------------------------------------------------------------------
# cpus
# ---------------------------------------------------------------------------------------------

def make_cpu_tree(tmp_path, online, nodes, allowed=None):
    sysfs, proc = tmp_path / "sys", tmp_path / "proc"
    (sysfs / "devices" / "system" / "cpu").mkdir(parents=True)
    (sysfs / "devices" / "system" / "cpu" / "online").write_text(online + "\n")
    for node, cpulist in nodes.items():
        (sysfs / "devices" / "system" / "node" / ("node%d" % node)).mkdir(parents=True)
        (sysfs / "devices" / "system" / "node" / ("node%d" % node) / "cpulist").write_text(cpulist + "\n")
    (proc / "self").mkdir(parents=True)
    if allowed is not None:
        (proc / "self" / "status").write_text("Name:\tpython3\nCpus_allowed:\tff\nCpus_allowed_list:\t%s\n" % allowed)
    return str(sysfs), str(proc)


def test_cpus_two_nodes_and_a_cpuset(tmp_path):
    sysfs, proc = make_cpu_tree(tmp_path, "0-7", {1: "4-7", 0: "0-3"}, allowed="2-5")
    got = hf.gather(hf.LocalFs(), {"gather": ["cpus"], "sysfs_root": sysfs, "proc_root": proc})
    assert got["gathered"] == ["cpus"]
    assert got["cpus"] == {"online": list(range(8)), "allowed": [2, 3, 4, 5],
                           "numa_nodes": [{"node": 0, "cpus": [0, 1, 2, 3]}, {"node": 1, "cpus": [4, 5, 6, 7]}]}


def test_cpus_without_numa_is_one_node(tmp_path):
    sysfs, proc = make_cpu_tree(tmp_path, "0-1", {})
    got = hf.cpu_topology(hf.LocalFs(), sysfs, proc)
    assert got == {"online": [0, 1], "allowed": [0, 1], "numa_nodes": [{"node": 0, "cpus": [0, 1]}]}


def test_cpus_not_gathered_by_default():
    from ansible_collections.onprem.llm_serving.plugins.modules import host_facts
    assert "cpus" not in hf.DEFAULT_GATHER and "cpus" in hf.GATHER_CHOICES
    assert host_facts.ARGUMENT_SPEC["gather"]["default"] == ["gpus", "listeners", "disk"]


def test_cpus_unreadable_online_file_names_it(tmp_path):
    with pytest.raises(hf.HostFactsError, match="devices/system/cpu/online"):
        hf.cpu_topology(hf.LocalFs(), str(tmp_path), str(tmp_path))


def test_cpus_of_this_machine():
    got = hf.cpu_topology(hf.LocalFs())
    assert got["allowed"] and set(got["allowed"]) <= set(got["online"])
    assert sorted(os.sched_getaffinity(0)) == got["allowed"]


def test_files_types_links_and_real_paths(tmp_path):
    revision = tmp_path / ".revisions" / "tiny" / "r1"
    revision.mkdir(parents=True)
    (revision / "config.json").write_text("{}")
    (tmp_path / "tiny").symlink_to(".revisions/tiny/r1")
    (tmp_path / "dangling").symlink_to("nowhere")
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    paths = ["%s/%s" % (tmp_path, name) for name in ("tiny", "tiny/config.json", "dangling", "model.gguf", "missing", "tiny/")]
    found = hf.file_info(hf.LocalFs(), paths)
    assert list(found) == paths  # keyed by the paths as given
    assert found[paths[0]] == {"path": paths[0], "exists": True, "type": "dir", "islnk": True, "lnk_target": ".revisions/tiny/r1",
                               "realpath": str(revision)}
    assert found[paths[1]]["type"] == "file" and found[paths[1]]["realpath"] == str(revision / "config.json")
    assert found[paths[1]]["lnk_target"] is None
    assert found[paths[2]] == {"path": paths[2], "exists": False, "type": None, "islnk": True, "lnk_target": "nowhere", "realpath": None}
    assert found[paths[3]] == {"path": paths[3], "exists": True, "type": "file", "islnk": False, "lnk_target": None, "realpath": paths[3]}
    assert found[paths[4]] == {"path": paths[4], "exists": False, "type": None, "islnk": False, "lnk_target": None, "realpath": None}
    assert found[paths[5]]["type"] == "dir" and found[paths[5]]["realpath"] == str(revision)


@pytest.mark.parametrize("path", ["relative/model", "", None])
def test_files_refuses_relative_paths(path):
    with pytest.raises(hf.HostFactsError, match="is not absolute"):
        hf.file_info(hf.LocalFs(), [path])


def test_files_gathered_only_when_asked(tmp_path):
    (tmp_path / "m").mkdir()
    params = {"gather": ["files"], "files": [str(tmp_path / "m")]}
    result = hf.gather(hf.LocalFs(), params)
    assert result["gathered"] == ["files"] and result["files"][str(tmp_path / "m")]["type"] == "dir"
    assert "files" not in hf.gather(hf.LocalFs(), {"gather": ["disk"], "paths": [str(tmp_path)], "files": [str(tmp_path)]})


# ---------------------------------------------------------------------------------------------
# packages: dpkg's status database, rpm -q
# ---------------------------------------------------------------------------------------------

DPKG_STATUS_TEXT = """Package: nvidia-container-toolkit
Status: hold ok installed
Priority: optional
Architecture: amd64
Version: 1.17.8-1
Description: a stand-in
 with a continuation line
 Version: 9.9 (not a field: a continuation)

Package: docker.io
Status: install ok installed
Architecture: amd64
Version: 20.10.24+dfsg1-1+b3
Conffiles:
 /etc/default/docker 1234

Package: podman
Status: deinstall ok config-files
Architecture: amd64
Version: 4.3.1+ds1-8+b1

Package: libfoo1
Status: install ok installed
Architecture: amd64
Version: 1:2.0-1

Package: libfoo1
Status: install ok installed
Architecture: i386
Version: 1:1.9-1

Package: half
Status: install ok half-configured
Architecture: amd64
Version: 1.0
"""


def dpkg_tree(tmp_path, text=DPKG_STATUS_TEXT):
    path = tmp_path / "status"
    path.write_text(text)
    return str(path)


def test_packages_from_dpkg_status(tmp_path):
    status = dpkg_tree(tmp_path)
    found = hf.installed_packages(hf.LocalFs(), ["nvidia-container-toolkit", "docker.io", "podman", "half", "absent"],
                                  dpkg_status=status)
    assert list(found) == ["nvidia-container-toolkit", "docker.io", "podman", "half", "absent"]
    # held packages are installed; a continuation line is not a field
    assert found["nvidia-container-toolkit"]["installed"] is True
    assert found["nvidia-container-toolkit"]["full_version"] == "1.17.8-1" and found["nvidia-container-toolkit"]["arch"] == "amd64"
    assert found["docker.io"]["version"] == "20.10.24+dfsg1-1+b3" and found["docker.io"]["manager"] == "dpkg"
    assert found["nvidia-container-toolkit"]["selection"] == "hold" and found["docker.io"]["selection"] == "install"
    assert found["absent"]["selection"] is None
    # removed with its configuration kept, half-configured, unknown: not installed
    assert [found[n]["installed"] for n in ("podman", "half", "absent")] == [False, False, False]
    assert found["absent"]["version"] is None and found["absent"]["instances"] == []


def test_packages_missing_reads_pins_as_apt_does(tmp_path):
    found = hf.installed_packages(hf.LocalFs(), ["nvidia-container-toolkit", "docker.io", "podman", "libfoo1"],
                                  dpkg_status=dpkg_tree(tmp_path))
    assert hf.packages_missing(found, ["nvidia-container-toolkit", "docker.io"]) == []
    assert hf.packages_missing(found, ["nvidia-container-toolkit"], "1.17.8-1") == []
    assert hf.packages_missing(found, ["nvidia-container-toolkit"], "1.17.7-1") == ["nvidia-container-toolkit"]
    assert hf.packages_missing(found, ["nvidia-container-toolkit"], "1.17.*") == []  # apt's glob pins
    assert hf.packages_missing(found, ["podman", "docker.io"]) == ["podman"]
    # apt compares the whole version, epoch included: a pin without it is not this package's version
    assert hf.packages_missing(found, ["libfoo1"], "2.0-1") == ["libfoo1"]
    # every architecture installed must be at the pin
    assert hf.packages_missing(found, ["libfoo1"], "1:2.0-1") == ["libfoo1"]
    assert hf.packages_missing(found, ["libfoo1"], "1:*") == []
    # a name the read did not ask for counts as missing (the package manager decides)
    assert hf.packages_missing(found, ["never-read"]) == ["never-read"]


def test_packages_from_rpm():
    calls = []

    def run(argv):
        calls.append(argv)
        return 1, ("nvidia-driver\t3\t580.95.05\t1.el9\tx86_64\nkmod-nvidia-open\t0\t580.95.05\t1.el9\tx86_64\n"
                   "package docker-ce is not installed\n"), ""

    found = hf.installed_packages(hf.LocalFs(), ["nvidia-driver", "kmod-nvidia-open", "docker-ce"], manager="rpm", run=run)
    assert calls == [["rpm", "-q", "--qf", hf.RPM_QUERY_FORMAT, "nvidia-driver", "kmod-nvidia-open", "docker-ce"]]
    assert found["nvidia-driver"]["full_version"] == "580.95.05-1.el9" and found["nvidia-driver"]["epoch"] == 3
    assert found["docker-ce"]["installed"] is False and found["nvidia-driver"]["selection"] is None
    # dnf's pins: version, version-release, epoch:version-release
    for pin in ("580.95.05", "580.95.05-1.el9", "3:580.95.05-1.el9"):
        assert hf.packages_missing(found, ["nvidia-driver"], pin) == [], pin
    assert hf.packages_missing(found, ["nvidia-driver"], "580.105.08") == ["nvidia-driver"]
    assert hf.packages_missing(found, ["kmod-nvidia-open", "docker-ce"], "580.95.05") == ["docker-ce"]


def test_packages_rpm_failure_names_the_fix():
    with pytest.raises(hf.HostFactsError, match="rpm -q failed .rc 127.: rpm: not found; is this an RPM host"):
        hf.installed_packages(hf.LocalFs(), ["x"], manager="rpm", run=lambda argv: (127, "", "rpm: not found"))


def test_packages_auto_picks_dpkg_where_its_database_is(tmp_path):
    status = dpkg_tree(tmp_path)
    assert hf.installed_packages(hf.LocalFs(), ["docker.io"], dpkg_status=status)["docker.io"]["manager"] == "dpkg"
    rpm = hf.installed_packages(hf.LocalFs(), ["docker.io"], dpkg_status=str(tmp_path / "none"),
                                run=lambda argv: (1, "package docker.io is not installed\n", ""))
    assert rpm["docker.io"]["manager"] == "rpm" and rpm["docker.io"]["installed"] is False


def test_packages_unreadable_dpkg_database_names_it(tmp_path):
    with pytest.raises(hf.HostFactsError, match="could not read dpkg's status database .*none.*package_manager=rpm"):
        hf.installed_packages(hf.LocalFs(), ["x"], manager="dpkg", dpkg_status=str(tmp_path / "none"))


def test_packages_gathered_only_when_asked(tmp_path):
    params = {"gather": ["packages"], "packages": ["docker.io"], "dpkg_status_path": dpkg_tree(tmp_path)}
    result = hf.gather(hf.LocalFs(), params)
    assert result["gathered"] == ["packages"] and result["packages"]["docker.io"]["installed"] is True
    assert "packages" not in hf.gather(hf.LocalFs(), {"gather": ["files"], "files": []})


def test_packages_of_this_machine():
    """The real dpkg database of the machine the tests run on (Debian): python3 is installed, at dpkg-query's version."""
    import subprocess
    version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "python3"], capture_output=True, text=True, check=True).stdout
    found = hf.installed_packages(hf.LocalFs(), ["python3"])
    assert found["python3"]["installed"] is True and found["python3"]["full_version"] == version


# ---------------------------------------------------------------------------------------------
# groups
# ---------------------------------------------------------------------------------------------

class GroupsFs(hf.LocalFs):
    """The name service of a host with a video group (two members) and no render group."""

    def getgrnam(self, name):
        import grp
        if name == "video":
            return grp.struct_group(("video", "x", 44, ["ollama", "alice"]))
        raise KeyError("getgrnam(): name not found: %r" % name)


def test_groups_exist_gid_and_members():
    found = hf.group_info(GroupsFs(), ["video", "render"])
    assert found == {"video": {"name": "video", "exists": True, "gid": 44, "members": ["alice", "ollama"]},
                     "render": {"name": "render", "exists": False, "gid": None, "members": []}}


def test_groups_gathered_only_when_asked():
    result = hf.gather(GroupsFs(), {"gather": ["groups", "files"], "groups": ["video"], "files": []})
    assert result["gathered"] == ["files", "groups"] and result["groups"]["video"]["exists"] is True
    assert "groups" not in hf.gather(GroupsFs(), {"gather": ["files"], "files": [], "groups": ["video"]})


def test_groups_of_this_machine():
    """The real name service of the machine the tests run on: root's group is gid 0, as getent says."""
    import subprocess
    line = subprocess.run(["getent", "group", "root"], capture_output=True, text=True, check=True).stdout.strip()
    found = hf.group_info(hf.LocalFs(), ["root", "no-such-group-onprem"])
    assert found["root"]["exists"] is True and found["root"]["gid"] == int(line.split(":")[2]) == 0
    assert found["no-such-group-onprem"]["exists"] is False
