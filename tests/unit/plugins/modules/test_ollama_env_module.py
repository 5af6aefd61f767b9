# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""ollama_env main() through patch_module_args, against a drop-in tree under tmp_path and a fake systemd."""
from __future__ import annotations

import os

import pytest


from ansible_collections.onprem.llm_serving.plugins.module_utils._systemd import SystemdError
from ansible_collections.onprem.llm_serving.plugins.modules import ollama_env
from module_runner import run_main  # noqa: E402  pylint: disable=wrong-import-position


class FakeSystemd(object):
    """Same methods as _systemd.SystemdHost; the 'running service' is a dict environment."""

    def __init__(self, root):
        self.unit_path = [str(root / "etc"), str(root / "run"), str(root / "usr_lib")]
        self.props = {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "MainPID": "4242",
                      "NeedDaemonReload": "no"}
        self.env = {"PATH": "/usr/bin", "HOME": "/usr/share/ollama"}
        self.started_at = 10 ** 10  # far in the future: started after any file we write
        self.calls = []

    def show(self, unit, properties):
        self.calls.append(("show", unit, tuple(properties)))
        return dict((p, self.props.get(p, "")) for p in properties)

    def environ(self, pid):
        self.calls.append(("environ", pid))
        if pid != int(self.props["MainPID"]):
            raise SystemdError("no such process %d" % pid)
        return dict(self.env)

    def process_start_time(self, pid):
        return self.started_at

    def restart_with(self, path):
        """What `systemctl daemon-reload && systemctl restart` would give: the drop-in's values."""
        from ansible_collections.onprem.llm_serving.plugins.module_utils._ollama_env import resolve_environment
        with open(path) as handle:
            res = resolve_environment([(path, handle.read())], lambda p: [])
        self.env.update(dict((k, v["value"]) for k, v in res["winners"].items()))
        self.props["MainPID"] = str(int(self.props["MainPID"]) + 1)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    systemd = FakeSystemd(tmp_path)
    os.makedirs(systemd.unit_path[2])
    with open(os.path.join(systemd.unit_path[2], "ollama.service"), "w") as handle:
        handle.write("[Service]\nExecStart=/usr/bin/ollama serve\nEnvironment=\"PATH=/usr/local/bin:/usr/bin\"\n")
    monkeypatch.setattr(ollama_env, "make_systemd", lambda module: systemd)
    return systemd


def dropin(fake, name="50-ollama-env.conf"):
    return os.path.join(fake.unit_path[0], "ollama.service.d", name)


def run_module(capsys, args, check_mode=False, diff=False):
    return run_main(ollama_env.main, capsys, args, check_mode, diff)


def warnings(result):
    """Warning texts; ansible-core 2.19 returns them as WarningSummary dicts, older cores as strings."""
    return [w["event"]["msg"] if isinstance(w, dict) else w for w in result.get("warnings", [])]


ARGS = {"host": "0.0.0.0:11434", "num_parallel": 4, "keep_alive": "30m", "flash_attention": True, "kv_cache_type": "q8_0",
        "origins": ["https://chat.example.com"], "extra_env": {"OLLAMA_DEBUG": "100% \"on\""}}


def test_change_then_idempotent_second_run(fake, capsys):
    args = dict(ARGS, path=dropin(fake))
    first = run_module(capsys, args)
    assert first["rc"] == 0, first
    assert first["changed"] is True and first["restart_required"] is True
    assert first["path"] == dropin(fake) and first["service"] == "ollama.service"
    assert first["env"]["OLLAMA_NUM_PARALLEL"] == "4"
    with open(dropin(fake)) as handle:
        text = handle.read()
    assert 'Environment="OLLAMA_DEBUG=100%% \\"on\\""' in text
    assert oct(os.stat(dropin(fake)).st_mode & 0o777) == "0o644"
    mtime = os.stat(dropin(fake)).st_mtime_ns
    second = run_module(capsys, args)
    assert second["rc"] == 0
    assert second["changed"] is False and second["restart_required"] is False
    assert os.stat(dropin(fake)).st_mtime_ns == mtime
    assert not [n for n in os.listdir(os.path.dirname(dropin(fake))) if n.startswith(".ollama_env.")]


def test_default_path_goes_to_the_first_unit_dir_layout(fake, capsys, monkeypatch):
    monkeypatch.setattr(ollama_env, "default_path", lambda service: dropin(fake))
    result = run_module(capsys, {"num_parallel": 2})
    assert result["changed"] is True and os.path.exists(dropin(fake))


def test_check_mode_writes_nothing_and_reports_change(fake, capsys):
    result = run_module(capsys, dict(ARGS, path=dropin(fake)), check_mode=True, diff=True)
    assert result["rc"] == 0
    assert result["changed"] is True and result["restart_required"] is True
    assert not os.path.exists(dropin(fake))
    assert not os.path.exists(os.path.dirname(dropin(fake)))
    assert result["diff"]["before"] == ""
    assert 'Environment="OLLAMA_NUM_PARALLEL=4"' in result["diff"]["after"]


def test_diff_shows_before_and_after(fake, capsys):
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    result = run_module(capsys, dict(ARGS, path=dropin(fake), num_parallel=8), diff=True)
    assert result["changed"] is True
    assert 'Environment="OLLAMA_NUM_PARALLEL=4"' in result["diff"]["before"]
    assert 'Environment="OLLAMA_NUM_PARALLEL=8"' in result["diff"]["after"]
    assert result["diff"]["after_header"] == dropin(fake)


def test_state_absent_removes_and_is_idempotent(fake, capsys):
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    check = run_module(capsys, {"state": "absent", "path": dropin(fake)}, check_mode=True, diff=True)
    assert check["changed"] is True and os.path.exists(dropin(fake))
    assert check["diff"]["after"] == "" and "OLLAMA_HOST" in check["diff"]["before"]
    removed = run_module(capsys, {"state": "absent", "path": dropin(fake)})
    assert removed["changed"] is True and removed["restart_required"] is True and not os.path.exists(dropin(fake))
    again = run_module(capsys, {"state": "absent", "path": dropin(fake)})
    assert again["changed"] is False


@pytest.mark.parametrize("args, option", [
    ({"host": "http://0.0.0.0:11434/api"}, "host"),
    ({"host": "0.0.0.0:70000"}, "host"),
    ({"num_parallel": "10:"}, "num_parallel"),
    ({"num_parallel": 0}, "num_parallel"),
    ({"kv_cache_type": "q8_0"}, "kv_cache_type"),
    ({"keep_alive": "5 minutes"}, "keep_alive"),
    ({"extra_env": {"ollama_debug": "1"}}, "extra_env key"),
    ({"extra_env": {"OLLAMA_A=B": "1"}}, "extra_env key"),
    ({"models": "/srv/a\nb"}, "models"),
    ({}, "state"),
    ({"num_parallel": 1, "path": "/etc/systemd/system/ollama.service.d/env.txt"}, "path"),
    ({"state": "absent", "verify": True}, "verify"),
])
def test_bad_input_fails_and_writes_nothing(fake, capsys, args, option):
    args = dict(args)
    args.setdefault("path", dropin(fake))
    result = run_module(capsys, args)
    assert result["rc"] == 1 and result["failed"] is True
    assert result["option"] == option
    assert result["msg"].startswith("option %s: value" % option) and "Fix:" in result["msg"]
    assert not os.path.exists(os.path.dirname(dropin(fake)))


def test_unknown_kv_cache_type_is_refused_by_choices(fake, capsys):
    result = run_module(capsys, {"kv_cache_type": "q5_1", "flash_attention": True, "path": dropin(fake)})
    assert result["rc"] == 1 and "kv_cache_type" in result["msg"] and "q5_1" in result["msg"]
    assert not os.path.exists(dropin(fake))


def _write_other(fake, name, text, directory=0):
    path = os.path.join(fake.unit_path[directory], "ollama.service.d", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)
    return path


def test_overriding_dropin_fails_by_default_and_names_the_file(fake, capsys):
    other = _write_other(fake, "99-local.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n", directory=1)
    result = run_module(capsys, dict(ARGS, path=dropin(fake)))
    assert result["rc"] == 1
    assert other in result["msg"] and "OLLAMA_NUM_PARALLEL" in result["msg"] and "override_policy" in result["msg"]
    assert [o["winner"] for o in result["overrides"] if not o["ours_wins"]] == [other]
    assert not os.path.exists(dropin(fake))


def test_overriding_dropin_with_warn_policy_writes_and_warns(fake, capsys):
    other = _write_other(fake, "99-local.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    result = run_module(capsys, dict(ARGS, path=dropin(fake), override_policy="warn"))
    assert result["rc"] == 0 and result["changed"] is True
    assert any(other in w for w in warnings(result))
    lost = [o for o in result["overrides"] if not o["ours_wins"]]
    assert lost[0]["variable"] == "OLLAMA_NUM_PARALLEL" and lost[0]["winner_value"] == "1"


def test_environment_file_from_vendor_unit_wins(fake, capsys, tmp_path):
    env_file = tmp_path / "default-ollama"
    env_file.write_text("OLLAMA_HOST=127.0.0.1:9999\n")
    with open(os.path.join(fake.unit_path[2], "ollama.service"), "a") as handle:
        handle.write("EnvironmentFile=-%s\n" % env_file)
    result = run_module(capsys, dict(ARGS, path=dropin(fake)))
    assert result["rc"] == 1 and str(env_file) in result["msg"] and "EnvironmentFile" in result["msg"]


def test_earlier_dropin_setting_the_same_variable_is_reported_but_passes(fake, capsys):
    other = _write_other(fake, "10-old.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    result = run_module(capsys, dict(ARGS, path=dropin(fake)))
    assert result["rc"] == 0
    assert [(o["variable"], o["set_by"], o["ours_wins"]) for o in result["overrides"]] == [("OLLAMA_NUM_PARALLEL", [other], True)]


def test_path_outside_the_dropin_dirs_is_not_read_by_systemd(fake, capsys, tmp_path):
    result = run_module(capsys, {"num_parallel": 2, "path": str(tmp_path / "elsewhere" / "x.conf")})
    assert result["rc"] == 1 and "not read by systemd" in result["msg"]


def test_verify_after_restart_returns_effective(fake, capsys):
    args = dict(ARGS, path=dropin(fake))
    run_module(capsys, args)
    fake.restart_with(dropin(fake))
    result = run_module(capsys, dict(args, verify=True))
    assert result["rc"] == 0, result
    assert result["changed"] is False
    assert result["effective"]["OLLAMA_NUM_PARALLEL"] == "4"
    assert result["effective"]["OLLAMA_DEBUG"] == '100% "on"'
    assert "PATH" not in result["effective"]
    assert result["main_pid"] == 4243 and result["mismatches"] == []


def test_verify_fails_when_not_restarted_since_the_change(fake, capsys):
    args = dict(ARGS, path=dropin(fake))
    run_module(capsys, args)
    fake.started_at = 1.0  # the process is older than the drop-in
    result = run_module(capsys, dict(args, verify=True))
    assert result["rc"] == 1
    assert "not restarted since the change" in result["msg"] and "restart ollama.service" in result["msg"]
    assert result["effective"]["OLLAMA_NUM_PARALLEL"] is None


def test_verify_in_the_changing_run_says_restart(fake, capsys):
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True))
    assert result["rc"] == 1 and result["changed"] is True
    assert "changed by this task" in result["msg"]
    assert os.path.exists(dropin(fake))


def test_verify_in_check_mode_with_pending_change_only_warns(fake, capsys):
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True), check_mode=True)
    assert result["rc"] == 0 and result["changed"] is True
    assert any("changed by this task" in w for w in warnings(result))
    assert not os.path.exists(dropin(fake))


def test_verify_fails_when_service_not_running(fake, capsys):
    fake.props.update(MainPID="0", ActiveState="failed", SubState="failed")
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True))
    assert result["rc"] == 1 and "is not running" in result["msg"] and "ActiveState=failed" in result["msg"]


def test_verify_fails_when_service_unknown(fake, capsys):
    fake.props.update(LoadState="not-found", MainPID="0")
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True))
    assert result["rc"] == 1 and "not known to systemd" in result["msg"]


def test_verify_names_the_overriding_file(fake, capsys):
    args = dict(ARGS, path=dropin(fake), override_policy="warn")
    other = _write_other(fake, "99-local.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    run_module(capsys, args)
    fake.restart_with(dropin(fake))
    fake.env["OLLAMA_NUM_PARALLEL"] = "1"  # what systemd applied: 99-local.conf last
    result = run_module(capsys, dict(args, verify=True))
    assert result["rc"] == 1
    assert "overridden by another file" in result["msg"] and other in result["msg"]


def test_verify_reports_need_daemon_reload(fake, capsys):
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    fake.props["NeedDaemonReload"] = "yes"
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True))
    assert result["rc"] == 1 and "daemon-reload" in result["msg"]


def test_unit_files_are_listed_in_systemd_order(fake, capsys):
    vendor = _write_other(fake, "10-vendor.conf", "[Service]\nEnvironment=OLLAMA_OTHER=1\n", directory=2)
    late = _write_other(fake, "70-late.conf", "[Service]\nEnvironment=OLLAMA_OTHER=2\n", directory=1)
    result = run_module(capsys, dict(ARGS, path=dropin(fake)))
    assert result["unit_files"] == [os.path.join(fake.unit_path[2], "ollama.service"), vendor, dropin(fake), late]


def test_same_name_in_a_higher_priority_dir_masks_our_dropin(fake, capsys):
    ours = os.path.join(fake.unit_path[2], "ollama.service.d", "50-ollama-env.conf")
    masking = _write_other(fake, "50-ollama-env.conf", "[Service]\nEnvironment=OLLAMA_NUM_PARALLEL=1\n", directory=0)
    result = run_module(capsys, {"num_parallel": 4, "path": ours})
    assert result["rc"] == 1
    assert masking in result["msg"] and "OLLAMA_NUM_PARALLEL" in result["msg"]
    assert not os.path.exists(ours)


def test_template_instance_reads_the_template_fragment(fake, capsys):
    with open(os.path.join(fake.unit_path[2], "ollama@.service"), "w") as handle:
        handle.write("[Service]\nExecStart=/usr/bin/ollama serve\nEnvironment=OLLAMA_NUM_PARALLEL=1\n")
    path = os.path.join(fake.unit_path[0], "ollama@gpu0.service.d", "50-ollama-env.conf")
    result = run_module(capsys, {"service": "ollama@gpu0", "num_parallel": 4, "path": path})
    assert result["rc"] == 0 and result["service"] == "ollama@gpu0.service"
    assert result["unit_files"] == [os.path.join(fake.unit_path[2], "ollama@.service"), path]
    assert result["overrides"][0]["ours_wins"] is True


def test_type_wide_service_dropin_counts(fake, capsys):
    other = os.path.join(fake.unit_path[0], "service.d", "99-all-services.conf")
    os.makedirs(os.path.dirname(other))
    with open(other, "w") as handle:
        handle.write("[Service]\nEnvironment=CUDA_VISIBLE_DEVICES=\n")
    result = run_module(capsys, {"extra_env": {"CUDA_VISIBLE_DEVICES": "0"}, "path": dropin(fake)})
    assert result["rc"] == 1 and other in result["msg"]


@pytest.mark.parametrize("props, text", [({"LoadState": "not-found", "MainPID": "0"}, "not known to systemd"),
                                         ({"MainPID": "0", "ActiveState": "inactive"}, "is not running")])
def test_verify_in_check_mode_warns_when_service_missing_or_stopped(fake, capsys, props, text):
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    fake.props.update(props)
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True), check_mode=True)
    assert result["rc"] == 0 and result["changed"] is False and result["effective"] == {}
    assert any(text in w and "check mode" in w for w in warnings(result))


def test_verify_in_check_mode_still_fails_on_a_real_mismatch(fake, capsys):
    run_module(capsys, dict(ARGS, path=dropin(fake)))
    fake.restart_with(dropin(fake))
    fake.env["OLLAMA_NUM_PARALLEL"] = "1"
    result = run_module(capsys, dict(ARGS, path=dropin(fake), verify=True), check_mode=True)
    assert result["rc"] == 1 and "OLLAMA_NUM_PARALLEL: expected '4', running process has '1'" in result["msg"]
