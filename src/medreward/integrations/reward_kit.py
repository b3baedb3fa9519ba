"""reward-kit / eval-protocol adapter: scored records as ``EvaluateResult``.

``EvaluateResult`` (reward-kit 0.4.1, eval-protocol 0.3.x) is
``{score, is_score_valid, reason, metrics: {name: {score, is_score_valid, reason}}, error}``.

* :func:`to_evaluate_result` — a :class:`~medreward.records.ScoredRecord` as a plain dict with
  exactly those five fields (no dependency);
* :func:`to_evaluate_result_model` — the same as the real pydantic ``EvaluateResult`` of
  ``eval_protocol`` or ``reward_kit`` (whichever imports; :data:`RESULT_PACKAGE` chooses);
* :func:`evaluate` — a pointwise reward function in the ``@reward_function`` shape:
  ``evaluate(messages, ground_truth=None, **kwargs)``; the last message is the response.

Mapping:

* ``score`` — the reward; 0.0 with ``is_score_valid=False`` when there is none (status
  ``not_applicable``, ``error``, ``timeout``); ``error`` holds the message for the last two;
* ``reason`` — the status, the reward and each component's value in one line;
* ``metrics[component]`` — the component's value, ``is_score_valid=False`` (and 0.0) when it
  has none. reward-kit bounds ``MetricResult.score`` to [0, 1]: a value outside is **clipped**
  into [0, 1] and the reason says ``clipped from <value>``. The top-level ``score`` is not
  clipped (neither package bounds it), so it equals the other adapters' reward.

>>> from medreward import Scorer
>>> [rec] = Scorer("toxicology").score([{"completion": "<think>.</think><answer>opioids</answer>",
...                                      "reference": {"substances": ["opioids", "ethanol"]}}])
>>> res = to_evaluate_result(rec)
>>> round(res["score"], 3), res["is_score_valid"], sorted(res["metrics"]), res["error"]
(0.7, True, ['format', 'substances'], None)
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from medreward.errors import RecordError
from medreward.integrations.references import bad_input, coerce_reference, to_builtin
from medreward.integrations.registry import SpecLike, resolve_spec
from medreward.integrations.results import warn_failures
from medreward.integrations.scorers import get_scorer
from medreward.records import ScoredRecord, Status, message_text
from medreward.text import TextTypeError

__all__ = [
    "DEFAULT_SPEC",
    "RESULT_PACKAGE",
    "evaluate",
    "evaluate_result_class",
    "to_evaluate_result",
    "to_evaluate_result_model",
]

log = logging.getLogger(__name__)

_WARN_EVERY = 30.0  # seconds between failure warnings: called once per sample

#: The spec of :func:`evaluate` when neither ``spec=`` nor ``$MEDREWARD_SPEC`` is given.
DEFAULT_SPEC: SpecLike | None = None

#: Which ``EvaluateResult`` :func:`evaluate` and :func:`to_evaluate_result_model` build:
#: ``"auto"`` (eval_protocol, else reward_kit, else a dict), a package name, or ``"dict"``.
RESULT_PACKAGE: Literal["auto", "eval_protocol", "reward_kit", "dict"] = "auto"

_REASON_CHARS = 300


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 1] + "…"


def _metric(name: str, value: float | None, info: Any, record: ScoredRecord) -> dict[str, Any]:
    detail = f" {_short(info)}" if info else ""
    if value is None:
        why = "no value" if record.status is Status.OK else f"no value (sample {record.status.value})"
        return {"score": 0.0, "is_score_valid": False, "reason": f"{name}: {why}{detail}"}
    clipped = min(1.0, max(0.0, float(value)))
    note = f" (clipped from {value:g})" if clipped != value else ""
    return {"score": clipped, "is_score_valid": True, "reason": f"{name}: {value:.4g}{note}{detail}"}


def to_evaluate_result(record: ScoredRecord) -> dict[str, Any]:
    """A scored record as an ``EvaluateResult``-shaped dict (exactly its five fields)."""
    ok = record.status is Status.OK and record.reward is not None
    parts = ", ".join(f"{k}={'-' if v is None else format(v, '.4g')}" for k, v in record.components.items())
    if ok:
        reason = f"ok: reward {record.reward:.4g} ({parts})"
    else:
        cause = record.info.get("error") or _reason_not_applicable(record)
        reason = f"{record.status.value}: {cause} ({parts})" if cause else f"{record.status.value} ({parts})"
    metrics = {
        name: _metric(name, value, record.info.get(name), record) for name, value in record.components.items()
    }
    error = record.info.get("error") if record.status in (Status.ERROR, Status.TIMEOUT) else None
    return {
        "score": float(record.reward) if ok else 0.0,
        "is_score_valid": ok,
        "reason": reason,
        "metrics": metrics,
        "error": None if error is None else str(error),
    }


def _reason_not_applicable(record: ScoredRecord) -> str:
    reasons = [v.get("reason") for v in record.info.values() if isinstance(v, Mapping) and v.get("reason")]
    return "; ".join(str(r) for r in reasons)


def evaluate_result_class(package: str | None = None) -> type | None:
    """The ``EvaluateResult`` class of ``package`` (default :data:`RESULT_PACKAGE`), or ``None``
    when it does not import (or the choice is ``"dict"``)."""
    choice = package or RESULT_PACKAGE
    if choice == "dict":
        return None
    if choice not in _classes:
        _classes[choice] = _find_class(choice)
    return _classes[choice]


_classes: dict[str, type | None] = {}  # a failed optional import is slow: try each package once


def _find_class(choice: str) -> type | None:
    candidates = ("eval_protocol", "reward_kit") if choice == "auto" else (choice,)
    for name in candidates:
        try:
            module = importlib.import_module(f"{name}.models")
        except Exception as exc:  # noqa: BLE001 - an optional package may fail to import for many reasons
            log.debug("%s.models does not import: %s", name, exc)
            continue
        cls = getattr(module, "EvaluateResult", None)
        if cls is not None:
            return cls
    if choice != "auto":
        raise ImportError(f"{choice} is not importable: pip install {choice.replace('_', '-')}")
    return None


def to_evaluate_result_model(record: ScoredRecord, package: str | None = None) -> Any:
    """The real pydantic ``EvaluateResult`` for a scored record.

    Raises ``ImportError`` when neither eval-protocol nor reward-kit is installed.
    """
    cls = evaluate_result_class(package)
    if cls is None:
        raise ImportError("neither eval_protocol nor reward_kit is importable: pip install eval-protocol")
    return cls.model_validate(to_evaluate_result(record))


def _as_dict(message: Any) -> dict[str, Any]:
    if isinstance(message, Mapping):
        return dict(message)
    dump = getattr(message, "model_dump", None)  # reward-kit / eval-protocol Message
    if callable(dump):
        return dump()
    return {"role": getattr(message, "role", None), "content": getattr(message, "content", None)}


def _ground_truth(value: Any) -> Any:
    """reward-kit defaults a missing ground truth to the conversation (``messages[:-1]``): no reference."""
    value = to_builtin(value)
    if isinstance(value, list) and value and all(
        (isinstance(m, Mapping) and "role" in m) or hasattr(m, "role") for m in value
    ):
        return None
    return value


def evaluate(messages: Sequence[Any], ground_truth: Any = None, **kwargs: Any) -> Any:
    """Score one conversation: ``messages[-1]`` is the response, ``ground_truth`` the reference
    (a dict, JSON text, or plain text for the task's main field).

    The spec is ``spec=`` (a keyword, e.g. an extra field of reward-kit's ``/reward`` body),
    else ``$MEDREWARD_SPEC``, else :data:`DEFAULT_SPEC`. Returns the real ``EvaluateResult``
    when eval-protocol or reward-kit imports (see :data:`RESULT_PACKAGE`), else the dict of
    :func:`to_evaluate_result`. Wrap it with reward-kit's ``reward_function`` to serve it.

    >>> import medreward.integrations.reward_kit as rk
    >>> rk.RESULT_PACKAGE = "dict"
    >>> rk.evaluate([{"role": "user", "content": "Which letter?"},
    ...              {"role": "assistant", "content": "<think>…</think><answer>B</answer>"}],
    ...             ground_truth="B", spec="mcq")["score"]
    1.0
    >>> rk.RESULT_PACKAGE = "auto"
    """
    scorer = get_scorer(resolve_spec(kwargs.get("spec"), default=DEFAULT_SPEC))
    msgs = [_as_dict(m) for m in (messages or [])]
    try:
        completion = message_text(msgs[-1].get("content")) if msgs and msgs[-1].get("content") is not None else None
    except TextTypeError:
        completion = msgs[-1].get("content")  # kept as it came: the scorer rejects it with a clear status
    try:
        item: Any = {"prompt": msgs[:-1], "completion": completion,
                     "reference": coerce_reference(_ground_truth(ground_truth), scorer.reference_keys)}
        if completion is None:
            item = bad_input("no response: messages is empty or its last message has no content", {"messages": msgs})
    except RecordError as exc:
        item = bad_input(f"ground_truth: {exc}", {"completion": completion})
    [record], _ = scorer.score([item])
    warn_failures(f"reward_kit/{scorer.spec.name}", [record], every=_WARN_EVERY)
    result = to_evaluate_result(record)
    cls = evaluate_result_class()
    return result if cls is None else cls.model_validate(result)
