# Copyright: (c) 2026, onprem.llm_serving contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""tests/run_all.py (what `make test` runs): which job needs which, and the scheduler that runs them side by side."""
from __future__ import annotations

import importlib.util
import os
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def _load():
    spec = importlib.util.spec_from_file_location("run_all_under_test", os.path.join(ROOT, "tests", "run_all.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


run_all = _load()
PREPARE = {"prepare image", "prepare artefacts", "prepare bundle"}


def test_every_job_and_what_it_needs():
    jobs = {name: (stage, set(needs)) for name, stage, needs, _fn in run_all.jobs_for(run_all.STAGES, None)}
    scenarios = {n for n in jobs if n.startswith("molecule ")}
    assert len(scenarios) == len(run_all.scenarios()) >= 8
    assert jobs["lint"][1] == set() and jobs["sanity"][1] == set()
    assert jobs["prepare bundle"][1] == {"prepare artefacts"}
    assert jobs["unit"][1] == jobs["unit-roles"][1] == {"prepare artefacts"}
    assert jobs["integration"][1] == PREPARE
    assert all(jobs[n][1] == PREPARE for n in scenarios)
    assert jobs["lab-down"][1] == set(jobs) - {"lab-down"}


def test_a_need_outside_the_chosen_stages_counts_as_done():
    jobs = run_all.jobs_for(["molecule"], ["vllm", "ollama"])
    assert [(name, needs) for name, _stage, needs, _fn in jobs] == [("molecule vllm/default", ()), ("molecule ollama/default", ())]


def test_the_longest_scenarios_start_first():
    weights = [run_all.MOLECULE_WEIGHT.get(role, 1) for _dir, role, _scen in run_all.scenarios()]
    assert weights == sorted(weights, reverse=True)


def test_the_scheduler_keeps_to_the_slots_and_the_needs():
    lock = threading.Lock()
    events, running, peak = [], set(), [0]

    def job(name, seconds):
        def run(_tally):
            with lock:
                running.add(name)
                peak[0] = max(peak[0], len(running))
                events.append(("start", name))
            time.sleep(seconds)
            with lock:
                running.discard(name)
                events.append(("end", name))
        return run

    jobs = [("a", "s", (), job("a", 0.3)), ("b", "s", (), job("b", 0.1)), ("c", "s", ("a",), job("c", 0.05)),
            ("d", "s", (), job("d", 0.05)), ("e", "s", ("b", "d"), job("e", 0.05))]
    run_all.schedule(run_all.Tally(), jobs, slots=2)
    order = [name for kind, name in events if kind == "start"]
    assert sorted(order) == ["a", "b", "c", "d", "e"] and peak[0] == 2
    assert order[:2] == ["a", "b"]  # the first two in priority order take the two slots
    for later, earlier in (("c", "a"), ("e", "b"), ("e", "d")):
        assert events.index(("start", later)) > events.index(("end", earlier))


def test_a_job_that_raises_is_counted_failed_and_the_others_still_run():
    tally = run_all.Tally()

    def boom(_tally):
        raise RuntimeError("no lab")

    ran = []
    run_all.schedule(tally, [("x", "s", (), boom), ("y", "s", ("x",), lambda t: ran.append("y"))], slots=3)
    assert ran == ["y"]
    assert [(r[0], r[2]) for r in tally.rows] == [("x", 1)] and "no lab" in tally.rows[0][5]


def _scenario_with(monkeypatch, tmp_path, outcomes):
    """stage_scenario with `run` replaced: each call writes the next (rc, text) to the log and returns rc."""
    calls = []

    def fake_run(cmd, log, cwd=None, tail=0, extra_env=None):
        rc, text = outcomes[len(calls)]
        calls.append(cmd)
        with open(log, "w") as fh:
            fh.write(text)
        if rc:
            run_all.FAILED_LOGS.append(log)
        return rc

    monkeypatch.setattr(run_all, "OUTPUT", str(tmp_path))
    monkeypatch.setattr(run_all, "run", fake_run)
    monkeypatch.setattr(run_all, "FAILED_LOGS", [])
    monkeypatch.setattr(run_all.time, "sleep", lambda _s: None)
    monkeypatch.setattr(run_all.lab, "ensure_ssh_key", lambda: "/dev/null")
    monkeypatch.setattr(run_all.lab, "dockerd_state", lambda: "dockerd pid 1, answers")
    monkeypatch.setattr(run_all, "online_resolv_conf", lambda: "/dev/null")
    tally = run_all.Tally()
    run_all.stage_scenario(tally, str(tmp_path), "tgi", "default")
    return tally.rows[0], calls


def test_a_scenario_that_could_not_contact_dockerd_runs_once_more_and_says_so(monkeypatch, tmp_path, capsys):
    row, calls = _scenario_with(monkeypatch, tmp_path, [(1, "ERROR Unable to contact the Docker daemon. Please"), (0, "ok")])
    assert len(calls) == 2
    assert row[1:4] == (1, 0, 0) and "second run" in row[5]
    assert (tmp_path / "molecule-tgi-default.log.first").read_text().startswith("ERROR Unable to contact")
    assert run_all.FAILED_LOGS == []  # the first run's failure is not reported as a failed command
    assert "could not contact the lab's dockerd (dockerd pid 1, answers)" in capsys.readouterr().out


def test_a_scenario_that_fails_otherwise_runs_once(monkeypatch, tmp_path):
    row, calls = _scenario_with(monkeypatch, tmp_path, [(2, "TASK [converge] fatal: something else")])
    assert len(calls) == 1
    assert row[1:4] == (0, 1, 0) and row[5] == ""
    assert run_all.FAILED_LOGS == [str(tmp_path / "molecule-tgi-default.log")]


def test_a_scenario_that_cannot_contact_dockerd_twice_fails(monkeypatch, tmp_path):
    row, calls = _scenario_with(monkeypatch, tmp_path, [(1, "Unable to contact the Docker daemon")] * 2)
    assert len(calls) == 2
    assert row[1:4] == (0, 1, 0)


def test_the_summary_ends_with_each_failed_log(monkeypatch, tmp_path, capsys):
    log = tmp_path / "molecule-x.log"
    log.write_text("\n".join(f"line {i}" for i in range(40)) + "\nERROR the reason\n")
    monkeypatch.setattr(run_all, "FAILED_LOGS", [str(log)])
    monkeypatch.setattr(run_all, "schedule", lambda tally, jobs, slots: tally.add("molecule x/default", 0, 1, 0, 1.0))
    monkeypatch.setattr(run_all.sys, "argv", ["run_all.py", "--only", "lint"])
    monkeypatch.setattr(run_all, "OUTPUT", str(tmp_path))
    assert run_all.main() == 1
    out = capsys.readouterr().out
    tail = out[out.index("--- the end of"):]
    assert "ERROR the reason" in tail and "line 29" in tail and "line 28" not in tail
    assert tail.rstrip().endswith("summary: 0 passed, 1 failed, 0 skipped")


def test_the_failure_lines_keep_the_errors_above_the_end(tmp_path):
    log = tmp_path / "sanity.log"
    log.write_text("ERROR: tests/x.py:1:1: disallowed-name\nok: [h] failed=0\nFAILED - RETRYING: [h]: wait (3 left)\n"
                   + "\n".join("Running sanity test %d" % i for i in range(30)) + "\nFATAL: 1 sanity test failed\n")
    lines = run_all.failure_lines(str(log))
    assert lines[0] == "ERROR: tests/x.py:1:1: disallowed-name" and lines[1] == "..."
    assert lines[-1] == "FATAL: 1 sanity test failed" and len(lines) == 2 + 12
    assert not any("failed=0" in line or "RETRYING" in line for line in lines)
