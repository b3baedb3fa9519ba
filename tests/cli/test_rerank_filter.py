"""``medreward rerank`` (best-of-N per group) and ``medreward filter`` (reward threshold): which
records they keep, by hand on the rule-based ``mcq`` preset, against the Python API on the
``toxicology`` preset, errors that never win, ties, empty input, groups that are not consecutive,
user errors (exit 2, a message, no traceback), ``--stats-json``, and that both stream (a group
is written before the input has been read to its end)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from cli_runner import run_all

from medreward import Scorer
from medreward.cli.rerank import BestOfGroups, GroupOrder, RewardAtLeast, group_of
from medreward.errors import InputError
from medreward.records import ScoredRecord, Status

TAGGED = "<think>reasoning</think><answer>{}</answer>"
MCQ = {"answer": "B"}


def _row(rid: str, group: str, kind: str) -> dict:
    """An mcq rollout whose reward is known: R tagged right 1.0, W tagged wrong 0.1, N untagged 0.0,
    A no reference answer (not_applicable), E a reference letter that is not an option (error)."""
    completion = {"R": TAGGED.format("B"), "W": TAGGED.format("C"), "N": "B", "A": TAGGED.format("B"),
                  "E": TAGGED.format("B")}[kind]  # fmt: skip
    reference = {"A": {}, "E": {"answer": "Z", "options": {"A": "x", "B": "y"}}}.get(kind, MCQ)
    return {"id": rid, "group": group, "completion": completion, "reference": reference}


ROWS = [
    _row("a1", "q1", "W"), _row("a2", "q1", "R"), _row("a3", "q1", "E"), _row("a4", "q1", "R"), _row("a5", "q1", "N"),
    _row("b1", "q2", "E"), _row("b2", "q2", "A"),
    _row("c1", "q3", "W"),
    _row("d1", "q4", "E"), _row("d2", "q4", "N"),
]  # fmt: skip


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rerank")
    (path / "mcq.jsonl").write_text(_jsonl(ROWS) + "{not json\n", encoding="utf-8")
    scattered = [ROWS[0], ROWS[7], ROWS[1], ROWS[5], ROWS[3]]  # q1, q3, q1 again, q2, q1 again
    (path / "scattered.jsonl").write_text(_jsonl(scattered), encoding="utf-8")
    (path / "empty.jsonl").write_text("", encoding="utf-8")
    (path / "tox.jsonl").write_text(_jsonl(_toxicology_rows()), encoding="utf-8")
    return path


def _toxicology_rows() -> list[dict]:
    """Eight prompts × four completions, groups from the prompt (no group field)."""
    answers = ["opioids", "opioids, ethanol", "ethanol", "none", "Percocet", "cocaine", "benzodiazepines", "xyz"]
    truths = [["opioids"], ["opioids", "ethanol"], ["ethanol"], [], ["opioids", "acetaminophen"], ["stimulants"]]
    rows = []
    for p in range(8):
        for c in range(4):
            answer = answers[(p * 3 + c) % len(answers)]
            completion = TAGGED.format(answer) if c != 3 else answer  # the fourth: no tags
            rows.append({"id": f"p{p}c{c}", "prompt": f"case {p}", "completion": completion,
                         "reference": {"substances": truths[p % len(truths)]}})  # fmt: skip
    return rows


CLI = {
    "rerank k2": ("rerank", "mcq.jsonl", "--spec", "mcq", "-k", "2", "-o", "k2.jsonl", "--stats-json", "k2.json"),
    "rerank k1": ("rerank", "mcq.jsonl", "--spec", "mcq", "-k", "1", "-o", "k1.jsonl"),
    "rerank k9": ("rerank", "mcq.jsonl", "--spec", "mcq", "--keep", "9", "-o", "k9.jsonl"),
    "rerank tox": ("rerank", "tox.jsonl", "--spec", "toxicology", "-k", "2", "-o", "tox_best.jsonl"),
    "rerank scattered": ("rerank", "scattered.jsonl", "--spec", "mcq", "-k", "1", "--groups", "scattered", "-o", "sc.jsonl"),
    "rerank not consecutive": ("rerank", "scattered.jsonl", "--spec", "mcq", "-k", "1", "-o", "nc.jsonl"),
    "rerank empty": ("rerank", "empty.jsonl", "--spec", "mcq", "-k", "3", "-o", "empty_out.jsonl"),
    "rerank k0": ("rerank", "mcq.jsonl", "--spec", "mcq", "-k", "0"),
    "filter": ("filter", "mcq.jsonl", "--spec", "mcq", "--min", "0.1", "-o", "f.jsonl", "--stats-json", "f.json"),
    "filter stdout": ("filter", "mcq.jsonl", "--spec", "mcq", "--min", "1", "-o", "-"),
    "filter empty": ("filter", "empty.jsonl", "--spec", "mcq", "--min", "0.5", "-o", "empty_f.jsonl"),
    "filter nan": ("filter", "mcq.jsonl", "--spec", "mcq", "--min", "nan"),
    "filter text": ("filter", "mcq.jsonl", "--spec", "mcq", "--min", "high"),
    "filter missing input": ("filter", "nothere.jsonl", "--spec", "mcq", "--min", "0.5"),
}  # fmt: skip


@pytest.fixture(scope="module")
def runs(workdir) -> dict[str, subprocess.CompletedProcess[str]]:
    return run_all(CLI, workdir)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return " ".join(result.stdout.split())


def test_rerank_keeps_the_best_k_of_each_group(runs, workdir):
    summary = _ok(runs["rerank k2"])
    # q1: a2 and a4 (1.0 each) over a1 (0.1) and a5 (0.0); a3 is an error; q2 has no reward at all;
    # q3 has one record (k larger than the group); q4: the untagged 0.0 beats the error
    assert _ids(workdir / "k2.jsonl") == ["a2", "a4", "c1", "d2"]
    assert "kept 4 of 11 scored records (best 2 of each of 4 groups)" in summary
    assert "5 without a reward never kept (4 error, 1 not_applicable)" in summary
    assert "1 record(s) break the rollout contract and have no group: dropped" in summary
    assert "wrote 4 of the 11 scored records to k2.jsonl" in summary
    assert "medreward rerank · spec mcq · 11 records" in summary
    # ties go to the earlier record: a2 and a4 both score 1.0, -k 1 keeps a2
    assert _ids(workdir / "k1.jsonl") == ["a2", "c1", "d2"]
    # -k larger than every group keeps every ok record, in input order
    assert _ids(workdir / "k9.jsonl") == ["a1", "a2", "a4", "a5", "c1", "d2"]


def test_rerank_writes_scored_records(runs, workdir):
    _ok(runs["rerank k2"])
    first = json.loads((workdir / "k2.jsonl").read_text("utf-8").splitlines()[0])
    assert first["id"] == "a2" and first["reward"] == 1.0 and first["status"] == "ok"
    assert first["components"] == {"format": 1.0, "choice": 1.0} and "choice" in first["info"]
    assert first["completion"] == TAGGED.format("B") and first["group"] == "q1"  # the input, unchanged
    stats = json.loads((workdir / "k2.json").read_text("utf-8"))
    assert stats["selection"] == {
        "command": "rerank", "k": 2, "groups": 4, "order": "contiguous", "no_group": 1,
        "scored": 11, "kept": 4, "dropped_without_reward": {"error": 4, "not_applicable": 1},
    }  # fmt: skip
    assert stats["spec"] == "mcq" and stats["statuses"] == {"ok": 6, "not_applicable": 1, "error": 4, "timeout": 0}


def test_rerank_agrees_with_the_python_api(runs, workdir):
    """Groups by prompt (no group field): the best two of each prompt by the API's rewards, ties
    to the earlier record."""
    _ok(runs["rerank tox"])
    rows = _toxicology_rows()
    scored = Scorer("toxicology").score(rows)
    expected = []
    for p in range(8):
        members = [(i, r) for i, r in enumerate(scored) if rows[i]["prompt"] == f"case {p}" and r.status is Status.OK]
        best = sorted(members, key=lambda m: (-m[1].reward, m[0]))[:2]
        expected += [rows[i]["id"] for i, _ in sorted(best)]
    got = [json.loads(line) for line in (workdir / "tox_best.jsonl").read_text("utf-8").splitlines()]
    assert [r["id"] for r in got] == expected and len(expected) == 16
    by_id = {rows[i]["id"]: r.reward for i, r in enumerate(scored)}
    assert [r["reward"] for r in got] == [by_id[i] for i in expected]


def test_groups_that_are_not_consecutive(runs, workdir):
    result = runs["rerank not consecutive"]
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "group 'q1' comes back at record 3 after its rows were written" in message
    assert "--groups scattered" in message
    assert _ids(workdir / "nc.jsonl") == ["a1", "c1"]  # q1's first part and q3, written before q1 came back
    # scattered: any order; q1 = a1 (0.1), a2 (1.0), a4 (1.0) → a2; q3 → c1; q2 → nothing
    summary = _ok(runs["rerank scattered"])
    assert _ids(workdir / "sc.jsonl") == ["c1", "a2"]  # winners in input order
    assert "kept 2 of 5 scored records (best 1 of each of 3 groups)" in summary


def test_filter_keeps_rewards_at_least_min(runs, workdir):
    summary = _ok(runs["filter"])
    assert _ids(workdir / "f.jsonl") == ["a1", "a2", "a4", "c1"]  # 0.1 passes --min 0.1; 0.0 does not
    assert "kept 4 of 11 scored records (reward >= 0.1); 2 below the threshold; 5 without a reward never kept" in summary
    stats = json.loads((workdir / "f.json").read_text("utf-8"))
    assert stats["selection"] == {"command": "filter", "min": 0.1, "below_min": 2, "scored": 11, "kept": 4,
                                  "dropped_without_reward": {"error": 4, "not_applicable": 1}}  # fmt: skip
    to_stdout = runs["filter stdout"]
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert [json.loads(line)["id"] for line in to_stdout.stdout.splitlines()] == ["a2", "a4"]
    assert "filter: kept 2 of 11" in " ".join(to_stdout.stderr.split())  # the summary goes to stderr then


def test_empty_input(runs, workdir):
    assert "kept 0 of 0 scored records (best 3 of each of 0 groups)" in _ok(runs["rerank empty"])
    assert (workdir / "empty_out.jsonl").read_text("utf-8") == ""
    assert "kept 0 of 0 scored records (reward >= 0.5)" in _ok(runs["filter empty"])
    assert (workdir / "empty_f.jsonl").read_text("utf-8") == ""


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("filter nan", "error: --min must be a number, not NaN"),
        ("filter text", "Invalid value for '--min'"),
        ("filter missing input", "input file 'nothere.jsonl' does not exist"),
        ("rerank k0", "Invalid value for '-k'"),
    ],
)
def test_user_errors(runs, name, message):
    result = runs[name]
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# -- the selectors on their own ---------------------------------------------------------------


def _scored(group: str, reward: float | None, n: int = 0) -> ScoredRecord:
    status = Status.OK if reward is not None else Status.ERROR
    return ScoredRecord({"id": f"{group}{n}", "group": group, "completion": "x"}, reward, {}, status)


def test_rerank_holds_one_group_at_a_time():
    """Fed from a generator of 2,000 groups of 8, a group's winner comes out as soon as the next
    group starts: never more than one group plus one record have been read ahead."""
    pulled = 0

    def stream():
        nonlocal pulled
        for g in range(2000):
            for n in range(8):
                pulled += 1
                yield _scored(f"g{g}", (n * 7 + g) % 8 / 8, n)

    best = BestOfGroups(k=1)
    emitted = 0
    for record in best.select(stream()):
        emitted += 1
        assert pulled - 8 * (emitted - 1) <= 8 + 1  # the group just closed, and the record that closed it
        assert record.reward == 7 / 8
    assert emitted == 2000 and best.groups == 2000


def test_filter_streams_record_by_record():
    pulled = 0

    def stream():
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield _scored("g", i / 1000, i)

    for record in RewardAtLeast(0.0).select(stream()):
        assert record.record["id"] == f"g{pulled - 1}"  # nothing read ahead


def test_selector_edge_cases():
    with pytest.raises(InputError, match="-k must be at least 1"):
        BestOfGroups(0)
    with pytest.raises(InputError, match="NaN"):
        RewardAtLeast(float("nan"))
    # errors never win, even against a zero; -inf keeps every record with a reward
    rows = [_scored("a", None, 0), _scored("a", 0.0, 1), _scored("b", None, 2)]
    assert [r.record["id"] for r in BestOfGroups(1).select(rows)] == ["a1"]
    assert [r.record["id"] for r in RewardAtLeast(float("-inf")).select(rows)] == ["a1"]
    # scattered and contiguous agree on consecutive groups, ties included
    rows = [_scored(g, r, n) for n, (g, r) in enumerate([("a", 0.5), ("a", 0.5), ("a", 0.9), ("b", 0.1), ("b", 0.3)])]
    for k in (1, 2, 3):
        assert [r.record["id"] for r in BestOfGroups(k, GroupOrder.scattered).select(rows)] == [
            r.record["id"] for r in BestOfGroups(k).select(rows)
        ]
    assert [r.record["id"] for r in BestOfGroups(2).select(rows)] == ["a0", "a2", "b3", "b4"]
    # the group: the group field, else a hash of the prompt; none for a record that breaks the contract
    assert group_of(_scored("q7", 1.0)) == "q7"
    same = [ScoredRecord({"prompt": "p", "completion": c}, 1.0, {}, Status.OK) for c in ("x", "y")]
    assert group_of(same[0]) == group_of(same[1]) != group_of(ScoredRecord({"prompt": "q", "completion": "x"}, 1.0, {}, Status.OK))
    assert group_of(ScoredRecord({"line": 3, "raw": "{bad"}, None, {}, Status.ERROR)) is None


def test_rerank_streams_from_a_pipe(tmp_path, monkeypatch):
    """The real command (in-process) reading a named pipe, one record per chunk: the winner of a
    group is written while the writer of the pipe still holds the rest of the input back."""
    from typer.testing import CliRunner

    import medreward.cli.score as score_module
    from medreward.cli.app import app

    written: list[str] = []
    fed = threading.Event()

    class Recording:
        def write(self, record):
            written.append(record.record["id"])

        def close(self):
            pass

    monkeypatch.setattr(score_module, "open_output", lambda *a, **k: Recording())
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    waited: list[bool] = []

    def feed():
        with open(fifo, "w", encoding="utf-8") as pipe:
            for g in range(3):
                rows = [_row(f"g{g}-{n}", f"g{g}", kind) for n, kind in enumerate("WRN")]
                pipe.write(_jsonl(rows))
                pipe.flush()
                if g:  # group g has started: group g - 1's winner must be out before more is sent
                    deadline = time.monotonic() + 60
                    while f"g{g - 1}-1" not in written and time.monotonic() < deadline:
                        time.sleep(0.01)
                    waited.append(f"g{g - 1}-1" in written)
        fed.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    result = CliRunner().invoke(app, ["rerank", str(fifo), "-s", "mcq", "-k", "1", "--chunk-size", "1", "-o", "x.jsonl", "-q"])
    feeder.join(timeout=120)
    assert result.exit_code == 0, result.output
    assert fed.is_set() and waited == [True, True]
    assert written == ["g0-1", "g1-1", "g2-1"]
