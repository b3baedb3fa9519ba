"""Input, output and newcomer paths of the real entry point (issue 9, items 15-18, 20, 22):
``--resume`` gives the bytes of an uninterrupted run, ``.gz`` outputs are gzip, Parquet outputs
survive a malformed line after the first row group, a truncated ``.gz`` input is scored up to the
damage and then fails, a BOM and a ``.json`` array are read, ``specs show`` pipes valid TOML,
``--help`` shows flags as flags, and a component module in the working directory is found."""

from __future__ import annotations

import gzip
import json
import subprocess
from pathlib import Path

import pytest
from cli_runner import run_all

from medreward import load_spec, read_records
from medreward.compose.spec import list_presets

GOOD = "<think>pinpoint pupils, apnoea</think><answer>{}</answer>"
ANSWERS = ["opioids", "benzodiazepines", "none", "opioids, ethanol", "cocaine"]
MY_COMPONENT = '''
from medreward.records import ComponentScore
from medreward.rewards.base import RewardComponent


class MyComponent(RewardComponent):
    kind = "mycomp"

    def score_one(self, rollout):
        return ComponentScore.ok(1.0 if "yes" in rollout.completion_text else 0.0)
'''


def _rows(n: int, *, changed_from: int | None = None) -> list[dict]:
    rows = []
    for i in range(n):
        answer = ANSWERS[i % len(ANSWERS)] if changed_from is None or i < changed_from else "stimulants"
        rows.append({"id": f"r{i}", "completion": GOOD.format(answer), "reference": {"substances": ["opioids"]}})
    return rows


def _jsonl(rows: list[dict], *, bad_at: int | None = None) -> str:
    lines = [json.dumps(row) for row in rows]
    if bad_at is not None:
        lines.insert(bad_at, "{not json")
    return "\n".join(lines) + "\n"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli_io")
    (path / "in.jsonl").write_text(_jsonl(_rows(300), bad_at=40), encoding="utf-8")
    # the same number of records, but from record 100 on not the same input
    (path / "other.jsonl").write_text(_jsonl(_rows(300, changed_from=100), bad_at=40), encoding="utf-8")
    (path / "big.jsonl").write_text(_jsonl(_rows(4100), bad_at=4098), encoding="utf-8")
    text = _jsonl(_rows(300)).encode()
    (path / "in.jsonl.gz").write_bytes(gzip.compress(text))
    cut = gzip.compress(text)
    (path / "cut.jsonl.gz").write_bytes(cut[: len(cut) // 2])
    (path / "plain.jsonl").write_bytes(text)
    (path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + text)
    (path / "rows.json").write_text(json.dumps(_rows(300), indent=2), encoding="utf-8")
    (path / "gdpo.toml").write_text(
        'name = "gdpo"\naggregate = "normalize_then_sum"\n[[components]]\nname = "format"\nkind = "format.tags"\n',
        encoding="utf-8",
    )
    (path / "mycomp.py").write_text(MY_COMPONENT, encoding="utf-8")
    (path / "mine.toml").write_text(
        'name = "mine"\n[[components]]\nname = "mine"\nkind = "mycomp:MyComponent"\n', encoding="utf-8"
    )
    (path / "yes_no.jsonl").write_text('{"completion": "yes"}\n{"completion": "no"}\n', encoding="utf-8")
    return path


def _score(*args: str) -> tuple[str, ...]:
    return ("score", *args, "--spec", "toxicology", "-q")


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    done = run_all({
        "full": _score("in.jsonl", "-o", "full.jsonl"),
        "full gz": _score("in.jsonl", "-o", "full.jsonl.gz"),
        "plain": _score("plain.jsonl", "-o", "plain_out.jsonl"),
        "cut gz": _score("cut.jsonl.gz", "-o", "cut_out.jsonl"),
        "bom": _score("bom.jsonl", "-o", "bom_out.jsonl"),
        "json array": _score("rows.json", "-o", "json_out.jsonl"),
        "big parquet": _score("big.jsonl", "-o", "big.parquet"),
        "big jsonl": _score("big.jsonl", "-o", "big_out.jsonl"),
        "generate gz": ("tasks", "generate", "toxicology", "-n", "30", "--seed", "3", "-o", "g.jsonl.gz", "-q"),
        "generate": ("tasks", "generate", "toxicology", "-n", "30", "--seed", "3", "-o", "g.jsonl", "-q"),
        "help root": ("--help",),
        "help score": ("score", "--help"),
        "help generate": ("tasks", "generate", "--help"),
        "help evaluate": ("baselines", "evaluate", "--help"),
    }, workdir)  # fmt: skip
    # what a killed run leaves: cut in the middle of a line, at a line end, nothing but a torn line
    full = (workdir / "full.jsonl").read_bytes()
    middle = len(full) // 2
    (workdir / "part_mid.jsonl").write_bytes(full[: middle + 17])
    (workdir / "part_line.jsonl").write_bytes(full[: full.index(b"\n", middle) + 1])
    (workdir / "part_torn.jsonl").write_bytes(full[:25])
    (workdir / "part_workers.jsonl").write_bytes(full[: middle - 101])
    (workdir / "part_other.jsonl").write_bytes(full[: middle + 17])
    done |= run_all({
        "resume mid": _score("in.jsonl", "-o", "part_mid.jsonl", "--resume"),
        "resume line": _score("in.jsonl", "-o", "part_line.jsonl", "--resume"),
        "resume torn": _score("in.jsonl", "-o", "part_torn.jsonl", "--resume"),
        "resume workers": _score("in.jsonl", "-o", "part_workers.jsonl", "--resume", "--workers", "2", "--chunk-size", "16"),
        "resume new": _score("in.jsonl", "-o", "fresh.jsonl", "--resume"),
        "resume other input": _score("other.jsonl", "-o", "part_other.jsonl", "--resume"),
        "resume other spec": ("score", "in.jsonl", "-s", "mcq", "-o", "part_other.jsonl", "--resume"),
        "resume gdpo": ("score", "in.jsonl", "-s", "gdpo.toml", "-o", "gdpo.jsonl", "--resume"),
        "resume parquet": _score("in.jsonl", "-o", "x.parquet", "--resume"),
        "resume gz": _score("in.jsonl", "-o", "x.jsonl.gz", "--resume"),
        "resume stdout": _score("in.jsonl", "-o", "-", "--resume"),
        "resume longer output": _score("rows.json", "-o", "big_out.jsonl", "--resume"),
    }, workdir)  # fmt: skip
    done |= run_all({f"show {name}": ("specs", "show", name) for name in list_presets()}, workdir, env={"COLUMNS": "40"})
    done |= run_all({
        "cwd component": ("score", "yes_no.jsonl", "-s", "mine.toml", "-o", "mine.jsonl", "-q"),
        "cwd component workers": ("score", "yes_no.jsonl", "-s", "mine.toml", "-o", "-", "-q", "--workers", "2"),
    }, workdir, python_flags=("-P",))  # fmt: skip
    return done


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.parametrize("name", ["resume mid", "resume line", "resume torn", "resume workers"])
def test_resume_writes_the_bytes_of_an_uninterrupted_run(runs, workdir, name):
    _ok(runs["full"])
    result = _ok(runs[name])
    part = workdir / f"part_{name.split()[1]}.jsonl"
    assert part.read_bytes() == (workdir / "full.jsonl").read_bytes()
    summary = " ".join(result.stdout.split())
    if name == "resume torn":  # no complete record to keep: the torn line was dropped, all scored
        assert "wrote 301 scored records to part_torn.jsonl" in summary
    else:
        assert "resumed after the" in summary


def test_resume_says_how_much_was_kept_and_scored(runs, workdir):
    full = (workdir / "full.jsonl").read_bytes()
    kept = full[: full.index(b"\n", len(full) // 2) + 1].count(b"\n")
    summary = " ".join(_ok(runs["resume line"]).stdout.split())
    assert f"resumed after the {kept} records already in part_line.jsonl; wrote {301 - kept} more scored records" in summary


def test_resume_without_an_output_yet_is_a_plain_run(runs, workdir):
    _ok(runs["resume new"])
    assert (workdir / "fresh.jsonl").read_bytes() == (workdir / "full.jsonl").read_bytes()


RESUME_REFUSALS = {
    "resume other input": "cannot resume: scored record 150 in 'part_other.jsonl' is not the score of record 150 of 'other.jsonl'",
    "resume other spec": "was scored with components ['format', 'substances'], but this spec has ['format', 'choice']",
    "resume gdpo": "cannot resume with a spec whose aggregate is 'normalize_then_sum'",
    "resume parquet": "cannot resume 'x.parquet': a Parquet file is only readable once it was closed",
    "resume gz": "cannot resume 'x.jsonl.gz': a gzip stream cut by a kill cannot be appended to",
    "resume stdout": "--resume needs an output file",
    "resume longer output": "'big_out.jsonl' holds 4101 scored records but 'rows.json' has only 300",
}


@pytest.mark.parametrize("name", list(RESUME_REFUSALS))
def test_resume_refuses_what_it_cannot_continue(runs, workdir, name):
    result = runs[name]
    assert result.returncode == 2, result.stdout + result.stderr
    assert RESUME_REFUSALS[name] in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr
    if name == "resume other input":  # refused before anything was changed
        full = (workdir / "full.jsonl").read_bytes()
        assert (workdir / "part_other.jsonl").read_bytes() == full[: len(full) // 2 + 17]


def test_gz_outputs_are_gzip(runs, workdir):
    _ok(runs["full gz"])
    assert gzip.decompress((workdir / "full.jsonl.gz").read_bytes()) == (workdir / "full.jsonl").read_bytes()
    _ok(runs["generate gz"]), _ok(runs["generate"])
    assert gzip.decompress((workdir / "g.jsonl.gz").read_bytes()) == (workdir / "g.jsonl").read_bytes()
    assert list(read_records(workdir / "g.jsonl.gz")) == _lines(workdir / "g.jsonl")


def test_a_truncated_gz_is_scored_up_to_the_damage_then_fails(runs, workdir):
    result = runs["cut gz"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    written = _lines(workdir / "cut_out.jsonl")
    stderr = " ".join(result.stderr.split())
    assert "'cut.jsonl.gz': read failed after line" in stderr and "Compressed file ended" in stderr
    assert f"the {len(written)} record(s) read before it were scored and written to cut_out.jsonl" in stderr
    assert 0 < len(written) < 300
    assert written == _lines(workdir / "plain_out.jsonl")[: len(written)]
    assert f"{len(written)} records" in " ".join(result.stdout.split())  # the summary of what was scored


def test_a_bom_and_a_json_array_are_read_as_records(runs, workdir):
    expected = _lines(workdir / "plain_out.jsonl")
    _ok(runs["bom"]), _ok(runs["json array"])
    assert _lines(workdir / "bom_out.jsonl") == expected and expected[0]["status"] == "ok"
    assert _lines(workdir / "json_out.jsonl") == expected


def test_parquet_output_survives_a_malformed_line_after_the_first_row_group(runs, workdir):
    _ok(runs["big parquet"]), _ok(runs["big jsonl"])
    back = list(read_records(workdir / "big.parquet"))
    assert back == _lines(workdir / "big_out.jsonl")
    assert back[4098]["raw"] == "{not json" and back[4098]["status"] == "error"


@pytest.mark.parametrize("name", list_presets())
def test_specs_show_pipes_toml_that_loads_as_the_same_spec(runs, workdir, name):
    result = _ok(runs[f"show {name}"])
    path = workdir / f"shown_{name}.toml"
    path.write_text(result.stdout, encoding="utf-8")
    shown, preset = load_spec(path), load_spec(name)
    assert shown == preset and shown.diff(preset) == []
    assert "\x1b[" not in result.stdout  # no colour codes in a pipe


@pytest.mark.parametrize("name", ["help root", "help score", "help generate", "help evaluate"])
def test_help_shows_flags_without_a_bool_type(runs, name):
    result = _ok(runs[name])
    assert "--help" in result.stdout and "<bool>" not in result.stdout
    if name == "help score":
        assert "--quiet" in result.stdout and "--resume" in result.stdout and "<int" in result.stdout


def test_a_component_module_in_the_working_directory_is_found(runs, workdir):
    """``-P`` keeps the working directory off ``sys.path``, as for the installed console script."""
    _ok(runs["cwd component"])
    assert [(r["completion"], r["reward"]) for r in _lines(workdir / "mine.jsonl")] == [("yes", 1.0), ("no", 0.0)]
    in_workers = [json.loads(line) for line in _ok(runs["cwd component workers"]).stdout.splitlines()]
    assert [r["reward"] for r in in_workers] == [1.0, 0.0]


def test_the_progress_total_is_estimated_from_bytes_read(tmp_path):
    """A file too large to count (or compressed) still gets a progress total: records read over
    the fraction of the file's bytes read."""
    from rich.progress import Progress

    from medreward.cli.score import _progress_updater
    from medreward.io import GuardedRecords

    import random

    rng = random.Random(0)  # text that compresses like real completions, not like one repeated line
    rows = [{"id": i, "completion": f"{rng.getrandbits(400):x}"} for i in range(20000)]
    path = tmp_path / "many.jsonl.gz"
    path.write_bytes(gzip.compress(_jsonl(rows).encode()))
    records = GuardedRecords(read_records(path))
    progress = Progress(disable=True)
    task = progress.add_task("score", total=None)
    advance = _progress_updater(progress, task, records, estimate=True)
    for _ in range(8000):
        next(records)
    advance(8000)
    [state] = progress.tasks
    assert state.completed == 8000 and state.total == pytest.approx(20000, rel=0.15)
