"""Streaming readers and writers: JSONL and Parquet, malformed lines, hostile strings."""

from __future__ import annotations

import gzip
import json

import pytest

from medreward import BadRecord, InputError, Scorer, Status, open_writer, read_records

FORMAT_ONLY = {"name": "fmt", "components": [{"name": "format", "kind": "format.tags"}]}


def write_lines(path, lines):
    path.write_bytes(b"".join(line if isinstance(line, bytes) else line.encode() for line in lines))


def test_jsonl_malformed_lines_reported_with_line_numbers(tmp_path):
    path = tmp_path / "in.jsonl"
    write_lines(path, [
        json.dumps({"id": "a", "completion": "<think>x</think><answer>y</answer>"}) + "\n",
        "{not json\n",
        "\n",
        "[1, 2]\n",
        b"\xff\xfe broken utf8\n",
        json.dumps({"id": "b", "completion": "plain"}) + "\n",
    ])
    items = list(read_records(path))
    assert [type(i).__name__ for i in items] == ["dict", "BadRecord", "BadRecord", "BadRecord", "dict"]
    assert [i.line for i in items if isinstance(i, BadRecord)] == [2, 4, 5]
    assert "invalid JSON" in items[1].error and "expected a JSON object" in items[2].error
    assert "UTF-8" in items[3].error
    scored = Scorer(FORMAT_ONLY).score(items)
    assert [r.status for r in scored] == [Status.OK, Status.ERROR, Status.ERROR, Status.ERROR, Status.OK]
    assert scored[1].record == {"line": 2, "raw": "{not json"}


def test_gzip_jsonl(tmp_path):
    path = tmp_path / "in.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write(json.dumps({"completion": "x"}) + "\n")
    assert list(read_records(path)) == [{"completion": "x"}]


@pytest.mark.parametrize("name, message", [
    ("missing.jsonl", "does not exist"),
    ("data.csv", "cannot tell the format"),
])
def test_bad_paths(tmp_path, name, message):
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text("a,b\n")
    with pytest.raises(InputError, match=message):
        list(read_records(path))


def test_directory_is_rejected(tmp_path):
    with pytest.raises(InputError, match="directory"):
        read_records(tmp_path)


def test_jsonl_writer_keeps_lone_surrogates_as_escapes(tmp_path):
    scored = Scorer(FORMAT_ONLY).score([{"completion": "bad \ud800 text", "note": "\ud83d"}])
    path = tmp_path / "out.jsonl"
    with open_writer(path) as writer:
        for record in scored:
            writer.write(record)
    [back] = [json.loads(line) for line in path.read_text().splitlines()]
    assert back["completion"] == "bad \ud800 text"  # nothing lost: the escape decodes back
    assert back["status"] == "ok"


def test_parquet_roundtrip(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [
        {"id": str(i), "prompt": [{"role": "user", "content": f"q{i}"}],
         "completion": "<think>r</think><answer>a</answer>" if i % 2 else "none"}
        for i in range(10)
    ]
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src, row_group_size=3)
    items = list(read_records(src))
    assert [i["id"] for i in items] == [str(i) for i in range(10)]
    out = tmp_path / "out.parquet"
    with open_writer(out) as writer:
        for record in Scorer(FORMAT_ONLY, chunk_size=4).iter_score(items):
            writer.write(record)
    table = pq.read_table(out).to_pylist()
    assert len(table) == 10
    assert [r["reward"] for r in table] == [0.0 if i % 2 == 0 else 1.0 for i in range(10)]
    assert table[0]["components"] == {"format": 0.0}
    assert json.loads(table[3]["prompt"]) == [{"role": "user", "content": "q3"}]


def test_streaming_reads_lazily(tmp_path):
    """The reader is a generator: a file is not parsed before records are asked for."""
    path = tmp_path / "in.jsonl"
    write_lines(path, [json.dumps({"completion": str(i)}) + "\n" for i in range(1000)])
    iterator = read_records(path)
    first = next(iter(iterator))
    assert first == {"completion": "0"}


def test_parquet_written_by_medreward_reads_back_as_it_was_written(tmp_path):
    """Nested fields (a conversation, the reference, info) come back as objects, not JSON text,
    so a Parquet file of rollouts or scored records can be scored again."""
    rows = [
        {"id": "a", "prompt": [{"role": "user", "content": "q"}], "completion": "<answer>opioids</answer>",
         "reference": {"substances": ["opioids"]}, "note": None, "n": 1},
        {"id": "b", "prompt": "a plain prompt", "completion": '["looks", "like", "json"]',
         "reference": {"substances": []}, "note": "kept", "n": 2},
    ]  # fmt: skip
    path = tmp_path / "rollouts.parquet"
    with open_writer(path) as writer:
        for row in rows:
            writer.write(row)
    assert list(read_records(path)) == rows
    scored = Scorer("toxicology").score(read_records(path))
    assert [r.status.value for r in scored] == ["ok", "ok"]
    assert scored[0].reward == 0.1 * 0 + 0.9 * 1.0  # no <think>: format 0, the label is right

    # scored records survive the round trip too (info is a nested dict)
    out = tmp_path / "scored.parquet"
    with open_writer(out) as writer:
        for record in scored:
            writer.write(record)
    back = list(read_records(out))
    assert [b["info"] for b in back] == [r.info for r in scored]
    assert [b["components"] for b in back] == [r.components for r in scored]


def test_parquet_field_that_turns_nested_after_the_first_batch_reads_back_as_an_object(tmp_path):
    from medreward.io.writers import _ParquetWriter

    writer = _ParquetWriter(tmp_path / "late.parquet", batch_rows=2)
    for i, extra in enumerate(["plain", "plain", {"now": "nested"}]):
        writer.write({"id": str(i), "completion": "x", "extra": extra})
    writer.close()
    back = list(read_records(tmp_path / "late.parquet"))
    assert [b["extra"] for b in back] == ["plain", "plain", {"now": "nested"}]  # nothing lost, not even the type


def test_gz_output_is_gzip_and_reads_back(tmp_path):
    """``-o out.jsonl.gz`` used to write plain text under a .gz name (issue 9, item 17)."""
    rows = [{"id": str(i), "completion": f"<answer>{i}</answer>", "note": "é \ud800"} for i in range(50)]
    paths = [tmp_path / "a.jsonl.gz", tmp_path / "b.JSONL.GZ"]
    for path in paths:
        with open_writer(path) as writer:
            for row in rows:
                writer.write(row)
    raw = paths[0].read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # the gzip magic number
    text = gzip.decompress(raw).decode("utf-8")
    assert [json.loads(line) for line in text.splitlines()] == rows
    assert list(read_records(paths[0])) == rows
    assert paths[1].read_bytes() == raw  # no file name or time stamp in the header: same rows, same bytes
