"""Resuming a killed ``medreward score`` run from the records already in its output.

A run writes one scored record per input record, in input order, so the first ``k`` complete
lines of the output are the scores of the first ``k`` input records. Resuming keeps that prefix
(a torn last line, cut by the kill, is dropped and scored again), checks that it belongs to this
input and this spec, skips ``k`` input records and appends the rest: the file ends up byte for
byte what an uninterrupted run writes (given deterministic components and no timeouts).

Only plain JSONL outputs can be resumed. A Parquet file that was not closed has no footer and
cannot be read at all, and a killed gzip stream cannot be appended to without rewriting it: both
are refused with a message, as is a spec with ``aggregate = "normalize_then_sum"`` (GDPO), whose
rewards are normalised over the whole input, so a resumed run would not score like an
uninterrupted one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..records import BadRecord
from .readers import detect_format
from .writers import SCORED_FIELDS, is_gzip_name

__all__ = ["ResumePoint", "check_resumable", "find_resume_point", "skip_scored"]

_BLOCK = 1 << 20


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What a partial output holds: ``kept`` complete records in its first ``valid_bytes`` bytes
    (``torn_bytes`` after them are a cut-off line), the first and the last of them."""

    path: Path
    kept: int
    valid_bytes: int
    torn_bytes: int
    first: dict[str, Any] | None
    last: dict[str, Any] | None

    def truncate(self) -> None:
        """Drop the torn tail, so that appending continues after the last complete record."""
        if self.torn_bytes:
            os.truncate(self.path, self.valid_bytes)


def check_resumable(output: str | None, *, aggregate: str) -> Path:
    """The output path to resume, or an :class:`InputError` saying why this run cannot be resumed."""
    if output is None or output == "-":
        raise InputError("--resume needs an output file (-o FILE.jsonl) to continue")
    path = Path(output)
    if detect_format(path) == "parquet":
        raise InputError(
            f"cannot resume {output!r}: a Parquet file is only readable once it was closed; "
            "write JSONL (-o FILE.jsonl) to be able to resume, and convert afterwards"
        )
    if is_gzip_name(path):
        raise InputError(
            f"cannot resume {output!r}: a gzip stream cut by a kill cannot be appended to; "
            "write plain JSONL to be able to resume, and compress afterwards"
        )
    if aggregate == "normalize_then_sum":
        raise InputError(
            "cannot resume with a spec whose aggregate is 'normalize_then_sum': it normalises rewards over the "
            "whole input, so scoring only the rest would not give the rewards of an uninterrupted run; rerun without --resume"
        )
    return path


def find_resume_point(path: Path, components: Sequence[str]) -> ResumePoint:
    """Scan a partial JSONL output: count its complete lines, read the first and the last, and
    check that they are records scored with ``components``. A missing or empty file resumes at 0."""
    if not path.exists():
        return ResumePoint(path, 0, 0, 0, None, None)
    if path.is_dir():
        raise InputError(f"output path {str(path)!r} is a directory")
    with open(path, "rb") as handle:
        size, count, valid = 0, 0, 0
        for block in iter(lambda: handle.read(_BLOCK), b""):
            newlines = block.count(b"\n")
            if newlines:
                count += newlines
                valid = size + block.rindex(b"\n") + 1
            size += len(block)
        if count == 0:
            return ResumePoint(path, 0, 0, size, None, None)
        handle.seek(0)
        first = handle.readline()
        last = first if count == 1 else _line_before(handle, valid)
    where = str(path)
    return ResumePoint(
        path, count, valid, size - valid,
        _scored(first, where, 1, components), _scored(last, where, count, components),
    )  # fmt: skip


def _line_before(handle, end: int) -> bytes:
    """The complete line whose newline is byte ``end - 1``, read backwards from there."""
    pos, tail = end - 1, b""
    while pos > 0:
        step = min(_BLOCK, pos)
        handle.seek(pos - step)
        chunk = handle.read(step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return chunk[cut + 1 :] + tail + b"\n"
        tail = chunk + tail
        pos -= step
    return tail + b"\n"


def _scored(line: bytes, where: str, number: int, components: Sequence[str]) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict) or not set(SCORED_FIELDS) <= record.keys():
        raise InputError(f"cannot resume: line {number} of {where!r} is not a scored record")
    scored_with = list(record.get("components") or {})
    if scored_with != list(components):
        raise InputError(
            f"cannot resume: {where!r} was scored with components {scored_with}, "
            f"but this spec has {list(components)}; use the same spec, or a new output file"
        )
    return record


def skip_scored(records: Iterator[Any], point: ResumePoint, *, input_name: str) -> int:
    """Consume the ``point.kept`` input records that the output already holds, checking that
    the first and the last of them are the inputs of its first and last scored records."""
    if point.kept == 0:
        return 0
    n = 0
    for n, item in enumerate(records, start=1):
        if n == 1:
            _check_same(item, point.first, 1, point, input_name)
        if n == point.kept:
            _check_same(item, point.last, n, point, input_name)
            return n
    raise InputError(
        f"cannot resume: {str(point.path)!r} holds {point.kept} scored records but {input_name!r} "
        f"has only {n}; it is not the output of this input"
    )


def _check_same(item: Any, scored: dict[str, Any] | None, number: int, point: ResumePoint, input_name: str) -> None:
    if _input_part(item) != _input_part(scored):
        raise InputError(
            f"cannot resume: scored record {number} in {str(point.path)!r} is not the score of record {number} "
            f"of {input_name!r}; it is the output of another input (or of this input changed): "
            "use a new output file, or run without --resume"
        )


def _input_part(record: Any) -> str:
    """The input fields of a record (what a scored record echoes), as canonical JSON."""
    if isinstance(record, BadRecord):
        record = record.to_record()
    if not isinstance(record, dict):
        return repr(record)
    kept = {k: v for k, v in record.items() if k not in SCORED_FIELDS}
    return json.dumps(kept, ensure_ascii=True, default=str)
