"""Parquet output that later rows cannot break (issue 9, item 18): the scored columns are typed
from the spec before any record is seen, an input field whose type is not stable is kept exactly
(JSON text, or the per-row overflow column), and every record reads back as it was written."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from medreward import BadRecord, Scorer, open_writer, read_records
from medreward.io.writers import OVERFLOW_COLUMN, _ParquetWriter

GOOD = "<think>pinpoint pupils</think><answer>opioids</answer>"


def _write(path, records, **options):
    with open_writer(path, **options) as writer:
        for record in records:
            writer.write(record)


def test_a_malformed_line_after_the_first_4096_rows_is_written(tmp_path):
    lines = [json.dumps({"id": f"r{i}", "completion": GOOD, "reference": {"substances": ["opioids"]}}) for i in range(4100)]
    lines.insert(4098, "{not json")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    scorer = Scorer("toxicology")
    scored = scorer.score(read_records(src))
    out = tmp_path / "out.parquet"
    _write(out, scored, components=scorer.spec.component_names)  # used to raise "records gained fields"
    back = list(read_records(out))
    assert back == [r.to_dict() for r in scored]
    assert back[4098]["line"] == 4099 and back[4098]["raw"] == "{not json" and back[4098]["status"] == "error"
    assert "id" not in back[4098] and "line" not in back[4097]  # fields a record lacked stay absent
    table = pq.read_table(out)
    assert table.schema.field("reward").type == pa.float64() and table.num_rows == 4101
    assert table.column(OVERFLOW_COLUMN).null_count == 4100  # only the odd row needed it


def test_a_field_whose_type_changes_mid_file_is_kept_exactly(tmp_path):
    rows = [
        {"id": "a", "completion": "x", "n": 1, "meta": "plain", "flag": True, "score": 0.5, "tags": ["a"]},
        {"id": "b", "completion": "x", "n": 2, "meta": "plain", "flag": False, "score": 1.5, "tags": []},
        # after the first batch: every field changes type
        {"id": 3, "completion": [{"role": "assistant", "content": "y"}], "n": "three", "meta": {"now": "nested"},
         "flag": 1, "score": 2, "tags": "t"},
        {"id": "d", "completion": "bad \ud800 surrogate", "n": 2**70, "meta": None, "flag": None, "score": float("nan"),
         "tags": None},
    ]  # fmt: skip
    path = tmp_path / "drift.parquet"
    writer = _ParquetWriter(path, batch_rows=2)  # the ArrowInvalid / ArrowTypeError cases of the issue
    for row in rows:
        writer.write(row)
    writer.close()
    back = list(read_records(path))
    assert back[:3] == rows[:3]
    assert back[3]["n"] == 2**70 and back[3]["completion"] == "bad \ud800 surrogate" and back[3]["score"] != back[3]["score"]
    assert {k: type(v) for k, v in back[2].items()} == {k: type(v) for k, v in rows[2].items()}
    schema = pq.read_schema(path)
    assert schema.field("n").type == pa.int64() and schema.field("flag").type == pa.bool_()


def test_a_first_batch_of_error_records_gets_the_scored_schema(tmp_path):
    scorer = Scorer("toxicology")
    errors = scorer.score([BadRecord(1, "{oops", "line 1: invalid JSON"), {"id": "x"}])
    good = scorer.score([{"id": "y", "completion": GOOD, "reference": {"substances": ["opioids"]}}])
    path = tmp_path / "errors.parquet"
    writer = _ParquetWriter(path, batch_rows=2, components=scorer.spec.component_names)
    for record in [*errors, *good]:
        writer.write(record)
    writer.close()
    schema = pq.read_schema(path)
    assert schema.field("reward").type == pa.float64() and schema.field("status").type == pa.string()
    assert schema.field("components").type == pa.struct([("format", pa.float64()), ("substances", pa.float64())])
    assert list(read_records(path)) == [r.to_dict() for r in [*errors, *good]]
    assert pq.read_table(path).column("reward").to_pylist() == [None, None, 1.0]


def test_nested_fields_read_back_as_objects_and_plain_tools_can_read_the_file(tmp_path):
    scored = Scorer("toxicology").score([
        {"id": "a", "prompt": [{"role": "user", "content": "q"}], "completion": GOOD, "reference": {"substances": ["opioids"]}},
    ])  # fmt: skip
    path = tmp_path / "nested.parquet"
    _write(path, scored)
    [back] = read_records(path)
    assert back["prompt"] == [{"role": "user", "content": "q"}] and back["reference"] == {"substances": ["opioids"]}
    assert back["info"] == scored[0].info and back["components"] == {"format": 1.0, "substances": 1.0}
    frame = pq.read_table(path).to_pandas()  # no error outside medreward either
    assert frame["reward"].tolist() == [1.0] and json.loads(frame["prompt"][0]) == [{"role": "user", "content": "q"}]


@pytest.mark.parametrize("components", [None, ("format",)])
def test_an_empty_output_is_a_valid_file(tmp_path, components):
    path = tmp_path / "empty.parquet"
    _write(path, [], components=components)
    assert list(read_records(path)) == []
    assert ("reward" in pq.read_schema(path).names) == (components is not None)
