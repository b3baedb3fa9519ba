"""``iou``: bounding-box IoU between the predicted box and the reference box(es) (grounding)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, field_validator

from ..errors import RecordError
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["MAX_ANSWER_CHARS", "IoU", "box_iou", "parse_last_box"]

Box = tuple[float, float, float, float]

#: Only the last MAX_ANSWER_CHARS characters of the answer are read: a box is a few dozen
#: characters, and the last box is the claim, so the tail is where it stands.
MAX_ANSWER_CHARS = 10_000

# An innermost bracket group "[...]". The class excludes both brackets, so each attempt stops at
# the next bracket: the groups are disjoint and the scan is linear (no backtracking blow-up).
_GROUP = re.compile(r"\[([^\[\]]*)\]")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NON_FINITE = frozenset({"nan", "inf", "infinity"})


def _number(token: str) -> float | None:
    """A decimal number (or NaN/Inf spelled out, so that they can be rejected by name); else None."""
    if _NUMBER.fullmatch(token):
        return float(token)
    if token.lstrip("+-").lower() in _NON_FINITE:
        return float(token)
    return None


def _numbers(content: str) -> list[float] | None:
    """The numbers of a bracket group's content (comma- or whitespace-separated), or None if it
    holds anything else."""
    parts = content.split(",") if "," in content else content.split()
    values = []
    for part in parts:
        value = _number(part.strip())
        if value is None:
            return None
        values.append(value)
    return values or None


def parse_last_box(text: str) -> tuple[list[float] | None, bool]:
    """The last bracketed list of numbers in ``text`` (read from its last
    :data:`MAX_ANSWER_CHARS` characters) and whether the text was cut. Lists of anything but
    numbers (``[see above]``) are skipped; the list is returned whatever its length, so that the
    caller can say why it is not a box.

    >>> parse_last_box('{"bbox_2d": [ 12, 30.5,80 , 96 ], "label": "nodule"}')
    ([12.0, 30.5, 80.0, 96.0], False)
    >>> parse_last_box("first [1, 2, 3, 4], then [5,6,7,8] [see note]")
    ([5.0, 6.0, 7.0, 8.0], False)
    >>> parse_last_box("no box here")
    (None, False)
    """
    truncated = len(text) > MAX_ANSWER_CHARS
    if truncated:
        text = text[-MAX_ANSWER_CHARS:]
    groups = [m.group(1) for m in _GROUP.finditer(text)]
    for content in reversed(groups):
        values = _numbers(content)
        if values is not None:
            return values, truncated
    return None, truncated


def _box_problem(values: Sequence[float]) -> str | None:
    """Why ``values`` is not a valid ``[x1, y1, x2, y2]`` box (None when it is one)."""
    if len(values) != 4:
        return f"expected 4 coordinates, got {len(values)}"
    if not all(math.isfinite(v) for v in values):
        return "non-finite coordinate"
    x1, y1, x2, y2 = values
    if x2 < x1 or y2 < y1:
        return "x2 < x1 or y2 < y1"
    return None


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    r"""Intersection over union of two valid ``[x1, y1, x2, y2]`` boxes in continuous coordinates:
    :math:`|A \cap B| / |A \cup B|`; 0 when the union has no area (degenerate boxes) or overflows.

    >>> box_iou([0, 0, 2, 2], [1, 1, 3, 3])  # 1 / (4 + 4 - 1)
    0.14285714285714285
    >>> box_iou([0, 0, 0, 5], [0, 0, 0, 5])  # zero area
    0.0
    """
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    if not (union > 0 and math.isfinite(union) and math.isfinite(inter)):
        return 0.0
    return min(1.0, inter / union)


def _reference_boxes(value: Any, field: str) -> list[Box]:
    """The reference as a list of boxes: one box ``[x1, y1, x2, y2]`` or a list of them."""

    def as_box(item: Any) -> Box:
        if not isinstance(item, (list, tuple)) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in item
        ):
            raise RecordError(f"reference field {field!r} must be a box [x1, y1, x2, y2] or a list of boxes")
        problem = _box_problem(item)
        if problem:
            raise RecordError(f"reference field {field!r} has an invalid box {list(item)!r}: {problem}")
        return tuple(float(v) for v in item)  # type: ignore[return-value]

    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        return [as_box(v) for v in value]
    return [as_box(value)]


@register
class IoU(RewardComponent):
    r"""Box IoU between the predicted ``[x1, y1, x2, y2]`` and the reference box, for grounding.

    Formula: :math:`\mathrm{IoU} = |A \cap B| / |A \cup B|` in continuous coordinates;
    ``mode = "continuous"``: :math:`R = \mathrm{IoU}`; ``mode = "threshold"``:
    :math:`R = \mathbb{1}[\mathrm{IoU} \ge \tau]` (default :math:`\tau = 0.5`). Several reference
    boxes (a list of boxes: any of several findings counts) → the maximum IoU over them.

    Source: the IoU rewards of VLM-R1 (om-ai-lab/VLM-R1, ``iou_reward``: continuous IoU, and the
    ``IoU > 0.5 → 1`` variant) on which MedLoc-R1 builds (docs/formulas.md#box-iou: the binary
    ``1[IoU ≥ τ]`` reward with τ = 0.5 of prior work; MedLoc-R1 moves τ by a curriculum — pass the
    current τ as ``threshold``). VLM-R1 computes the intersection with a ``-1``/``+1`` pixel
    convention that drops overlaps one unit wide; here coordinates are continuous (the same value
    otherwise). Predicted and reference boxes must use the same coordinate system.

    Reading the prediction: the last list of numbers in brackets in the answer section (param
    ``answer_tag``, default ``"answer"``; ``None`` = whole completion), e.g. ``[12, 30, 80, 96]`` or
    ``{"bbox_2d": [12, 30, 80, 96]}``; commas or whitespace separate numbers. Only the last
    :data:`MAX_ANSWER_CHARS` characters are read. Scores 0 with ``info["reason"]``: no answer
    section, no box, a list of other than 4 numbers, NaN/Inf, or ``x2 < x1`` / ``y2 < y1``.
    A zero-area box is valid and has IoU 0. The reference (param ``field``, default ``"box"``)
    must hold valid boxes (else :class:`~medreward.errors.RecordError`); without it, or with an
    empty list, the component is ``not_applicable``.

    ``info``: ``predicted``, ``iou``, ``reference_index`` (the best-matching reference box),
    ``threshold`` in threshold mode, ``truncated`` when the answer was cut.

    >>> iou = IoU()
    >>> iou(["<answer>[0, 0, 10, 10]</answer>", "<answer>[5,0,15,10]</answer>"], [{"box": [0, 0, 10, 10]}] * 2)
    [1.0, 0.3333333333333333]
    >>> IoU(mode="threshold")(["<answer>[5, 0, 15, 10]</answer>"], [{"box": [[50, 50, 60, 60], [0, 0, 10, 10]]}])
    [0.0]
    """

    kind = "iou"

    class Params(ComponentParams):
        answer_tag: str | None = "answer"
        field: str = Field(default="box", min_length=1)
        mode: Literal["continuous", "threshold"] = "continuous"
        threshold: float = Field(default=0.5, gt=0, le=1)

        @field_validator("answer_tag")
        @classmethod
        def _plain_name(cls, tag: str | None) -> str | None:
            if tag is not None and (not tag or any(c in tag for c in "<>/ \t\n")):
                raise ValueError(f"tag name {tag!r} must be a bare name like 'answer'")
            return tag

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        reference = rollout.reference.get(p.field)
        if reference is None or (isinstance(reference, (list, tuple)) and not reference):
            return ComponentScore.not_applicable(f"reference has no {p.field!r} box")
        boxes = _reference_boxes(reference, p.field)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section", "predicted": None})
        values, truncated = parse_last_box(answer)
        # NaN/Inf are shown as text: a JSON writer cannot write them as numbers
        shown = None if values is None else [v if math.isfinite(v) else str(v) for v in values]
        info: dict[str, Any] = {"predicted": shown}
        if truncated:
            info["truncated"] = True
        if values is None:
            return ComponentScore(0.0, info={**info, "reason": "no box found"})
        problem = _box_problem(values)
        if problem:
            return ComponentScore(0.0, info={**info, "reason": f"invalid box: {problem}"})
        ious = [box_iou(values, box) for box in boxes]
        best = max(range(len(ious)), key=ious.__getitem__)
        info.update(iou=ious[best], reference_index=best)
        if p.mode == "threshold":
            info["threshold"] = p.threshold
            return ComponentScore.ok(1.0 if ious[best] >= p.threshold else 0.0, **info)
        return ComponentScore.ok(ious[best], **info)
