"""Streaming writers for scored records: JSONL line by line (gzip-compressed for a ``.gz``
name), Parquet row group by row group.

JSONL keeps records exactly (lone surrogates in model output, which UTF-8 cannot hold,
are written as JSON ``\\udXXX`` escapes instead of crashing the writer). A ``.gz`` output is
a gzip stream with no file name and a zero time stamp in its header, so the same records give
the same bytes.

Parquet needs one schema for the whole file; see :class:`_ParquetWriter` for how it is fixed
and how a value that does not fit it is still kept. :func:`~medreward.io.read_records` reads a
medreward Parquet file back as the records that were written.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, Self

from ..errors import InputError
from ..records import ScoredRecord
from ..text import encodes_as_utf8
from .readers import JSON_COLUMNS_KEY, OVERFLOW_KEY, Format, detect_format

__all__ = ["SCORED_FIELDS", "RecordWriter", "open_writer"]

log = logging.getLogger(__name__)

#: the fields a scored record adds to the input record
SCORED_FIELDS = ("reward", "components", "status", "info")
#: the Parquet column holding, per row, what did not fit the schema (null when everything did)
OVERFLOW_COLUMN = "medreward_overflow"


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


def is_gzip_name(path: str | Path) -> bool:
    return str(path).lower().endswith(".gz")


class _JsonlWriter:
    """One JSON object per line; gzip-compressed when the name ends in ``.gz``.
    ``append=True`` adds to an existing plain JSONL file (used by ``--resume``)."""

    def __init__(self, path: Path, *, append: bool = False) -> None:
        self.path = path
        self._raw = None
        if is_gzip_name(path):
            if append:
                raise InputError(f"cannot append to the gzip file {str(path)!r}")
            self._raw = open(path, "wb")  # noqa: SIM115 - closed by close()
            # no file name, time stamp 0: the same records always give the same bytes
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=self._raw, mtime=0)
            self._handle = io.TextIOWrapper(stream, encoding="utf-8", errors="strict", newline="\n")
        else:
            mode = "a" if append else "w"
            self._handle = open(path, mode, encoding="utf-8", errors="strict", newline="\n")  # noqa: SIM115 - closed by close()

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        line = _dumps(_as_dict(record))
        try:
            self._handle.write(line + "\n")
        except UnicodeEncodeError:  # lone surrogates: escape them (valid JSON, loses nothing)
            self._handle.write(json.dumps(_as_dict(record), ensure_ascii=True, default=str) + "\n")

    def close(self) -> None:
        self._handle.close()
        if self._raw is not None:  # GzipFile leaves the file it was given open
            self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NO_FIT = object()
_INT64 = (-(2**63), 2**63 - 1)


class _ParquetWriter:
    """Parquet in row groups of ``batch_rows`` records, with a schema that later rows cannot break.

    * The scored fields have fixed types, known before any record is seen: ``reward`` float64,
      ``components`` a struct of float64 (one field per spec component), ``status`` string,
      ``info`` JSON text. They are used when ``components`` is given or the first record is a
      :class:`ScoredRecord`.
    * An input field gets a plain column (string, int64, float64, bool) when all its non-null
      values in the first batch have that one type; otherwise (objects, lists, mixed types, or
      only nulls) it is a JSON-text column (every value, strings too, stored as JSON). The schema
      metadata (:data:`JSON_COLUMNS_KEY`) names the JSON-text columns so that reading decodes them:
      nested fields read back as objects.
    * A later value that does not fit its column (a field whose type changes, a new field such
      as ``line``/``raw`` of a malformed line, a string UTF-8 cannot hold) is stored, exactly,
      in the JSON-text column ``medreward_overflow`` of its row (null in rows where everything
      fit), which also records the row's field order when it differs from the schema's (a field
      the record lacks). :func:`~medreward.io.read_records` merges it back, so every record
      reads back as it was written; other Parquet readers see a null in the typed column and the
      value in ``medreward_overflow``.
    """

    def __init__(self, path: Path, batch_rows: int = 4096, *, components: Sequence[str] | None = None) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self._components = tuple(components) if components is not None else None
        self._rows: list[dict[str, Any]] = []
        self._writer = None
        self._schema = None
        self._columns: list[tuple[str, str]] = []  # (name, kind) of every column but the overflow
        self._names: frozenset[str] = frozenset()
        self._order: list[str] = []

    def write(self, record: ScoredRecord | dict[str, Any]) -> None:
        if self._schema is None and not self._rows and self._components is None and isinstance(record, ScoredRecord):
            self._components = tuple(record.components)
        self._rows.append(_as_dict(record))
        if len(self._rows) >= self.batch_rows:
            self._flush()

    # -- schema ----------------------------------------------------------------------------
    def _build_schema(self, records: list[dict[str, Any]]):
        import pyarrow as pa

        scored = self._components is not None
        names: dict[str, None] = {}
        for record in records:
            names.update(dict.fromkeys(record))
        input_names = [n for n in names if n != OVERFLOW_COLUMN and not (scored and n in SCORED_FIELDS)]
        columns = [(name, _column_kind(record.get(name) for record in records)) for name in input_names]
        if scored:
            columns += [("reward", "float"), ("components", "components"), ("status", "str"), ("info", "json")]
        types = {"str": pa.string(), "bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "json": pa.string()}
        if scored:
            types["components"] = pa.struct([pa.field(c, pa.float64()) for c in self._components])
        fields = [pa.field(name, types[kind]) for name, kind in columns]
        fields.append(pa.field(OVERFLOW_COLUMN, pa.string()))
        json_columns = sorted(name for name, kind in columns if kind == "json")
        metadata = {JSON_COLUMNS_KEY: json.dumps(json_columns), OVERFLOW_KEY: OVERFLOW_COLUMN}
        self._columns = columns
        self._names = frozenset(name for name, _ in columns)
        self._order = [name for name, _ in columns]
        self._schema = pa.schema(fields, metadata=metadata)

    # -- rows ------------------------------------------------------------------------------
    def _encode(self, records: list[dict[str, Any]]) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {name: [] for name, _ in self._columns}
        overflow_column: list[str | None] = []
        encoders = [(data[name].append, name, _ENCODERS[kind]) for name, kind in self._columns]
        components = self._components
        order, names = self._order, self._names
        for record in records:
            overflow: dict[str, Any] = {}
            for append, name, encode in encoders:
                value = record.get(name)
                if value is None:
                    append(None)
                    continue
                encoded = encode(value, components)
                if encoded is _NO_FIT:
                    append(None)
                    overflow[name] = value
                else:
                    append(encoded)
            keys = list(record)
            note: dict[str, Any] = {}
            if keys != order:  # a field missing, added (e.g. ``line``/``raw``) or moved
                overflow.update((key, record[key]) for key in keys if key not in names)
                note["keys"] = keys
            if overflow:
                note["values"] = overflow
            overflow_column.append(json.dumps(note, ensure_ascii=True, default=str) if note else None)
        data[OVERFLOW_COLUMN] = overflow_column
        return data

    def _flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self._rows:
            return
        records, self._rows = self._rows, []
        if self._schema is None:
            self._build_schema(records)
            self._writer = pq.ParquetWriter(self.path, self._schema)
        table = pa.Table.from_pydict(self._encode(records), schema=self._schema)
        self._writer.write_table(table)

    def close(self) -> None:
        self._flush()
        if self._writer is None:  # nothing written: still leave a valid (empty) file
            import pyarrow.parquet as pq

            self._build_schema([])
            self._writer = pq.ParquetWriter(self.path, self._schema)
        self._writer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _column_kind(values) -> str:
    """The column kind for a field from its first-batch values: one plain type, else JSON text."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) != 1:
        return "json"
    kind = kinds.pop()
    return {str: "str", bool: "bool", int: "int", float: "float"}.get(kind, "json")


def _enc_str(value: Any, _: Any) -> Any:
    # Arrow strings are UTF-8: a lone surrogate goes to the overflow column as a JSON escape
    return value if type(value) is str and encodes_as_utf8(value) else _NO_FIT


def _enc_bool(value: Any, _: Any) -> Any:
    return value if type(value) is bool else _NO_FIT


def _enc_int(value: Any, _: Any) -> Any:
    return value if type(value) is int and _INT64[0] <= value <= _INT64[1] else _NO_FIT


def _enc_float(value: Any, _: Any) -> Any:
    return value if type(value) is float else _NO_FIT


def _enc_json(value: Any, _: Any) -> Any:
    try:
        return json.dumps(value, ensure_ascii=True, default=str)
    except ValueError:  # a circular structure: keep its text form
        return json.dumps(str(value))


def _enc_components(value: Any, components: tuple[str, ...]) -> Any:
    if type(value) is dict and tuple(value) == components and all(v is None or type(v) is float for v in value.values()):
        return value
    return _NO_FIT


_ENCODERS = {
    "str": _enc_str, "bool": _enc_bool, "int": _enc_int, "float": _enc_float, "json": _enc_json,
    "components": _enc_components,
}  # fmt: skip


def open_writer(
    path: str | Path,
    *,
    format: Format | None = None,
    components: Sequence[str] | None = None,
    append: bool = False,
) -> RecordWriter:
    """Open a JSONL (``.gz``: gzip-compressed) or Parquet writer, the format from the suffix
    unless given.

    ``components`` (the spec's component names) fixes the Parquet columns of the scores before
    the first record; without it they are taken from the first record when it is a
    :class:`ScoredRecord`. ``append=True`` adds to an existing plain JSONL file.
    """
    path = Path(path)
    fmt = format or detect_format(path)
    if path.is_dir():
        raise InputError(f"output path {str(path)!r} is a directory")
    if not path.parent.exists():
        raise InputError(f"output folder {str(path.parent)!r} does not exist")
    if append and (fmt == "parquet" or is_gzip_name(path)):
        raise InputError(f"cannot append to {str(path)!r}: only plain JSONL files can be appended to")
    try:
        if fmt == "parquet":
            return _ParquetWriter(path, components=components)
        return _JsonlWriter(path, append=append)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


class _JsonlStream(_JsonlWriter):
    """JSONL to an already-open text stream (stdout); closing flushes but does not close it."""

    def __init__(self, stream) -> None:
        self.path = None
        self._raw = None
        self._handle = stream

    def close(self) -> None:
        self._handle.flush()
