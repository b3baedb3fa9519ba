"""Streaming writers for scored records: JSONL line by line, Parquet row group by row group.

JSONL keeps records exactly (lone surrogates in model output, which UTF-8 cannot hold,
are written as JSON ``\\udXXX`` escapes instead of crashing the writer). Parquet needs a
fixed schema, so ``reward``, ``status`` and ``components`` are typed columns and every
other non-scalar field (``info``, ``reference``, conversational prompts…) is stored as
JSON text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from ..errors import InputError
from ..records import ScoredRecord
from .readers import Format, detect_format

__all__ = ["RecordWriter", "open_writer"]


class RecordWriter(Protocol):
    def write(self, record: ScoredRecord | dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "RecordWriter": ...
    def __exit__(self, *exc: object) -> None: ...


def _as_dict(record: ScoredRecord | dict[str, Any]) -> dict[str, Any]:
    return record.to_dict() if isinstance(record, ScoredRecord) else record


def _dumps(obj: Any) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str)
    except ValueError:  # NaN/inf in an echoed input field: keep it as JSON's NaN token
        return json.dumps(obj, ensure_ascii=False, default=str)


class _JsonlWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = open(path, "w", encoding="utf-8", errors="strict", newline="\n")

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        line = _dumps(_as_dict(record))
        try:
            self._handle.write(line + "\n")
        except UnicodeEncodeError:  # lone surrogates: escape them (valid JSON, loses nothing)
            self._handle.write(json.dumps(_as_dict(record), ensure_ascii=True, default=str) + "\n")

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "_JsonlWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ParquetWriter:
    _TYPED = ("reward", "status", "components")

    def __init__(self, path: Path, batch_rows: int = 4096) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._writer = None
        self._schema = None

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        row = {}
        for key, value in _as_dict(record).items():
            if key in self._TYPED or value is None or isinstance(value, (str, int, float, bool)):
                row[key] = value
            else:
                row[key] = json.dumps(value, ensure_ascii=True, default=str)
        if isinstance(row.get("reward"), int):
            row["reward"] = float(row["reward"])
        self._rows.append(row)
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        rows, self._rows = self._rows, []
        for row in rows:  # strings with lone surrogates cannot go into Arrow's UTF-8
            for key, value in row.items():
                if isinstance(value, str) and not value.isascii():
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError:
                        row[key] = json.dumps(value)[1:-1]
        if self._schema is None:
            inferred = pa.Table.from_pylist(rows).schema
            # a column that is all null in the first batch would pin type "null": use text
            self._schema = pa.schema([
                pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in inferred
            ])
            for row in rows:
                for f in self._schema:
                    value = row.get(f.name)
                    if pa.types.is_string(f.type) and value is not None and not isinstance(value, str):
                        row[f.name] = json.dumps(value)
            table = pa.Table.from_pylist(rows, schema=self._schema)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        else:
            columns = {name: [row.get(name) for row in rows] for name in self._schema.names}
            extra = {k for row in rows for k in row} - set(self._schema.names)
            if extra:
                raise InputError(f"Parquet output: records gained fields {sorted(extra)} after the first batch")
            table = pa.Table.from_pydict(columns, schema=self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        self._flush()
        if self._writer is not None:
            self._writer.close()
        elif self._schema is None:  # nothing written: still leave a valid (empty) file
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.path)

    def __enter__(self) -> "_ParquetWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_writer(path: str | Path, *, format: Format | None = None) -> RecordWriter:
    """Open a JSONL or Parquet writer (format from the suffix unless given)."""
    path = Path(path)
    fmt = format or detect_format(path)
    if path.is_dir():
        raise InputError(f"output path {str(path)!r} is a directory")
    if not path.parent.exists():
        raise InputError(f"output folder {str(path.parent)!r} does not exist")
    try:
        return _ParquetWriter(path) if fmt == "parquet" else _JsonlWriter(path)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


class _JsonlStream(_JsonlWriter):
    """JSONL to an already-open text stream (stdout); closing flushes but does not close it."""

    def __init__(self, stream) -> None:
        self.path = None
        self._handle = stream

    def close(self) -> None:
        self._handle.flush()
