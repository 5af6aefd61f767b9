# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tgi role's preflight refuses bad input with a message naming the variable to fix, never the API key.

Runs the real role with ansible-playbook against localhost (connection local, no become); every case
fails in the variable checks, before anything on the host is read or changed.
Run: .venv/bin/pytest roles/tgi/tests/
"""
from __future__ import annotations

import os
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(REPO, "tests"))
from role_templates import run_role as run_role_tags, run_role_cases, run_tasks  # noqa: E402  pylint: disable=wrong-import-position
GOOD = {"name": "bloom", "model_id": "/srv/llm/models/bloom", "api_key": "do-not-print-me"}


def run_role(tmp_path, **extra_vars):
    return run_role_tags(tmp_path, "tgi", "tgi_preflight", extra_vars, verbosity="-v")


REFUSALS = [
    ({"tgi_instances": [dict(GOOD, port=0)]}, ["instance bloom in tgi_instances is invalid", "port 1-65535 (got 0)"]),
    ({"tgi_instances": [dict(GOOD, graceful_termination_timeout=-5)]}, ["graceful_termination_timeout seconds >= 0 (got -5)"]),
    ({"tgi_instances": [dict(GOOD, extra_args=["--api-key=do-not-print-me"])]},
     ["tgi_instances[bloom].extra_args sets --api-key,", "api_key (tgi_api_key)"]),
    ({"tgi_instances": [dict(GOOD, extra_args=["-p", "8080"])]}, ["tgi_instances[bloom].extra_args sets -p,", "port (tgi_port"]),
    ({"tgi_extra_args": ["--hostname=0.0.0.0"], "tgi_instances": [GOOD]}, ["tgi_extra_args sets --hostname,", "tgi_bind_address"]),
    ({"tgi_env": {"API_KEY": "do-not-print-me"}, "tgi_instances": [GOOD]}, ["tgi_env sets API_KEY,", "api_key (tgi_api_key)"]),
    ({"tgi_instances": [dict(GOOD, api_key="do-not-print-me\\n")]},
     ["tgi_env / tgi_instances[bloom] (env, api_key): the value of API_KEY has a newline, quote"]),
    ({"tgi_tasks_max": "lots", "tgi_instances": [GOOD]}, ["tgi_tasks_max a number (got lots)"]),
]


OTLP_WHERE = "otlp_endpoint (tgi_instances[bloom].otlp_endpoint, or tgi_otlp_endpoint for every instance)"


REFUSALS += [
    ({"tgi_otlp_endpoint": "otel.example:4317", "tgi_instances": [GOOD]},
     ["instance bloom: " + OTLP_WHERE + ' is "otel.example:4317"', "http://HOST:PORT", 'set it to "" to turn tracing off']),
    ({"tgi_instances": [dict(GOOD, otlp_endpoint="grpc://otel.example:4317")]}, [OTLP_WHERE + ' is "grpc://otel.example:4317"']),
    ({"tgi_instances": [dict(GOOD, otlp_endpoint="http://otel.example:4317/v1/traces")]}, ["no path"]),
    ({"tgi_instances": [dict(GOOD, otlp_endpoint="http://otel.example:0")]}, [OTLP_WHERE + ' is "http://otel.example:0"']),
    ({"tgi_otlp_endpoint": "https://otel.example:4317", "tgi_instances": [GOOD]}, ["exports OTLP over gRPC without TLS"]),
    ({"tgi_otlp_endpoint": "http://u:do-not-print-me@otel.example:4317", "tgi_instances": [GOOD]},
     [OTLP_WHERE + " carries user:password@ (value not shown)"]),
    ({"tgi_otlp_endpoint": "http://localhost:4317", "tgi_instances": [GOOD]},
     [OTLP_WHERE + ' is "http://localhost:4317", a loopback address', "--network host in tgi_container_extra_args"]),
    ({"tgi_otlp_service_name": "tgi-fleet", "tgi_instances": [GOOD]},
     ["otlp_service_name (tgi_instances[bloom].otlp_service_name, or tgi_otlp_service_name) is set but otlp_endpoint is empty"]),
    ({"tgi_otlp_endpoint": "http://otel.example:4317", "tgi_instances": [dict(GOOD, otlp_service_name="my service")]},
     ['otlp_service_name (tgi_instances[bloom].otlp_service_name, or tgi_otlp_service_name) is "my service"']),
    ({"tgi_otlp_endpoint": "http://otel.example:4317", "tgi_instances": [dict(GOOD, extra_args=["--otlp-endpoint=http://b.example:4317"])]},
     ["--otlp-endpoint in extra_args (tgi_instances[bloom].extra_args or tgi_extra_args) sets the collector too, beside " + OTLP_WHERE]),
    ({"tgi_otlp_endpoint": "http://otel.example:4317", "tgi_env": {"OTLP_ENDPOINT": "http://b.example:4317"}, "tgi_instances": [GOOD]},
     ["OTLP_ENDPOINT in env (tgi_env or tgi_instances[bloom].env) sets the collector too"]),
    ({"tgi_otlp_endpoint": "http://otel.example:4317", "tgi_instances": [dict(GOOD, otlp_service_name="a", env={"OTLP_SERVICE_NAME": "b"})]},
     ["OTLP_SERVICE_NAME in env (tgi_env or tgi_instances[bloom].env) sets the service name too"]),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Every refusal case above in one ansible-playbook run (-v), each case an inventory host of its own
    (run_role_cases): the same preflight, one controller start instead of one per case."""
    return run_role_cases(tmp_path_factory.mktemp("refusals"), "tgi", "tgi_preflight", [extra for extra, _expect in REFUSALS],
                          verbosity="-v")


@pytest.mark.parametrize("index", range(len(REFUSALS)), ids=lambda i: "case%d" % i)
def test_preflight_refuses_without_printing_the_key(refusals, index):
    """Each bad value is refused, by a message that names it and the fix; the key is in every case's instance and is
    never printed, in the whole run's output at -v."""
    proc, messages = refusals
    extra, expect = REFUSALS[index]
    out = messages[index]
    assert out, "case%d (%s) was not refused: %s" % (index, extra, (proc.stdout + proc.stderr)[-3000:])
    for text in expect:
        assert text in out, out
    assert "do-not-print-me" not in proc.stdout + proc.stderr


def test_preflight_accepts_opentelemetry_settings(tmp_path):
    """Good values pass the check (the run may stop later, at the host's container CLI or ports)."""
    instances = [GOOD, dict(GOOD, name="two", port=3001, otlp_endpoint="http://[fd00::5]:4317", otlp_service_name="tgi-two"),
                 dict(GOOD, name="three", port=3002, otlp_endpoint="http://127.0.0.1:4317"),
                 dict(GOOD, name="four", port=3003, otlp_endpoint="", otlp_service_name="",
                      extra_args=["--otlp-endpoint", "http://otel.example:4317"])]
    result = run_role(tmp_path, tgi_otlp_endpoint="http://otel.example:4317", tgi_otlp_service_name="tgi-fleet",
                      tgi_container_extra_args=["--network=host"], tgi_instances=instances)
    out = result.stdout + result.stderr
    task = out[out.index("OpenTelemetry settings"):]
    task = task[:task.index("TASK [")]
    assert [ln for ln in task.splitlines() if ln.startswith("ok: ")] == ["ok: [localhost] => (item=%s) => " % i["name"] for i in instances], out
    assert "do-not-print-me" not in out


HOST_TASKS = ("Read the host (the container CLI, the local models)", "Check the container runtime is there",
              "Check each local model is present and mounted")


def _host_check(tmp_path, instances, cli=sys.executable):
    """The preflight's one host read and its two checks (taken from tasks/preflight.yml as they are) against this
    machine: a models directory with a served symlink into a revision (as the models role lays it out)."""
    models = tmp_path / "models"
    (models / ".revisions" / "bloom" / "r1").mkdir(parents=True)
    (models / ".revisions" / "bloom" / "r1" / "config.json").write_text("{}")
    (models / "bloom").symlink_to(".revisions/bloom/r1")
    (models / "empty").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "config.json").write_text("{}")
    tasks = [t for t in yaml.safe_load(open(os.path.join(REPO, "roles", "tgi", "tasks", "preflight.yml"))) if t["name"] in HOST_TASKS]
    assert [t["name"] for t in tasks] == list(HOST_TASKS)
    # the role loops over __tgi_present_shown, the instances without their API keys
    instances = [dict({k: v for k, v in i.items() if k != "api_key"}, model_id=i["model_id"].format(models=models, tmp=tmp_path))
                 for i in instances]
    with open(os.path.join(REPO, "roles", "tgi", "vars", "main.yml"), encoding="utf-8") as handle:
        configs = yaml.safe_load(handle)["__tgi_model_configs"]        # the role's own derivation of the paths read
    result = run_tasks(tmp_path, tasks, {"__tgi_cli": cli, "__tgi_present_shown": instances, "tgi_models_dir": str(models),
                                         "tgi_container_engine": "docker", "__tgi_model_configs": configs})
    return result, " ".join((result.stdout + result.stderr).split()), models


def test_preflight_reads_the_cli_and_the_local_models_in_one_call(tmp_path):
    """A served symlink (with or without a trailing slash) and a hub id pass; the read is one task."""
    result, out, _models = _host_check(tmp_path, [dict(GOOD, model_id="{models}/bloom"), dict(GOOD, name="two", model_id="{models}/bloom/"),
                                                  dict(GOOD, name="hub", model_id="bigscience/bloom-560m")])
    assert result.returncode == 0, out
    assert out.count("TASK [Read the host") == 1


@pytest.mark.parametrize("model_id, cli, expect", [
    ("{models}/nope", None, "instance bloom has model_id {models}/nope, which has no config.json on the host."),
    ("{models}/empty", None, "instance bloom has model_id {models}/empty, which has no config.json on the host."),
    ("{tmp}/elsewhere", None, "which is outside tgi_models_dir ({models}, the only models mount)"),
    ("{models}/bloom", "/nonexistent/docker", "/nonexistent/docker is missing (tgi_container_engine docker)"),
])
def test_preflight_refuses_a_missing_model_or_cli(tmp_path, model_id, cli, expect):
    result, out, models = _host_check(tmp_path, [dict(GOOD, model_id=model_id)], cli=cli or sys.executable)
    assert result.returncode != 0, out
    assert expect.format(models=models, tmp=tmp_path) in out, out
