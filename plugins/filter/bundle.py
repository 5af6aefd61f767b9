# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""bundle_plan: what the air-gapped bundle of an inventory holds, from what each host's roles will need.

Input: one dict per host (``roles/bundle`` collects it with the vars lookup, so every value is the inventory's,
templated), and the collection's roles directory (the roles' own package lists are read from their vars files).
Output: the apt packages per OS release, the artefacts to copy in (each with its bundle path and how it is
verified), and the vars file that points the roles' ``*_src`` variables at the bundle.
"""

from __future__ import annotations

import os

import yaml

from ansible.errors import AnsibleFilterError

BUNDLE_VAR = "llm_bundle_dir"
# What roles/bundle passes for a variable the inventory does not set.
UNSET = "__bundle_unset__"
# Role -> groups whose hosts run it (playbooks/*.yml say the same).
GROUPS = {
    "vllm": "vllm_servers",
    "ollama": "ollama_servers",
    "tgi": "tgi_servers",
    "gpu": "gpu_hosts",
    "containers": "container_hosts",
    "gateway": "gateway_hosts",
    "monitoring": "monitoring_hosts",
}
SERVING = ("vllm", "ollama", "tgi")
# Packages apt itself needs on the host to be driven by Ansible's apt module.
APT_MODULE_PACKAGES = ["python3-apt"]


def _os_vars(roles_dir, role, release):
    """The role's vars file for an OS release name (debian-12 -> Debian_12.yml, Debian.yml, default.yml)."""
    distro, _sep, major = release.partition("-")
    family = {"debian": "Debian", "ubuntu": "Debian", "rhel": "RedHat", "rocky": "RedHat", "almalinux": "RedHat"}.get(distro)
    if family is None:
        raise AnsibleFilterError("bundle_os_release %r: use <distribution>-<major version>, one of debian-12, "
                                 "ubuntu-22, ubuntu-24, rhel-9, rocky-9" % release)
    names = ["%s_%s.yml" % (distro.capitalize(), major), "%s.yml" % distro.capitalize(), "%s.yml" % family, "main.yml", "default.yml"]
    merged = {}
    for name in reversed(names):
        path = os.path.join(roles_dir, role, "vars", name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                merged.update(yaml.safe_load(handle) or {})
    return merged


def _role_defaults(roles_dir, role):
    path = os.path.join(roles_dir, role, "defaults", "main.yml")
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def _apt_release(release):
    return release.split("-", 1)[0] in ("debian", "ubuntu")


def _same(values, name):
    """One value for every host that has it, or an error naming the hosts that differ."""
    seen = {}
    for host, value in values:
        key = repr(value)
        seen.setdefault(key, (value, []))[1].append(host)
    if len(seen) > 1:
        parts = ["%s on %s" % (value if not isinstance(value, (list, dict)) else "one value", ", ".join(hosts))
                 for value, hosts in seen.values()]
        raise AnsibleFilterError("%s differs between hosts (%s): the bundle's vars file sets one value for all; set it "
                                 "in group_vars/all or build one bundle per group" % (name, "; ".join(parts)))
    return next(iter(seen.values()))[0] if seen else None


def _ref(dest):
    return "{{ %s }}/%s" % (BUNDLE_VAR, dest)


class _Plan:
    def __init__(self, roles_dir):
        self.roles_dir = roles_dir
        self.apt = {}
        self.artefacts = {}
        self.vars = {}
        self.per_var = {}
        self.sources = {}

    def add_artefact(self, src, dest, kind="file", sha256=None, companions=()):
        if not src:
            return None
        src = os.path.abspath(os.path.expanduser(str(src)))
        known = self.artefacts.get(dest)
        if known and known["src"] != src:
            raise AnsibleFilterError("two different sources would land at %s in the bundle: %s and %s; rename one"
                                     % (dest, known["src"], src))
        item = {"src": src, "dest": dest, "kind": kind, "companions": [c for c in companions if os.path.exists(src + c)]}
        if sha256:
            item["sha256"] = str(sha256)
        self.artefacts[dest] = item
        return dest

    def set_var(self, host, name, value):
        self.per_var.setdefault(name, []).append((host, value))

    def source(self, host, var, key, path):
        """One entry of a name -> bundle path map (the roles look their entries' sources up in it by name, so each
        group keeps its own list in the inventory); one name with two sources is refused."""
        known = self.sources.setdefault(var, {})
        if key in known and known[key][0] != path:
            other_path, other_host = known[key]
            raise AnsibleFilterError("%s: the name %s has two sources in the inventory (%s here, %s on %s); the bundle "
                                     "maps each name to one source: rename one of them" % (host, key, path, other_path, other_host))
        known.setdefault(key, (path, host))

    def packages(self, release, names):
        self.apt.setdefault(release, set()).update(str(n) for n in names if n)


def bundle_plan(hosts, roles_dir, bundle_dir):
    """hosts: [{name, groups, vars: {...}}] -> {apt: [{name, packages}], artefacts: [...], vars: {...}, keep: [...]}."""
    if not hosts:
        raise AnsibleFilterError("bundle_plan: no hosts in the play; run playbooks/bundle.yml against your inventory")
    plan = _Plan(roles_dir)
    monitored = any(GROUPS["monitoring"] in (h.get("groups") or []) for h in hosts)
    for host in hosts:
        name, groups = host["name"], set(host.get("groups") or [])
        hv = {k: v for k, v in (host.get("vars") or {}).items() if v != UNSET}
        release = hv.get("bundle_os_release") or "debian-12"
        common = _os_vars(roles_dir, "common", release)  # refuses a release name it does not know
        if not _apt_release(release):
            raise AnsibleFilterError("%s: bundle_os_release %s: only apt releases (debian-*, ubuntu-*) can be bundled by "
                                     "this version; EL hosts need a dnf repository built on an EL staging machine" % (name, release))
        plan.packages(release, common.get("__common_packages", []) + APT_MODULE_PACKAGES + list(hv.get("common_extra_packages") or []))
        plan.packages(release, hv.get("bundle_apt_extra_packages") or [])
        plan.set_var(name, "common_os_repository_src", _ref("apt"))

        wheels = hv.get("common_python_wheels")
        if wheels is None:
            wheels = _role_defaults(roles_dir, "common").get("common_python_wheels") or []
        if wheels:
            src_dir = hv.get("common_python_wheelhouse_src") or ""
            if not src_dir:
                raise AnsibleFilterError("%s: common_python_wheelhouse_src is empty: the bundle copies the modules' wheels "
                                         "from it (tools/setup.sh fills .cache/artefacts/wheels/common in a checkout)" % name)
            for wheel in wheels:
                plan.add_artefact(os.path.join(src_dir, wheel["file"]), "wheels/common/" + wheel["file"], sha256=wheel.get("sha256"))
            plan.set_var(name, "common_python_wheelhouse_src", _ref("wheels/common"))

        if GROUPS["vllm"] in groups:
            method = hv.get("vllm_install_method") or "venv"
            if method == "venv":
                packages = hv.get("vllm_os_packages")
                if packages is None:
                    packages = _role_defaults(roles_dir, "vllm").get("vllm_os_packages") or []
                plan.packages(release, packages)
                package = hv.get("vllm_package") or "vllm"
                if not hv.get("vllm_wheelhouse_src"):
                    raise AnsibleFilterError("%s: vllm_wheelhouse_src is empty: the bundle needs the %s wheelhouse "
                                             "(tools/artefacts.py vllm-wheelhouse builds one)" % (name, package))
                dest = plan.add_artefact(hv["vllm_wheelhouse_src"], "wheels/" + package, kind="tree")
                plan.set_var(name, "vllm_wheelhouse_src", _ref(dest))
            elif hv.get("vllm_container_image_archive"):
                archive = hv["vllm_container_image_archive"]
                dest = plan.add_artefact(archive, "images/" + os.path.basename(archive),
                                         sha256=hv.get("vllm_container_image_archive_sha256"), companions=(".id",))
                plan.set_var(name, "vllm_container_image_archive", _ref(dest))

        if GROUPS["ollama"] in groups:
            archive = hv.get("ollama_archive_src") or ""
            if not archive:
                raise AnsibleFilterError("%s: ollama_archive_src is empty: the bundle needs the Ollama release archive" % name)
            if archive.endswith(".tar.zst"):
                plan.packages(release, ["zstd"])
            dest = plan.add_artefact(archive, "ollama/" + os.path.basename(archive), sha256=hv.get("ollama_archive_sha256"))
            plan.set_var(name, "ollama_archive_src", _ref(dest))
            for model in hv.get("ollama_models") or []:
                if model.get("blobs_src") or model.get("manifest_src"):
                    raise AnsibleFilterError("%s: ollama_models %s uses blobs_src/manifest_src, which this version does not "
                                             "bundle; give it a gguf_src instead" % (name, model.get("name")))
                if model.get("gguf_src"):
                    dest = plan.add_artefact(model["gguf_src"], "models/" + os.path.basename(model["gguf_src"]),
                                             sha256=model.get("sha256"))
                    plan.source(name, "ollama_bundle_sources", model.get("name"), _ref(dest))

        if GROUPS["tgi"] in groups and hv.get("tgi_image_archive"):
            archive = hv["tgi_image_archive"]
            dest = plan.add_artefact(archive, "images/" + os.path.basename(archive),
                                     sha256=hv.get("tgi_image_archive_sha256"), companions=(".id",))
            plan.set_var(name, "tgi_image_archive", _ref(dest))

        if groups & {GROUPS["gpu"], GROUPS["containers"]}:
            runtime = _os_vars(roles_dir, "container_runtime", release)
            engine = hv.get("container_runtime_engine") or "docker"
            if engine == "podman":
                plan.packages(release, runtime.get("__container_runtime_podman_packages", []))
            elif (hv.get("container_runtime_docker_source") or "distro") == "distro":
                plan.packages(release, runtime.get("__container_runtime_docker_distro_packages", []))
            else:
                plan.packages(release, runtime.get("__container_runtime_docker_ce_packages", []))
            if GROUPS["gpu"] in groups:
                plan.packages(release, runtime.get("__container_runtime_toolkit_packages", []))
        if GROUPS["gateway"] in groups:
            # HAProxy and openssl (the self-signed lab certificate) from roles/gateway/vars/main.yml
            plan.packages(release, _os_vars(roles_dir, "gateway", release).get("__gateway_packages", []))
        if monitored:
            # roles/monitoring/vars: Prometheus and Alertmanager on the monitoring hosts, node_exporter on the serving ones
            # (only when the inventory has a monitoring host)
            monitoring = _os_vars(roles_dir, "monitoring", release)
            if GROUPS["monitoring"] in groups:
                plan.packages(release, monitoring.get("__monitoring_server_packages", []))
            if groups & {GROUPS[r] for r in SERVING}:
                plan.packages(release, monitoring.get("__monitoring_node_packages", []))
        if GROUPS["gpu"] in groups:
            driver = _os_vars(roles_dir, "nvidia_driver", release)
            source = hv.get("nvidia_driver_source") or "cuda_repo"
            by_source = driver.get("__nvidia_driver_packages_by_source", {})
            flavour = hv.get("nvidia_driver_kernel_module_type") or "open"
            plan.packages(release, hv.get("nvidia_driver_packages") or by_source.get(
                "cuda_repo" if source == "mirror" else source, {}).get(flavour, []))

        for model in hv.get("models_list") or []:
            if model.get("src"):
                fmt = model.get("format") or "hf"
                if fmt == "gguf":
                    dest = plan.add_artefact(model["src"], "models/" + os.path.basename(str(model["src"])), sha256=model.get("sha256"))
                else:
                    dest = plan.add_artefact(model["src"], "models/" + str(model.get("name")), kind="tree")
                plan.source(name, "models_bundle_sources", model.get("name"), _ref(dest))

    variables = {BUNDLE_VAR: os.path.abspath(bundle_dir)}
    for var in sorted(plan.per_var):
        variables[var] = _same(plan.per_var[var], var)
    for var in sorted(plan.sources):
        variables[var] = {key: path for key, (path, _host) in sorted(plan.sources[var].items())}
    artefacts = [plan.artefacts[d] for d in sorted(plan.artefacts)]
    keep = sorted({"apt", "vars.yml"} | {a["dest"] for a in artefacts}
                  | {a["dest"] + ".sha256" for a in artefacts if a["kind"] == "file"}
                  | {a["dest"] + c for a in artefacts for c in a["companions"]})
    return {
        "apt": [{"name": r, "packages": sorted(p)} for r, p in sorted(plan.apt.items())],
        "artefacts": artefacts,
        "vars": variables,
        "keep": keep,
    }


def bundle_sources(items, sources, key):
    """The roles' side of the bundle's name -> path maps: each item whose name the map knows gets that source in ``key``
    (the bundle's copy); the others are returned as they are."""
    if not sources:
        return list(items or [])
    if not isinstance(sources, dict):
        raise AnsibleFilterError("bundle_sources: the map must be a dict of name -> path (the bundle's vars.yml writes "
                                 "it), got %r" % (sources,))
    return [dict(item, **{key: sources[item["name"]]}) if isinstance(item, dict) and item.get("name") in sources else item
            for item in items or []]


class FilterModule:
    def filters(self):
        return {"bundle_plan": bundle_plan, "bundle_sources": bundle_sources}
