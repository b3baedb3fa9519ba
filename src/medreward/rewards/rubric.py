"""``rubric``: HealthBench-compatible rubric score, each criterion graded by an LLM judge."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..backends.base import ChatRequest, ChatResponse
from ..errors import RecordError
from ..parse.verdicts import criterion_verdicts, parse_bool, parse_json_object
from ..records import ComponentScore, Rollout
from ..text import TextTypeError
from .base import register
from .judge import ModelComponent, ModelParams, Outcome
from .judge_prompts import (
    RUBRIC_BATCHED_VERSION,
    RUBRIC_PER_CRITERION_VERSION,
    RUBRIC_SYSTEM,
    batched_schema,
    batched_text,
    per_criterion_schema,
    per_criterion_text,
    render_conversation,
    shared_block,
)

__all__ = ["Criterion", "Rubric", "RubricItem", "auto_mode", "axis_scores", "healthbench_score", "parse_rubric"]

_EXPLANATION_CHARS = 300  # kept per criterion in info


@dataclass(frozen=True)
class RubricItem:
    """One criterion: its id (``c1``, ``c2``… by position unless given), text, points and tags."""

    id: str
    criterion: str
    points: float
    tags: tuple[str, ...] = ()


class Criterion(BaseModel):
    """A criterion written in the spec (``criteria = [{criterion, points, tags}]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    criterion: str = Field(min_length=1)
    points: float
    tags: tuple[str, ...] = ()
    id: str | None = Field(default=None, min_length=1)

    @field_validator("points")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("points must be a finite number")
        return value


def healthbench_score(points: Sequence[float], met: Sequence[bool]) -> float | None:
    r"""HealthBench's per-example score, as simple-evals ``calculate_score`` computes it:
    :math:`\sum_i p_i \cdot 1[\text{met}_i] / \sum_i \max(p_i, 0)`; ``None`` when no criterion has
    positive points. Not clipped: negative criteria can push it below 0 (it is at most 1).

    >>> healthbench_score([5, 3, -4], [True, False, True])  # (5 - 4) / 8
    0.125
    >>> healthbench_score([-2], [True]) is None
    True
    """
    if len(points) != len(met):
        raise ValueError(f"{len(points)} criteria but {len(met)} verdicts")
    possible = sum(p for p in points if p > 0)
    if possible == 0:
        return None
    return sum(p for p, m in zip(points, met) if m) / possible


def axis_scores(items: Sequence[RubricItem], met: Sequence[bool]) -> dict[str, float]:
    """The same score over the criteria carrying each ``axis:NAME`` tag, keyed by ``NAME``; an axis
    without positive points is left out (as simple-evals leaves out tags whose score is None)."""
    by_axis: dict[str, tuple[list[float], list[bool]]] = {}
    for item, m in zip(items, met):
        for tag in dict.fromkeys(item.tags):
            if tag.startswith("axis:"):
                pts, mets = by_axis.setdefault(tag[5:], ([], []))
                pts.append(item.points)
                mets.append(m)
    out = {}
    for axis, (pts, mets) in by_axis.items():
        score = healthbench_score(pts, mets)
        if score is not None:
            out[axis] = score
    return out


def parse_rubric(raw: Any, field: str = "rubric") -> list[RubricItem]:
    """A HealthBench rubric (``[{"criterion", "points", "tags"}, ...]``) as items; ids are the
    optional ``"id"`` of each item, else ``c1``, ``c2``… by position. A malformed rubric raises
    :class:`~medreward.errors.RecordError` naming the bad item."""
    if not isinstance(raw, (list, tuple)):
        raise RecordError(f"reference field {field!r} must be a list of {{criterion, points, tags}} objects")
    items = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        where = f"{field}[{i}]"
        if not isinstance(entry, Mapping):
            raise RecordError(f"{where} must be an object with 'criterion' and 'points'")
        criterion, points, tags = entry.get("criterion"), entry.get("points"), entry.get("tags", ())
        if not isinstance(criterion, str) or not criterion.strip():
            raise RecordError(f"{where}.criterion must be non-empty text")
        if isinstance(points, bool) or not isinstance(points, (int, float)) or not math.isfinite(points):
            raise RecordError(f"{where}.points must be a finite number")
        if tags is None:
            tags = ()
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) for t in tags):
            raise RecordError(f"{where}.tags must be a list of strings")
        cid = entry.get("id", f"c{i + 1}")
        if not isinstance(cid, str) or not cid.strip() or cid in seen:
            raise RecordError(f"{where}.id must be unique non-empty text, got {cid!r}")
        seen.add(cid)
        items.append(RubricItem(cid, criterion, float(points), tuple(tags)))
    return items


class GradingParams(ModelParams):
    """Parameters of grading a response against a rubric (``rubric`` and ``self_rubric``)."""

    mode: Literal["batched", "per_criterion", "auto"] = "batched"
    clip: Literal["unit", "signed"] = "unit"
    structured: bool = True
    max_tokens: int = Field(default=2048, ge=1, le=32_768)


class Grading(ModelComponent):
    """Base of the rubric-graded components: the score range follows ``params.clip``."""

    Params: ClassVar[type[GradingParams]] = GradingParams

    @property
    def output_range(self) -> tuple[float, float]:
        return (0.0, 1.0) if self.params.clip == "unit" else (-1.0, 1.0)


@register
class Rubric(Grading):
    r"""HealthBench-style rubric score: an LLM judge decides which criteria the response meets.

    Formula (simple-evals ``calculate_score``, per example):
    :math:`S = \sum_i p_i \cdot 1[\text{met}_i] / \sum_i \max(p_i, 0)`, points :math:`p_i` may be
    negative (undesirable behaviour). :math:`R = \mathrm{clip}(S, 0, 1)` (``clip = "unit"``, the
    default) or :math:`\mathrm{clip}(S, -1, 1)` (``clip = "signed"``); ``info["raw_score"]`` keeps
    ``S``. A rubric without positive points (simple-evals returns None) and an empty rubric are
    ``not_applicable`` with a reason, and no call is made. Per-axis scores (the same formula over the
    criteria tagged ``axis:NAME``) are in ``info["axis_scores"]``; with ``axes = [...]`` also as a
    vector ``info["axes"]`` in that order (clipped like ``R``; ``None`` where the rubric has no such
    axis), the per-axis rewards of MR-RML / AMIE-style multi-axis rubrics.

    Source: HealthBench (Arora et al., 2025) and openai/simple-evals ``healthbench_eval.py``
    (``calculate_score``, ``grade_sample``; docs/formulas.md#rubric-score-healthbench). simple-evals
    clips only the mean over examples; a per-sample reward needs a bounded range, hence ``clip``.

    Criteria: ``criteria = [{criterion, points, tags}]`` in the spec, else ``reference[field]``
    (default ``"rubric"``, HealthBench format). Modes: ``batched`` (default; one call per rollout, a
    JSON verdict per criterion id), ``per_criterion`` (one call per criterion, HealthBench's grader
    semantics: ``{"explanation", "criteria_met"}``) and ``auto`` (:func:`auto_mode`: per criterion
    against a server on this machine, batched otherwise, and per criterion for a rollout whose batched
    verdict stays unusable; ``info["mode"]`` says which was used). An answer with missing, unknown or duplicate
    ids, or unreadable JSON, is asked again once (new seed, the problem stated); a second failure is
    that sample's ``error``. Prompts put the conversation and the fenced completion first and the
    criteria last (server prefix caching); a JSON schema is sent as ``response_schema``.

    >>> from medreward.backends import ChatResponse
    >>> class AllMet:
    ...     name, kind, model = "judge", "fake", "fake-judge"
    ...     def complete(self, requests):
    ...         return [ChatResponse('{"verdicts": [{"id": "c1", "criteria_met": true},'
    ...                              ' {"id": "c2", "criteria_met": true}]}', "fake-judge") for _ in requests]
    >>> rubric = Rubric()
    >>> rubric.bind_backends({"judge": AllMet()})
    >>> rubric(["Go to the ER now."], [{"rubric": [{"criterion": "Advises ER", "points": 5},
    ...                                             {"criterion": "Is rude", "points": -2}]}])
    [0.6]
    """

    kind = "rubric"

    class Params(GradingParams):
        criteria: tuple[Criterion, ...] | None = None
        field: str = Field(default="rubric", min_length=1)
        axes: tuple[str, ...] | None = None

    def setup(self) -> None:
        crit = self.params.criteria
        self._fixed: list[RubricItem] | None = None
        if crit is not None:
            self._fixed = parse_rubric([c.model_dump(exclude_none=True) for c in crit], f"{self.name}.params.criteria")

    def reference_keys(self) -> tuple[str, ...]:
        return () if self._fixed is not None else (self.params.field,)

    def _items(self, rollout: Rollout) -> list[RubricItem]:
        if self._fixed is not None:
            return self._fixed
        return parse_rubric(rollout.reference.get(self.params.field, []), self.params.field)

    def resolved_mode(self) -> Literal["batched", "per_criterion"]:
        """The mode this batch is graded in: ``params.mode``, or for ``auto`` the rule of
        :func:`auto_mode` applied to the bound backend."""
        mode = self.params.mode
        return auto_mode(self.backend()) if mode == "auto" else mode

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        results: list[ComponentScore | None] = [None] * len(rollouts)
        plans: list[tuple[int, list[RubricItem], dict[str, Any], str]] = []
        for i, rollout in enumerate(rollouts):
            try:
                items = self._items(rollout)
                conversation = render_conversation(rollout.prompt)
                completion = rollout.completion_text
            except (RecordError, TextTypeError) as exc:
                results[i] = ComponentScore.error(str(exc))
                continue
            if not items:
                results[i] = ComponentScore.not_applicable("the rubric is empty")
                continue
            if not any(item.points > 0 for item in items):
                results[i] = ComponentScore.not_applicable(
                    "the rubric has no positive points (HealthBench's score is undefined: simple-evals returns None)"
                )
                continue
            info: dict[str, Any] = {}
            plans.append((i, items, info, shared_block(conversation, self.fenced_completion(completion, info))))
        mode = self.resolved_mode()
        graded = self._grade(plans, mode)
        if self.params.mode == "auto" and mode == "batched":
            # a judge that cannot write one verdict per criterion (small models lose ids in long
            # JSON) gets each criterion asked on its own rather than an error for the sample
            unusable = [k for k, score in enumerate(graded) if score.info.get("unusable_verdict")]
            if unusable:
                again = self._grade([plans[k] for k in unusable], "per_criterion")
                for k, score in zip(unusable, again):
                    score.info["fallback_from"] = {"mode": "batched", "error": graded[k].info.get("error")}
                    graded[k] = score
        for (i, _, _, _), score in zip(plans, graded):
            score.info.pop("unusable_verdict", None)
            results[i] = score
        return results  # type: ignore[return-value]

    def _grade(self, plans: list[tuple[int, list[RubricItem], dict[str, Any], str]], mode: str) -> list[ComponentScore]:
        """Grade the planned rollouts in ``mode``: one backend call for all their requests (two
        when answers need a retry), one score per plan."""
        version = RUBRIC_BATCHED_VERSION if mode == "batched" else RUBRIC_PER_CRITERION_VERSION
        requests: list[ChatRequest] = []
        slots: list[list[int]] = []
        for _, items, _, shared in plans:
            made = self._requests(shared, items, version, mode)
            slots.append(list(range(len(requests), len(requests) + len(made))))
            requests.extend(made)
        if mode == "batched":
            ids = [tuple(it.id for it in items) for _, items, _, _ in plans]
            outcomes = self.run_requests(requests, lambda k, r: _parse_batched(ids[k], r), retry=_retry)
        else:
            outcomes = self.run_requests(requests, _parse_one, retry=_retry)
        return [
            self._score(items, [outcomes[s] for s in mine], dict(info), version, mode)
            for (_, items, info, _), mine in zip(plans, slots)
        ]

    def _requests(self, shared: str, items: list[RubricItem], version: str, mode: str) -> list[ChatRequest]:
        p = self.params
        system = {"role": "system", "content": RUBRIC_SYSTEM}

        def request(text: str, schema: dict[str, Any]) -> ChatRequest:
            return ChatRequest(
                messages=(system, {"role": "user", "content": text}),
                template=version,
                max_tokens=p.max_tokens,
                response_schema=schema if p.structured else None,
            )

        if mode == "batched":
            ids = tuple(item.id for item in items)
            text = batched_text(shared, ((it.id, it.points, it.criterion) for it in items))
            return [request(text, batched_schema(ids))]
        schema = per_criterion_schema()
        return [request(per_criterion_text(shared, it.points, it.criterion), schema) for it in items]

    def _score(
        self, items: list[RubricItem], outcomes: list[Outcome], info: dict[str, Any], version: str, mode: str
    ) -> ComponentScore:
        base = {**self.trace(outcomes, version), **info}
        if self.params.mode == "auto":
            base["mode"] = mode
        for outcome in outcomes:
            failed = self.outcome_error(outcome, base)
            if failed is not None:
                if outcome.failure is None:  # the judge answered, but not usably: auto may ask per criterion
                    failed.info["unusable_verdict"] = True
                return failed
        if mode == "batched":
            verdicts = outcomes[0].value
            met = [verdicts[it.id][0] for it in items]
            explanations = [verdicts[it.id][1] for it in items]
        else:
            met = [o.value[0] for o in outcomes]
            explanations = [o.value[1] for o in outcomes]
        raw = healthbench_score([it.points for it in items], met)
        assert raw is not None  # rubrics without positive points never reach the judge
        low = 0.0 if self.params.clip == "unit" else -1.0
        axes = axis_scores(items, met)
        base.update(
            raw_score=raw,
            met_points=sum(it.points for it, m in zip(items, met) if m),
            possible_points=sum(it.points for it in items if it.points > 0),
            axis_scores=axes,
            criteria=[
                {"id": it.id, "points": it.points, "met": m, "explanation": e[:_EXPLANATION_CHARS]}
                for it, m, e in zip(items, met, explanations)
            ],
        )
        if self.params.axes is not None:
            base["axes"] = [None if a not in axes else min(1.0, max(low, axes[a])) for a in self.params.axes]
        return ComponentScore.ok(min(1.0, max(low, raw)), **base)


#: hosts whose server runs beside the trainer: no per-token bill, and a prefix cache
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def auto_mode(backend: Any) -> Literal["batched", "per_criterion"]:
    """Which rubric mode ``auto`` uses with ``backend`` (docs/judges.md#batched-or-per_criterion).

    ``per_criterion`` for an OpenAI-compatible server on this machine (loopback ``base_url``): it
    bills nothing per token and reuses the shared prompt prefix (conversation + completion come
    first in every judge prompt), so K short answers cost less time than one long JSON verdict;
    ``batched`` for everything else — a remote or hosted API bills every prompt token again for
    each criterion (K× the prompt tokens of one batched call), and a local ``transformers``
    backend has no prefix cache. Either way ``auto`` re-asks per criterion a rollout whose batched
    verdict is still unusable after its retry.

    >>> class Remote:
    ...     kind = "openai"
    ...     class config:
    ...         base_url = "https://api.example.com/v1"
    >>> auto_mode(Remote())
    'batched'
    >>> Remote.config.base_url = "http://127.0.0.1:8080/v1"
    >>> auto_mode(Remote())
    'per_criterion'
    """
    if getattr(backend, "kind", None) != "openai":
        return "batched"
    url = getattr(getattr(backend, "config", None), "base_url", None)
    if not isinstance(url, str):
        return "batched"
    host = urlsplit(url).hostname or ""
    return "per_criterion" if host in _LOOPBACK_HOSTS or host.startswith("127.") else "batched"


def _parse_batched(ids: tuple[str, ...], response: ChatResponse) -> tuple[Any, str | None]:
    obj = parse_json_object(response.text)
    if obj is None:
        return None, "no JSON object in the answer"
    verdicts, problems = criterion_verdicts(obj, ids)
    if problems:
        return None, "; ".join(problems)
    return verdicts, None


def _parse_one(_index: int, response: ChatResponse) -> tuple[Any, str | None]:
    obj = parse_json_object(response.text)
    if obj is None:
        return None, "no JSON object in the answer"
    met = parse_bool(obj.get("criteria_met"))
    if met is None:
        return None, "no boolean 'criteria_met' in the answer"
    explanation = obj.get("explanation", "")
    return (met, explanation if isinstance(explanation, str) else str(explanation)), None


def _retry(request: ChatRequest, problem: str) -> ChatRequest:
    """The request asked again: a new seed (so neither a cache nor a deterministic server serves the
    same answer) and the problem stated after everything shared (the prompt prefix stays cached)."""
    *head, last = request.messages
    note = f"\n\nYour previous answer could not be used ({problem}). Follow the required JSON format exactly."
    return replace(
        request,
        messages=(*head, {**last, "content": last["content"] + note}),
        seed=(request.seed or 0) + 1,
        template=request.template + "+retry",
    )
