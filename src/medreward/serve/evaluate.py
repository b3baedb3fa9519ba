"""``POST /v1/evaluate``: reward-kit / eval-protocol style evaluation over the same scorers.

A request is ``{"messages": [{"role", "content"}, ...], "ground_truth": ...}`` (extra keys such as
``task`` are allowed): the last message is the response, the ones before it the prompt, and
``ground_truth`` the reference (a dict, JSON text, or plain text for the task's main field), as
:func:`medreward.integrations.reward_kit.evaluate` reads them. The answer is an ``EvaluateResult``
(``{score, is_score_valid, reason, metrics, error}``, see
:func:`medreward.integrations.reward_kit.to_evaluate_result`). The body may be one request (one
result back) or a JSON array of requests (an array back, in order): batch-first like ``/v1/score``.
"""

from __future__ import annotations

from typing import Any

from ..errors import RecordError
from ..integrations.references import bad_input, coerce_reference
from ..integrations.scorers import SharedScorer
from ..integrations.reward_kit import _as_dict, _ground_truth
from ..records import message_text
from ..text import TextTypeError
from .responses import ApiError
from .routing import Route, Router

__all__ = ["evaluation_groups", "evaluation_item"]


def evaluation_item(request: Any, reference_keys: tuple[str, ...]) -> Any:
    """The rollout record of one evaluate request, or the error it is (scored ``error``)."""
    if not isinstance(request, dict):
        return bad_input(f"an evaluate request must be an object, got {type(request).__name__}", request)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        return bad_input("'messages' must be a non-empty list of messages; the last one is the response", request)
    msgs = [_as_dict(m) if isinstance(m, dict) else {"role": None, "content": m} for m in messages]
    content = msgs[-1].get("content")
    if content is None:
        return bad_input("the last message has no content (it is the response)", {"messages": msgs})
    try:
        completion: Any = message_text(content)
    except TextTypeError:
        completion = content  # kept as it came: the scorer rejects it with a clear status
    try:
        reference = coerce_reference(_ground_truth(request.get("ground_truth")), reference_keys)
    except RecordError as exc:
        return bad_input(f"ground_truth: {exc}", {"completion": completion})
    record = {"prompt": msgs[:-1], "completion": completion, "reference": reference}
    if isinstance(request.get("task"), str):
        record["task"] = request["task"]
    return record


def evaluation_groups(router: Router, route: Route | None, data: Any, limit: int) -> tuple[bool, list[tuple[SharedScorer, list[int], list[Any]]]]:
    """Whether ``data`` is one request (one ``EvaluateResult`` back) or a list, and its requests
    as rollout records grouped by scorer: ``(scorer, positions, records)``."""
    single = isinstance(data, dict)
    requests = [data] if single else data
    if not isinstance(requests, list):
        raise ApiError(422, "bad_schema", "the body must be an evaluate request {\"messages\": [...], \"ground_truth\": ...} or an array of them")
    if len(requests) > limit:
        raise ApiError(413, "too_many_rollouts", f"{len(requests)} requests in one body; the limit is {limit}")
    groups = router.split(requests) if route is None else [(route, list(range(len(requests))), requests)]
    out = []
    for group_route, where, items in groups:
        shared = group_route.scorer
        out.append((shared, where, [evaluation_item(r, shared.reference_keys) for r in items]))
    return single, out
