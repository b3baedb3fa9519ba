"""``medreward audit`` through the real entry point (``python -m medreward.cli.app``): the report
files, the spec's task when no cases are given, ``--fail-on exploitable`` exit codes, ``--limit``,
``--ratings`` with unmatched ids, ``--quiet``, and every user-error path (exit code 2, a message on
stderr, never a traceback). The invocations run as concurrent subprocesses to keep this fast."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_all

from medreward.io import open_writer
from medreward.tasks import get_task

UNSOUND_TOML = """
name = "unsound_tox"
task = "toxicology"

[[components]]
name = "format"
kind = "format.tags"
weight = 1.0

[[components]]
name = "labels"
kind = "multilabel"
weight = 1.0
params = { vocabulary = "toxicology", field = "substances", metric = "recall_weighted", beta = 10.0 }

[[components]]
name = "rpr"
kind = "reasoning_pattern"
weight = 0.5
"""

NO_TASK_TOML = """
name = "no_task"

[[components]]
name = "format"
kind = "format.tags"
weight = 1.0
"""

FAST = ("--no-benchmark", "--budget", "20")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audit-cli")
    cases = get_task("toxicology").generate(40, 2)
    with open_writer(path / "cases.jsonl") as writer:
        for case in cases:
            writer.write(case)
    rollouts = [{**c, "id": f"r{i}", "completion": f"<think>x</think><answer>{', '.join(c['reference']['substances']) or 'none'}</answer>"}
                for i, c in enumerate(cases[:12])]  # fmt: skip
    rollouts[3]["completion"] = "<think>x</think><answer>opioids, ethanol, stimulants</answer>"
    with open_writer(path / "rollouts.jsonl") as writer:
        for row in rollouts:
            writer.write(row)
    ratings = [{"id": f"r{i}", "rating": 0 if i == 3 else 1} for i in range(10)] + [{"id": "ghost", "rating": 1}]
    (path / "ratings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ratings), "utf-8")
    (path / "bad_ratings.jsonl").write_text('{"id": "r1", "rating": 1}\n{"id": "r2", "rating": "high"}\n', "utf-8")
    (path / "empty.jsonl").write_text("", "utf-8")
    (path / "unsound.toml").write_text(UNSOUND_TOML, "utf-8")
    (path / "no_task.toml").write_text(NO_TASK_TOML, "utf-8")
    (path / "a_file").write_text("x", "utf-8")
    return path


# one case per distinct error path: (arguments, what stderr must say)
ERROR_CASES = {
    "missing cases file": (("audit", "toxicology", "--cases", "missing.jsonl", "-o", "o1"), "does not exist"),
    "unknown spec": (("audit", "nope_spec", "--task", "toxicology", "-o", "o2"), "unknown spec 'nope_spec'"),
    "empty cases": (("audit", "toxicology", "--cases", "empty.jsonl", "-o", "o3"), "no cases to audit"),
    "bad ratings": (("audit", "toxicology", "--cases", "rollouts.jsonl", "--ratings", "bad_ratings.jsonl", "-o", "o4"),
                    "line 2: 'rating' must be a finite number"),
    "missing ratings": (("audit", "toxicology", "--cases", "rollouts.jsonl", "--ratings", "nope.jsonl", "-o", "o5"),
                        "ratings file 'nope.jsonl' does not exist"),
    "cases and task": (("audit", "toxicology", "--cases", "cases.jsonl", "--task", "toxicology", "-o", "o6"),
                       "not both"),
    "spec without task": (("audit", "no_task.toml", "-o", "o7"), "cannot tell which cases to audit spec 'no_task'"),
    "unknown task": (("audit", "toxicology", "--task", "radiology", "-o", "o8"), "known tasks: calculator"),
    "output is a file": (("audit", "toxicology", "--task", "toxicology", "-o", "a_file"), "is a file"),
    "unknown cases format": (("audit", "toxicology", "--cases", "unsound.toml", "-o", "o9"), "cannot tell the format"),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    commands = {name: args for name, (args, _) in ERROR_CASES.items()}
    commands |= {
        "preset on cases": ("audit", "toxicology", "--cases", "cases.jsonl", "-o", "preset", "--budget", "30"),
        "spec's task": ("audit", "toxicology", "-o", "own", "--n", "25", *FAST),
        "unsound fail-on": ("audit", "unsound.toml", "--task", "toxicology", "--n", "25", "-o", "unsound",
                            "--fail-on", "exploitable", "--no-search", "--no-benchmark"),
        "unsound no fail-on": ("audit", "unsound.toml", "--task", "toxicology", "--n", "25", "-o", "unsound2",
                               "--quiet", "--no-search", "--no-benchmark"),
        "limit": ("audit", "toxicology", "--cases", "cases.jsonl", "--limit", "7", "-o", "limited", *FAST),
        "ratings": ("audit", "toxicology", "--cases", "rollouts.jsonl", "--ratings", "ratings.jsonl", "-o", "rated",
                    "--slice", "task", "--slice", "case.patient.sex", *FAST),
    }  # fmt: skip
    return run_all(commands, workdir)


@pytest.mark.parametrize("name", sorted(ERROR_CASES))
def test_user_errors_exit_2_with_a_message(runs, name):
    result = runs[name]
    expected = ERROR_CASES[name][1]
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    assert expected in " ".join(result.stderr.split()), result.stderr


def test_no_report_is_written_on_a_user_error(runs, workdir):
    for folder in ("o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"):
        assert not (workdir / folder / "report.json").exists()


def _report(workdir: Path, folder: str) -> dict:
    assert (workdir / folder / "report.html").is_file()
    return json.loads((workdir / folder / "report.json").read_text("utf-8"))


def test_preset_on_a_case_file(runs, workdir):
    result = runs["preset on cases"]
    assert result.returncode == 0, result.stderr
    data = _report(workdir, "preset")
    assert data["spec"] == "toxicology" and data["n_cases"] == 40
    assert data["probes"] and data["exploit"]["evaluations"] <= 30 and data["benchmark"]
    assert "probe:hedge_all" not in data["flagged"]
    assert "hacking probes" in result.stdout and "wrote" in result.stdout


def test_spec_task_is_used_when_no_cases_are_given(runs, workdir):
    result = runs["spec's task"]
    assert result.returncode == 0, result.stderr
    data = _report(workdir, "own")
    assert data["task"] == "toxicology" and data["n_cases"] == 25
    assert data["benchmark"] is None and any("benchmark: skipped" in n for n in data["notes"])


def test_fail_on_exploitable_exits_1_for_an_unsound_spec(runs, workdir):
    result = runs["unsound fail-on"]
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "--fail-on exploitable" in result.stderr and "hedge" in result.stderr
    assert "FLAGGED" in result.stdout
    data = _report(workdir, "unsound")
    assert "probe:hedge_all" in data["flagged"]
    assert data["exploit"] is None


def test_without_fail_on_a_flagged_spec_exits_0_and_quiet_prints_the_verdict(runs):
    result = runs["unsound no fail-on"]
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("FLAGGED spec unsound_tox")


def test_limit_stops_reading_the_cases(runs, workdir):
    assert runs["limit"].returncode == 0, runs["limit"].stderr
    assert _report(workdir, "limited")["n_cases"] == 7


def test_ratings_with_unmatched_ids_are_reported(runs, workdir):
    result = runs["ratings"]
    assert result.returncode == 0, result.stderr
    data = _report(workdir, "rated")
    assert data["pool"] == "rollouts" and data["n_rollouts"] == 12
    ratings = data["ratings"]
    assert ratings["n_matched"] == 10 and ratings["missing_in_cases"] == ["ghost"]
    assert ratings["missing_in_ratings"] == ["r10", "r11"]
    assert data["agreement"]["spearman"]["n"] == 10
    assert data["calibration"] is not None and data["calibration"]["n"] == 10
    assert {row["key"] for row in data["slices"]["case.patient.sex"]} <= {"male", "female"}
    assert "10 of 11 matched" in " ".join(result.stdout.split())


def test_terminal_summary_shows_flagged_probes_in_red(monkeypatch):
    from rich.console import Console

    from medreward.audit.run import run_audit
    from medreward.cli import audit as audit_cli
    from medreward.compose.spec import Spec

    console = Console(record=True, force_terminal=True, color_system="standard", width=140)
    monkeypatch.setattr(audit_cli, "out", console)
    report = run_audit(Spec.from_toml(UNSOUND_TOML), get_task("toxicology").generate(15, 1), search=False, benchmark=False)
    audit_cli.print_summary(report)
    text = console.export_text(styles=True)
    hedge_line = next(line for line in text.splitlines() if "hedge_all" in line)
    assert "\x1b[31m" in hedge_line or "\x1b[1;31m" in hedge_line, repr(hedge_line)  # red
    sound = next(r.name for r in report.probes.results if r.verdict in ("sound", "equivalent"))
    sound_line = next(line for line in text.splitlines() if sound in line)
    assert "\x1b[31m" not in sound_line and "\x1b[1;31m" not in sound_line
    assert "FLAGGED" in text and "probe:hedge_all" in text
