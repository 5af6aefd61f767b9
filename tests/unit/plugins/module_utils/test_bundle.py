# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The air-gapped bundle's logic (_bundle) and its two modules, bundle and manifest_verify."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess

import pytest

from ansible.module_utils.common import warnings as module_warnings
from ansible.module_utils.testing import patch_module_args
import yaml

from ansible_collections.onprem.llm_serving.plugins.module_utils import _bundle
from ansible_collections.onprem.llm_serving.plugins.modules import bundle as bundle_module
from ansible_collections.onprem.llm_serving.plugins.modules import manifest_verify


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(str(path), "wb") as handle:
        handle.write(data)
    return str(path)


def run_module(module, capsys, args):
    with patch_module_args(args):
        with pytest.raises(SystemExit) as info:
            module.main()
    result = json.loads(capsys.readouterr().out)
    result["rc"] = info.value.code
    return result


# ---------------------------------------------------------------------------------------------- manifests
def test_manifest_round_trip_and_sha256sum_compatible(tmp_path):
    write(tmp_path / "a.bin", b"a")
    write(tmp_path / "sub" / "b.bin", b"bb")
    text = _bundle.manifest_text({rel: _bundle.sha256_file(str(tmp_path / rel)) for rel in _bundle.list_files(str(tmp_path))})
    (tmp_path / "SHA256SUMS").write_text(text)
    assert _bundle.parse_manifest(text) == {"a.bin": sha(b"a"), "sub/b.bin": sha(b"bb")}
    # coreutils agrees with what we wrote
    assert subprocess.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=str(tmp_path), check=False).returncode == 0


@pytest.mark.parametrize("line", ["nothex  file", "%s  /etc/passwd" % ("0" * 64), "%s  ../up" % ("0" * 64)])
def test_parse_manifest_refuses_bad_lines(line):
    with pytest.raises(_bundle.BundleError):
        _bundle.parse_manifest(line + "\n")


def test_verify_tree_names_each_file_with_expected_and_actual(tmp_path):
    write(tmp_path / "good", b"good")
    write(tmp_path / "bad", b"bad")
    (tmp_path / "SHA256SUMS").write_text(_bundle.manifest_text({"good": sha(b"good"), "bad": sha(b"was good"), "gone": sha(b"x")}))
    entries, mismatches = _bundle.verify_tree(str(tmp_path))
    assert len(entries) == 3
    found = {os.path.basename(m.path): m for m in mismatches}
    assert set(found) == {"bad", "gone"}
    assert found["bad"].expected == sha(b"was good") and found["bad"].actual == sha(b"bad")
    assert found["gone"].actual == "missing"
    message = _bundle.mismatch_message(str(tmp_path), mismatches, "Rebuild it.")
    assert sha(b"was good") in message and sha(b"bad") in message and str(tmp_path / "bad") in message


def test_verify_tree_only_limits_to_prefixes(tmp_path):
    write(tmp_path / "apt" / "x", b"x")
    (tmp_path / "SHA256SUMS").write_text(_bundle.manifest_text({"apt/x": sha(b"x"), "models/y": sha(b"y")}))
    entries, mismatches = _bundle.verify_tree(str(tmp_path), only=["apt"])
    assert list(entries) == ["apt/x"] and mismatches == []


# ---------------------------------------------------------------------------------------------- staging
def test_stage_file_refuses_a_corrupt_source_and_keeps_the_good_copy(tmp_path):
    dst = write(tmp_path / "bundle" / "ollama.tgz", b"good archive")
    src = write(tmp_path / "src" / "ollama.tgz", b"corrupt archive")
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.stage_file(src, dst, sha(b"good archive2"))
    assert sha(b"good archive2") in str(info.value) and sha(b"corrupt archive") in str(info.value) and src in str(info.value)
    assert open(dst, "rb").read() == b"good archive"
    assert not os.path.exists(dst + _bundle.PART_SUFFIX)


def test_stage_file_reuses_links_and_replaces(tmp_path):
    src = write(tmp_path / "src" / "w.whl", b"wheel")
    dst = str(tmp_path / "bundle" / "w.whl")
    action, size = _bundle.stage_file(src, dst, sha(b"wheel"))
    assert action in ("linked", "copied") and size == 5
    assert _bundle.stage_file(src, dst, sha(b"wheel"))[0] == "reused"
    # a bundle file damaged in place is replaced from the good source
    os.unlink(dst)
    write(dst, b"wheeX")
    assert _bundle.stage_file(src, dst, sha(b"wheel"))[0] in ("linked", "copied")
    assert open(dst, "rb").read() == b"wheel"


def test_stage_tree_follows_the_source_manifest(tmp_path):
    src = tmp_path / "model"
    write(src / "config.json", b"{}")
    write(src / "model.safetensors", b"weights")
    write(src / "notes.txt", b"not listed")
    (src / "SHA256SUMS").write_text(_bundle.manifest_text({"config.json": sha(b"{}"), "model.safetensors": sha(b"weights")}))
    dst = tmp_path / "bundle" / "models" / "m"
    write(dst / "stale.bin", b"old")
    counts, size = _bundle.stage_tree(str(src), str(dst))
    assert sorted(os.listdir(str(dst))) == ["SHA256SUMS", "config.json", "model.safetensors"]
    assert counts["removed"] == 1 and size == 9
    # a bundle copy that verifies is re-used, whatever happened to the source since
    assert _bundle.stage_tree(str(src), str(dst))[0] == {"reused": 2, "linked": 0, "copied": 0}
    # a shard corrupted at the source is refused, naming it, when the bundle needs it; nothing half-written stays
    os.unlink(str(src / "model.safetensors"))
    write(src / "model.safetensors", b"weightz")
    os.unlink(str(dst / "model.safetensors"))
    with pytest.raises(_bundle.BundleError) as info:
        _bundle.stage_tree(str(src), str(dst))
    assert "model.safetensors" in str(info.value) and sha(b"weightz") in str(info.value) and sha(b"weights") in str(info.value)
    assert sorted(os.listdir(str(dst))) == ["SHA256SUMS", "config.json"]


def test_stage_tree_without_manifest_says_how_to_write_one(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(_bundle.BundleError, match="tools/artefacts.py manifest"):
        _bundle.stage_tree(str(tmp_path / "m"), str(tmp_path / "out"))


def test_seal_drops_what_the_plan_does_not_hold(tmp_path):
    write(tmp_path / "apt" / "debian-12" / "Packages", b"P")
    write(tmp_path / "models" / "old.gguf", b"old")
    write(tmp_path / "models" / "new.gguf", b"new")
    write(tmp_path / "vars.yml", b"---\n")
    summary = _bundle.seal(str(tmp_path), ["apt", "models/new.gguf", "vars.yml"])
    assert summary["removed"] == ["models/old.gguf"] and summary["files"] == 3 and summary["changed"]
    assert _bundle.verify_tree(str(tmp_path))[1] == []
    assert _bundle.seal(str(tmp_path), ["apt", "models/new.gguf", "vars.yml"])["changed"] is False


# ---------------------------------------------------------------------------------------------- apt
SIMULATION = """NOTE: This is only a simulation!
Inst libc6 (2.36-9+deb12u10 Debian:12.11/stable [amd64])
Inst python3-apt (2.6.0 Debian:12.11/stable [amd64])
Inst python3-six (1.16.0-4 Debian:12.11/stable [all])
Inst tzdata (2025b-0+deb12u1 Debian:12-updates/stable-updates [all])
Inst libx [1:1.0-1] (1:2.0-1 Debian:12.11/stable [amd64])
Conf libc6 (2.36-9+deb12u10 Debian:12.11/stable [amd64])
"""


def test_parse_simulation_reads_each_inst_line():
    assert _bundle.parse_simulation(SIMULATION) == [
        ("libc6", "2.36-9+deb12u10", "amd64"), ("python3-apt", "2.6.0", "amd64"), ("python3-six", "1.16.0-4", "all"),
        ("tzdata", "2025b-0+deb12u1", "all"), ("libx", "1:2.0-1", "amd64")]


def test_deb_file_name_escapes_the_epoch():
    assert _bundle.deb_file_name("libx", "1:2.0-1", "amd64") == "libx_1%3a2.0-1_amd64.deb"


def test_sources_list_requires_a_keyring_and_a_known_scheme():
    text = _bundle.sources_list([{"uri": "http://deb.debian.org/debian", "suites": ["bookworm", "bookworm-updates"],
                                  "components": ["main"], "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"},
                                 {"uri": "file:/srv/nvidia", "suites": ["./"], "signed_by": "/k.gpg"}])
    assert text.splitlines() == [
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main",
        "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main",
        "deb [signed-by=/k.gpg] file:/srv/nvidia ./"]
    with pytest.raises(_bundle.BundleError, match="signed_by"):
        _bundle.sources_list([{"uri": "http://x", "suites": ["a"], "components": ["main"]}])
    with pytest.raises(_bundle.BundleError, match="ftp://x"):
        _bundle.sources_list([{"uri": "ftp://x", "suites": ["a"], "signed_by": "/k"}])


class FakeApt:
    """apt-get / apt-cache / gpg as seen through the runner: canned answers, downloads written to the pool."""

    def __init__(self, debs):
        self.debs = debs  # {(name, version, arch): bytes}
        self.calls = []

    def stanza(self, name, version, arch, data):
        return "Package: %s\nVersion: %s\nArchitecture: %s\nFilename: pool/main/x/%s_%s_%s.deb\nSize: %d\nSHA256: %s\nDescription: test\n x\n" % (
            name, version, arch, name, version.split(":")[-1], arch, len(data), sha(data))

    def __call__(self, argv, env=None, binary=False):
        self.calls.append(argv)
        args = [a for a in argv if not a.startswith("-o") and "=" not in a or a.count("=") and not a.startswith("Dir")]
        if argv[0] == "apt-get" and "update" in argv:
            return 0, "", ""
        if argv[0] == "apt-get" and "-s" in argv:
            return 0, "".join("Inst %s (%s Debian:12 [%s])\n" % k for k in self.debs), ""
        if argv[0] == "apt-get" and "--download-only" in argv:
            pool = [a.split("=", 1)[1] for a in argv if a.startswith("Dir::Cache::archives=")][0]
            for (name, version, arch), data in self.debs.items():
                write(os.path.join(pool, _bundle.deb_file_name(name, version, arch)), data)
            return 0, "", ""
        if argv[0] == "apt-cache":
            return 0, "\n".join(self.stanza(n, v, a, d) for (n, v, a), d in self.debs.items()), ""
        raise AssertionError("unexpected command %s" % args)


def test_apt_repo_resolves_downloads_and_indexes(tmp_path):
    debs = {("python3-six", "1.16.0-4", "all"): b"six deb", ("libx", "1:2.0-1", "amd64"): b"libx deb"}
    fake = FakeApt(debs)
    repo = str(tmp_path / "repo")
    apt = _bundle.AptRepo(fake, repo, str(tmp_path / "work"))
    plan = apt.resolve([{"uri": "http://deb.debian.org/debian", "suites": ["bookworm"], "components": ["main"],
                         "signed_by": "/k.gpg"}], ["python3-six", "libx"])
    write(os.path.join(repo, "pool", "stale_1_all.deb"), b"old")
    wanted, downloaded = apt.download(plan)
    assert downloaded == 2 and sorted(os.listdir(os.path.join(repo, "pool"))) == ["libx_1%3a2.0-1_amd64.deb", "python3-six_1.16.0-4_all.deb"]
    packages = apt.index(plan, wanted).decode()
    assert "Filename: pool/libx_1%3a2.0-1_amd64.deb" in packages and sha(b"libx deb") in packages
    # every apt call ran against the private root with an empty dpkg status and no recommends
    assert all("APT::Install-Recommends=0" in call and "Dir::State::status=%s/var/lib/dpkg/status" % (tmp_path / "work") in call
               for call in fake.calls)
    # a second download fetches nothing
    assert apt.download(plan)[1] == 0


def test_apt_repo_refuses_a_deb_that_differs_from_the_archive_index(tmp_path):
    debs = {("python3-six", "1.16.0-4", "all"): b"six deb"}
    fake = FakeApt(debs)
    repo = str(tmp_path / "repo")
    apt = _bundle.AptRepo(fake, repo, str(tmp_path / "work"))
    plan = apt.resolve([{"uri": "http://x/debian", "suites": ["bookworm"], "components": ["main"], "signed_by": "/k"}], ["python3-six"])
    wanted, _n = apt.download(plan)
    path = os.path.join(repo, "pool", "python3-six_1.16.0-4_all.deb")
    os.unlink(path)
    write(path, b"tampered")
    with pytest.raises(_bundle.BundleError) as info:
        apt.index(plan, wanted)
    assert sha(b"six deb") in str(info.value) and sha(b"tampered") in str(info.value)
    assert not os.path.exists(path)


@pytest.mark.parametrize("packages", [["Bad_Name"], ["ok", "rm -rf /"]])
def test_apt_repo_refuses_what_is_not_a_package_name(tmp_path, packages):
    apt = _bundle.AptRepo(FakeApt({}), str(tmp_path / "r"), str(tmp_path / "w"))
    with pytest.raises(_bundle.BundleError, match="not a Debian package name"):
        apt.resolve([{"uri": "http://x", "suites": ["a"], "components": ["main"], "signed_by": "/k"}], packages)


def test_release_lists_the_index_hashes_and_is_stable_without_its_date(tmp_path):
    repo = str(tmp_path)
    assert _bundle.write_repo_index(repo, b"Package: a\n") is True
    release = open(os.path.join(repo, "Release")).read()
    assert " %s %d Packages\n" % (sha(b"Package: a\n"), len(b"Package: a\n")) in release
    write(os.path.join(repo, "InRelease"), b"signed")
    assert _bundle.write_repo_index(repo, b"Package: a\n") is False
    assert _bundle.write_repo_index(repo, b"Package: b\n") is True


@pytest.mark.skipif(shutil.which("gpg") is None or shutil.which("gpgv") is None, reason="gpg is not installed")
def test_signing_with_a_generated_key_verifies_with_gpgv(tmp_path):
    def run(argv, env=None, binary=False):
        proc = subprocess.run(argv, capture_output=True, check=False, env=dict(os.environ, **(env or {})))
        if binary:
            return proc.returncode, proc.stdout, proc.stderr
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    home = str(tmp_path / "gnupg")
    repo = str(tmp_path / "repo")
    os.makedirs(repo)
    _bundle.write_repo_index(repo, b"Package: a\n")
    fpr = _bundle.signing_key(run, home)
    assert fpr == _bundle.signing_key(run, home)  # generated once
    _bundle.sign_repo(run, home, fpr, repo)
    _bundle.export_key(run, home, fpr, os.path.join(repo, "signing-key.gpg"))
    ok = subprocess.run(["gpgv", "--keyring", os.path.join(repo, "signing-key.gpg"), os.path.join(repo, "InRelease")],
                        capture_output=True, check=False)
    assert ok.returncode == 0, ok.stderr
    tampered = open(os.path.join(repo, "InRelease")).read().replace("Packages", "Packagez", 1)
    write(os.path.join(repo, "InRelease"), tampered.encode())
    bad = subprocess.run(["gpgv", "--keyring", os.path.join(repo, "signing-key.gpg"), os.path.join(repo, "InRelease")],
                         capture_output=True, check=False)
    assert bad.returncode != 0


# ---------------------------------------------------------------------------------------------- vars file
def test_vars_yaml_loads_back_with_go_templates_kept_unsafe():
    data = {"llm_bundle_dir": "/srv/b", "ollama_archive_src": "{{ llm_bundle_dir }}/ollama/o.tgz", "flag": True,
            "ollama_models": [{"name": "tiny", "template": "{{ if .System }}{{ .System }}{{ end }}", "parameters": {"stop": ["<|end|>"]}}],
            "empty": [], "n": 3}
    text = _bundle.to_yaml(data)
    assert '!unsafe "{{ if .System }}' in text
    assert 'ollama_archive_src: "{{ llm_bundle_dir }}/ollama/o.tgz"' in text

    # (ansible's own loader would import the controller side, which changes how module warnings are collected in
    # later tests of this process: a SafeLoader that knows the one tag we write reads it the same way)
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    loaded = yaml.load(text, Loader=Loader)  # noqa: S506  pylint: disable=no-value-for-parameter
    assert json.loads(json.dumps(loaded, default=str)) == json.loads(json.dumps(data))


# ---------------------------------------------------------------------------------------------- modules
def test_bundle_module_artefact_then_seal_then_manifest_verify(tmp_path, capsys):
    src = write(tmp_path / "src" / "o.tgz", b"archive")
    write(tmp_path / "src" / "o.tgz.sha256", ("%s  o.tgz\n" % sha(b"archive")).encode())
    root = str(tmp_path / "bundle")
    first = run_module(bundle_module, capsys, {"path": root, "artefact": {"src": src, "dest": "ollama/o.tgz"}})
    assert first["rc"] == 0 and first["changed"] and first["summary"]["sha256"] == sha(b"archive")
    again = run_module(bundle_module, capsys, {"path": root, "artefact": {"src": src, "dest": "ollama/o.tgz"}})
    assert again["changed"] is False
    sealed = run_module(bundle_module, capsys, {"path": root, "seal": True, "keep": ["ollama"]})
    assert sealed["summary"]["files"] == 2
    ok = run_module(manifest_verify, capsys, {"path": root})
    assert ok["rc"] == 0 and ok["files"] == 2 and ok["changed"] is False
    os.unlink(os.path.join(root, "ollama", "o.tgz"))
    write(os.path.join(root, "ollama", "o.tgz"), b"archivX")
    bad = run_module(manifest_verify, capsys, {"path": root})
    assert bad["rc"] == 1 and bad["failed"]
    assert sha(b"archive") in bad["msg"] and sha(b"archivX") in bad["msg"] and "ollama/o.tgz" in bad["msg"]
    assert bad["mismatches"] == [{"path": os.path.join(root, "ollama", "o.tgz"), "expected": sha(b"archive"), "actual": sha(b"archivX")}]


def test_bundle_module_refuses_an_artefact_without_its_checksum(tmp_path, capsys):
    src = write(tmp_path / "o.tgz", b"archive")
    res = run_module(bundle_module, capsys, {"path": str(tmp_path / "b"), "artefact": {"src": src, "dest": "o.tgz"}})
    assert res["rc"] == 1 and "o.tgz.sha256 is missing" in res["msg"]


def test_bundle_module_refuses_paths_outside_the_bundle(tmp_path, capsys):
    src = write(tmp_path / "o.tgz", b"archive")
    res = run_module(bundle_module, capsys, {"path": str(tmp_path / "b"),
                                             "artefact": {"src": src, "dest": "../escape", "sha256": sha(b"archive")}})
    assert res["rc"] == 1 and "inside the bundle" in res["msg"]


def test_manifest_verify_expected_map_reports_without_failing(tmp_path, capsys):
    """The models role's use: which files of a revision directory have their pinned sha256, in one call."""
    root = tmp_path / "rev"
    write(root / "config.json", b"{}")
    write(root / "model.safetensors", b"weights")
    expected = {"config.json": sha(b"{}").upper(), "model.safetensors": sha(b"other weights"), "tokenizer.json": sha(b"t")}
    res = run_module(manifest_verify, capsys, {"path": str(root), "expected": expected, "fail_on_mismatch": False})
    assert res["rc"] == 0 and not res.get("failed") and res["changed"] is False
    assert res["matched"] == ["config.json"] and res["files"] == 3
    assert {os.path.basename(m["path"]): m["actual"] for m in res["mismatches"]} == {
        "model.safetensors": sha(b"weights"), "tokenizer.json": "missing"}
    # the same map fails by default, naming each file; a directory that does not exist yet: every file missing
    failed = run_module(manifest_verify, capsys, {"path": str(root), "expected": expected})
    assert failed["rc"] == 1 and "tokenizer.json" in failed["msg"] and sha(b"weights") in failed["msg"]
    empty = run_module(manifest_verify, capsys, {"path": str(tmp_path / "none"), "expected": expected, "fail_on_mismatch": False})
    assert empty["matched"] == [] and len(empty["mismatches"]) == 3
    # a path that leaves the directory is refused, not hashed
    escape = run_module(manifest_verify, capsys, {"path": str(root), "expected": {"../x": sha(b"x")}, "fail_on_mismatch": False})
    assert escape["rc"] == 1 and "stay inside" in escape["msg"]


# ---------------------------------------------------------------------------------------------- stat cache
def test_stat_cache_hashes_a_file_once_then_again_after_any_change(tmp_path, monkeypatch):
    """A re-check reads stat, not content; a write, a touch back to the old time, a chmod or a new pin hashes again."""
    root = tmp_path / "rev"
    write(root / "model.safetensors", b"weights")
    write(root / "config.json", b"{}")
    entries = {"model.safetensors": sha(b"weights"), "config.json": sha(b"{}")}
    hashed = []
    real = _bundle.sha256_file
    monkeypatch.setattr(_bundle, "sha256_file", lambda path, chunk=1 << 20: hashed.append(os.path.basename(path)) or real(path, chunk))
    cache = {}

    def check(pins=None):
        hashed.clear()
        stats = _bundle.VerifyStats()
        bad = _bundle.verify_entries(str(root), pins or entries, cache, stats)
        return sorted(hashed), [os.path.basename(m.path) for m in bad], stats

    assert check()[0] == ["config.json", "model.safetensors"]
    assert sorted(cache) == ["config.json", "model.safetensors"]
    again, bad, stats = check()
    assert again == [] and bad == [] and (stats.cached_files, stats.hashed_files, stats.hashed_bytes) == (2, 0, 0)

    weights = str(root / "model.safetensors")
    before = os.stat(weights)
    write(root / "model.safetensors", b"weightz")              # same size, new content
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # and the old mtime back: ctime still moved
    hashed_now, bad, stats = check()
    assert hashed_now == ["model.safetensors"] and bad == ["model.safetensors"] and stats.hashed_bytes == 7
    assert "model.safetensors" not in cache                   # a file that differs is never remembered as good
    assert check()[0] == ["model.safetensors"]                # and is hashed on every check until it is fixed

    write(root / "model.safetensors", b"weights")
    assert check()[0] == ["model.safetensors"] and check()[0] == []
    os.chmod(weights, 0o600)
    assert check()[0] == ["model.safetensors"]
    new_pin = dict(entries, **{"config.json": sha(b"{ }")})   # the pin moved: the record of the old pin does not count
    assert check(new_pin)[:2] == (["config.json"], ["config.json"])
    os.unlink(weights)
    assert check()[:2] == (["config.json"], ["model.safetensors"]) and sorted(cache) == ["config.json"]
    # a file where the revision directory should be: every pinned file is missing, as before the cache (no error)
    write(tmp_path / "not-a-dir", b"x")
    assert [m.actual for m in _bundle.verify_entries(str(tmp_path / "not-a-dir"), entries, {})] == ["missing", "missing"]


def test_stat_cache_file_round_trip_and_what_it_ignores(tmp_path):
    path = str(tmp_path / "cache.json")
    assert _bundle.load_stat_cache(path) == {}                            # missing
    record = {"sha256": sha(b"a"), "stat": [1, 2, 3, 4, 5]}
    text = _bundle.stat_cache_text({"a": record, "gone": record}, keep={"a"})
    (tmp_path / "cache.json").write_text(text)
    assert _bundle.load_stat_cache(path) == {"a": record}                 # only what the last check listed is kept
    (tmp_path / "cache.json").write_text(text.replace('"version": 1', '"version": 99'))
    assert _bundle.load_stat_cache(path) == {}                            # another version: hash everything
    (tmp_path / "cache.json").write_text("{not json")
    assert _bundle.load_stat_cache(path) == {}
    (tmp_path / "cache.json").write_text(json.dumps({"version": 1, "files": {"a": {"sha256": 1}, "b": record}}))
    assert _bundle.load_stat_cache(path) == {"b": record}                 # malformed records are dropped


def test_manifest_verify_stat_cache_written_once_and_not_in_check_mode(tmp_path, capsys):
    root = tmp_path / "rev"
    write(root / "model.safetensors", b"weights")
    expected = {"model.safetensors": sha(b"weights")}
    cache = str(root / ".verified-stat.json")
    args = {"path": str(root), "expected": expected, "stat_cache": cache}
    checked = run_module(manifest_verify, capsys, dict(args, _ansible_check_mode=True))
    assert checked["hashed_files"] == 1 and not os.path.exists(cache)     # check mode writes nothing
    first = run_module(manifest_verify, capsys, args)
    assert (first["hashed_files"], first["hashed_bytes"], first["cached_files"], first["changed"]) == (1, 7, 0, False)
    written = os.stat(cache)
    assert oct(written.st_mode & 0o777) == "0o644"
    second = run_module(manifest_verify, capsys, args)
    assert (second["hashed_files"], second["cached_files"], second["matched"]) == (0, 1, ["model.safetensors"])
    assert os.stat(cache).st_mtime_ns == written.st_mtime_ns             # unchanged content is not rewritten
    # the bundle's form (a SHA256SUMS in the directory) uses the same cache
    (root / "SHA256SUMS").write_text(_bundle.manifest_text(expected))
    tree = run_module(manifest_verify, capsys, {"path": str(root), "stat_cache": cache})
    assert tree["rc"] == 0 and tree["cached_files"] == 1 and tree["hashed_files"] == 0
    # a cache whose directory does not exist is not written; one that cannot be written is a warning; the check stands
    nowhere = run_module(manifest_verify, capsys, dict(args, stat_cache=str(tmp_path / "missing-dir" / "c.json")))
    assert nowhere["rc"] == 0 and nowhere["hashed_files"] == 1 and not nowhere.get("warnings")
    (tmp_path / "a-directory").mkdir()
    try:
        blocked = run_module(manifest_verify, capsys, dict(args, stat_cache=str(tmp_path / "a-directory")))
    finally:
        # module warnings accumulate in one process-wide list that only a module's exit in its own process ends:
        # left there, this one would reach the next in-process module run of the test session
        module_warnings._global_warnings.clear()  # pylint: disable=protected-access
    assert blocked["rc"] == 0 and blocked["matched"] == ["model.safetensors"]
    assert "was not written" in json.dumps(blocked["warnings"])
    # the writer stages <cache>.part and renames it over the cache: the rename onto a directory failed, the part is gone
    assert [n for n in os.listdir(str(tmp_path)) if n.endswith(_bundle.PART_SUFFIX)] == []
