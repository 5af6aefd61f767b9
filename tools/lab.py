# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The local lab: Debian 12 hosts that boot systemd, as Docker containers of a private dockerd.

No registry is reachable, so the host image is debootstrapped from Debian's archive and cached as
a tarball. Everything lives under one git-ignored directory (.lab/ by default, LAB_DIR to move it).

    python3 tools/lab.py up [--hosts N] [--online] [--prefix P]
                                             start dockerd, build/import the image, start N hosts
                                             (air-gapped unless --online: see AIR GAP below)
    tools/lab.py down                        remove the hosts, stop dockerd (the image cache stays)
    tools/lab.py status                      what runs
    tools/lab.py env                         shell exports (DOCKER_HOST) for docker / molecule
    tools/lab.py image                       only make sure the image is imported
    tools/lab.py run-site [ansible args]     build the lab artefacts and the bundle (playbooks/bundle.yml), then
                                             run site.yml from the bundle (-e @.cache/bundle/vars.yml); last, print
                                             how to call the gateway's doors (curl, openai and ollama clients)
    tools/lab.py key                         print the lab's gateway API key (from the lab's vault)
    tools/lab.py doors                       print the doors again (curl lines and client snippets)

THE FRONT DOOR: the engines listen on loopback; each host's gateway (roles/gateway) serves them over TLS with a key.
The key lives in the lab's vault: .lab/vault/gateway-api-key.vault, encrypted with ansible-vault under the password in
.lab/vault-password (ansible.cfg reads it through tools/lab-vault-password). Ansible never prints it; `key` does.

AIR GAP (the default): the hosts sit on an --internal Docker network (lab-airgap): its gateway, the controller,
drops every packet not addressed to the lab subnet, so nothing leaves it; the controller reaches the hosts on the
subnet. Their /etc/resolv.conf names 127.0.0.1, where nothing answers, so a DNS query never leaves the host either.
The image keeps Debian's archive in its apt sources, as a host moved into an enclave would: the roles must not use
it. tests/integration/test_airgap.py counts every packet that tries to leave each host during a whole site.yml.

Facts behind the container options are in ../shared/LAB.md: --privileged fails on this VM
(CAP_SYS_RESOURCE is not in its bounding set), so every other capability is listed; each host
cgroup hierarchy is bound one by one (binding the whole /sys/fs/cgroup lets the container's systemd
remount the host's cgroup tmpfs read-only).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import string
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAB_DIR = os.path.abspath(os.environ.get("LAB_DIR", os.path.join(ROOT, ".lab")))
DOCKER_DIR = os.path.join(LAB_DIR, "docker")
SOCK = os.path.join(DOCKER_DIR, "docker.sock")
PIDFILE = os.path.join(DOCKER_DIR, "dockerd.pid")
CACHE_DIR = os.path.join(LAB_DIR, "cache")

IMAGE = "lab/debian:bookworm"
HOST_PREFIX = "llm-lab-"
LABEL = "onprem.llm_serving.lab=1"
AIRGAP_NET = "lab-airgap"
SUITE = "bookworm"
INCLUDE = [
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "sudo", "iproute2",
    "ca-certificates", "procps", "gnupg", "openssh-server",
]
# Ansible reaches the lab hosts over SSH, as production does: a non-root user with passwordless sudo, the lab's own
# key (authorized through a read-only bind mount), host keys generated at each host's first boot and pinned in the
# lab's known_hosts by tools/lab.py (StrictHostKeyChecking yes). `LAB_CONNECTION=docker` keeps the docker connection.
SSH_USER = "ansible"
SSH_DIR = os.path.join(LAB_DIR, "ssh")
SSH_KEY = os.path.join(SSH_DIR, "id_ed25519")
SSH_CONFIG = os.path.join(SSH_DIR, "config")
SSH_KNOWN_HOSTS = os.path.join(SSH_DIR, "known_hosts")
HOSTKEYS_UNIT = """[Unit]
Description=Generate this lab host's own SSH host keys (the image carries none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""
SSHD_CONF = """# onprem.llm_serving lab: keys only, no root login (the user ansible has sudo), no DNS lookups (air-gapped)
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
"""
# Every capability but SYS_RESOURCE; Docker 20.10 rejects BPF, PERFMON and CHECKPOINT_RESTORE.
CAPS = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE",
    "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ",
]
TMPFS = ["/sys/fs/cgroup", "/run:exec", "/run/lock", "/tmp:exec"]


class LabError(Exception):
    """A lab step failed; the message says what and how to fix it."""


def log(msg: str) -> None:
    print(f"lab: {msg}", flush=True)


def docker_env() -> dict:
    env = dict(os.environ)
    env["DOCKER_HOST"] = "unix://" + SOCK
    return env


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *args], env=docker_env(), text=True,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"docker {' '.join(args[:3])} failed (rc={proc.returncode}): {(proc.stderr or '').strip()[:800]}")
    return proc


def cgroup_hierarchies() -> list:
    base = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(base, "cgroup.controllers")):
        return []  # pure cgroup v2: the tmpfs + per-hierarchy binds do not apply
    return sorted(d for d in os.listdir(base) if os.path.isdir(os.path.join(base, d)) and not os.path.islink(os.path.join(base, d)))


def container_options() -> list:
    """The options that make a systemd container boot here (shared with the Molecule platforms)."""
    opts = []
    for cap in CAPS:
        opts += ["--cap-add", cap]
    opts += ["--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
             "--cgroupns=host", "--stop-signal", "SIGRTMIN+3",
             # vLLM-CPU's shared-memory ring buffer needs 160 MiB; Docker's default /dev/shm is 64 MiB
             "--shm-size", "1g"]
    hier = cgroup_hierarchies()
    for t in TMPFS:
        if t == "/sys/fs/cgroup" and not hier:
            continue
        opts += ["--tmpfs", t]
    for h in hier:
        opts += ["-v", f"/sys/fs/cgroup/{h}:/sys/fs/cgroup/{h}:rw"]
    if not hier:
        opts += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    return opts


# --------------------------------------------------------------------------- dockerd
def dockerd_pid() -> int | None:
    try:
        pid = int(open(PIDFILE).read().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def ensure_dockerd() -> None:
    if dockerd_pid() and docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0:
        return
    if shutil.which("dockerd") is None:
        raise LabError("dockerd is not installed: run tools/setup.sh (apt-get install docker.io)")
    if len(SOCK) > 100:
        raise LabError(f"socket path {SOCK} is longer than 100 characters (unix socket limit): set LAB_DIR to a shorter directory")
    for d in ("data", "exec"):
        os.makedirs(os.path.join(DOCKER_DIR, d), exist_ok=True)
    logf = open(os.path.join(DOCKER_DIR, "dockerd.log"), "ab")
    start = time.monotonic()
    subprocess.Popen(
        ["dockerd", f"--data-root={DOCKER_DIR}/data", f"--exec-root={DOCKER_DIR}/exec",
         f"--pidfile={PIDFILE}", "-H", f"unix://{SOCK}"],
        stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if docker("version", "--format", "{{.Server.Version}}", check=False).returncode == 0:
            log(f"dockerd ready in {time.monotonic() - start:.1f}s (state in {DOCKER_DIR})")
            return
        time.sleep(0.25)
    raise LabError(f"dockerd did not answer within 60 s: see {DOCKER_DIR}/dockerd.log")


def dockerd_state(tail: int = 5) -> str:
    """One line on the lab's dockerd for a failure report: its pid, whether it answers, its log's last lines."""
    pid = dockerd_pid()
    proc = docker("version", "--format", "{{.Server.Version}}", check=False)
    answer = f"answers (server {proc.stdout.strip()})" if proc.returncode == 0 else f"does not answer ({proc.stderr.strip()[:300]})"
    try:
        with open(os.path.join(DOCKER_DIR, "dockerd.log"), errors="replace") as fh:
            last = " | ".join(line.strip()[:200] for line in fh.readlines()[-tail:])
    except OSError as err:
        last = f"no log ({err})"
    return f"dockerd {'pid ' + str(pid) if pid else 'not running'}, {answer}; its log ends: {last}"


def stop_dockerd() -> None:
    pid = dockerd_pid()
    if not pid:
        return
    os.kill(pid, 15)
    for _attempt in range(120):
        try:
            os.kill(pid, 0)
        except OSError:
            log(f"dockerd (pid {pid}) stopped")
            return
        time.sleep(0.25)
    os.kill(pid, 9)
    log(f"dockerd (pid {pid}) killed after 30 s")


# --------------------------------------------------------------------------- image
def debian_mirror() -> str:
    src = "/etc/apt/sources.list.d/debian.sources"
    try:
        for line in open(src):
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    except OSError:
        pass
    return "http://deb.debian.org/debian"


def image_tarball() -> str:
    key = hashlib.sha256(json.dumps([SUITE, sorted(INCLUDE), 3, SSH_USER, SSHD_CONF, HOSTKEYS_UNIT]).encode()).hexdigest()[:12]
    return os.path.join(CACHE_DIR, f"debian-{SUITE}-{key}.tgz")


def build_tarball(path: str) -> None:
    if shutil.which("debootstrap") is None:
        raise LabError("debootstrap is not installed: run tools/setup.sh (apt-get install debootstrap)")
    os.makedirs(CACHE_DIR, exist_ok=True)
    mirror = debian_mirror()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="rootfs-") as tmp:
        rootfs = os.path.join(tmp, "rootfs")
        log(f"debootstrap {SUITE} from {mirror} (about a minute)")
        proc = subprocess.run(["debootstrap", "--variant=minbase", "--include=" + ",".join(INCLUDE), SUITE, rootfs, mirror],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        if proc.returncode != 0:
            raise LabError(f"debootstrap failed (rc={proc.returncode}); last lines:\n{proc.stdout[-2000:]}")
        subprocess.run(["chroot", rootfs, "apt-get", "clean"], check=True)
        open(os.path.join(rootfs, "etc/machine-id"), "w").close()
        with open(os.path.join(rootfs, "etc/apt/sources.list"), "w") as f:
            f.write(f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n")
        # no getty on a container console; keeps the journal quiet
        for unit in ("getty@tty1.service", "console-getty.service"):
            subprocess.run(["chroot", rootfs, "systemctl", "mask", unit], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        prepare_ssh(rootfs)
        part = path + ".part"
        subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "-czf", part, "."], check=True)
        os.replace(part, path)
    log(f"image tarball {path} built in {time.monotonic() - start:.0f}s")


def prepare_ssh(rootfs: str) -> None:
    """The SSH side of the image: the lab user with sudo, sshd's settings, host keys made at first boot."""
    subprocess.run(["chroot", rootfs, "useradd", "--create-home", "--shell", "/bin/bash", SSH_USER], check=True)
    ssh_home = os.path.join(rootfs, "home", SSH_USER, ".ssh")
    os.makedirs(ssh_home, mode=0o700)
    subprocess.run(["chroot", rootfs, "chown", f"{SSH_USER}:{SSH_USER}", f"/home/{SSH_USER}/.ssh"], check=True)
    with open(os.path.join(rootfs, "etc/sudoers.d", SSH_USER), "w") as f:
        f.write(f"{SSH_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    os.chmod(os.path.join(rootfs, "etc/sudoers.d", SSH_USER), 0o440)
    with open(os.path.join(rootfs, "etc/ssh/sshd_config.d/onprem-lab.conf"), "w") as f:
        f.write(SSHD_CONF)
    for name in os.listdir(os.path.join(rootfs, "etc/ssh")):
        if name.startswith("ssh_host_"):
            os.unlink(os.path.join(rootfs, "etc/ssh", name))
    with open(os.path.join(rootfs, "etc/systemd/system/lab-ssh-hostkeys.service"), "w") as f:
        f.write(HOSTKEYS_UNIT)
    subprocess.run(["chroot", rootfs, "systemctl", "enable", "lab-ssh-hostkeys.service", "ssh.service"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def ensure_ssh_key() -> str:
    """The lab's key pair (generated once); returns the authorized_keys file the hosts mount read-only."""
    os.makedirs(SSH_DIR, mode=0o700, exist_ok=True)
    if not os.path.exists(SSH_KEY):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "onprem.llm_serving lab", "-f", SSH_KEY], check=True)
    authorized = os.path.join(SSH_DIR, "authorized_keys")
    pub = open(SSH_KEY + ".pub").read()
    if not os.path.exists(authorized) or open(authorized).read() != pub:
        with open(authorized + ".part", "w") as f:
            f.write(pub)
        os.chmod(authorized + ".part", 0o644)
        os.replace(authorized + ".part", authorized)
    return authorized


def host_address(name: str) -> str:
    return docker("inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").stdout.split()[0]


def write_ssh_config() -> None:
    """ssh_config and known_hosts for every lab host that runs: its address, the lab key, its own host key pinned."""
    config = [f"# written by tools/lab.py: the lab hosts, for `ssh -F {SSH_CONFIG} <host>` and the lab inventory"]
    known = []
    for name, state in running_hosts():
        if state != "running":
            continue
        key = docker("exec", name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", check=False).stdout.split()
        if len(key) < 2:
            continue
        known.append(f"{name} {key[0]} {key[1]}")
        config += [f"Host {name}", f"  HostName {host_address(name)}", f"  User {SSH_USER}", f"  IdentityFile {SSH_KEY}",
                   "  IdentitiesOnly yes", f"  HostKeyAlias {name}", f"  UserKnownHostsFile {SSH_KNOWN_HOSTS}",
                   "  StrictHostKeyChecking yes", "  BatchMode yes", "  ConnectTimeout 10"]
    for path, lines in ((SSH_CONFIG, config), (SSH_KNOWN_HOSTS, known)):
        with open(path + ".part", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(path + ".part", path)


def wait_ssh(name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    err = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(["ssh", "-F", SSH_CONFIG, name, "true"], capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return
        err = proc.stderr.strip()
        time.sleep(0.3)
    raise LabError(f"{name}: no SSH login within {timeout:.0f}s ({err[-300:]}); see `docker exec {name} journalctl -u ssh`")


def ensure_image() -> None:
    ensure_dockerd()
    tarball = image_tarball()
    want = os.path.basename(tarball)
    proc = docker("image", "inspect", IMAGE, "--format", "{{index .Config.Labels \"onprem.lab.tarball\"}}", check=False)
    if proc.returncode == 0 and proc.stdout.strip() == want:
        return
    if not os.path.exists(tarball):
        build_tarball(tarball)
    start = time.monotonic()
    docker("import", "-c", 'CMD ["/lib/systemd/systemd"]', "-c", "ENV container=docker",
           "-c", f"LABEL onprem.lab.tarball={want}", tarball, IMAGE)
    log(f"image {IMAGE} imported in {time.monotonic() - start:.1f}s")


# --------------------------------------------------------------------------- hosts
def host_names(n: int, prefix: str = HOST_PREFIX) -> list:
    return [f"{prefix}{i}" for i in range(1, n + 1)]


def running_hosts() -> list:
    if not dockerd_pid():
        return []
    proc = docker("ps", "-a", "--filter", "label=" + LABEL, "--format", "{{.Names}} {{.State}}", check=False)
    return [tuple(line.split()) for line in proc.stdout.splitlines() if line.strip()]


def ensure_network(airgap: bool) -> str:
    if not airgap:
        return "bridge"
    if docker("network", "inspect", AIRGAP_NET, check=False).returncode != 0:
        docker("network", "create", "--internal", AIRGAP_NET)
    return AIRGAP_NET


def resolv_conf() -> str:
    """The air-gapped hosts' resolver: loopback, where nothing listens (a query is counted, never answered)."""
    path = os.path.join(LAB_DIR, "resolv.conf")
    want = "# onprem.llm_serving lab: air-gapped, nothing resolves\nnameserver 127.0.0.1\n"
    if not os.path.isfile(path) or open(path).read() != want:
        os.makedirs(LAB_DIR, exist_ok=True)
        with open(path + ".part", "w") as handle:
            handle.write(want)
        os.replace(path + ".part", path)
    return path


def wait_systemd(name: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        proc = docker("exec", name, "systemctl", "is-system-running", check=False)
        state = (proc.stdout or "").strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.3)
    raise LabError(f"{name}: systemd did not come up within {timeout:.0f}s (state {state!r}); see `docker logs {name}`")


def up(n: int, airgap: bool, prefix: str = HOST_PREFIX) -> None:
    start = time.monotonic()
    ensure_image()
    network = ensure_network(airgap)
    existing = dict(running_hosts())
    opts = container_options() + ["-v", f"{ensure_ssh_key()}:/home/{SSH_USER}/.ssh/authorized_keys:ro"]
    if airgap:
        opts += ["-v", f"{resolv_conf()}:/etc/resolv.conf:ro"]
    opts_key = hashlib.sha256(json.dumps([opts, IMAGE, os.path.basename(image_tarball())]).encode()).hexdigest()[:12]
    for name in host_names(n, prefix):
        state = existing.get(name)
        if state == "running":
            net = docker("inspect", name, "--format", "{{json .NetworkSettings.Networks}}").stdout
            key = docker("inspect", name, "--format", '{{index .Config.Labels "onprem.lab.options"}}').stdout.strip()
            if (AIRGAP_NET in net) == airgap and key == opts_key:
                continue
            log(f"{name}: recreating (network or container options changed)")
            docker("rm", "-f", name)
        elif state:
            docker("rm", "-f", name)
        docker("run", "-d", "--name", name, "--hostname", name, "--label", LABEL,
               "--label", f"onprem.lab.options={opts_key}", "--network", network, *opts, IMAGE)
    states = {name: wait_systemd(name) for name in host_names(n, prefix)}
    # host keys are made at first boot: wait for them, pin them, then prove a login
    deadline = time.monotonic() + 30
    while any(docker("exec", name, "test", "-s", "/etc/ssh/ssh_host_ed25519_key.pub", check=False).returncode
              for name in states) and time.monotonic() < deadline:
        time.sleep(0.2)
    write_ssh_config()
    for name in states:
        wait_ssh(name)
    for name, state in states.items():
        addr = docker("inspect", name, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}").stdout.strip()
        log(f"{name}: systemd {state}, address {addr}{' (air-gapped: no route out)' if airgap else ''}")
    log(f"{n} host(s) up in {time.monotonic() - start:.1f}s")


def down() -> None:
    if dockerd_pid():
        names = [h[0] for h in running_hosts()]
        if names:
            docker("rm", "-f", *names)
            log(f"removed {' '.join(names)}")
    stop_dockerd()
    for path in (SSH_CONFIG, SSH_KNOWN_HOSTS):
        if os.path.exists(path):
            os.unlink(path)


def status() -> None:
    pid = dockerd_pid()
    print(f"dockerd: {'pid ' + str(pid) if pid else 'not running'} ({SOCK})")
    for name, state in running_hosts():
        print(f"{name}: {state}")


BUNDLE_VARS = os.path.join(ROOT, ".cache", "bundle", "vars.yml")


VAULT_PASSWORD = os.path.join(LAB_DIR, "vault-password")
GATEWAY_KEY_VAULT = os.path.join(LAB_DIR, "vault", "gateway-api-key.vault")
TLS_DIR = os.path.join(LAB_DIR, "tls")
DOORS_FILE = "/etc/haproxy/onprem-gateway-doors.json"


def ansible_vault(*args: str, data: str | None = None) -> subprocess.CompletedProcess:
    exe = os.path.join(ROOT, ".venv", "bin", "ansible-vault")
    env = dict(os.environ, ANSIBLE_VAULT_PASSWORD_FILE=VAULT_PASSWORD, LAB_DIR=LAB_DIR)
    return subprocess.run([exe if os.path.exists(exe) else "ansible-vault", *args], input=data, cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)


def write_private(path: str, text: str) -> None:
    """Write a root-only file under a staging name, then rename it into place."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".staging-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def ensure_vault() -> None:
    """The lab's vault: a random password, and the gateway's API key (48 letters and digits) encrypted with it.
    Made once and kept (re-runs change nothing); the encrypted file is decrypted once before it replaces any file."""
    if not os.path.exists(VAULT_PASSWORD):
        write_private(VAULT_PASSWORD, secrets.token_urlsafe(32) + "\n")
    if os.path.exists(GATEWAY_KEY_VAULT):
        return
    key = "".join(secrets.choice(string.ascii_letters + string.digits) for _position in range(48))
    staging = GATEWAY_KEY_VAULT + ".staging"
    os.makedirs(os.path.dirname(GATEWAY_KEY_VAULT), mode=0o700, exist_ok=True)
    enc = ansible_vault("encrypt", "--output", staging, "-", data=key)
    if enc.returncode != 0 or gateway_key(staging) != key:
        if os.path.exists(staging):
            os.unlink(staging)
        raise LabError(f"could not write the lab vault ({GATEWAY_KEY_VAULT}): ansible-vault said {enc.stderr.strip()[-300:]}")
    os.chmod(staging, 0o600)
    os.replace(staging, GATEWAY_KEY_VAULT)
    log(f"lab vault: made the gateway's API key in {os.path.relpath(GATEWAY_KEY_VAULT, ROOT)}")


def gateway_key(path: str = GATEWAY_KEY_VAULT) -> str:
    if not os.path.exists(path):
        raise LabError(f"no lab vault at {path}: run `tools/lab.py up` (or make lab) first")
    out = ansible_vault("view", path)
    if out.returncode != 0:
        raise LabError(f"ansible-vault cannot open {path} with {VAULT_PASSWORD}: {out.stderr.strip()[-300:]}")
    return out.stdout.strip()


def lab_doors() -> list:
    """Each running lab host's doors (the gateway role's description file), its address and its certificate, copied to
    .lab/tls/<host>.crt (the public certificate only: the key stays on the host)."""
    doors = []
    for name, state in sorted(running_hosts()):
        if state != "running":
            continue
        found = docker("exec", name, "cat", DOORS_FILE, check=False)
        if found.returncode != 0:
            continue
        cert = docker("exec", name, "openssl", "x509", "-in", "/etc/haproxy/onprem-gateway/tls.pem", check=False)
        path = os.path.join(TLS_DIR, f"{name}.crt")
        if cert.returncode == 0 and "BEGIN CERTIFICATE" in cert.stdout:
            os.makedirs(TLS_DIR, exist_ok=True)
            with open(path + ".staging", "w") as f:
                f.write(cert.stdout)
            os.replace(path + ".staging", path)
        address = host_address(name)
        for door in json.loads(found.stdout)["doors"]:
            doors.append(dict(door, host=name, address=address, cacert=os.path.relpath(path, ROOT) if os.path.exists(path) else None))
    return doors


def gateway_module():
    """The collection's gateway logic (standard library only), loaded from this checkout without Ansible."""
    import importlib.util  # pylint: disable=import-outside-toplevel
    spec = importlib.util.spec_from_file_location("_gateway", os.path.join(ROOT, "plugins", "module_utils", "_gateway.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def door_lines(doors: list) -> str:
    """curl lines and client snippets for the doors; the key is read from $API_KEY (`tools/lab.py key` prints it)."""
    lines = [
        "The lab's doors (TLS; each checks the API key; the engines themselves listen on loopback only).",
        f"The key is in the lab's vault ({os.path.relpath(GATEWAY_KEY_VAULT, ROOT)}); put it in your shell with:",
        "    export API_KEY=$(python3 tools/lab.py key)",
    ]
    gateway = gateway_module()
    for door in doors:
        # the curl line the gateway role prints too (plugins/module_utils/_gateway.py), verified with the host's certificate
        req = gateway.door_requests(door, door["address"], door["cacert"] or True)
        url, model = req["url"], door.get("model") or ""
        lines.append(f"{door['host']} door {door['name']} ({door['engine']} {model}): {url}")
        lines.append("    " + req["curl"])
        if door["engine"] == "ollama":
            lines.append(f"    .venv/bin/python -c 'import os, ssl, ollama; c = ollama.Client(host=\"{url}\", "
                         f"verify=ssl.create_default_context(cafile=\"{door['cacert']}\"), "
                         f"headers={{\"Authorization\": \"Bearer \" + os.environ[\"API_KEY\"]}}); "
                         f"print(c.generate(model=\"{model}\", prompt=\"Hello\").response)'")
        else:
            lines.append(f"    .venv/bin/python -c 'import os, ssl, httpx, openai; c = openai.OpenAI(base_url=\"{url}/v1\", api_key=os.environ[\"API_KEY\"], "
                         f"http_client=httpx.Client(verify=ssl.create_default_context(cafile=\"{door['cacert']}\"))); "
                         f"print(c.chat.completions.create(model=\"{model}\", messages=[{{\"role\": \"user\", \"content\": \"Hello\"}}], "
                         f"max_tokens=16).choices[0].message.content)'")
    if not doors:
        lines.append("(no door answered: is the lab converged? make lab)")
    return "\n".join(lines)


def run_site(extra: list) -> int:
    """The air-gapped workflow of the README, on the lab: artefacts -> bundle -> site.yml from the bundle."""
    venv_bin = os.path.join(ROOT, ".venv", "bin")
    env = docker_env()
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    artefacts = os.path.join(ROOT, "tools", "artefacts.py")
    if os.path.exists(artefacts):
        rc = subprocess.run([sys.executable, artefacts, "all"], cwd=ROOT, env=env, check=False).returncode
        if rc != 0:
            log("building the lab artefacts failed (tools/artefacts.py all)")
            return rc
    bundle = [os.path.join(venv_bin, "ansible-playbook"), "playbooks/bundle.yml"]
    log(" ".join(bundle))
    rc = subprocess.run(bundle, cwd=ROOT, env=env, check=False).returncode
    if rc != 0:
        log("building the bundle failed (ansible-playbook playbooks/bundle.yml)")
        return rc
    cmd = [os.path.join(venv_bin, "ansible-playbook"), "site.yml", "-e", "@" + os.path.relpath(BUNDLE_VARS, ROOT), *extra]
    log(" ".join(cmd))
    rc = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    if rc == 0:
        print(door_lines(lab_doors()), flush=True)
    return rc


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up")
    p_up.add_argument("--hosts", type=int, default=2)
    p_up.add_argument("--online", action="store_true",
                      help="put the hosts on Docker's default bridge, with a route out (default: air-gapped)")
    p_up.add_argument("--airgap", action="store_true", help="the default; kept for old command lines")
    p_up.add_argument("--prefix", default=HOST_PREFIX, help=f"host name prefix (default {HOST_PREFIX}; the lab inventory uses it)")
    sub.add_parser("down")
    sub.add_parser("status")
    sub.add_parser("env")
    sub.add_parser("image")
    sub.add_parser("options", help="print the docker run options as JSON")
    sub.add_parser("key", help="print the lab's gateway API key (from the lab's vault)")
    sub.add_parser("doors", help="print how to call the lab's gateway doors")
    p_site = sub.add_parser("run-site")
    p_site.add_argument("extra", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "up":
            if args.hosts < 1 or args.hosts > 16:
                raise LabError(f"--hosts {args.hosts}: choose 1 to 16 (2 cores: 2-4 hosts converge well)")
            if not args.prefix.replace("-", "").isalnum():
                raise LabError(f"--prefix {args.prefix!r}: use letters, digits and dashes")
            up(args.hosts, not args.online, args.prefix)
            ensure_vault()
        elif args.cmd == "down":
            down()
        elif args.cmd == "status":
            status()
        elif args.cmd == "env":
            print(f"export DOCKER_HOST=unix://{SOCK}")
        elif args.cmd == "image":
            ensure_image()
        elif args.cmd == "options":
            print(json.dumps(container_options()))
        elif args.cmd == "run-site":
            ensure_vault()
            return run_site(args.extra)
        elif args.cmd == "key":
            print(gateway_key())
        elif args.cmd == "doors":
            print(door_lines(lab_doors()))
    except LabError as exc:
        print(f"lab: ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
