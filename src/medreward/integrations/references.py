"""Reference coercion: a ground truth as a trainer stores it → the reference dict of a record.

Trainers hand over references as dicts, JSON text, plain text for the task's main field,
numpy arrays from Parquet rows… Which key a plain value fills is the spec's *primary
reference key*: the first of :meth:`~medreward.compose.Spec.reference_keys` (declared by
each component, defaults included).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from medreward.compose.spec import Spec
from medreward.errors import RecordError
from medreward.records import BadRecord

__all__ = ["TASK_KEY", "bad_input", "coerce_reference", "split_task", "to_builtin"]

#: The key of a JSON-object label that names its task (OpenRLHF multi-task runs).
TASK_KEY = "task"


def to_builtin(value: Any) -> Any:
    """Plain Python values from what trainers hand over (numpy arrays and scalars from Parquet rows)."""
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, str) else k: to_builtin(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_builtin(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy array / scalar, torch tensor
    if callable(tolist):
        try:
            return to_builtin(tolist())
        except Exception:  # noqa: BLE001 - not array-like after all
            return value
    return value


def _keys(spec: Spec | Sequence[str]) -> tuple[str, ...]:
    return spec.reference_keys() if isinstance(spec, Spec) else tuple(spec)


def coerce_reference(value: Any, spec: Spec | Sequence[str]) -> dict[str, Any]:
    """A ground truth as a trainer stores it → the task's reference dict.

    ``spec`` is the Spec, or its reference keys (:meth:`Spec.reference_keys`, which the
    adapters compute once per spec).

    * a dict is the reference (numpy values converted);
    * a JSON object text is parsed to the reference;
    * anything else fills the spec's primary reference key: a JSON array, number or string
      is parsed first, other text (``"opioids,ethanol"``, ``"C"``, ``"none"``) is kept as
      is, and the component parses it like a reference value;
    * ``None`` → ``{}`` (the answer components are then ``not_applicable``).

    Raises :class:`~medreward.errors.RecordError` for a ground truth that cannot be one.

    >>> from medreward import load_spec
    >>> tox = load_spec("toxicology")
    >>> coerce_reference('{"substances": ["opioids"]}', tox)
    {'substances': ['opioids']}
    >>> coerce_reference("opioids,ethanol", tox)
    {'substances': 'opioids,ethanol'}
    >>> coerce_reference('["opioids"]', ("substances",))
    {'substances': ['opioids']}
    """
    value = to_builtin(value)
    if value is None:
        return {}
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in ('{', '[', '"') or _numeric(text):
            try:
                parsed = json.loads(text)
            except ValueError:
                if text.startswith("{"):
                    raise RecordError(f"ground truth {text[:80]!r} looks like a JSON object but does not parse") from None
                parsed = text  # e.g. "[A]": plain text after all
            if isinstance(parsed, Mapping):
                return dict(parsed)
            value = parsed
        else:
            value = text
    if isinstance(value, (float, int, str, list)) and not isinstance(value, bool):
        keys = _keys(spec)
        if not keys:
            name = f"spec {spec.name!r}" if isinstance(spec, Spec) else "the spec"
            raise RecordError(
                f"{name} declares no reference key, so a plain ground truth cannot be placed; "
                "give it as a JSON object"
            )
        return {keys[0]: value}
    raise RecordError(f"a ground truth must be an object, text, a list or a number, got {type(value).__name__}")


def split_task(label: Any) -> tuple[str | None, Any]:
    """``(task, ground truth)`` of a label that may name its task.

    A JSON object (or dict) with a ``"task"`` key names the task; the ground truth is then its
    ``"reference"`` value when that is the only other key, else the object without ``"task"``.
    Anything else has no task and is returned unchanged.

    >>> split_task('{"task": "mcq", "answer": "C"}')
    ('mcq', {'answer': 'C'})
    >>> split_task({"task": "toxicology", "reference": "opioids,ethanol"})
    ('toxicology', 'opioids,ethanol')
    >>> split_task("C")
    (None, 'C')
    """
    value = to_builtin(label)
    parsed: Any = value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None, label  # coerce_reference reports it
    if not isinstance(parsed, Mapping) or TASK_KEY not in parsed:
        return None, label
    task = parsed[TASK_KEY]
    rest = {k: v for k, v in parsed.items() if k != TASK_KEY}
    if not isinstance(task, str) or not task:
        raise RecordError(f"label {TASK_KEY!r} must be a task name, got {task!r}")
    if set(rest) == {"reference"}:
        return task, rest["reference"]
    return task, rest


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def bad_input(error: str, raw: Any) -> BadRecord:
    """An input the Scorer reports as ``error`` with ``error`` as its message."""
    try:
        shown = raw if isinstance(raw, str) else json.dumps(to_builtin(raw), ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        shown = repr(raw)
    return BadRecord(line=None, raw=shown[:1000], error=error)
