"""Input files as users have them (issue 9, item 20): a UTF-8 byte-order mark, a ``.json`` file
holding a JSON array, a truncated ``.gz``; and how far a read has got, for the progress bar."""

from __future__ import annotations

import gzip
import json

import pytest

from medreward import BadRecord, InputError, read_records
from medreward.io import GuardedRecords

ROWS = [{"id": f"r{i}", "completion": "x" * 40} for i in range(300)]


def test_a_byte_order_mark_is_not_part_of_line_1(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "".join(json.dumps(r) + "\n" for r in ROWS[:3]).encode())
    assert list(read_records(path)) == ROWS[:3]


def test_a_json_array_file_is_read_as_an_array(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b"\xef\xbb\xbf\n  " + json.dumps([*ROWS[:2], 7, ROWS[2]], indent=2).encode())
    items = list(read_records(path))
    assert items[:2] == ROWS[:2] and items[3] == ROWS[2]
    assert isinstance(items[2], BadRecord) and items[2].error == "array item 2: expected a JSON object, got int"


def test_a_json_file_with_one_object_per_line_still_works(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS[:3]), encoding="utf-8")
    assert list(read_records(path)) == ROWS[:3]


def test_a_broken_json_array_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"completion": "a"},\n {"completion": ', encoding="utf-8")
    with pytest.raises(InputError, match=r"'.*broken.json': invalid JSON array \(.* at line 2, column 17\)"):
        list(read_records(path))


def _truncated_gzip(tmp_path):
    data = gzip.compress("".join(json.dumps(r) + "\n" for r in ROWS).encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def test_a_truncated_gzip_yields_the_lines_before_the_damage_then_fails(tmp_path):
    path = _truncated_gzip(tmp_path)
    stream = read_records(path)
    read = []
    with pytest.raises(InputError, match="read failed after line"):
        for item in stream:
            read.append(item)
    assert 0 < len(read) < len(ROWS) and read == ROWS[: len(read)]
    guarded = GuardedRecords(read_records(path))
    assert list(guarded) == read and guarded.count == len(read)
    assert guarded.error is not None and "Compressed file ended" in str(guarded.error)


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_fraction_read_grows_to_one(tmp_path, name):
    path = tmp_path / name
    text = "".join(json.dumps({"id": i, "completion": f"{i:x}" * 50}) + "\n" for i in range(20000)).encode()
    path.write_bytes(gzip.compress(text) if name.endswith(".gz") else text)
    stream = read_records(path)
    assert stream.fraction_read() == 0.0
    for _ in range(10000):
        next(stream)
    assert 0.2 < stream.fraction_read() < 0.8
    for _ in stream:
        pass
    assert stream.fraction_read() == 1.0
