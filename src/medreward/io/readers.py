"""Streaming readers: a 1 GB JSONL file is read a line at a time, a Parquet file a row group
at a time, so scoring never holds the whole input in memory.

A malformed line does not stop the read: it is yielded as a
:class:`~medreward.runner.BadRecord` carrying its line number, and the scorer reports it as
an ``error`` record while the other lines are scored.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..records import BadRecord

__all__ = ["detect_format", "read_records"]

Format = Literal["jsonl", "parquet"]
#: Parquet schema metadata key: the JSON list of columns whose values medreward wrote as JSON text
JSON_COLUMNS_KEY = "medreward.json_columns"
_RAW_KEEP = 2000  # characters of a malformed line kept in the error record


def detect_format(path: str | Path) -> Format:
    name = str(path).lower()
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InputError(f"cannot tell the format of {str(path)!r}: use .jsonl, .jsonl.gz or .parquet")


def read_records(path: str | Path, *, format: Format | None = None) -> Iterator[dict[str, Any] | BadRecord]:
    """Yield the records of a JSONL or Parquet file, one at a time.

    Raises :class:`InputError` (before yielding anything) for a missing, unreadable or
    non-file path.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"input path {str(path)!r} is a directory, not a file")
    fmt = format or detect_format(path)
    if fmt == "parquet":
        return _read_parquet(path)
    try:
        # the handle belongs to the streaming reader, which closes it when the stream ends
        handle = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"cannot open {str(path)!r}: {exc.strerror or exc}") from None
    return _read_jsonl(handle, path)


def _read_jsonl(handle, path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    with handle:
        line_no = 0
        try:
            for line_no, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield BadRecord(line_no, raw[:_RAW_KEEP].decode("utf-8", "replace"),
                                    f"line {line_no}: not valid UTF-8 ({exc.reason} at byte {exc.start})")
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield BadRecord(line_no, text[:_RAW_KEEP].rstrip("\n"),
                                    f"line {line_no}: invalid JSON ({exc.msg} at column {exc.colno})")
                    continue
                if not isinstance(record, dict):
                    yield BadRecord(line_no, text[:_RAW_KEEP].rstrip("\n"),
                                    f"line {line_no}: expected a JSON object, got {type(record).__name__}")
                    continue
                yield record
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            where = f"read failed after line {line_no}" if line_no else "cannot be read"
            raise InputError(f"{str(path)!r}: {where}: {exc}") from None


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise InputError(f"cannot read {str(path)!r} as Parquet: {exc}") from None
    return _iter_parquet(parquet)


def _iter_parquet(parquet) -> Iterator[dict[str, Any]]:
    metadata = parquet.schema_arrow.metadata or {}
    try:
        json_columns = tuple(json.loads(metadata.get(JSON_COLUMNS_KEY.encode(), b"[]")))
    except ValueError:
        json_columns = ()
    for batch in parquet.iter_batches(batch_size=1024):
        rows = batch.to_pylist()
        for row in rows:
            for key in json_columns:
                value = row.get(key)
                if isinstance(value, str):
                    try:
                        row[key] = json.loads(value)
                    except ValueError:
                        pass  # not written by medreward after all: keep the text
        yield from rows
