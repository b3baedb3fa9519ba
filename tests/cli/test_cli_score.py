"""``medreward score`` and ``medreward specs`` through the real entry point
(``python -m medreward.cli.app``): results, the summary, malformed lines, worker processes, and
every user-error path (exit code 2, a message that names the problem, never a traceback).
The invocations run as concurrent subprocesses to keep this fast."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_all

from medreward import Scorer
from medreward.io import open_writer

GOOD = "<think>pinpoint pupils, apnoea</think><answer>{}</answer>"


def _rollouts() -> list[dict]:
    answers = ["opioids", "opioids, ethanol", "benzodiazepines", "none", "Percocet", "cocaine"]
    truths = [["opioids"], ["opioids"], ["ethanol"], [], ["opioids", "acetaminophen"], ["stimulants"]]
    rows = [
        {"id": f"r{i}", "completion": GOOD.format(a), "reference": {"substances": t}}
        for i, (a, t) in enumerate(zip(answers * 5, truths * 5))
    ]
    rows.append({"id": "no-tags", "completion": "opioids", "reference": {"substances": ["opioids"]}})
    return rows




@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("score")
    rows = _rollouts()
    with open_writer(path / "rollouts.jsonl") as writer:
        for row in rows:
            writer.write(row)
    with open_writer(path / "rollouts.parquet") as writer:
        for row in rows:
            writer.write(row)
    with gzip.open(path / "rollouts.jsonl.gz", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    lines = (path / "rollouts.jsonl").read_text("utf-8").splitlines()
    # line 3 is not JSON, line 5 is not an object, line 6 has no completion, line 7 is not UTF-8
    mixed = [*lines[:2], "{not json", lines[2], "[1, 2]", json.dumps({"id": "bare"})]
    (path / "mixed.jsonl").write_bytes(("\n".join(mixed) + "\n").encode() + b"\xff\xfe bad bytes\n" + lines[3].encode() + b"\n")
    (path / "garbage.jsonl.gz").write_bytes(b"this is not gzip")
    (path / "garbage.parquet").write_bytes(b"PAR1 not really")
    (path / "a_folder").mkdir()
    specs = {
        "custom.toml": 'name = "custom"\n[[components]]\nname = "format"\nkind = "format.tags"\nweight = 1.0\n',
        "bad_weight.toml": 'name = "x"\n[[components]]\nname = "f"\nkind = "format.tags"\nweight = "heavy"\n',
        "bad_kind.toml": 'name = "x"\n[[components]]\nname = "f"\nkind = "no.such.kind"\n',
        "bad_param.toml": 'name = "x"\n[[components]]\nname = "f"\nkind = "format.tags"\nparams = { colour = "red" }\n',
        "bad_toml.toml": 'name = "x\n',
        "unknown_field.toml": 'name = "x"\nagregate = "weighted_sum"\n[[components]]\nname = "f"\nkind = "format.tags"\n',
    }
    for name, text in specs.items():
        (path / name).write_text(text, encoding="utf-8")
    return path


# one invocation per distinct error path: (arguments, what the message must say)
ERROR_CASES = {
    "missing input": (("score", "missing.jsonl", "--spec", "toxicology"), "input file 'missing.jsonl' does not exist"),
    "input is a folder": (("score", "a_folder", "--spec", "toxicology"), "is a directory, not a file"),
    "unreadable gzip": (("score", "garbage.jsonl.gz", "--spec", "toxicology"), "'garbage.jsonl.gz': cannot be read"),
    "unreadable parquet": (("score", "garbage.parquet", "--spec", "toxicology"), "cannot read 'garbage.parquet' as Parquet"),
    "unknown spec": (("score", "rollouts.jsonl", "--spec", "toxicolgy"),
                     "unknown spec 'toxicolgy': not a file, and not a preset (presets: calculator, calculator_consistent, healthbench, icd_coding, mcq, mcq_consistent, medix, medix_semantic, toxicology, toxicology_consistent)"),
    "bad weight": (("score", "rollouts.jsonl", "--spec", "bad_weight.toml"), "bad_weight.toml: components.0.weight: Input should be a valid number"),
    "bad kind": (("score", "rollouts.jsonl", "--spec", "bad_kind.toml"), "unknown component kind 'no.such.kind'; known kinds:"),
    "bad param": (("score", "rollouts.jsonl", "--spec", "bad_param.toml"), "bad_param.toml: components.0.params.colour: unknown parameter"),
    "bad toml": (("score", "rollouts.jsonl", "--spec", "bad_toml.toml"), "bad_toml.toml: invalid TOML"),
    "unknown spec field": (("score", "rollouts.jsonl", "--spec", "unknown_field.toml"), "unknown_field.toml: agregate:"),
    "output is input": (("score", "rollouts.jsonl", "--spec", "toxicology", "-o", "rollouts.jsonl"), "output path is the input file"),
    "negative workers": (("score", "rollouts.jsonl", "--spec", "toxicology", "--workers", "-1"), "Invalid value for '--workers'"),
    "unknown preset to show": (("specs", "show", "toxicolgy"), "unknown spec 'toxicolgy'"),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    commands = {name: args for name, (args, _) in ERROR_CASES.items()}
    commands |= {
        "score": ("score", "rollouts.jsonl", "--spec", "toxicology", "-o", "scored.jsonl"),
        "score workers": ("score", "rollouts.jsonl", "-s", "toxicology", "-o", "scored_w.jsonl", "--workers", "2",
                          "--chunk-size", "8"),
        "score parquet": ("score", "rollouts.parquet", "--spec", "toxicology", "-o", "scored_pq.jsonl"),
        "score gzip": ("score", "rollouts.jsonl.gz", "--spec", "toxicology", "-o", "scored_gz.parquet"),
        "score mixed": ("score", "mixed.jsonl", "--spec", "toxicology", "-o", "scored_mixed.jsonl"),
        "score to stdout": ("score", "rollouts.jsonl", "--spec", "custom.toml", "-o", "-"),
        "score without output": ("score", "rollouts.jsonl", "--spec", "toxicology", "--quiet"),
        "specs": ("specs",),
        "specs show": ("specs", "show", "toxicology"),
    }  # fmt: skip
    return run_all(commands, workdir)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_user_errors_exit_2_with_a_message(runs, name):
    result = runs[name]
    assert result.returncode == 2, result.stdout + result.stderr
    assert ERROR_CASES[name][1] in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_score_writes_what_the_api_computes(runs, workdir):
    result = runs["score"]
    assert result.returncode == 0, result.stderr
    scored = _read_jsonl(workdir / "scored.jsonl")
    expected = Scorer("toxicology").score(_rollouts())
    assert [r["id"] for r in scored] == [r.record["id"] for r in expected]
    assert [r["reward"] for r in scored] == [r.reward for r in expected]
    assert [r["components"] for r in scored] == [r.components for r in expected]
    assert all(r["status"] == "ok" for r in scored)
    # the input fields come back unchanged next to the scores
    assert scored[0]["completion"] == GOOD.format("opioids") and scored[0]["reference"] == {"substances": ["opioids"]}
    # the summary: reward mean ± std, per-component rows, status counts, the slowest component
    summary = " ".join(result.stdout.split())
    mean = sum(r.reward for r in expected) / len(expected)
    assert f"{mean:.4f} ±" in summary
    assert "format" in summary and "substances" in summary and "31 / 0 / 0 / 0" in summary
    assert "slowest component:" in summary and f"wrote {len(expected)} scored records to scored.jsonl" in summary


def test_workers_parquet_and_gzip_give_the_same_scores(runs, workdir):
    for name in ("score workers", "score parquet", "score gzip"):
        assert runs[name].returncode == 0, runs[name].stderr
    baseline = _read_jsonl(workdir / "scored.jsonl")
    assert _read_jsonl(workdir / "scored_w.jsonl") == baseline
    assert _read_jsonl(workdir / "scored_pq.jsonl") == baseline
    import pyarrow.parquet as pq

    table = pq.read_table(workdir / "scored_gz.parquet")
    assert table.column("reward").to_pylist() == [r["reward"] for r in baseline]
    assert table.column("status").to_pylist() == ["ok"] * len(baseline)


def test_malformed_lines_are_reported_and_the_rest_is_scored(runs, workdir):
    result = runs["score mixed"]
    assert result.returncode == 0, result.stderr  # bad lines are not bad input as a whole
    summary = " ".join(result.stdout.split())
    assert "4 record(s) with errors" in summary
    assert "line 3: invalid JSON" in summary and "line 5: expected a JSON object, got list" in summary
    assert "record has no 'completion' field" in summary and "line 7: not valid UTF-8" in summary
    scored = _read_jsonl(workdir / "scored_mixed.jsonl")
    assert [r["status"] for r in scored] == ["ok", "ok", "error", "ok", "error", "error", "error", "ok"]
    # a malformed line keeps its number and its text, so nothing is lost
    assert scored[2]["line"] == 3 and scored[2]["raw"] == "{not json" and scored[2]["reward"] is None
    assert scored[5]["id"] == "bare" and scored[5]["components"] == {"format": None, "substances": None}
    assert [r["id"] for r in scored if r["status"] == "ok"] == ["r0", "r1", "r2", "r3"]


def test_stdout_output_is_jsonl_and_the_summary_goes_to_stderr(runs):
    result = runs["score to stdout"]
    assert result.returncode == 0, result.stderr
    scored = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(scored) == 31 and scored[-1]["id"] == "no-tags" and scored[-1]["reward"] == 0.0
    assert all(r["components"].keys() == {"format"} for r in scored)
    assert "medreward score · spec custom" in result.stderr


def test_without_output_the_summary_says_nothing_was_saved(runs):
    result = runs["score without output"]
    assert result.returncode == 0, result.stderr
    assert "scores were not saved" in result.stdout


def test_specs_lists_and_shows_presets(runs):
    listed, shown = runs["specs"], runs["specs show"]
    assert listed.returncode == 0 and shown.returncode == 0, listed.stderr + shown.stderr
    assert all(name in listed.stdout for name in ("calculator", "icd_coding", "mcq", "toxicology"))
    assert 'kind = "multilabel"' in shown.stdout and 'vocabulary = "toxicology"' in shown.stdout
