# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The venv install's installer (vllm_installer): the command the role runs for uv and pip, with and without a mirror
(rendered with Ansible's own templar), and files/install_uv.py run as the role runs it (`<venv>/bin/python -c <file>
LOCK FIND_LINKS`) against a small uv wheel built here (tools/artefacts.py's alias_wheel): the pinned uv goes into the venv alone and hash-checked, a wheel
that is not the pinned one is refused by its hash, a lock without uv names the variable and both fixes.
The real installs (uv, 149 wheels) run in Molecule vllm and in `make lab` (tests/integration/test_readme_commands.py)."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import importlib.util
import os
import socket
import ssl
import subprocess
import sys
import threading

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tests"))
from role_templates import role_vars  # noqa: E402  pylint: disable=wrong-import-position

SCRIPT = open(os.path.join(ROLE, "files", "install_uv.py"), encoding="utf-8").read()
_SPEC = importlib.util.spec_from_file_location("artefacts_for_vllm_install", os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tools", "artefacts.py"))
ARTEFACTS = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ARTEFACTS)
ARGV = "{{ __vllm_installer_argv[vllm_installer] + __vllm_install_args }}"


def installer_argv(**overrides):
    variables = role_vars(ROLE, {"inventory_hostname": "h1", "groups": {"gpu_hosts": []}}, overrides)
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(ARGV))


TAIL = ["--no-index", "--no-deps", "--require-hashes", "--find-links"]


@pytest.mark.parametrize("url", ["", "https://mirror.example/wheels/"])
def test_uv_installs_exactly_the_lock_offline_unless_a_mirror(url):
    argv = installer_argv(vllm_installer="uv", vllm_wheelhouse_url=url)
    venv = "/opt/vllm/0.32.0/venv"
    assert argv[:5] == [venv + "/bin/uv", "pip", "install", "--python", venv + "/bin/python"]
    assert "--no-config" in argv and "--compile-bytecode" in argv
    assert argv[argv.index("--link-mode") + 1] == "hardlink"
    assert argv[argv.index("--cache-dir") + 1] == "/opt/vllm/0.32.0/.uv-cache"
    assert ("--offline" in argv) == (url == "") and ("--system-certs" in argv) == (url != "")
    where = url or "/opt/vllm/0.32.0/wheelhouse"
    assert argv[-7:] == TAIL + [where, "-r", "/opt/vllm/0.32.0/wheelhouse/requirements.lock"]


@pytest.mark.parametrize("url", ["", "https://mirror.example/wheels/"])
def test_pip_installs_exactly_the_lock(url):
    argv = installer_argv(vllm_installer="pip", vllm_wheelhouse_url=url)
    assert argv == ["/opt/vllm/0.32.0/venv/bin/python", "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
                    *TAIL, url or "/opt/vllm/0.32.0/wheelhouse", "-r", "/opt/vllm/0.32.0/wheelhouse/requirements.lock"]


@pytest.mark.parametrize("installer, flag", [("uv", "--allow-insecure-host"), ("pip", "--trusted-host")])
@pytest.mark.parametrize("url, host", [("https://mirror.example/wheels/", "mirror.example"),
                                       ("https://mirror.example:8443/wheels/", "mirror.example:8443"),
                                       ("https://[fd00::1]:8443/wheels/", "[fd00::1]:8443"),
                                       ("https://user:secret@mirror.example/wheels/", "mirror.example")])
def test_validate_certs_false_makes_the_installer_trust_the_mirror_host(installer, flag, url, host):
    """vllm_validate_certs: false reaches the installer as it reaches the lock's download; true, or no mirror, adds nothing."""
    argv = installer_argv(vllm_installer=installer, vllm_wheelhouse_url=url, vllm_validate_certs=False)
    assert argv[argv.index(flag) + 1] == host
    for overrides in (dict(vllm_wheelhouse_url=url), dict(vllm_wheelhouse_url=url, vllm_validate_certs="true"),
                      dict(vllm_wheelhouse_url="", vllm_validate_certs=False)):
        assert flag not in installer_argv(vllm_installer=installer, **overrides), overrides


def test_install_uv_is_given_the_host_to_trust():
    """The task that runs files/install_uv.py passes the same host (empty unless vllm_validate_certs is false)."""
    tasks = open(os.path.join(ROLE, "tasks", "install_venv_build.yml"), encoding="utf-8").read()
    assert '- "{{ __vllm_find_links }}"\n      - "{{ __vllm_insecure_host }}"' in tasks
    overrides = dict(vllm_wheelhouse_url="https://m.example:4443/w/", vllm_validate_certs="false")
    variables = role_vars(ROLE, {"inventory_hostname": "h1"}, overrides)
    assert Templar(loader=DataLoader(), variables=variables).template(trust_as_template("{{ __vllm_insecure_host }}")) == "m.example:4443"


def wheel(directory, name, version, summary):
    """A small valid wheel (tools/artefacts.py's metadata-only wheel builder); returns (path, sha256)."""
    filename, data = ARTEFACTS.alias_wheel(name, version, "pip", summary)
    path = os.path.join(directory, filename)
    with open(path, "wb") as handle:
        handle.write(data)
    return path, hashlib.sha256(data).hexdigest()


# With its own pip (vllm_installer: pip makes that venv) and without (the role's venv for uv: install_uv.py then runs the
# interpreter's pip wheel in place)
@pytest.fixture(scope="module", params=["with-pip", "without-pip"])
def venv(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(path)] + (["--without-pip"] if request.param == "without-pip" else []),
                   check=True)
    return path


def install_uv(venv, lock, find_links):
    return subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, str(lock), str(find_links)],
                          capture_output=True, text=True, check=False)


def installed(venv, name):
    probe = "import importlib.metadata as m\ntry: print(m.version(%r))\nexcept m.PackageNotFoundError: print('-')" % name
    return subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, check=True).stdout.strip()


def test_the_pinned_uv_goes_in_alone_and_hash_checked(venv, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _path, digest = wheel(str(wheels), "uv", "0.13.8", "pinned")
    _other, other_digest = wheel(str(wheels), "other", "1.0", "not installed")
    lock = wheels / "requirements.lock"
    lock.write_text("# a lock as tools/artefacts.py writes it\nother==1.0 \\\n    --hash=sha256:%s\nuv==0.13.8 \\\n"
                    "    --hash=sha256:%s\n" % (other_digest, digest))
    pip_before = installed(venv, "pip")
    proc = install_uv(venv, lock, wheels)
    assert proc.returncode == 0, proc.stderr
    assert installed(venv, "uv") == "0.13.8"
    assert installed(venv, "pip") == pip_before  # a venv without pip stays without (pip ran from its wheel)
    assert installed(venv, "other") == "-"  # uv alone: the installer installs the rest


def test_a_wheel_that_is_not_the_pinned_one_is_refused(venv, tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel(str(wheels), "uv", "0.13.9", "a different build")
    lock = wheels / "requirements.lock"
    lock.write_text("uv==0.13.9 \\\n    --hash=sha256:%s\n" % ("ab" * 32))
    proc = install_uv(venv, lock, wheels)
    assert proc.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in proc.stderr, proc.stderr
    assert installed(venv, "uv") != "0.13.9"


def test_a_lock_without_uv_names_the_variable_and_the_fixes(venv, tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("uvicorn==0.54.0 \\\n    --hash=sha256:%s\n" % ("cd" * 32))
    proc = install_uv(venv, lock, tmp_path)
    assert proc.returncode == 1
    assert "vllm_installer is uv, but %s pins no uv" % lock in proc.stderr
    assert "put uv, hash-pinned, in the wheelhouse lock" in proc.stderr and "set vllm_installer: pip" in proc.stderr


@contextlib.contextmanager
def https_mirror(directory, tmp_path, address="127.0.0.1"):
    """The wheels of ``directory`` served over HTTPS with a self-signed certificate (a site mirror behind its own CA that
    this machine does not trust) on ``address`` (an IPv4 or an IPv6 literal); yields the URL."""
    cert, key = tmp_path / "mirror.crt", tmp_path / "mirror.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None
    server_class = type("Server", (http.server.ThreadingHTTPServer,),
                        {"address_family": socket.AF_INET6 if ":" in address else socket.AF_INET})
    server = server_class((address, 0), handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "https://%s:%d/" % ("[%s]" % address if ":" in address else address, server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def mirror_lock(tmp_path):
    wheels = tmp_path / "mirror"
    wheels.mkdir()
    _path, digest = wheel(str(wheels), "uv", "0.13.8", "pinned, from the mirror")
    lock = tmp_path / "requirements.lock"
    lock.write_text("uv==0.13.8 \\\n    --hash=sha256:%s\n" % digest)
    return wheels, lock


@pytest.mark.parametrize("with_pip, address", [(True, "127.0.0.1"), (False, "127.0.0.1"), (False, "::1")])
def test_install_uv_from_a_mirror_whose_certificate_is_not_trusted(with_pip, address, tmp_path):
    """pip refuses the mirror's certificate; given the host (vllm_validate_certs: false) it installs the pinned uv."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)] + ([] if with_pip else ["--without-pip"]), check=True)
    wheels, lock = mirror_lock(tmp_path)
    with https_mirror(wheels, tmp_path, address) as url:
        refused = install_uv(venv, lock, url)
        assert refused.returncode != 0 and installed(venv, "uv") == "-"
        assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
        host = url.split("//")[1].rstrip("/")
        trusted = subprocess.run([str(venv / "bin" / "python"), "-c", SCRIPT, str(lock), url, host],
                                 capture_output=True, text=True, check=False)
    assert trusted.returncode == 0, trusted.stderr
    assert installed(venv, "uv") == "0.13.8"


UV = os.path.join(os.path.dirname(os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(
    os.path.dirname(os.path.dirname(ROLE)), ".cache", "vllm-venv", "bin", "python"))), "uv")


@pytest.mark.skipif(not os.path.exists(UV), reason="the controller's vLLM venv (tools/artefacts.py) brings the pinned uv")
def test_the_role_uv_command_installs_from_a_mirror_whose_certificate_is_not_trusted(tmp_path):
    """The installer command exactly as the role renders it (vllm_base_dir in a temporary directory), run with the lock's
    real uv against the HTTPS mirror: refused as the role ran it before, installed with vllm_validate_certs: false."""
    wheels, lock = mirror_lock(tmp_path)
    base = tmp_path / "opt-vllm"
    venv_dir = base / "0.32.0" / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv_dir)], check=True)
    os.symlink(UV, venv_dir / "bin" / "uv")
    (base / "0.32.0" / "wheelhouse").mkdir()
    (base / "0.32.0" / "wheelhouse" / "requirements.lock").write_text(lock.read_text())
    with https_mirror(wheels, tmp_path) as url:
        results = {}
        for validate in (True, False):
            argv = installer_argv(vllm_installer="uv", vllm_wheelhouse_url=url, vllm_validate_certs=validate,
                                  vllm_base_dir=str(base))
            results[validate] = subprocess.run(argv, capture_output=True, text=True, check=False,
                                               env=dict(os.environ, UV_NO_PROGRESS="1"))
            if validate:
                assert installed(venv_dir, "uv") == "-"
    assert results[True].returncode != 0
    assert "certificate" in results[True].stderr.lower(), results[True].stderr
    assert results[False].returncode == 0, results[False].stderr
    assert installed(venv_dir, "uv") == "0.13.8"


@pytest.mark.skipif(not os.path.exists(UV), reason="the controller's vLLM venv (tools/artefacts.py) brings the pinned uv")
def test_the_lock_uv_cannot_trust_an_ipv6_literal():
    """Why the preflight refuses vllm_installer uv with an untrusted IPv6-literal mirror: the lock's uv refuses the
    bracketed host:port that pip takes (tested above with a mirror on ::1)."""
    argv = installer_argv(vllm_installer="uv", vllm_wheelhouse_url="https://[::1]:8443/w/", vllm_validate_certs=False)
    assert argv[argv.index("--allow-insecure-host") + 1] == "[::1]:8443"
    proc = subprocess.run([UV, "pip", "install", "--dry-run", "--allow-insecure-host", "[::1]:8443", "uv"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "invalid port for `--trusted-host`: `[::1]:8443`" in proc.stderr, proc.stderr
