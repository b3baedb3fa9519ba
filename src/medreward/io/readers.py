"""Streaming readers: a 1 GB JSONL file is read a line at a time, a Parquet file a row group
at a time, so scoring never holds the whole input in memory.

A malformed line does not stop the read: it is yielded as a
:class:`~medreward.runner.BadRecord` carrying its line number, and the scorer reports it as
an ``error`` record while the other lines are scored. A UTF-8 byte-order mark at the start of
a file is skipped.

A ``.json`` file may hold either one object per line (JSONL) or one JSON array of objects;
an array is parsed whole (it is not streamed), and an element that is not an object becomes
a :class:`~medreward.records.BadRecord` naming its position.

A file that cannot be read to its end (a truncated ``.gz``) raises :class:`InputError` after
the records before the damage have been yielded; :class:`GuardedRecords` turns that into
the end of the stream and keeps the error, so a caller can write what was scored and then fail.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from ..errors import InputError
from ..records import BadRecord

__all__ = ["GuardedRecords", "RecordStream", "detect_format", "read_records"]

Format = Literal["jsonl", "parquet"]
#: Parquet schema metadata key: the JSON list of columns whose values medreward wrote as JSON text
JSON_COLUMNS_KEY = "medreward.json_columns"
#: Parquet schema metadata key: the column holding each row's values that did not fit the schema
OVERFLOW_KEY = "medreward.overflow_column"
_RAW_KEEP = 2000  # characters of a malformed line kept in the error record
_BOM = b"\xef\xbb\xbf"


def detect_format(path: str | Path) -> Format:
    name = str(path).lower()
    if name.endswith((".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz", ".json")):
        return "jsonl"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    raise InputError(f"cannot tell the format of {str(path)!r}: use .jsonl, .jsonl.gz or .parquet")


def read_records(path: str | Path, *, format: Format | None = None) -> RecordStream:
    """Yield the records of a JSONL, JSON-array or Parquet file, one at a time.

    Raises :class:`InputError` (before yielding anything) for a missing, unreadable or
    non-file path. The returned stream also tells how far into the file it has read
    (:meth:`RecordStream.fraction_read`), for a progress bar on files too large to count.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"input path {str(path)!r} is a directory, not a file")
    fmt = format or detect_format(path)
    if fmt == "parquet":
        return RecordStream(_read_parquet(path))
    try:
        # the handle belongs to the streaming reader, which closes it when the stream ends
        handle = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")  # noqa: SIM115
        size = os.fstat(_raw_file(handle).fileno()).st_size
    except OSError as exc:
        raise InputError(f"cannot open {str(path)!r}: {exc.strerror or exc}") from None
    if str(path).lower().endswith(".json") and _starts_with_array(handle):
        return RecordStream(_read_json_array(handle, path))
    raw = _raw_file(handle)
    return RecordStream(_read_jsonl(handle, path), position=raw.tell, size=size)


class RecordStream(Iterator[dict[str, Any] | BadRecord]):
    """The records of one input file, with how far the read has got (for progress bars)."""

    def __init__(self, records: Iterator[dict[str, Any] | BadRecord], *, position=None, size: int = 0) -> None:
        self._records = records
        self._position = position
        self._size = size

    def __next__(self) -> dict[str, Any] | BadRecord:
        return next(self._records)

    def fraction_read(self) -> float | None:
        """Bytes of the file read so far over its size (compressed bytes for ``.gz``), or None
        when unknown. Buffered reading runs a little ahead of the records yielded."""
        if self._position is None or self._size <= 0:
            return None
        try:
            return min(1.0, self._position() / self._size)
        except (OSError, ValueError):  # closed at the end of the stream
            return 1.0


class GuardedRecords(Iterator[dict[str, Any] | BadRecord]):
    """Wrap a record stream so that a read failure part-way (:class:`InputError`, e.g. a
    truncated ``.gz``) ends the stream instead of raising through the scorer: everything read
    before the damage is scored and written, and :attr:`error` holds the failure for the
    caller to report afterwards."""

    def __init__(self, records: Iterator[dict[str, Any] | BadRecord]) -> None:
        self._records = records
        self.error: InputError | None = None
        self.count = 0

    def __next__(self) -> dict[str, Any] | BadRecord:
        if self.error is not None:
            raise StopIteration
        try:
            item = next(self._records)
        except InputError as exc:
            self.error = exc
            raise StopIteration from None
        self.count += 1
        return item

    def fraction_read(self) -> float | None:
        fraction = getattr(self._records, "fraction_read", None)
        return fraction() if fraction is not None else None


def _raw_file(handle):
    """The file under a (gzip) handle: its position counts bytes of the file itself."""
    return handle.fileobj if isinstance(handle, gzip.GzipFile) else handle


def _starts_with_array(handle) -> bool:
    """Whether the first non-blank character of the file is ``[`` (the handle is rewound)."""
    try:
        head = handle.peek(4096)[:4096] if hasattr(handle, "peek") else b""
    except (OSError, EOFError):
        return False
    return head.removeprefix(_BOM).lstrip().startswith(b"[")


def _read_json_array(handle, path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    with handle:
        try:
            data = handle.read()
        except (OSError, EOFError) as exc:
            raise InputError(f"{str(path)!r}: cannot be read: {exc}") from None
    try:
        items = json.loads(data.removeprefix(_BOM).decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{str(path)!r}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{str(path)!r}: invalid JSON array ({exc.msg} at line {exc.lineno}, column {exc.colno}); "
            "a .json file holds one JSON array of objects, or one object per line"
        ) from None
    for index, item in enumerate(items):
        if isinstance(item, dict):
            yield item
        else:
            text = json.dumps(item, ensure_ascii=False, default=str)[:_RAW_KEEP]
            yield BadRecord(None, text, f"array item {index}: expected a JSON object, got {type(item).__name__}")


def _read_jsonl(handle, path: Path) -> Iterator[dict[str, Any] | BadRecord]:
    with handle:
        line_no = 0
        try:
            for line_no, raw in enumerate(handle, start=1):
                if line_no == 1 and raw.startswith(_BOM):  # written by some Windows tools
                    raw = raw[3:]
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
    overflow = metadata.get(OVERFLOW_KEY.encode(), b"").decode("utf-8", "replace") or None
    if overflow not in parquet.schema_arrow.names:
        overflow = None
    for batch in parquet.iter_batches(batch_size=1024):
        rows = batch.to_pylist()
        if json_columns or overflow:
            rows = [_decode_row(row, json_columns, overflow) for row in rows]
        yield from rows


def _decode_row(row: dict[str, Any], json_columns: tuple[str, ...], overflow: str | None) -> dict[str, Any]:
    """A row of a medreward Parquet file as the record that was written (see the writer)."""
    for key in json_columns:
        value = row.get(key)
        if isinstance(value, str):
            try:
                row[key] = json.loads(value)
            except ValueError:
                pass  # not written by medreward after all: keep the text
    if overflow is None:
        return row
    note = row.pop(overflow, None)
    if not note:
        return row
    try:
        note = json.loads(note)
    except ValueError:
        row[overflow] = note  # not ours: keep it as it is
        return row
    row.update(note.get("values") or {})
    keys = note.get("keys")
    return {key: row.get(key) for key in keys} if isinstance(keys, list) else row
