"""Scoring on a real local Ray cluster (2 CPUs) equals in-process scoring, record for record.

Each test that scores on Ray starts a pool of actors (seconds on 2 cores), so the cases are packed:
one input file holds records with and without ids, malformed lines, a blank line and a byte-order
mark, and small batches spread it over both actors."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medreward import Scorer
from medreward.cli.app import app
from medreward.errors import InputError
from medreward.io import open_writer, read_records
from medreward.vocab import load_vocabulary

pytestmark = pytest.mark.usefixtures("ray_cluster")

BATCH = 64  # several batches per actor
CLASSES = list(load_vocabulary("toxicology").ids)


def toxicology_records(n: int) -> list[dict]:
    out = []
    for i in range(n):
        truth = CLASSES[i % len(CLASSES)]
        said = truth if i % 3 else CLASSES[(i + 1) % len(CLASSES)]
        completion = f"<think>case {i}</think><answer>{said}</answer>" if i % 5 else f"it is {said}"
        record = {"prompt": f"case {i}", "completion": completion, "reference": {"substances": [truth]}, "n": i}
        if i % 2 == 0:
            record = {"id": f"r{i}", **record}
        out.append(record)
    out[7] = {"id": "no-completion", "prompt": "x", "reference": {"substances": ["opioids"]}}
    out[11] = {"id": "numeric", "completion": 7, "reference": {"substances": ["opioids"]}}
    out[13] = {"completion": "<answer>opioids</answer>", "reference": {}}  # not_applicable
    out[17] = {"completion": "<answer>opioids</answer>", "reference": {"substances": ["not-a-class"]}}  # data bug
    return out


def mcq_records(n: int) -> list[dict]:
    letters = "ABCD"
    out = []
    for i in range(n):
        answer = letters[i % 4]
        said = answer if i % 3 else letters[(i + 1) % 4]
        record = {
            "prompt": f"question {i}",
            "completion": f"<think>reasoning {i}</think><answer>{said}</answer>",
            "reference": {"answer": answer, "options": {k: f"option {k}" for k in letters}},
        }
        if i % 2:
            record["id"] = i  # an integer id, turned into a string
        out.append(record)
    out[5] = {"completion": "<answer>Z</answer>", "reference": {"answer": "Q", "options": ["a", "b"]}}
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    """Records plus what a real file holds: a BOM, a blank line, malformed lines."""
    lines = [json.dumps(r).encode() for r in records]
    lines[0] = b"\xef\xbb\xbf" + lines[0]
    lines[40:40] = [b"{not json", b"", b"[1, 2]", b'{"completion": "caf\xe9"}']
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def in_process(source: Path, output: Path, spec: str) -> Scorer:
    """What ``medreward score SOURCE --spec SPEC -o OUTPUT`` does in this process."""
    scorer = Scorer(spec, chunk_size=BATCH)
    with open_writer(output, components=scorer.spec.component_names) as writer:
        for record in scorer.iter_score(read_records(source)):
            writer.write(record)
    return scorer


def assert_same_stats(got, expected) -> None:
    assert got.n == expected.n
    assert got.statuses == expected.statuses
    assert math.isclose(got.reward_sum, expected.reward_sum, rel_tol=1e-9)
    for name, comp in expected.components.items():
        assert got.components[name].counts == comp.counts
        assert math.isclose(got.components[name].total, comp.total, rel_tol=1e-9)


@pytest.mark.parametrize("spec, make", [("toxicology", toxicology_records), ("mcq", mcq_records)])
def test_jsonl_equals_in_process_scoring_byte_for_byte(tmp_path, spec, make):
    from medreward.distributed import score_dataset

    source = write_jsonl(tmp_path / "in.jsonl", make(300))
    expected = in_process(source, tmp_path / "expected.jsonl", spec)
    stats = score_dataset(source, spec, tmp_path / "ray.jsonl", batch_size=BATCH, num_workers=2)

    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "expected.jsonl").read_bytes()
    assert_same_stats(stats, expected.stats)
    written = [json.loads(line) for line in (tmp_path / "ray.jsonl").read_text().splitlines()]
    assert len(written) == 300 + 3  # the blank line is skipped, the three malformed lines are error records
    assert [r["line"] for r in written if "raw" in r] == [41, 43, 44]
    assert stats.statuses["error"] >= 4 and stats.statuses["ok"] > 150


def test_parquet_in_and_out_equals_in_process(tmp_path):
    from medreward.distributed import score_dataset

    source = tmp_path / "in.parquet"
    with open_writer(source) as writer:  # nested reference objects become a JSON-text column
        for record in toxicology_records(300):
            writer.write(record)
    expected = in_process(source, tmp_path / "expected.parquet", "toxicology")
    stats = score_dataset(source, "toxicology", tmp_path / "ray.parquet", batch_size=BATCH, num_workers=2)

    got, want = list(read_records(tmp_path / "ray.parquet")), list(read_records(tmp_path / "expected.parquet"))
    assert got == want
    assert len(got) == 300
    assert [r.get("n") for r in got] == [r.get("n") for r in want]  # input order
    assert_same_stats(stats, expected.stats)


def test_a_ray_dataset_scored_unordered_is_keyed_by_id(ray_cluster):
    from medreward.distributed import score_dataset

    # a Dataset's rows share one Arrow schema (a field a row lacks reads back as null), so these
    # records all have the same fields and types; mixed records are for files (tests above)
    records = [{**r, "id": f"x{i}"} for i, r in enumerate(toxicology_records(220)) if i not in (7, 11, 13, 17)][:200]
    expected = {r.record["id"]: r.to_dict() for r in Scorer("toxicology").score(records)}
    got: list[dict] = []
    stats = score_dataset(ray_cluster.data.from_items(records), "toxicology", batch_size=32, keep_order=False,
                          on_record=got.append)  # fmt: skip

    assert len(got) == 200 and len({r["id"] for r in got}) == 200
    assert {r["id"]: r for r in got} == expected
    assert stats.n == 200


def test_cli_ray_writes_what_the_in_process_cli_writes(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", toxicology_records(150))
    runner = CliRunner()
    plain = runner.invoke(app, ["score", str(source), "-s", "toxicology", "-o", str(tmp_path / "plain.jsonl"),
                                "--stats-json", str(tmp_path / "plain.json"), "-q"])  # fmt: skip
    on_ray = runner.invoke(app, ["score", str(source), "-s", "toxicology", "--ray", "-w", "2", "-q",
                                 "-o", str(tmp_path / "ray.jsonl"), "--stats-json", str(tmp_path / "ray.json")])  # fmt: skip

    assert plain.exit_code == 0, plain.output
    assert on_ray.exit_code == 0, on_ray.output
    assert (tmp_path / "ray.jsonl").read_bytes() == (tmp_path / "plain.jsonl").read_bytes()
    want, got = json.loads((tmp_path / "plain.json").read_text()), json.loads((tmp_path / "ray.json").read_text())
    for key in ("spec", "n", "statuses", "backends", "interrupted"):
        assert got[key] == want[key], key
    assert math.isclose(got["reward_mean"], want["reward_mean"], rel_tol=1e-9)
    for name, comp in want["components"].items():
        assert got["components"][name]["statuses"] == comp["statuses"]
    assert "scored on Ray" in on_ray.output
    assert "line 41: invalid JSON" in on_ray.output  # the first errors are in the summary


def test_a_worker_killed_mid_job_is_retried_without_losses_or_duplicates(tmp_path):
    from medreward.distributed import score_dataset

    marker = tmp_path / "killed"
    spec = {"name": "kills", "components": [{"name": "k", "kind": "ray_faults:KillsItsWorker"}]}
    records = [{"id": f"k{i}", "completion": f"kill {marker}" if i == 150 else f"fine {i}"} for i in range(400)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    stats = score_dataset(source, spec, tmp_path / "out.jsonl", batch_size=50, num_workers=2)

    assert marker.exists()  # an actor did die (its pid is in the marker)
    ids = [json.loads(line)["id"] for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert ids == [r["id"] for r in records]  # complete, in order, no duplicates
    assert stats.n == 400 and stats.statuses["ok"] == 400  # the lost batch's stats are not counted twice


def test_a_read_failure_is_a_message_after_the_records_before_it(tmp_path):
    from medreward.distributed import score_dataset

    source = tmp_path / "in.jsonl.gz"
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in toxicology_records(2000)).encode())
    source.write_bytes(data[: len(data) // 2])  # a truncated gzip stream
    with pytest.raises(InputError, match="scoring on Ray failed after"):
        score_dataset(source, "toxicology", tmp_path / "out.jsonl", num_workers=1)


def test_a_dataset_read_by_ray_itself_does_not_stall_behind_the_actors(ray_cluster, tmp_path):
    """Ray's read_parquet lists files in a task that needs a whole CPU: by default a dataset gets
    one actor fewer than the cluster's CPUs, so that task runs and the job finishes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from medreward.distributed import score_dataset

    records = [{**r, "id": f"p{i}"} for i, r in enumerate(toxicology_records(120)) if i not in (7, 11, 13, 17)]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "plain.parquet")  # reference: an Arrow struct
    expected = [r.to_dict() for r in Scorer("toxicology").score(records)]
    got: list[dict] = []
    stats = score_dataset(ray_cluster.data.read_parquet(str(tmp_path / "plain.parquet")), "toxicology",
                          batch_size=32, on_record=got.append)  # fmt: skip

    assert got == expected
    assert stats.n == len(records)
