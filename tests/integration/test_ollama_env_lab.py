# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ollama_env on a real systemd host of the lab, through ansible-playbook.

The service under test is `ollama-envtest`, a unit whose ExecStart only sleeps: the test proves what
systemd hands the process (read back from /proc by the module AND independently with `docker exec`),
so it needs no Ollama binary and does not disturb the `ollama` service the engine role installs.

Needs the lab (`.venv/bin/python tools/lab.py up --hosts 2`); skipped, with that reason, when it is not up.
OLLAMA_ENV_LAB_HOST picks the host (default llm-lab-1). One more test runs the lab's real Ollama build
(tools/artefacts.py ollama-archive) under the module's settings and reads Ollama's own config log line.
"""
from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.join(ROOT, "tests", "integration", "ollama_env")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
LAB = os.path.join(ROOT, "tools", "lab.py")
INVENTORY = os.path.join(ROOT, "inventories", "lab", "hosts.yml")
HOST = os.environ.get("OLLAMA_ENV_LAB_HOST", "llm-lab-1")
SERVICE = "ollama-envtest"
DROPIN_DIR = "/etc/systemd/system/%s.service.d" % SERVICE
OURS = DROPIN_DIR + "/50-ollama-env.conf"
TRICKY = 'a "quoted" \\back\\slash 100% %n $HOME'
ARGS = {
    "service": SERVICE,
    "host": "0.0.0.0:11434",
    "num_parallel": 4,
    "max_loaded_models": 2,
    "keep_alive": "30m",
    "flash_attention": True,
    "kv_cache_type": "q8_0",
    "context_length": 8192,
    "models": "/srv/ollama models",
    "origins": ["https://chat.example.com", "app://*"],
    "load_timeout": "10m",
    "sched_spread": False,
    "gpu_overhead": 536870912,
    "extra_env": {"OLLAMA_DEBUG": TRICKY, "CUDA_VISIBLE_DEVICES": "0,1"},
}
EXPECTED = {
    "OLLAMA_HOST": "0.0.0.0:11434", "OLLAMA_NUM_PARALLEL": "4", "OLLAMA_MAX_LOADED_MODELS": "2",
    "OLLAMA_KEEP_ALIVE": "30m", "OLLAMA_FLASH_ATTENTION": "1", "OLLAMA_KV_CACHE_TYPE": "q8_0",
    "OLLAMA_CONTEXT_LENGTH": "8192", "OLLAMA_MODELS": "/srv/ollama models",
    "OLLAMA_ORIGINS": "https://chat.example.com,app://*", "OLLAMA_LOAD_TIMEOUT": "10m", "OLLAMA_SCHED_SPREAD": "0",
    "OLLAMA_GPU_OVERHEAD": "536870912", "OLLAMA_DEBUG": TRICKY, "CUDA_VISIBLE_DEVICES": "0,1",
}


def _docker_host():
    out = subprocess.run([os.path.join(VENV_BIN, "python"), LAB, "env"], cwd=ROOT, capture_output=True, text=True, check=False).stdout
    for word in shlex.split(out):
        if word.startswith("DOCKER_HOST="):
            return word.split("=", 1)[1]
    return None


def _lab_reason():
    """None when the lab host answers, else why the test is skipped."""
    if not os.path.exists(LAB):
        return "tools/lab.py is not in this checkout"
    docker_host = _docker_host()
    if not docker_host:
        return "`tools/lab.py env` printed no DOCKER_HOST"
    env = dict(os.environ, DOCKER_HOST=docker_host)
    try:
        proc = subprocess.run(["docker", "exec", HOST, "systemctl", "is-system-running"], env=env,
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "docker is not usable: %s" % exc
    if proc.stdout.strip() not in ("running", "degraded"):
        return "lab host %s is not up (%s): run `.venv/bin/python tools/lab.py up --hosts 2`" % (
            HOST, (proc.stderr or proc.stdout).strip()[:200])
    return None


LAB_REASON = _lab_reason()
pytestmark = pytest.mark.skipif(LAB_REASON is not None, reason="lab not up: %s" % LAB_REASON)


def sh(command, check=True):
    """Run a shell command on the lab host; return stdout."""
    env = dict(os.environ, DOCKER_HOST=_docker_host())
    proc = subprocess.run(["docker", "exec", HOST, "sh", "-c", command], env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError("`%s` on %s failed (rc=%d): %s" % (command, HOST, proc.returncode, proc.stderr))
    return proc.stdout


def running_environ():
    """The environment systemd gave the service's main process, read independently of the module."""
    pid = sh("systemctl show -p MainPID --value %s" % SERVICE).strip()
    assert pid not in ("", "0"), "%s is not running" % SERVICE
    raw = sh("cat /proc/%s/environ | base64 -w0" % pid)
    return dict(item.split("=", 1) for item in base64.b64decode(raw).decode().split("\0") if "=" in item)


def playbook(tmp_path, tasks, name="play"):
    """Run tasks on the lab host with ansible-playbook; return (rc, {task name: result})."""
    path = tmp_path / ("%s.yml" % name)
    # the lab logs in as a non-root user over SSH, as production does: the module writes systemd drop-ins, so become root
    path.write_text(json.dumps([{"name": name, "hosts": HOST, "become": True, "gather_facts": False, "tasks": tasks}], indent=1))
    env = dict(os.environ, DOCKER_HOST=_docker_host(), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
               ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"), ANSIBLE_INJECT_FACT_VARS="false",
               PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    env.pop("ANSIBLE_CALLBACK_RESULT_FORMAT", None)
    proc = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", INVENTORY, "--limit", HOST, str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("ansible-playbook output is not JSON (rc=%d):\n%s\n%s" % (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:]))
    results = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            results[task["task"]["name"]] = task["hosts"][HOST]
    return proc.returncode, results


def diff_of(result):
    """The json callback gives a task's diff as a dict or a list of dicts."""
    diff = result["diff"]
    return diff[0] if isinstance(diff, list) else diff


def module_task(name, args, **keywords):
    task = {"name": name, "onprem.llm_serving.ollama_env": args}
    task.update(keywords)
    return task


def restart_task(name="restart", service=SERVICE):
    return {"name": name, "ansible.builtin.systemd_service": {"name": service, "state": "restarted", "daemon_reload": True}}


@pytest.fixture(scope="module")
def stand_in_service():
    with open(os.path.join(HERE, "ollama-envtest.service")) as handle:
        unit = handle.read()
    sh("cat > /etc/systemd/system/%s.service <<'EOF'\n%sEOF" % (SERVICE, unit))
    yield
    sh("systemctl stop %s; rm -rf %s /etc/systemd/system/%s.service; systemctl daemon-reload" % (SERVICE, DROPIN_DIR, SERVICE), check=False)


@pytest.fixture
def fresh(stand_in_service):
    """No drop-ins, unit loaded, service running with only its vendor environment."""
    sh("rm -rf %s && systemctl daemon-reload && systemctl restart %s" % (DROPIN_DIR, SERVICE))
    assert running_environ()["OLLAMA_HOST"] == "127.0.0.1:1"


def test_change_restart_verify_then_idempotent(fresh, tmp_path):
    rc, res = playbook(tmp_path, [
        module_task("set", ARGS, diff=True),
        restart_task(),
        module_task("verify", dict(ARGS, verify=True)),
        module_task("again", ARGS),
    ])
    assert rc == 0, res
    assert res["set"]["changed"] is True and res["set"]["restart_required"] is True
    assert res["set"]["path"] == OURS
    assert 'Environment="OLLAMA_NUM_PARALLEL=4"' in diff_of(res["set"])["after"]
    # the vendor unit sets OLLAMA_HOST too: reported, and our drop-in wins
    assert [(o["variable"], o["ours_wins"]) for o in res["set"]["overrides"]] == [("OLLAMA_HOST", True)]
    assert res["verify"]["changed"] is False
    assert res["verify"]["effective"] == EXPECTED
    assert res["again"]["changed"] is False and res["again"]["restart_required"] is False
    environ = running_environ()
    assert dict((k, environ.get(k)) for k in EXPECTED) == EXPECTED  # what systemd really gave the process
    assert sh("stat -c %a " + OURS).strip() == "644"


def test_check_mode_and_diff_write_nothing(fresh, tmp_path):
    rc, res = playbook(tmp_path, [module_task("set", ARGS)])
    assert rc == 0
    before = sh("cat " + OURS)
    rc, res = playbook(tmp_path, [module_task("check", dict(ARGS, num_parallel=8), check_mode=True, diff=True)], name="check")
    assert rc == 0, res
    assert res["check"]["changed"] is True and res["check"]["restart_required"] is True
    diff = diff_of(res["check"])
    assert 'Environment="OLLAMA_NUM_PARALLEL=4"' in diff["before"]
    assert 'Environment="OLLAMA_NUM_PARALLEL=8"' in diff["after"]
    assert sh("cat " + OURS) == before


def test_verify_fails_when_not_restarted(fresh, tmp_path):
    rc, res = playbook(tmp_path, [module_task("set", ARGS), restart_task(), module_task("change", dict(ARGS, num_parallel=8))])
    assert rc == 0, res
    rc, res = playbook(tmp_path, [module_task("verify", dict(ARGS, num_parallel=8, verify=True))], name="noreload")
    assert rc != 0
    msg = res["verify"]["msg"]
    assert "OLLAMA_NUM_PARALLEL: expected '8', running process has '4'" in msg
    assert "daemon-reload" in msg
    sh("systemctl daemon-reload")
    rc, res = playbook(tmp_path, [module_task("verify", dict(ARGS, num_parallel=8, verify=True))], name="norestart")
    assert rc != 0
    assert "not restarted since the change" in res["verify"]["msg"], res["verify"]["msg"]
    rc, res = playbook(tmp_path, [restart_task(), module_task("verify", dict(ARGS, num_parallel=8, verify=True))], name="restarted")
    assert rc == 0 and res["verify"]["effective"]["OLLAMA_NUM_PARALLEL"] == "8"


def test_overriding_dropin_is_detected_and_matches_what_systemd_does(fresh, tmp_path):
    other = DROPIN_DIR + "/99-local.conf"
    sh("mkdir -p %s && printf '[Service]\\nEnvironment=OLLAMA_NUM_PARALLEL=1\\n' > %s" % (DROPIN_DIR, other))
    rc, res = playbook(tmp_path, [module_task("set", ARGS)])
    assert rc != 0
    assert other in res["set"]["msg"] and "OLLAMA_NUM_PARALLEL" in res["set"]["msg"]
    assert sh("test -e %s && echo yes || echo no" % OURS).strip() == "no"  # nothing written
    rc, res = playbook(tmp_path, [module_task("set", dict(ARGS, override_policy="warn")), restart_task(),
                                  module_task("verify", dict(ARGS, override_policy="warn", verify=True))], name="warn")
    assert rc != 0
    assert res["set"]["changed"] is True
    lost = [o for o in res["set"]["overrides"] if not o["ours_wins"]]
    assert [(o["variable"], o["winner"], o["winner_value"]) for o in lost] == [("OLLAMA_NUM_PARALLEL", other, "1")]
    assert "overridden by another file" in res["verify"]["msg"] and other in res["verify"]["msg"]
    assert res["verify"]["effective"]["OLLAMA_NUM_PARALLEL"] == "1"
    assert running_environ()["OLLAMA_NUM_PARALLEL"] == "1"  # the module predicted systemd's winner


def test_environment_file_override_and_absent(fresh, tmp_path):
    sh("mkdir -p %s && printf '[Service]\\nEnvironmentFile=-/etc/default/%s\\n' > %s/10-envfile.conf && "
       "printf 'OLLAMA_KEEP_ALIVE=1m\\n' > /etc/default/%s" % (DROPIN_DIR, SERVICE, DROPIN_DIR, SERVICE))
    try:
        rc, res = playbook(tmp_path, [module_task("set", ARGS)])
        assert rc != 0
        assert "/etc/default/%s" % SERVICE in res["set"]["msg"] and "EnvironmentFile" in res["set"]["msg"]
        rc, res = playbook(tmp_path, [module_task("set", dict(ARGS, override_policy="warn")), restart_task()], name="warn")
        assert rc == 0
        assert running_environ()["OLLAMA_KEEP_ALIVE"] == "1m"  # EnvironmentFile= beats a later Environment=
    finally:
        sh("rm -f /etc/default/%s" % SERVICE)
    rc, res = playbook(tmp_path, [module_task("remove", {"service": SERVICE, "state": "absent"}, diff=True), restart_task(),
                                  module_task("again", {"service": SERVICE, "state": "absent"})], name="absent")
    assert rc == 0, res
    assert res["remove"]["changed"] is True and res["again"]["changed"] is False
    assert sh("test -e %s && echo yes || echo no" % OURS).strip() == "no"
    assert "OLLAMA_NUM_PARALLEL" not in running_environ()


def test_bad_input_fails_on_the_host_and_writes_nothing(fresh, tmp_path):
    rc, res = playbook(tmp_path, [module_task("bad", dict(ARGS, num_parallel="10:"))])
    assert rc != 0
    assert res["bad"]["msg"].startswith("option num_parallel: value '10:' refused")
    assert sh("test -e %s && echo yes || echo no" % DROPIN_DIR).strip() == "no"


def test_verify_fails_when_service_stopped(fresh, tmp_path):
    rc, res = playbook(tmp_path, [module_task("set", ARGS), restart_task()])
    assert rc == 0
    sh("systemctl stop " + SERVICE)
    rc, res = playbook(tmp_path, [module_task("verify", dict(ARGS, verify=True))], name="stopped")
    assert rc != 0 and "is not running" in res["verify"]["msg"]


# --------------------------------------------------------------------------- the real Ollama server
# tools/artefacts.py ollama-archive builds it (Intel's IPEX-LLM build of Ollama 0.5.4, CPU backend);
# OLLAMA_ENV_OLLAMA_ARCHIVE points at another copy (e.g. one built with --cache elsewhere).
ARCHIVE = os.environ.get("OLLAMA_ENV_OLLAMA_ARCHIVE", os.path.join(ROOT, ".cache", "artefacts", "ollama", "ollama-linux-amd64.tgz"))
REAL = "ollama-envtest-real"
REAL_PORT = 11499
REAL_UNIT = """[Unit]
Description=ollama_env integration test: the lab's Ollama build, serving on a private port

[Service]
ExecStart=/opt/%(name)s/bin/ollama serve
Environment=HOME=/var/lib/%(name)s
StateDirectory=%(name)s
""" % {"name": REAL}


@pytest.mark.skipif(not os.path.exists(ARCHIVE), reason="the lab's Ollama archive is not built (python3 tools/artefacts.py ollama-archive)")
def test_real_ollama_reads_the_settings(tmp_path):
    """The settings reach a real `ollama serve`: its own `server config env=map[...]` log line shows them."""
    env = dict(os.environ, DOCKER_HOST=_docker_host())
    # not into /tmp: it is a tmpfs in the lab hosts, and `docker cp` writes beneath it
    subprocess.run(["docker", "cp", ARCHIVE, "%s:/opt/%s.tgz" % (HOST, REAL)], env=env, check=True, capture_output=True)
    sh("rm -rf /opt/{n} && mkdir -p /opt/{n} && tar -xzf /opt/{n}.tgz -C /opt/{n} && rm /opt/{n}.tgz".format(n=REAL))
    sh("cat > /etc/systemd/system/%s.service <<'EOF'\n%sEOF" % (REAL, REAL_UNIT))
    args = {"service": REAL, "host": "127.0.0.1:%d" % REAL_PORT, "num_parallel": 3, "max_queue": 77, "keep_alive": "7m",
            "max_loaded_models": 2, "origins": ["https://chat.example.com"], "models": "/var/lib/%s/models" % REAL,
            "flash_attention": True, "kv_cache_type": "q8_0", "load_timeout": "90s", "gpu_overhead": 1048576, "sched_spread": True}
    try:
        rc, res = playbook(tmp_path, [
            module_task("set", args),
            restart_task(service=REAL),
            {"name": "wait", "ansible.builtin.uri": {"url": "http://127.0.0.1:%d/api/version" % REAL_PORT},
             "register": "version", "until": "version.status == 200", "retries": 60, "delay": 0.5},
            module_task("verify", dict(args, verify=True)),
        ])
        assert rc == 0, res
        assert res["wait"]["json"]["version"]
        assert res["verify"]["effective"]["OLLAMA_NUM_PARALLEL"] == "3"
        log = sh("journalctl -u %s -o cat --no-pager | grep 'server config' | tail -1" % REAL)
        print("ollama server config line:", log)
        for expected in ("OLLAMA_NUM_PARALLEL:3", "OLLAMA_MAX_QUEUE:77", "OLLAMA_HOST:http://127.0.0.1:%d" % REAL_PORT,
                         "OLLAMA_KEEP_ALIVE:7m0s", "OLLAMA_MAX_LOADED_MODELS:2", "https://chat.example.com",
                         "OLLAMA_MODELS:/var/lib/%s/models" % REAL, "OLLAMA_FLASH_ATTENTION:true", "OLLAMA_KV_CACHE_TYPE:q8_0",
                         "OLLAMA_LOAD_TIMEOUT:1m30s", "OLLAMA_GPU_OVERHEAD:1048576", "OLLAMA_SCHED_SPREAD:true"):
            assert expected in log, "%s not in Ollama's config line: %s" % (expected, log)
    finally:
        sh("systemctl stop {n}; rm -rf /opt/{n} /etc/systemd/system/{n}.service /etc/systemd/system/{n}.service.d; "
           "systemctl daemon-reload".format(n=REAL), check=False)
