# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build signed local apt repositories of TEST PACKAGES that carry NVIDIA's package names.

The lab has no GPU and cannot reach NVIDIA's repositories. The nvidia_driver and
container_runtime roles are tested against two flat repositories laid out like NVIDIA's CUDA
repository and the libnvidia-container repository:

    OUT/cuda/                  nvidia-driver, nvidia-kernel-{open-,}dkms, nvidia-persistenced,
                               cuda-drivers-580, nvidia-fabricmanager-580 (two driver versions)
    OUT/libnvidia-container/   nvidia-container-toolkit{,-base}, libnvidia-container-tools,
                               libnvidia-container1
    OUT/key.gpg                public half of a throwaway signing key (binary, for signed-by)

Every package says "TEST PACKAGE" in its Description and installs only small scripts and marker
files (no kernel module, no library code). The repositories are signed (InRelease and
Release.gpg) with a key generated for this build whose private half is deleted afterwards, so
the roles' signed-by path is exercised for real.

Needs dpkg-deb, dpkg-scanpackages (dpkg-dev) and gpg. Idempotent: a build whose inputs did not
change is skipped (OUT/.stamp).

    tests/stand-in-packages/build.py [--out DIR]      (default: tests/output/stand-in-repo)
"""
from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "tests", "output", "stand-in-repo")

BRANCH = "580"
DRIVER_VERSIONS = ["580.95.05-1", "580.105.08-1"]
TOOLKIT_VERSION = "1.17.8-1"
MAINTAINER = "onprem.llm_serving tests <tests@example.invalid>"
LABEL = "TEST PACKAGE (onprem.llm_serving stand-in, not NVIDIA software)"

PERSISTENCED = """#!/bin/sh
# TEST PACKAGE stand-in for nvidia-persistenced: there is no GPU; it only stays alive.
echo "nvidia-persistenced TEST PACKAGE stand-in: $*"
exec sleep infinity
"""
PERSISTENCED_UNIT = """[Unit]
Description=NVIDIA Persistence Daemon (TEST PACKAGE stand-in)
Wants=syslog.target

[Service]
Type=simple
ExecStart=/usr/bin/nvidia-persistenced --user nvidia-persistenced --no-persistence-mode --verbose
ExecStopPost=/bin/rm -rf /var/run/nvidia-persistenced

[Install]
WantedBy=multi-user.target
"""
FABRICMANAGER = """#!/bin/sh
# TEST PACKAGE stand-in for nv-fabricmanager: there is no NVSwitch; it only stays alive.
echo "nv-fabricmanager TEST PACKAGE stand-in: $*"
exec sleep infinity
"""
FABRICMANAGER_UNIT = """[Unit]
Description=NVIDIA fabric manager service (TEST PACKAGE stand-in)

[Service]
Type=simple
ExecStart=/usr/bin/nv-fabricmanager -c /usr/share/nvidia/nvswitch/fabricmanager.cfg

[Install]
WantedBy=multi-user.target
"""
FAIL_STUB = """#!/bin/sh
# TEST PACKAGE stand-in for {name}: there is no GPU here.
echo "{name}: TEST PACKAGE stand-in, no GPU" >&2
exit 1
"""


def upstream(version):
    return version.rsplit("-", 1)[0]


def marker(name, version):
    return {"/usr/share/doc/%s/TEST-PACKAGE" % name: ("%s %s: %s\n" % (name, version, LABEL), 0o644)}


def packages():
    """Yield (repo, name, version, control extras, files{path: (content, mode)}, symlinks)."""
    for v in DRIVER_VERSIONS:
        u = upstream(v)
        files = marker("nvidia-driver", v)
        files["/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.%s" % u] = ("TEST PACKAGE stand-in, not a library\n", 0o644)
        yield ("cuda", "nvidia-driver", v, {"Depends": "nvidia-kernel-open-dkms (= {v}) | nvidia-kernel-dkms (= {v})".format(v=v)},
               files, {"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1": "libnvidia-ml.so.%s" % u})
        for flavour, other in (("nvidia-kernel-open-dkms", "nvidia-kernel-dkms"), ("nvidia-kernel-dkms", "nvidia-kernel-open-dkms")):
            files = marker(flavour, v)
            files["/usr/src/nvidia-%s/TEST-PACKAGE" % u] = ("no sources: TEST PACKAGE stand-in, DKMS builds nothing\n", 0o644)
            yield ("cuda", flavour, v, {"Conflicts": other}, files, {})
        files = marker("nvidia-persistenced", v)
        files["/usr/bin/nvidia-persistenced"] = (PERSISTENCED, 0o755)
        files["/lib/systemd/system/nvidia-persistenced.service"] = (PERSISTENCED_UNIT, 0o644)
        yield ("cuda", "nvidia-persistenced", v, {}, files, {})
        yield ("cuda", "cuda-drivers-%s" % BRANCH, v,
               {"Depends": "nvidia-driver (= {v}), nvidia-persistenced (= {v})".format(v=v)}, marker("cuda-drivers-%s" % BRANCH, v), {})
        files = marker("nvidia-fabricmanager-%s" % BRANCH, v)
        files["/usr/bin/nv-fabricmanager"] = (FABRICMANAGER, 0o755)
        files["/lib/systemd/system/nvidia-fabricmanager.service"] = (FABRICMANAGER_UNIT, 0o644)
        yield ("cuda", "nvidia-fabricmanager-%s" % BRANCH, v, {}, files, {})
    t = TOOLKIT_VERSION
    yield ("libnvidia-container", "libnvidia-container1", t, {}, marker("libnvidia-container1", t), {})
    files = marker("libnvidia-container-tools", t)
    files["/usr/bin/nvidia-container-cli"] = (FAIL_STUB.format(name="nvidia-container-cli"), 0o755)
    yield ("libnvidia-container", "libnvidia-container-tools", t, {"Depends": "libnvidia-container1 (= %s)" % t}, files, {})
    files = marker("nvidia-container-toolkit-base", t)
    with open(os.path.join(HERE, "files", "nvidia-ctk")) as f:
        files["/usr/bin/nvidia-ctk"] = (f.read().replace("@TOOLKIT_VERSION@", upstream(t)), 0o755)
    files["/usr/bin/nvidia-container-runtime"] = (FAIL_STUB.format(name="nvidia-container-runtime"), 0o755)
    files["/usr/bin/nvidia-cdi-hook"] = (FAIL_STUB.format(name="nvidia-cdi-hook"), 0o755)
    yield ("libnvidia-container", "nvidia-container-toolkit-base", t, {}, files, {})
    files = marker("nvidia-container-toolkit", t)
    files["/usr/bin/nvidia-container-runtime-hook"] = (FAIL_STUB.format(name="nvidia-container-runtime-hook"), 0o755)
    yield ("libnvidia-container", "nvidia-container-toolkit", t,
           {"Depends": "nvidia-container-toolkit-base (= {t}), libnvidia-container-tools (= {t})".format(t=t)}, files, {})


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def build_deb(workdir, outdir, arch, name, version, extra, files, links):
    root = os.path.join(workdir, "%s_%s" % (name, version))
    os.makedirs(os.path.join(root, "DEBIAN"))
    for path, (content, mode) in files.items():
        dest = root + path
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as f:
            f.write(content)
        os.chmod(dest, mode)
    for path, target in links.items():
        dest = root + path
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.symlink(target, dest)
    control = ["Package: %s" % name, "Version: %s" % version, "Architecture: %s" % arch,
               "Maintainer: %s" % MAINTAINER, "Section: non-free/libs", "Priority: optional"]
    control += ["%s: %s" % kv for kv in extra.items()]
    control += ["Description: %s" % LABEL,
                " Stand-in carrying NVIDIA's package name %s so that Ansible roles can be" % name,
                " tested without NVIDIA software. It installs marker files and scripts only."]
    with open(os.path.join(root, "DEBIAN", "control"), "w") as f:
        f.write("\n".join(control) + "\n")
    deb = os.path.join(outdir, "%s_%s_%s.deb" % (name, version, arch))
    run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb], stdout=subprocess.DEVNULL)


def release(repo_dir, label):
    entries = []
    for name in ("Packages", "Packages.gz"):
        with open(os.path.join(repo_dir, name), "rb") as f:
            data = f.read()
        entries.append((name, len(data), hashlib.md5(data).hexdigest(), hashlib.sha256(data).hexdigest()))
    lines = ["Origin: onprem.llm_serving tests", "Label: %s" % label, "Suite: stand-in", "Codename: stand-in",
             "Date: %s" % time.strftime("%a, %d %b %Y %H:%M:%S UTC", time.gmtime()),
             "Description: %s" % LABEL, "MD5Sum:"]
    lines += [" %s %d %s" % (md5, size, name) for name, size, md5, _sha in entries]
    lines += ["SHA256:"] + [" %s %d %s" % (sha, size, name) for name, size, _md5, sha in entries]
    with open(os.path.join(repo_dir, "Release"), "w") as f:
        f.write("\n".join(lines) + "\n")


def inputs_digest():
    h = hashlib.sha256()
    for path in (os.path.abspath(__file__), os.path.join(HERE, "files", "nvidia-ctk")):
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def pack(out):
    """The tree as one tar beside it (<out>.tar), written under a part name and renamed: a scenario unpacks it on its
    hosts in one task, where a directory copy costs a round trip per file."""
    with tarfile.open(out + ".tar.part", "w") as tar:
        tar.add(out, arcname=".")
    os.replace(out + ".tar.part", out + ".tar")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # Two Molecule scenarios (container_runtime, nvidia_driver) run this at the same time in two lanes: one builds,
    # the other waits here and then finds the stamp (a build deleting the tree another was reading failed a run).
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build(out)


def build(out):
    digest = inputs_digest()
    stamp = os.path.join(out, ".stamp")
    if os.path.exists(stamp) and open(stamp).read().strip() == digest:
        if not os.path.exists(out + ".tar"):
            pack(out)
        print("stand-in repo up to date: %s" % out)
        return 0
    for tool in ("dpkg-deb", "dpkg-scanpackages", "gpg"):
        if not shutil.which(tool):
            sys.exit("build.py: %s is missing; apt-get install dpkg-dev gnupg" % tool)
    arch = subprocess.run(["dpkg", "--print-architecture"], check=True, capture_output=True, text=True).stdout.strip()
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    with tempfile.TemporaryDirectory() as tmp:
        gnupg = os.path.join(tmp, "gnupg")
        os.makedirs(gnupg, mode=0o700)
        gpg = ["gpg", "--homedir", gnupg, "--batch", "--quiet", "--pinentry-mode", "loopback", "--passphrase", ""]
        run(gpg + ["--quick-gen-key", "onprem.llm_serving TEST stand-in repository <tests@example.invalid>",
                   "ed25519", "sign", "never"])
        with open(os.path.join(out, "key.gpg"), "wb") as f:
            run(gpg + ["--export"], stdout=f)
        with open(os.path.join(out, "key.asc"), "wb") as f:
            run(gpg + ["--armor", "--export"], stdout=f)
        for repo in ("cuda", "libnvidia-container"):
            os.makedirs(os.path.join(out, repo))
        for i, (repo, name, version, extra, files, links) in enumerate(packages()):
            build_deb(os.path.join(tmp, "pkg%d" % i), os.path.join(out, repo), arch, name, version, extra, files, links)
        for repo in ("cuda", "libnvidia-container"):
            repo_dir = os.path.join(out, repo)
            with open(os.path.join(repo_dir, "Packages"), "wb") as f:
                run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo_dir, stdout=f, stderr=subprocess.DEVNULL)
            with open(os.path.join(repo_dir, "Packages"), "rb") as src, gzip.open(os.path.join(repo_dir, "Packages.gz"), "wb") as dst:
                dst.write(src.read())
            release(repo_dir, repo)
            run(gpg + ["--clearsign", "-o", os.path.join(repo_dir, "InRelease"), os.path.join(repo_dir, "Release")])
            run(gpg + ["--armor", "--detach-sign", "-o", os.path.join(repo_dir, "Release.gpg"), os.path.join(repo_dir, "Release")])
    # the private key lived only in the temporary GNUPGHOME, which is gone now
    with open(stamp, "w") as f:
        f.write(digest + "\n")
    pack(out)
    count = len(list(packages()))
    print("stand-in repo built: %s (%d packages, driver %s, toolkit %s)" % (out, count, ", ".join(DRIVER_VERSIONS), TOOLKIT_VERSION))
    return 0


if __name__ == "__main__":
    sys.exit(main())
