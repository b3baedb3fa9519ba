"""``self_rubric``: the judge first writes a rubric for the prompt, then grades each completion
against it (RM-R1 style), with the ``rubric`` component's grading and HealthBench's score."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from ..backends.base import ChatRequest, ChatResponse
from ..errors import RecordError
from ..parse.verdicts import parse_json_object
from ..records import ComponentScore, Rollout
from .base import register
from .judge_prompts import (
    SELF_RUBRIC_SYSTEM,
    SELF_RUBRIC_VERSION,
    render_conversation,
    self_rubric_schema,
    self_rubric_text,
)
from .rubric import Grading, GradingParams, Rubric, _retry, parse_rubric

__all__ = ["SelfRubric", "read_generated_rubric"]


def read_generated_rubric(text: Any, max_criteria: int) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The rubric a judge wrote, as HealthBench items ``[{"criterion", "points"}]``, or the problem.

    Accepts ``{"criteria": [...]}`` (what the schema asks for) or ``{"rubric": [...]}``; every item
    needs non-empty ``criterion`` text and finite ``points`` in [-10, 10]; there must be 1 to
    ``max_criteria`` items and at least one with positive points (else HealthBench's score is
    undefined). Never raises.

    >>> read_generated_rubric('{"criteria": [{"criterion": "Advises ER", "points": 5}]}', 8)
    ([{'criterion': 'Advises ER', 'points': 5.0}], None)
    >>> read_generated_rubric('{"criteria": [{"criterion": "Is rude", "points": -3}]}', 8)[1]
    'the rubric has no criterion with positive points'
    """
    obj = parse_json_object(text)
    if obj is None:
        return None, "no JSON object in the answer"
    raw = obj.get("criteria", obj.get("rubric"))
    if not isinstance(raw, list) or not raw:
        return None, "no non-empty 'criteria' list in the answer"
    if len(raw) > max_criteria:
        return None, f"{len(raw)} criteria, more than the {max_criteria} asked for"
    plain = [{"criterion": e.get("criterion"), "points": e.get("points")} if isinstance(e, Mapping) else e for e in raw]
    try:
        items = parse_rubric(plain, "criteria")
    except RecordError as exc:
        return None, str(exc)
    if any(abs(item.points) > 10 for item in items):
        return None, "points outside [-10, 10]"
    if not any(item.points > 0 for item in items):
        return None, "the rubric has no criterion with positive points"
    return [{"criterion": item.criterion.strip(), "points": item.points} for item in items], None


def _rubric_hash(items: list[dict[str, Any]]) -> str:
    canonical = json.dumps(items, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@register
class SelfRubric(Grading):
    r"""The judge writes a rubric for the prompt, then grades each completion against it.

    Step 1 — once per distinct prompt of the batch (so a GRPO group shares one rubric): the judge
    sees only the conversation and writes ``{"criteria": [{"criterion", "points"}]}``, 1 to
    ``max_criteria`` criteria, points in [-10, 10], at least one positive (a JSON schema is sent).
    The request is deterministic (temperature 0, fixed seed, versioned template
    ``self_rubric.write/1``), so the backend's persistent cache serves the same rubric to later
    batches and runs. An unusable rubric is asked for once more; a second failure (or a failed
    call) is ``error`` (``timeout``) for every sample of that prompt, and no unusable rubric stays
    in the cache.

    Step 2 — the completions are graded against it exactly as the ``rubric`` component does
    (``mode`` ``batched`` or ``per_criterion``), and scored with HealthBench's formula
    :math:`R = \mathrm{clip}(\sum_i p_i\,1[\text{met}_i] / \sum_i \max(p_i, 0), 0, 1)`
    (``clip = "signed"``: to [-1, 1]).

    Source: RM-R1 (Chen et al., 2025: a reasoning reward model that writes rubrics before judging)
    for the write-then-grade scheme; HealthBench / simple-evals for the score
    (docs/formulas.md#self-written-rubric). The prompts are medreward's own. An empty prompt is
    ``not_applicable``. ``info``: the rubric component's info plus ``generated_rubric`` (with
    ``record_rubric = true``, the default), ``rubric_hash`` (16 hex digits of sha256 over the
    canonical rubric), ``rubric_criteria`` (count) and ``rubric_template``.
    """

    kind = "self_rubric"

    class Params(GradingParams):
        max_criteria: int = Field(default=10, ge=1, le=50)
        rubric_max_tokens: int = Field(default=1024, ge=16, le=32_768)
        record_rubric: bool = True

    def setup(self) -> None:
        p = self.params
        self._grader = Rubric(
            name=self.name, backend=p.backend, mode=p.mode, clip=p.clip, structured=p.structured,
            max_tokens=p.max_tokens, max_completion_chars=p.max_completion_chars,
        )  # fmt: skip

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        super().bind_backends(backends)
        self._grader.bind_backends(backends)

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        prompts: dict[str, list[int]] = {}  # conversation text -> batch indices
        for i, rollout in enumerate(rollouts):
            try:
                conversation = render_conversation(rollout.prompt)
            except TypeError as exc:  # a prompt that is neither text nor a list of messages
                results[i] = ComponentScore.error(f"bad input: the prompt cannot be read ({exc})")
                continue
            if not conversation.strip():
                results[i] = ComponentScore.not_applicable("the prompt is empty: nothing to write a rubric for")
                continue
            prompts.setdefault(conversation, []).append(i)
        conversations = list(prompts)
        requests = [
            ChatRequest(
                messages=({"role": "system", "content": SELF_RUBRIC_SYSTEM},
                          {"role": "user", "content": self_rubric_text(c, p.max_criteria)}),
                template=SELF_RUBRIC_VERSION,
                max_tokens=p.rubric_max_tokens,
                response_schema=self_rubric_schema(p.max_criteria) if p.structured else None,
            )  # fmt: skip
            for c in conversations
        ]
        outcomes = self.run_requests(requests, lambda _k, r: _parse(r, p.max_criteria), retry=_retry)
        graded: list[int] = []
        derived: list[Rollout] = []
        written: dict[int, list[dict[str, Any]]] = {}
        for conversation, outcome in zip(conversations, outcomes):
            members = prompts[conversation]
            trace = {f"rubric_{k}": v for k, v in self.trace([outcome], SELF_RUBRIC_VERSION).items()
                     if k in ("template", "cached", "retried")}  # fmt: skip
            failed = self.outcome_error(outcome, trace)
            if failed is not None:
                failed.info["error"] = f"writing the rubric: {failed.info['error']}"
                for i in members:
                    results[i] = ComponentScore(None, failed.status, dict(failed.info))
                continue
            extra: dict[str, Any] = {**trace, "rubric_hash": _rubric_hash(outcome.value),
                                     "rubric_criteria": len(outcome.value)}  # fmt: skip
            if p.record_rubric:
                extra["generated_rubric"] = outcome.value
            for i in members:
                written[i] = extra
                graded.append(i)
                rollout = rollouts[i]
                derived.append(Rollout(prompt=rollout.prompt, completion=rollout.completion,
                                       reference={"rubric": outcome.value}, id=rollout.id, group=rollout.group))  # fmt: skip
        # step 2: the rubric component grades every completion that has a rubric, in one call
        for i, score in zip(graded, self._grader.score_batch(derived)):
            score.info.update(written[i])
            results[i] = score
        return results  # type: ignore[return-value]


def _parse(response: ChatResponse, max_criteria: int) -> tuple[list[dict[str, Any]] | None, str | None]:
    return read_generated_rubric(response.text, max_criteria)
