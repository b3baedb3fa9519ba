"""Reading a list-valued reference field (ids, codes, names) the way every list-reading component
accepts it: a list, JSON text of an array, or a delimited string."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import RecordError

__all__ = ["reference_items"]


def _commas(text: str) -> list[str]:
    return [p for p in (s.strip() for s in text.split(",")) if p]


def reference_items(
    raw: Any, field: str, *, noun: str, split: Callable[[str], list[str]] = _commas, string_form: str = "a comma-separated string"
) -> Sequence[Any]:
    """The items of ``reference[field]``: a list or tuple as it is, a string starting with ``[`` as
    a JSON array, any other string split by ``split`` (commas by default).

    Raises:
        RecordError: invalid JSON, JSON that is not an array, or a value of another type; the
            message names the field and what it should hold (``noun``: "ids", "ICD-10-CM codes").

    >>> reference_items("opioids, ethanol", "substances", noun="ids")
    ['opioids', 'ethanol']
    >>> reference_items('["E11.9"]', "codes", noun="codes")
    ['E11.9']
    >>> reference_items(5, "entities", noun="entity names")
    Traceback (most recent call last):
    medreward.errors.RecordError: reference.entities must be a list of entity names or a comma-separated string, got int
    """
    if isinstance(raw, str):
        text = raw.strip()
        if not text.startswith("["):
            return split(text)
        try:
            items = json.loads(text)
        except ValueError:
            raise RecordError(f"reference.{field}: {raw[:80]!r} is not a JSON array of {noun}") from None
        if not isinstance(items, list):
            raise RecordError(f"reference.{field}: {raw[:80]!r} is not a JSON array of {noun}")
        return items
    if isinstance(raw, (list, tuple)):
        return raw
    raise RecordError(f"reference.{field} must be a list of {noun} or {string_form}, got {type(raw).__name__}")
