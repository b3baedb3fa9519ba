"""Streaming writers for scored records: JSONL line by line, Parquet row group by row group.

JSONL keeps records exactly (lone surrogates in model output, which UTF-8 cannot hold,
are written as JSON ``\\udXXX`` escapes instead of crashing the writer). Parquet needs a
fixed schema, so ``reward``, ``status`` and ``components`` are typed columns and every
other field that holds objects or lists (``info``, ``reference``, conversational prompts…)
is stored as JSON text; the schema metadata names those columns and
:func:`~medreward.io.read_records` decodes them, so a Parquet file reads back as it was
written. In plain Parquet text columns a lone surrogate is stored as its ``\\udXXX`` escape.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Protocol, Self

from ..errors import InputError
from ..parse.text import encodes_as_utf8
from ..records import ScoredRecord
from .readers import JSON_COLUMNS_KEY, Format, detect_format

__all__ = ["RecordWriter", "open_writer"]

log = logging.getLogger(__name__)


class RecordWriter(Protocol):
    def write(self, record: ScoredRecord | dict[str, Any]) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
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
        self._handle = open(path, "w", encoding="utf-8", errors="strict", newline="\n")  # noqa: SIM115 - closed by close()

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        line = _dumps(_as_dict(record))
        try:
            self._handle.write(line + "\n")
        except UnicodeEncodeError:  # lone surrogates: escape them (valid JSON, loses nothing)
            self._handle.write(json.dumps(_as_dict(record), ensure_ascii=True, default=str) + "\n")

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ParquetWriter:
    """Row groups of ``batch_rows`` records. The first batch fixes the schema: ``reward``,
    ``status`` and ``components`` are typed; a field holding objects or lists there becomes
    a JSON-text column, listed in the schema metadata (:data:`JSON_COLUMNS_KEY`) so that
    :func:`~medreward.io.read_records` decodes it back. Every value of such a column is JSON
    (strings too), which makes the round trip exact."""

    _TYPED = ("reward", "status", "components")

    def __init__(self, path: Path, batch_rows: int = 4096) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self._rows: list[dict[str, Any]] = []
        self._writer = None
        self._schema = None
        self._json_columns: frozenset[str] = frozenset()
        self._warned: set[str] = set()

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        self._rows.append(_as_dict(record))
        if len(self._rows) >= self.batch_rows:
            self._flush()

    def _encode(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for record in rows:
            row = {}
            for key, value in record.items():
                if key in self._TYPED:
                    row[key] = float(value) if key == "reward" and isinstance(value, int) else value
                elif value is None:
                    row[key] = None
                elif key in self._json_columns:
                    row[key] = json.dumps(value, ensure_ascii=True, default=str)
                elif isinstance(value, (str, int, float, bool)):
                    # Arrow strings are UTF-8: lone surrogates are kept as their JSON escapes
                    row[key] = value if not isinstance(value, str) or encodes_as_utf8(value) else json.dumps(value)[1:-1]
                else:
                    if key not in self._warned:
                        self._warned.add(key)
                        log.warning("Parquet output: field %r held plain values in the first %d records and "
                                    "an object later; such values are stored as JSON text", key, self.batch_rows)
                    row[key] = json.dumps(value, ensure_ascii=True, default=str)
            out.append(row)
        return out

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        records, self._rows = self._rows, []
        if self._schema is None:
            self._json_columns = frozenset(
                key for record in records for key, value in record.items()
                if key not in self._TYPED and value is not None and not isinstance(value, (str, int, float, bool))
            )  # fmt: skip
            rows = self._encode(records)
            inferred = pa.Table.from_pylist(rows).schema
            # a column that is all null in the first batch would pin type "null": use text
            fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in inferred]
            metadata = {JSON_COLUMNS_KEY: json.dumps(sorted(self._json_columns))} if self._json_columns else None
            self._schema = pa.schema(fields, metadata=metadata)
            for row in rows:  # a scalar column that was all null first: its later values go in as text
                for f in self._schema:
                    value = row.get(f.name)
                    if pa.types.is_string(f.type) and value is not None and not isinstance(value, str):
                        row[f.name] = json.dumps(value)
            table = pa.Table.from_pylist(rows, schema=self._schema)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        else:
            rows = self._encode(records)
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

    def __enter__(self) -> Self:
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
