# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Count egress attempts of lab hosts: tcpdump in each host's own network namespace, run from the controller.

An attempt is any packet a host sends to an address outside the lab subnet and loopback, and any DNS query
(port 53, loopback included: the air-gapped hosts' resolver is 127.0.0.1, where nothing answers). The internal
network's gateway drops such packets, so none leaves the lab; the capture sees them before they are dropped.
"""
from __future__ import annotations

import os
import subprocess
import time


def capture_filter(subnet: str) -> str:
    """The pcap filter for one lab subnet (e.g. 172.19.0.0/16)."""
    return ("(ip and not dst net {s} and not dst net 127.0.0.0/8) "
            "or (ip6 and not dst net ::1/128 and not dst net fe80::/10 and not dst net ff00::/8) "
            "or port 53").format(s=subnet)


class EgressCapture:
    def __init__(self, docker, hosts, subnet, workdir):
        self.docker = docker          # callable(*args) -> CompletedProcess (the lab's docker)
        self.hosts = list(hosts)
        self.subnet = subnet
        self.workdir = workdir
        self.procs = {}

    def pcap(self, host):
        return os.path.join(self.workdir, host + ".pcap")

    def start(self):
        os.makedirs(self.workdir, exist_ok=True)
        for host in self.hosts:
            pid = self.docker("inspect", host, "--format", "{{.State.Pid}}").stdout.strip()
            assert pid and pid != "0", "%s is not running" % host
            log = open(os.path.join(self.workdir, host + ".log"), "w")
            self.procs[host] = (subprocess.Popen(
                ["nsenter", "--net=/proc/%s/ns/net" % pid, "tcpdump", "-i", "any", "-n", "-U", "-w", self.pcap(host),
                 capture_filter(self.subnet)], stdout=log, stderr=subprocess.STDOUT), log)
        deadline = time.monotonic() + 15
        for host in self.hosts:
            path = os.path.join(self.workdir, host + ".log")
            while "listening on" not in open(path).read():
                assert time.monotonic() < deadline, "tcpdump did not start for %s: %s" % (host, open(path).read())
                time.sleep(0.1)
        return self

    def stop(self):
        for proc, log in self.procs.values():
            proc.terminate()
            proc.wait(timeout=15)
            log.close()
        self.procs = {}

    def attempts(self):
        """{host: [one line per packet]} of what the capture saw."""
        seen = {}
        for host in self.hosts:
            out = subprocess.run(["tcpdump", "-n", "-r", self.pcap(host)], capture_output=True, text=True, check=False)
            seen[host] = [line for line in out.stdout.splitlines() if line.strip()]
        return seen
