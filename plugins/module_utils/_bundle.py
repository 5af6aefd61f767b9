# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The air-gapped bundle: one directory holding every file the hosts need, each listed with its sha256.

Pure logic for the ``bundle`` and ``manifest_verify`` modules. Nothing here touches AnsibleModule; commands run
through a ``run(argv, env=None) -> (rc, stdout, stderr)`` callable that tests replace with a fake.

Layout of a bundle (``playbooks/bundle.yml`` builds it):

    SHA256SUMS                 every file below, sha256sum(1) format (``sha256sum -c SHA256SUMS`` checks it too)
    vars.yml                   points every ``*_src`` variable of the roles at this directory
    apt/<os>-<major>/          a flat apt repository per OS release: pool/*.deb (the dependency closure of the
                               roles' packages against an empty dpkg status), Packages(.gz), Release, InRelease
                               signed with the bundle's key, signing-key.gpg and its own SHA256SUMS
    wheels/<name>/             Python wheelhouses, each with its SHA256SUMS (and requirements.lock)
    ollama/<archive>           engine archives, each with <archive>.sha256
    images/<name>.tar          container image tarballs, with .sha256 and .id
    models/<name>/ or .gguf    model directories (SHA256SUMS) and GGUF files (.sha256)
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time

MANIFEST = "SHA256SUMS"
PART_SUFFIX = ".part"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class BundleError(Exception):
    """A bundle step failed; the message names the value and the fix."""


class Mismatch:
    """A file whose content is not what its manifest says."""

    def __init__(self, path, expected, actual):
        self.path = path
        self.expected = expected
        self.actual = actual  # hex digest, or "missing"

    def as_dict(self):
        return {"path": self.path, "expected": self.expected, "actual": self.actual}

    def __str__(self):
        return "%s: expected sha256 %s, actual %s" % (self.path, self.expected, self.actual)


# ---------------------------------------------------------------------------------------------- manifests
def sha256_file(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_relative(rel):
    if not rel or rel.startswith("/") or ".." in rel.split("/") or "\n" in rel or "\\" in rel:
        raise BundleError("bundle paths must be relative and stay inside the bundle: %r" % (rel,))
    return rel


def parse_manifest(text, source="SHA256SUMS"):
    """{relative path: sha256} from sha256sum(1) lines; comments and blank lines are skipped."""
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.match(r"^([0-9a-fA-F]{64}) [ *](.+)$", line)
        if not match:
            raise BundleError("%s line %d is not '<sha256>  <path>': %r" % (source, number, line[:200]))
        entries[check_relative(match.group(2))] = match.group(1).lower()
    return entries


def manifest_text(entries):
    for rel, digest in entries.items():
        check_relative(rel)
        if not _HEX64.fullmatch(digest):
            raise BundleError("not a sha256 hex digest for %s: %r" % (rel, digest))
    return "".join("%s  %s\n" % (entries[rel], rel) for rel in sorted(entries))


def list_files(root, exclude=(MANIFEST,)):
    """Regular files under root, relative with '/', sorted; the manifest itself and *.part leftovers are left out."""
    found = []
    for base, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(base, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in exclude or name.endswith(PART_SUFFIX) or os.path.islink(full):
                continue
            found.append(rel)
    return sorted(found)


def verify_tree(root, manifest=MANIFEST, only=None, cache=None, stats=None):
    """(entries, mismatches): every file the manifest lists is checked; ``only`` limits it to paths under prefixes;
    ``cache`` and ``stats`` as for verify_entries."""
    path = os.path.join(root, manifest)
    if not os.path.isfile(path):
        raise BundleError("%s is missing: rebuild the bundle (ansible-playbook playbooks/bundle.yml)" % path)
    with open(path, encoding="utf-8") as handle:
        entries = parse_manifest(handle.read(), path)
    if only:
        prefixes = tuple(p.rstrip("/") for p in only)
        entries = {rel: dig for rel, dig in entries.items()
                   if any(rel == p or rel.startswith(p + "/") for p in prefixes)}
    return entries, verify_entries(root, entries, cache, stats)


# ---------------------------------------------------------------------------------------------- stat cache
# A file verified once is not hashed again while its stat signature is the one recorded with its sha256: the same
# device and inode, size, modification time and inode change time (in ns). Writing, truncating, replacing, touching,
# chmod or chown changes at least one of them (ctime cannot be set back from user space), so such a file is hashed
# again. What the signature cannot see is a change below the filesystem (a disk's silent corruption): a full check
# is one call without the cache.
STAT_CACHE_VERSION = 1


def stat_signature(st):
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def load_stat_cache(path):
    """{relative path: {"sha256", "stat"}} from a stat cache file; {} when it is missing, unreadable or of another
    version (then every file is hashed, and the cache written anew)."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != STAT_CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    return {rel: item for rel, item in data["files"].items()
            if isinstance(item, dict) and isinstance(item.get("sha256"), str) and isinstance(item.get("stat"), list)}


def stat_cache_text(cache, keep):
    """The cache file's content, holding only the paths in ``keep`` (what the last check listed)."""
    files = {rel: cache[rel] for rel in sorted(cache) if rel in keep}
    return json.dumps({"version": STAT_CACHE_VERSION, "files": files}, sort_keys=True, indent=1) + "\n"


class VerifyStats:
    """What a check read: the bytes of the files present, files and bytes hashed, files taken from the stat cache."""

    def __init__(self):
        self.bytes = 0
        self.hashed_files = 0
        self.hashed_bytes = 0
        self.cached_files = 0


def verify_entries(root, entries, cache=None, stats=None):
    """The files of ``entries`` ({relative path: sha256}) under ``root`` that are missing or differ, as Mismatch.

    ``cache`` (a dict from load_stat_cache, or None for no cache) is read and updated in place: a file whose stat
    signature and expected sha256 are as recorded counts as matched without being hashed; a hashed file that matches is
    recorded (its signature taken before it is read, so a file that changes while it is read is hashed next time
    again); one that differs or is missing is dropped from it. ``stats`` (a VerifyStats) counts what was read."""
    stats = stats if stats is not None else VerifyStats()
    mismatches = []
    for rel in sorted(entries):
        full = os.path.join(root, check_relative(rel))
        expected = str(entries[rel]).lower()
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):  # as os.path.isfile: not there (a file where a directory is)
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            actual = "missing"
        else:
            stats.bytes += st.st_size
            signature = stat_signature(st)
            known = cache.get(rel) if cache is not None else None
            if known and known.get("stat") == signature and known.get("sha256") == expected:
                actual = expected
                stats.cached_files += 1
            else:
                actual = sha256_file(full)
                stats.hashed_files += 1
                stats.hashed_bytes += st.st_size
                if cache is not None and actual == expected:
                    cache[rel] = {"sha256": actual, "stat": signature}
        if actual != expected:
            if cache is not None:
                cache.pop(rel, None)
            mismatches.append(Mismatch(full, expected, actual))
    return mismatches


def mismatch_message(root, mismatches, fix):
    lines = ["%d file(s) under %s do not match their manifest (nothing was changed on any host):" % (len(mismatches), root)]
    lines += ["  %s" % m for m in mismatches[:20]]
    if len(mismatches) > 20:
        lines.append("  ... and %d more" % (len(mismatches) - 20))
    lines.append(fix)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- staging files
def _replace_with(src, dst, expected):
    """Hard-link (same filesystem) or copy src beside dst, check it, then rename it over dst."""
    part = dst + PART_SUFFIX
    if os.path.lexists(part):
        os.unlink(part)
    try:
        os.link(src, part)
        how = "linked"  # the same inode as the source just hashed: nothing to hash again
    except OSError:
        shutil.copyfile(src, part)
        how = "copied"
        actual = sha256_file(part)
        if actual != expected:
            os.unlink(part)
            raise BundleError("%s changed while it was staged: expected sha256 %s, actual %s" % (src, expected, actual))
    os.chmod(part, 0o644)
    os.replace(part, dst)
    return how


def stage_file(src, dst, expected=None):
    """Put src at dst unless dst already holds the expected content. Returns (action, bytes).

    ``expected`` (the sha256 the source must have) is checked on the SOURCE before anything is written: a corrupt
    source never replaces a good file in the bundle.
    """
    if not os.path.isfile(src):
        raise BundleError("%s does not exist or is not a file: build it first (tools/artefacts.py) or fix the path" % src)
    os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
    if expected is not None:
        expected = expected.lower()
        if os.path.isfile(dst) and os.path.getsize(dst) == os.path.getsize(src) and sha256_file(dst) == expected:
            return "reused", os.path.getsize(dst)
    actual = sha256_file(src)
    if expected is not None and actual != expected:
        raise BundleError("%s: expected sha256 %s, actual %s. Rebuild or re-download it, or fix its checksum file."
                          % (src, expected, actual))
    if os.path.isfile(dst) and os.path.getsize(dst) == os.path.getsize(src) and sha256_file(dst) == actual:
        return "reused", os.path.getsize(dst)
    return _replace_with(src, dst, actual), os.path.getsize(src)


def read_checksum_file(path):
    """The hex digest of a '<file>.sha256' (sha256sum format or a bare digest)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError:
        raise BundleError("%s is missing: every artefact needs its sha256 beside it (sha256sum FILE > FILE.sha256)" % path)
    digest = text.split()[0].lower() if text else ""
    if not _HEX64.fullmatch(digest):
        raise BundleError("%s does not start with a sha256 hex digest: %r" % (path, text[:100]))
    return digest


def stage_tree(src, dst, manifest=MANIFEST):
    """Mirror a directory that carries its own manifest; files not in it are removed from dst. Returns a summary."""
    src_manifest = os.path.join(src, manifest)
    if not os.path.isfile(src_manifest):
        raise BundleError("%s has no %s: write it first (tools/artefacts.py manifest %s)" % (src, manifest, src))
    with open(src_manifest, encoding="utf-8") as handle:
        entries = parse_manifest(handle.read(), src_manifest)
    os.makedirs(dst, exist_ok=True)
    counts = {"reused": 0, "linked": 0, "copied": 0}
    size = 0
    for rel in sorted(entries):
        action, nbytes = stage_file(os.path.join(src, rel), os.path.join(dst, rel), entries[rel])
        counts[action] += 1
        size += nbytes
    stage_file(src_manifest, os.path.join(dst, manifest))
    for rel in list_files(dst):
        if rel not in entries:
            os.unlink(os.path.join(dst, rel))
            counts.setdefault("removed", 0)
            counts["removed"] += 1
    return counts, size


# ---------------------------------------------------------------------------------------------- apt
APT_DIRS = ("etc/apt/sources.list.d", "etc/apt/preferences.d", "etc/apt/apt.conf.d", "etc/apt/trusted.gpg.d",
            "var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg")


def apt_options(root, arch="amd64", pool=None):
    """apt-get options for a private apt root: an EMPTY dpkg status, so the result is the whole closure."""
    opts = ["-o", "Dir=%s" % root, "-o", "Dir::State::status=%s/var/lib/dpkg/status" % root,
            "-o", "Dir::Etc=%s/etc/apt" % root, "-o", "Dir::Etc::Parts=%s/etc/apt/apt.conf.d" % root,
            "-o", "APT::Architecture=%s" % arch, "-o", "APT::Architectures::=%s" % arch,
            "-o", "APT::Install-Recommends=0", "-o", "APT::Install-Suggests=0", "-o", "Debug::NoLocking=1",
            "-o", "Acquire::Languages=none", "-o", "APT::Sandbox::User=root"]
    if pool:
        opts += ["-o", "Dir::Cache::archives=%s" % pool]
    return opts


def sources_list(sources):
    """One-line apt sources from [{uri, suites, components, signed_by, trusted}]; a flat repository has suite './'."""
    lines = []
    for number, src in enumerate(sources, 1):
        uri = src.get("uri") or ""
        if not re.match(r"^(https?|file|copy):", uri):
            raise BundleError("apt source %d: uri %r must start with http://, https:// or file:" % (number, uri))
        signed_by = src.get("signed_by") or ""
        if not signed_by:
            raise BundleError("apt source %d (%s): signed_by (a keyring on this machine) is required" % (number, uri))
        for suite in src.get("suites") or []:
            components = " ".join(src.get("components") or []) if not suite.endswith("/") else ""
            lines.append(("deb [signed-by=%s] %s %s %s" % (signed_by, uri, suite, components)).rstrip())
    if not lines:
        raise BundleError("no apt source to resolve the packages from: set bundle_apt_sources")
    return "\n".join(lines) + "\n"


def prepare_apt_root(root, sources):
    for rel in APT_DIRS:
        os.makedirs(os.path.join(root, rel), exist_ok=True)
    status = os.path.join(root, "var/lib/dpkg/status")
    if not os.path.exists(status):
        open(status, "w").close()
    with open(os.path.join(root, "etc/apt/sources.list"), "w", encoding="utf-8") as handle:
        handle.write(sources_list(sources))


def parse_simulation(text):
    """[(package, version, arch)] from the 'Inst name (version suite [arch])' lines of apt-get -s install."""
    found = []
    for line in text.splitlines():
        match = re.match(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) .*?\[(\S+)\]\)", line)
        if match:
            found.append((match.group(1), match.group(2), match.group(3)))
    return found


def parse_stanzas(text):
    """Stanzas of a Packages file / apt-cache show output, as (dict of fields, raw text)."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text.strip()):
        if not block.strip():
            continue
        fields = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        stanzas.append((fields, block.strip()))
    return stanzas


def deb_file_name(package, version, arch):
    """The name apt-get gives a downloaded package: the epoch's ':' is escaped as %3a."""
    return "%s_%s_%s.deb" % (package, version.replace(":", "%3a"), arch)


def rewrite_stanza(raw, filename):
    lines = []
    for line in raw.splitlines():
        if line.startswith("Filename:"):
            line = "Filename: pool/%s" % filename
        lines.append(line)
    return "\n".join(lines)


def release_text(index_files, origin, label, date):
    """Release of a flat repository: the hashes of its index files."""
    out = ["Origin: %s" % origin, "Label: %s" % label, "Suite: stable", "Codename: onprem-bundle",
           "Date: %s" % date, "Architectures: amd64 all", "SHA256:"]
    for name in sorted(index_files):
        data = index_files[name]
        out.append(" %s %d %s" % (hashlib.sha256(data).hexdigest(), len(data), name))
    return "\n".join(out) + "\n"


def release_body(text):
    """A Release without its Date line, to tell whether anything but the time changed."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("Date:"))


class AptRepo:
    """Resolve, download and index one OS release's packages into a signed flat repository."""

    def __init__(self, run, repo, workdir, arch="amd64"):
        self.run = run
        self.repo = repo
        self.pool = os.path.join(repo, "pool")
        self.root = workdir
        self.arch = arch

    def _apt(self, *args, pool=False):
        argv = ["apt-get"] + apt_options(self.root, self.arch, self.pool if pool else None) + list(args)
        rc, out, err = self.run(argv, env={"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"})
        if rc != 0:
            raise BundleError("%s failed (rc=%d): %s" % (" ".join(["apt-get"] + list(args[:3])), rc, (err or out).strip()[-1500:]))
        return out

    def resolve(self, sources, packages):
        if not packages:
            raise BundleError("no packages to put in the apt repository %s" % self.repo)
        bad = [p for p in packages if not re.match(r"^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+~:-]+)?$", p)]
        if bad:
            raise BundleError("not a Debian package name (optionally =version): %s" % ", ".join(bad))
        prepare_apt_root(self.root, sources)
        self._apt("update")
        plan = parse_simulation(self._apt("-s", "install", "-y", *packages))
        if not plan:
            raise BundleError("apt-get -s install %s planned nothing: check the package names" % " ".join(packages))
        return plan

    def download(self, plan):
        os.makedirs(os.path.join(self.pool, "partial"), exist_ok=True)
        wanted = {deb_file_name(p, v, a): (p, v, a) for p, v, a in plan}
        missing = [f for f in wanted if not os.path.isfile(os.path.join(self.pool, f))]
        if missing:
            self._apt("install", "-y", "--download-only", *["%s=%s" % (p, v) for p, v, _a in plan], pool=True)
        shutil.rmtree(os.path.join(self.pool, "partial"), ignore_errors=True)
        for name in os.listdir(self.pool):
            if name not in wanted and os.path.isfile(os.path.join(self.pool, name)):
                os.unlink(os.path.join(self.pool, name))
        lock = os.path.join(self.pool, "lock")
        if os.path.exists(lock):
            os.unlink(lock)
        return wanted, len(missing)

    def index(self, plan, wanted):
        """Packages from apt's own stanzas (so Packages carries the archive's SHA256), each file checked against it."""
        out = self.run(["apt-cache"] + apt_options(self.root, self.arch) + ["show", "--no-all-versions"]
                       + ["%s=%s" % (p, v) for p, v, _a in plan], env={"LC_ALL": "C"})
        if out[0] != 0:
            raise BundleError("apt-cache show failed: %s" % (out[2] or out[1]).strip()[-800:])
        by_key = {}
        for fields, raw in parse_stanzas(out[1]):
            by_key[(fields.get("Package"), fields.get("Version"))] = (fields, raw)
        stanzas = []
        for filename, (package, version, _arch) in sorted(wanted.items()):
            if (package, version) not in by_key:
                raise BundleError("apt-cache has no record of %s %s" % (package, version))
            fields, raw = by_key[(package, version)]
            path = os.path.join(self.pool, filename)
            actual = sha256_file(path)
            if fields.get("SHA256", "").lower() != actual:
                os.unlink(path)
                raise BundleError("%s: expected sha256 %s (the archive's index), actual %s; removed, run the build again"
                                  % (path, fields.get("SHA256"), actual))
            stanzas.append(rewrite_stanza(raw, filename))
        return ("\n\n".join(stanzas) + "\n").encode("utf-8")


def write_repo_index(repo, packages_data, origin="onprem.llm_serving", label="onprem.llm_serving bundle"):
    """Write Packages, Packages.gz and Release; returns True when they changed (so the repository needs signing)."""
    gz = gzip.compress(packages_data, mtime=0)
    release_path = os.path.join(repo, "Release")
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
    new_release = release_text({"Packages": packages_data, "Packages.gz": gz}, origin, label, date)
    if os.path.isfile(release_path):
        with open(release_path, encoding="utf-8") as handle:
            if release_body(handle.read()) == release_body(new_release) and os.path.isfile(os.path.join(repo, "InRelease")):
                return False
    for name, data in (("Packages", packages_data), ("Packages.gz", gz), ("Release", new_release.encode("utf-8"))):
        part = os.path.join(repo, name + PART_SUFFIX)
        with open(part, "wb") as handle:
            handle.write(data)
        os.replace(part, os.path.join(repo, name))
    return True


GPG_UID = "onprem.llm_serving bundle signing key <bundle@onprem-llm.invalid>"


def gpg_argv(home):
    return ["gpg", "--homedir", home, "--batch", "--quiet", "--no-tty", "--pinentry-mode", "loopback", "--passphrase", ""]


def signing_key(run, home, uid=GPG_UID):
    """The fingerprint of the bundle's signing key in ``home``, generated (ed25519, no passphrase) when absent."""
    os.makedirs(home, mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)

    def secret_fprs():
        rc, out, err = run(gpg_argv(home) + ["--with-colons", "--list-secret-keys"])
        if rc not in (0, 2):
            raise BundleError("gpg --list-secret-keys in %s failed: %s" % (home, err.strip()[-500:]))
        return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]

    fprs = secret_fprs()
    if not fprs:
        rc, _out, err = run(gpg_argv(home) + ["--quick-gen-key", uid, "ed25519", "sign", "never"])
        if rc != 0:
            raise BundleError("gpg could not generate the bundle signing key in %s: %s" % (home, err.strip()[-500:]))
        fprs = secret_fprs()
    if not fprs:
        raise BundleError("no secret key in %s after generating one" % home)
    return fprs[0]


def sign_repo(run, home, fingerprint, repo):
    argv = gpg_argv(home) + ["--yes", "--local-user", fingerprint, "--digest-algo", "SHA256"]
    for extra in (["--clearsign", "-o", os.path.join(repo, "InRelease")],
                  ["--armor", "--detach-sign", "-o", os.path.join(repo, "Release.gpg")]):
        rc, _out, err = run(argv + extra + [os.path.join(repo, "Release")])
        if rc != 0:
            raise BundleError("gpg could not sign %s/Release: %s" % (repo, err.strip()[-500:]))


def export_key(run, home, fingerprint, dest):
    rc, out, err = run(gpg_argv(home) + ["--export", fingerprint], binary=True)
    if rc != 0 or not out:
        raise BundleError("gpg could not export the public key %s: %s" % (fingerprint, (err or b"").strip()[-300:]))
    if os.path.isfile(dest):
        with open(dest, "rb") as handle:
            if handle.read() == out:
                return False
    part = dest + PART_SUFFIX
    with open(part, "wb") as handle:
        handle.write(out)
    os.replace(part, dest)
    return True


def build_apt_repo(run, repo, sources, packages, signing_home, arch="amd64"):
    """The whole apt step for one OS release. Returns a summary dict."""
    os.makedirs(repo, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="onprem-bundle-apt-") as workdir:
        apt = AptRepo(run, repo, workdir, arch)
        plan = apt.resolve(sources, packages)
        wanted, downloaded = apt.download(plan)
        packages_data = apt.index(plan, wanted)
    fingerprint = signing_key(run, signing_home)
    key_changed = export_key(run, signing_home, fingerprint, os.path.join(repo, "signing-key.gpg"))
    index_changed = write_repo_index(repo, packages_data)
    if index_changed or key_changed:
        sign_repo(run, signing_home, fingerprint, repo)
    write_text_if_changed(os.path.join(repo, MANIFEST),
                          manifest_text({rel: sha256_file(os.path.join(repo, rel)) for rel in list_files(repo)}))
    size = sum(os.path.getsize(os.path.join(repo, "pool", f)) for f in wanted)
    return {"packages": len(wanted), "downloaded": downloaded, "reused": len(wanted) - downloaded, "bytes": size,
            "changed": bool(downloaded or index_changed or key_changed), "fingerprint": fingerprint,
            "seconds": round(time.monotonic() - started, 2), "requested": sorted(packages)}


# ---------------------------------------------------------------------------------------------- vars file + seal
TEMPLATE_MARKS = ("{{", "{%", "{#")


def yaml_scalar(value, templated_prefix="{{ llm_bundle_dir }}/"):
    """A YAML scalar: JSON's quoted strings are valid YAML. A string with template marks that is not one of the
    bundle's own references (``{{ llm_bundle_dir }}/...``) came from the inventory already rendered (a Go template of
    an Ollama model, for example): it is tagged !unsafe so that Ansible never templates it."""
    if isinstance(value, bool) or value is None or isinstance(value, (int, float)):
        return json.dumps(value)
    text = str(value)
    if any(mark in text for mark in TEMPLATE_MARKS) and not (text.startswith(templated_prefix) and text.count("{{") == 1):
        return "!unsafe " + json.dumps(text)
    return json.dumps(text)


def to_yaml(value, indent=0):
    """Block-style YAML of dicts, lists and scalars (no third-party yaml on the module side)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        lines = []
        for key in value:
            item = value[key]
            if isinstance(item, (dict, list)) and item:
                lines.append("%s%s:\n%s" % (pad, key, to_yaml(item, indent + 2)))
            else:
                lines.append("%s%s: %s" % (pad, key, to_yaml(item, 0) if isinstance(item, (dict, list)) else yaml_scalar(item)))
        return "\n".join(lines)
    if isinstance(value, list):
        if not value:
            return "[]"
        lines = []
        for item in value:
            if isinstance(item, dict) and item:
                inner = to_yaml(item, indent + 2).splitlines()
                lines.append("%s- %s" % (pad, inner[0].lstrip()))
                lines.extend(inner[1:])
            elif isinstance(item, list) and item:
                lines.append("%s-\n%s" % (pad, to_yaml(item, indent + 2)))
            else:
                lines.append("%s- %s" % (pad, yaml_scalar(item) if not isinstance(item, (dict, list)) else to_yaml(item)))
        return "\n".join(lines)
    return pad + yaml_scalar(value)


def _kept(rel, keep):
    return any(rel == k or rel.startswith(k + "/") for k in keep)


def seal(root, keep):
    """Remove every file the build did not produce (not under a path in ``keep``), then write the whole manifest."""
    keep = [check_relative(k.rstrip("/")) for k in keep]
    removed = []
    for rel in list_files(root, exclude=(MANIFEST,)):
        if not _kept(rel, keep):
            os.unlink(os.path.join(root, rel))
            removed.append(rel)
    for base, dirs, files in sorted(os.walk(root, topdown=False)):
        if base != root and not os.listdir(base):
            os.rmdir(base)
    entries = {rel: sha256_file(os.path.join(root, rel)) for rel in list_files(root)}
    text = manifest_text(entries)
    changed = write_text_if_changed(os.path.join(root, MANIFEST), text) or bool(removed)
    sizes = {}
    for rel in entries:
        top = rel.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + os.path.getsize(os.path.join(root, rel))
    return {"files": len(entries), "bytes": sum(sizes.values()), "sizes": sizes, "removed": removed, "changed": changed}


def write_text_if_changed(path, text):
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    part = path + PART_SUFFIX
    try:
        with open(part, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(part, path)
    except OSError:
        if os.path.isfile(part):
            os.unlink(part)
        raise
    return True
