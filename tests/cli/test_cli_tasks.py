"""``medreward tasks`` / ``baselines`` / ``demo`` through the real entry point
(``python -m medreward.cli.app``), including every user-error path: exit code 2, a message on
stderr, never a traceback. The error cases run as concurrent subprocesses to keep this fast."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_all

from medreward.io import open_writer
from medreward.tasks.toxicology import generate_toxicology


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    for name in ("cases.jsonl", "cases.parquet"):
        with open_writer(path / name) as writer:
            for case in generate_toxicology(30, seed=1):
                writer.write(case)
    lines = (path / "cases.jsonl").read_text("utf-8").splitlines()
    # two malformed lines and one record without the structured case among good ones
    mixed = lines[:3] + ["{not json", "[1, 2]", json.dumps({"id": "bare", "prompt": "hello"})] + lines[3:5]
    (path / "mixed.jsonl").write_text("\n".join(mixed) + "\n", encoding="utf-8")
    (path / "outdir").mkdir()
    return path


def _unwritable(workdir: Path) -> str:
    """A path that cannot be created: a read-only folder, or (as root) a file under /sys."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no unwritable path to test")
        return "/sys/medreward-test.jsonl"
    readonly = workdir / "readonly"
    readonly.mkdir(exist_ok=True)
    readonly.chmod(0o555)
    return str(readonly / "cases.jsonl")


# one case per distinct error path (each subprocess costs about 0.6 s of CPU)
ERROR_CASES = {
    "unknown task": (("tasks", "generate", "nope", "--n", "5", "-o", "x.jsonl"), "known tasks: calculator, icd_coding, mcq, toxicology"),
    "n zero": (("tasks", "generate", "toxicology", "--n", "0", "-o", "x.jsonl"), "--n must be a positive"),
    "missing folder": (("tasks", "generate", "toxicology", "--n", "5", "-o", "no/such/dir/x.jsonl"), "does not exist"),
    "output is a directory": (("tasks", "generate", "toxicology", "--n", "5", "-o", "outdir"), "is a directory"),
    "unknown policy": (("baselines", "run", "toxicology", "-p", "oracle", "-i", "cases.jsonl", "-o", "r.jsonl"),
                       "known policies: empty, format_only, hedge, history, majority, toxidrome"),
    "missing input": (("baselines", "run", "toxicology", "-p", "all", "-i", "missing.jsonl", "-o", "r.jsonl"),
                      "does not exist"),
}  # fmt: skip



@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    commands = {name: args for name, (args, _) in ERROR_CASES.items()}
    commands["unwritable output"] = ("tasks", "generate", "toxicology", "--n", "5", "-o", _unwritable(workdir))
    commands |= {
        "generate seed 3": ("tasks", "generate", "toxicology", "--n", "40", "--seed", "3", "-o", "g3.jsonl"),
        "generate seed 4 to stdout": ("tasks", "generate", "toxicology", "-n", "40", "--seed", "4", "-o", "-"),
        "run mixed": ("baselines", "run", "toxicology", "-p", "toxidrome", "-p", "hedge", "-i", "mixed.jsonl",
                      "-o", "mixed_rollouts.jsonl"),
        "run all": ("baselines", "run", "toxicology", "-p", "all", "-i", "cases.jsonl", "-o", "rollouts.jsonl"),
        "run parquet": ("baselines", "run", "toxicology", "-p", "toxidrome", "-i", "cases.parquet", "-o", "pq.jsonl"),
        "demo json": ("demo", "--json"),
        "demo table": ("demo", "--n", "50"),
        "tasks list": ("tasks", "list"),
        "baselines list": ("baselines", "list", "toxicology"),
    }  # fmt: skip
    done = run_all(commands, workdir)
    # second wave: evaluate reads what `run all` wrote
    done |= run_all({"evaluate": ("baselines", "evaluate", "toxicology", "-i", "rollouts.jsonl", "--json")}, workdir)
    return done


@pytest.mark.parametrize("name", [*ERROR_CASES, "unwritable output"])
def test_user_errors_exit_2_with_a_message(runs, name):
    result = runs[name]
    expected = ERROR_CASES[name][1] if name in ERROR_CASES else "cannot write"
    assert result.returncode == 2, result.stderr
    assert "error:" in result.stderr and expected in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr + result.stdout


def test_generate_writes_the_same_bytes_as_the_api(runs, workdir):
    first, other = runs["generate seed 3"], runs["generate seed 4 to stdout"]
    assert first.returncode == 0 and other.returncode == 0, first.stderr + other.stderr
    with open_writer(workdir / "api3.jsonl") as writer:
        for case in generate_toxicology(40, seed=3):
            writer.write(case)
    assert (workdir / "g3.jsonl").read_bytes() == (workdir / "api3.jsonl").read_bytes()
    assert other.stdout.count("\n") == 40 and other.stdout.encode() != (workdir / "g3.jsonl").read_bytes()
    assert "wrote 40 toxicology cases" in first.stdout


def test_run_keeps_good_records_and_reports_bad_lines(runs, workdir):
    result = runs["run mixed"]
    assert result.returncode == 0, result.stderr
    stderr = " ".join(result.stderr.split())
    assert "line 4: invalid JSON" in stderr and "line 5: expected a JSON object" in stderr
    assert "record #6 (id bare): policy toxidrome cannot read it" in stderr
    assert "Traceback" not in result.stderr
    rollouts = [json.loads(line) for line in (workdir / "mixed_rollouts.jsonl").read_text("utf-8").splitlines()]
    # 6 readable records: toxidrome skips the bare one, hedge answers all
    assert [r["policy"] for r in rollouts].count("toxidrome") == 5
    assert [r["policy"] for r in rollouts].count("hedge") == 6


def test_run_all_then_evaluate(runs, workdir):
    assert runs["run all"].returncode == 0, runs["run all"].stderr
    rollouts = [json.loads(line) for line in (workdir / "rollouts.jsonl").read_text("utf-8").splitlines()]
    assert len(rollouts) == 6 * 30 and all("<answer>" in r["completion"] for r in rollouts)
    evaluated = runs["evaluate"]
    assert evaluated.returncode == 0, evaluated.stderr
    by_policy = {r["policy"]: r for r in json.loads(evaluated.stdout)}
    assert set(by_policy) == {"toxidrome", "history", "hedge", "majority", "empty", "format_only"}
    assert by_policy["toxidrome"]["mean_reward"] > by_policy["hedge"]["mean_reward"]
    assert by_policy["format_only"]["mean_reward"] == pytest.approx(0.1)


def test_parquet_cases_run_like_jsonl_cases(runs, workdir):
    assert runs["run parquet"].returncode == 0, runs["run parquet"].stderr
    from_parquet = [json.loads(line) for line in (workdir / "pq.jsonl").read_text("utf-8").splitlines()]
    from_jsonl = [json.loads(line) for line in (workdir / "rollouts.jsonl").read_text("utf-8").splitlines()
                  if json.loads(line)["policy"] == "toxidrome"]  # fmt: skip
    assert from_parquet == from_jsonl


def test_demo_ranks_the_policies(runs):
    result = runs["demo json"]
    assert result.returncode == 0, result.stderr
    by_policy = {r["policy"]: r for r in json.loads(result.stdout)}
    assert all(r["n"] == 200 for r in by_policy.values())
    reward = {p: r["mean_reward"] for p, r in by_policy.items()}
    assert reward["toxidrome"] > reward["history"] > reward["hedge"] > reward["format_only"]
    assert reward["toxidrome"] > reward["empty"]
    assert by_policy["hedge"]["metrics"]["micro_f1"] < 0.25
    table = runs["demo table"]
    assert table.returncode == 0 and "micro-F1" in table.stdout and "toxidrome" in table.stdout
    # one line says whether the reward orders the baselines as micro-F1 does (issue 9, item 22)
    assert "Kendall τ between mean reward and micro-F1 across the baselines: +" in " ".join(table.stdout.split())


def test_list_commands(runs):
    tasks, policies = runs["tasks list"], runs["baselines list"]
    assert tasks.returncode == 0 and "toxicology" in tasks.stdout
    assert policies.returncode == 0 and all(p in policies.stdout for p in ("toxidrome", "history", "hedge", "empty"))
