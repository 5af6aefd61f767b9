"""The lab itself: systemd hosts that Ansible reaches, and an air-gapped network with no route out."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOCK = os.path.join(ROOT, ".lab", "docker", "docker.sock")
LAB = [os.path.join(ROOT, ".venv", "bin", "python"), os.path.join(ROOT, "tools", "lab.py")]

pytestmark = pytest.mark.skipif(not os.path.exists(SOCK), reason="lab dockerd not running: run `tools/lab.py up`")


def docker(*args, check=True):
    env = dict(os.environ, DOCKER_HOST="unix://" + SOCK)
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def airgap_host():
    subprocess.run([*LAB, "up", "--hosts", "1", "--prefix", "llm-airgap-"], check=True)
    yield "llm-airgap-1"
    docker("rm", "-f", "llm-airgap-1", check=False)


def test_lab_hosts_boot_systemd():
    for host in ("llm-lab-1", "llm-lab-2"):
        out = docker("exec", host, "systemctl", "is-system-running", check=False).stdout.strip()
        assert out in ("running", "degraded"), f"{host}: {out}"
        assert docker("exec", host, "readlink", "/proc/1/exe").stdout.strip() == "/usr/lib/systemd/systemd"


def test_ansible_reaches_lab_hosts_with_default_inventory():
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible"), "llm_hosts", "-m", "ansible.builtin.setup",
                           "-a", "filter=ansible_distribution*", "-o"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if "SUCCESS" in ln]
    assert len(lines) == 2
    facts = json.loads(lines[0].split("=>", 1)[1])["ansible_facts"]
    assert facts["ansible_distribution"] == "Debian"
    assert facts["ansible_distribution_major_version"] == "12"


def test_the_default_inventory_logs_in_over_ssh_as_a_non_root_user_with_sudo():
    ansible = os.path.join(ROOT, ".venv", "bin", "ansible")
    plain = subprocess.run([ansible, "llm-lab-1", "-m", "ansible.builtin.command", "-a", "id -un", "-o"],
                           cwd=ROOT, capture_output=True, text=True, check=False)
    assert plain.returncode == 0 and "(stdout) ansible" in plain.stdout, plain.stdout + plain.stderr
    root = subprocess.run([ansible, "llm-lab-1", "--become", "-m", "ansible.builtin.command", "-a", "id -un", "-o"],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert root.returncode == 0 and "(stdout) root" in root.stdout, root.stdout + root.stderr
    # the connection is ansible.builtin.ssh with the lab's ssh_config, and the host key is pinned (not accepted blindly)
    verbose = subprocess.run([ansible, "llm-lab-1", "-m", "ansible.builtin.ping", "-vvv"], cwd=ROOT, capture_output=True,
                             text=True, check=False)
    assert "ESTABLISH SSH CONNECTION FOR USER: ansible" in verbose.stdout, verbose.stdout[-2000:]
    config = open(os.path.join(ROOT, ".lab", "ssh", "config")).read()
    assert "StrictHostKeyChecking yes" in config and "Host llm-lab-1\n" in config
    known = open(os.path.join(ROOT, ".lab", "ssh", "known_hosts")).read()
    key = docker("exec", "llm-lab-1", "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[1]
    assert "llm-lab-1 ssh-ed25519 %s" % key in known


def test_up_is_idempotent_and_keeps_running_hosts():
    before = docker("inspect", "llm-lab-1", "--format", "{{.Id}}").stdout.strip()
    proc = subprocess.run([*LAB, "up", "--hosts", "2"], capture_output=True, text=True, check=True)
    assert "2 host(s) up" in proc.stdout
    assert docker("inspect", "llm-lab-1", "--format", "{{.Id}}").stdout.strip() == before


def test_airgap_host_has_no_route_out(airgap_host):
    nets = json.loads(docker("inspect", airgap_host, "--format", "{{json .NetworkSettings.Networks}}").stdout)
    assert list(nets) == ["lab-airgap"]
    internal = docker("network", "inspect", "lab-airgap", "--format", "{{.Internal}}").stdout.strip()
    assert internal == "true"
    # Name resolution of the outside world fails: the resolver is loopback, where nothing answers.
    assert "nameserver 127.0.0.1" in docker("exec", airgap_host, "cat", "/etc/resolv.conf").stdout
    proc = docker("exec", airgap_host, "getent", "hosts", "deb.debian.org", check=False)
    assert proc.returncode != 0, proc.stdout
    # and nothing reaches the archive (the gateway drops what is not for the lab subnet)
    proc = docker("exec", airgap_host, "timeout", "5", "python3", "-c",
                  "import socket; socket.create_connection(('151.101.2.132', 80), timeout=2)", check=False)
    assert proc.returncode != 0, proc.stdout


def test_lab_hosts_are_air_gapped_by_default():
    for host in ("llm-lab-1", "llm-lab-2"):
        nets = json.loads(docker("inspect", host, "--format", "{{json .NetworkSettings.Networks}}").stdout)
        assert list(nets) == ["lab-airgap"], (host, nets)


def test_llm_endpoint_ends_its_wait_when_the_unit_dies():
    """llm_endpoint's `unit` on a real systemd (a lab host; the smoke stage and the engines' proof pass it): a service
    that exits while the check waits for it to answer ends the check at once, with the unit's own log lines, instead
    of at ready_timeout (600 s here; the command's own limit is 300 s)."""
    ansible = os.path.join(ROOT, ".venv", "bin", "ansible")
    unit = "llm-endpoint-watch-test.service"
    start = subprocess.run(
        [ansible, "llm-lab-1", "--become", "-m", "ansible.builtin.command", "-a",
         "systemd-run --unit=%s -p Restart=always -p RestartSec=1 /usr/bin/python3 -c "
         "\"import sys; print('ModuleNotFoundError: no module named vllm_test'); sys.exit(3)\"" % unit],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        proc = subprocess.run([ansible, "llm-lab-1", "--become", "-m", "onprem.llm_serving.llm_endpoint", "-a",
                               "url=http://127.0.0.1:9 engine=openai ready_timeout=600 unit=%s" % unit],
                              cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0, out
        assert "and it will not be: unit %s is " % unit in out, out[-3000:]
        assert "ModuleNotFoundError: no module named vllm_test" in out, out[-3000:]
    finally:
        subprocess.run([ansible, "llm-lab-1", "--become", "-m", "ansible.builtin.shell", "-a",
                        "systemctl stop %s; systemctl reset-failed %s; true" % (unit, unit)],
                       cwd=ROOT, capture_output=True, text=True, check=False)
