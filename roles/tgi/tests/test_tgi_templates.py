# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render the tgi role's unit and env file with Ansible's own templar, without a host.

Covers what the lab (docker + tgi-stand-in) cannot: GPU access (--gpus / CDI), podman's unit, quantize,
num_shard. Run: .venv/bin/pytest roles/tgi/tests/
"""
from __future__ import annotations

import os
import sys

import pytest

ROLE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(ROLE)), "tests"))
from role_templates import exec_start, render_instance, role_vars as _role_vars  # noqa: E402  pylint: disable=wrong-import-position


def render(name, instance, **overrides):
    facts = {"inventory_hostname": "gpu01", "groups": {"gpu_hosts": []}, "ansible_managed": "Ansible managed",
             "__tgi_image_id": "sha256:" + "a" * 64}
    return render_instance(ROLE, name, "__tgi_instance_defaults", instance, _role_vars(ROLE, facts, overrides))


INSTANCE = {"name": "mistral", "model_id": "/srv/llm/models/mistral-7b", "port": 3001, "num_shard": 2,
            "max_input_tokens": 4096, "max_total_tokens": 8192, "quantize": "awq", "api_key": "k3y"}


@pytest.mark.parametrize("engine, gpu, access, expect, absent", [
    ("docker", True, "gpus", ["--gpus", "all"], ["--device", "--sdnotify=conmon"]),
    ("docker", True, "cdi", ["--device", "nvidia.com/gpu=all"], ["--gpus"]),
    ("podman", True, "cdi", ["--device", "nvidia.com/gpu=all", "--sdnotify=conmon"], ["--gpus"]),
    ("docker", False, "gpus", [], ["--gpus", "--device"]),
])
def test_unit_gpu_access(engine, gpu, access, expect, absent):
    unit = render("tgi.service.j2", INSTANCE, tgi_container_engine=engine, tgi_gpu=gpu, tgi_gpu_access=access)
    argv = exec_start(unit)
    assert argv[:2] == ["/usr/bin/%s" % engine, "run"]
    for token in expect:
        assert token in argv
    for token in absent:
        assert token not in argv


def test_unit_ports_volumes_env_and_launcher_options():
    unit = render("tgi.service.j2", INSTANCE)
    argv = exec_start(unit)
    image = argv.index("ghcr.io/huggingface/text-generation-inference:3.3.6")
    run_opts, launcher = argv[:image], argv[image + 1:]
    assert run_opts[run_opts.index("--publish") + 1] == "127.0.0.1:3001:80"
    assert run_opts[run_opts.index("--shm-size") + 1] == "1g"
    assert run_opts[run_opts.index("--env-file") + 1] == "/etc/onprem-llm/tgi-mistral.env"
    volumes = [run_opts[i + 1] for i, a in enumerate(run_opts) if a == "--volume"]
    assert volumes == ["/srv/llm/cache/tgi:/data:rw", "/srv/llm/models:/srv/llm/models:ro"]
    opts = dict(zip(launcher[::2], launcher[1::2]))
    assert opts == {"--model-id": "/srv/llm/models/mistral-7b", "--port": "80", "--num-shard": "2", "--max-input-tokens": "4096",
                    "--max-total-tokens": "8192", "--max-concurrent-requests": "128", "--quantize": "awq",
                    "--graceful-termination-timeout": "90"}
    assert "k3y" not in unit
    assert "Restart=always" in unit and ("sha256:" + "a" * 64) in unit


def test_env_file_exact_offline_and_usage_stats():
    text = render("tgi.env.j2", dict(INSTANCE, env={"CUDA_VISIBLE_DEVICES": "0,1"}))
    env = dict(ln.split("=", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert env == {"USAGE_STATS": "off", "HF_HUB_OFFLINE": "1", "API_KEY": "k3y", "CUDA_VISIBLE_DEVICES": "0,1"}


def test_env_file_hub_allowed():
    text = render("tgi.env.j2", dict(INSTANCE, api_key=""), tgi_hf_hub_offline=False)
    assert "HF_HUB_OFFLINE" not in text and "API_KEY" not in text


@pytest.mark.parametrize("engine", ["docker", "podman"])
def test_unit_never_pulls_and_runs_the_image_by_id(engine):
    image_id = "sha256:" + "b" * 64
    unit = render("tgi.service.j2", INSTANCE, tgi_container_engine=engine, tgi_image_id="b" * 64)
    argv = exec_start(unit)
    assert argv[:3] == ["/usr/bin/%s" % engine, "run", "--rm"] and "--pull=never" in argv
    run_opts = argv[:argv.index(image_id)]
    assert argv[argv.index(image_id) + 1] == "--model-id"
    assert "ghcr.io/huggingface/text-generation-inference:3.3.6" not in argv
    assert run_opts[run_opts.index("--label") + 1] == "onprem.llm_serving.image=ghcr.io/huggingface/text-generation-inference:3.3.6"


def test_unit_without_an_id_runs_the_name_and_still_never_pulls():
    argv = exec_start(render("tgi.service.j2", INSTANCE))
    assert "--pull=never" in argv and argv[argv.index("--model-id") - 1] == "ghcr.io/huggingface/text-generation-inference:3.3.6"


def directives(unit):
    return [ln.strip() for ln in unit.splitlines() if "=" in ln and not ln.startswith("#")]


def test_unit_restarts_any_exit_rate_limited_drains_and_hardens():
    unit = render("tgi.service.j2", INSTANCE)
    d = directives(unit)
    unit_section = unit[unit.index("[Unit]"):unit.index("[Service]")]
    assert "StartLimitIntervalSec=600" in unit_section and "StartLimitBurst=5" in unit_section
    # TGI drains 90 s by default; docker stop waits 10 s more, systemd 30 s more (docker's own default kills after 10 s)
    assert "ExecStop=/usr/bin/docker stop --time 100 tgi-mistral" in d
    assert "TimeoutStopSec=120" in d and "Restart=always" in d and "LimitCORE=0" in d
    argv = exec_start(unit)
    run_opts = argv[:argv.index("ghcr.io/huggingface/text-generation-inference:3.3.6")]
    pairs = {a: run_opts[i + 1] for i, a in enumerate(run_opts[:-1]) if a.startswith("--")}
    assert pairs["--cap-drop"] == "ALL" and pairs["--cap-add"] == "NET_BIND_SERVICE"
    assert pairs["--security-opt"] == "no-new-privileges" and pairs["--stop-timeout"] == "100"
    for opt in ("--read-only", "--tmpfs", "--memory", "--pids-limit"):
        assert opt not in run_opts, opt


def test_unit_per_instance_drain_read_only_and_caps():
    unit = render("tgi.service.j2", dict(INSTANCE, graceful_termination_timeout=20), tgi_container_read_only=True,
                  tgi_memory_max="32G", tgi_tasks_max="2048", tgi_container_hardening=False)
    d = directives(unit)
    assert "ExecStop=/usr/bin/docker stop --time 30 tgi-mistral" in d and "TimeoutStopSec=50" in d
    argv = exec_start(unit)
    image = argv.index("ghcr.io/huggingface/text-generation-inference:3.3.6")
    run_opts, launcher = argv[:image], argv[image + 1:]
    pairs = {a: run_opts[i + 1] for i, a in enumerate(run_opts[:-1]) if a.startswith("--")}
    assert "--read-only" in run_opts and pairs["--tmpfs"] == "/tmp:rw,exec,nosuid,nodev"
    assert pairs["--memory"] == "32G" and pairs["--pids-limit"] == "2048" and pairs["--stop-timeout"] == "30"
    assert "--cap-drop" not in run_opts and "--security-opt" not in run_opts
    assert launcher[launcher.index("--graceful-termination-timeout") + 1] == "20"


def test_unit_refuses_reserved_extra_args_without_showing_them():
    with pytest.raises(Exception) as err:
        render("tgi.service.j2", dict(INSTANCE, extra_args=["-p8080"]))
    assert "tgi_instances[mistral].extra_args sets -p," in str(err.value)
    with pytest.raises(Exception) as err:
        render("tgi.service.j2", dict(INSTANCE, extra_args=["--api-key=k3y"]))
    assert "sets --api-key," in str(err.value) and "k3y" not in str(err.value)


def launcher_args(unit):
    argv = exec_start(unit)
    return argv[argv.index("ghcr.io/huggingface/text-generation-inference:3.3.6") + 1:]


def test_otlp_flags_absent_by_default():
    launcher = launcher_args(render("tgi.service.j2", INSTANCE))
    assert "--otlp-endpoint" not in launcher and "--otlp-service-name" not in launcher


def test_otlp_flags_from_the_role_defaults():
    opts = dict(zip(*[iter(launcher_args(render("tgi.service.j2", INSTANCE, tgi_otlp_endpoint="http://otel.example:4317",
                                                tgi_otlp_service_name="tgi-fleet")))] * 2))
    assert opts["--otlp-endpoint"] == "http://otel.example:4317" and opts["--otlp-service-name"] == "tgi-fleet"
    # no service name: TGI's own default (text-generation-inference.router), no flag
    launcher = launcher_args(render("tgi.service.j2", INSTANCE, tgi_otlp_endpoint="http://otel.example:4317"))
    assert launcher[launcher.index("--otlp-endpoint") + 1] == "http://otel.example:4317" and "--otlp-service-name" not in launcher


def test_otlp_flags_per_instance_override_and_off():
    launcher = launcher_args(render("tgi.service.j2", dict(INSTANCE, otlp_endpoint="http://10.0.0.5:4317", otlp_service_name="tgi-mistral"),
                                    tgi_otlp_endpoint="http://otel.example:4317"))
    opts = dict(zip(launcher[::2], launcher[1::2]))
    assert opts["--otlp-endpoint"] == "http://10.0.0.5:4317" and opts["--otlp-service-name"] == "tgi-mistral"
    launcher = launcher_args(render("tgi.service.j2", dict(INSTANCE, otlp_endpoint=""), tgi_otlp_endpoint="http://otel.example:4317",
                                    tgi_otlp_service_name="tgi-fleet"))
    assert "--otlp-endpoint" not in launcher and "--otlp-service-name" not in launcher
