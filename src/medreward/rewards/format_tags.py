"""``format.tags``: the completion follows the required tagged format."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, field_validator

from ..parse.tags import FormatCheck
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, register


@register
class FormatTags(RewardComponent):
    r"""1 if the required sections are present, in order, non-empty (and, optionally, nothing
    stands outside them); else 0, with the problems listed in ``info["problems"]``.

    Formula: :math:`R = \mathbb{1}[\text{each tag once} \wedge \text{in order} \wedge \text{non-empty}
    (\wedge \text{nothing outside})]`.

    Source: the R1 format reward of DeepSeek-R1 as written in open-r1 ``rewards.py::format_reward``
    (``^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$``) and TRL ``think_format_reward``;
    MediX-R1 uses the same check with ``<thinking>``. Unlike a backtracking regex, this check is a
    linear scan, so a 10 MB completion costs milliseconds; and unlike some published regexes an
    empty ``<answer></answer>`` fails (Visual-RFT #176: empty answers were rewarded and the policy
    collapsed to them).

    Params: ``tags`` (default ``["think", "answer"]``), ``only_tags`` (default ``false``):
    also require that nothing but whitespace is outside the tags.

    >>> FormatTags()(["<think>pinpoint pupils</think><answer>opioids</answer>", "opioids"])
    [1.0, 0.0]
    """

    kind = "format.tags"

    class Params(ComponentParams):
        tags: tuple[str, ...] = Field(default=("think", "answer"), min_length=1)
        only_tags: bool = False

        @field_validator("tags")
        @classmethod
        def _plain_names(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
            for tag in tags:
                if not tag or any(c in tag for c in "<>/ \t\n"):
                    raise ValueError(f"tag name {tag!r} must be a bare name like 'answer'")
            if len(set(tags)) != len(tags):
                raise ValueError("tag names must be distinct")
            return tags

    def setup(self) -> None:
        self._check = FormatCheck(self.params.tags, only_tags=self.params.only_tags)

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        # a linear scan per text cannot hang, so the runner may time the batch as a whole
        check, out = self._check, []
        for rollout in rollouts:
            problems = check(rollout.completion_text)
            out.append(ComponentScore(0.0, info={"problems": problems}) if problems else ComponentScore(1.0))
        return out

    def score_one(self, rollout: Rollout) -> ComponentScore:
        return self.score_batch((rollout,))[0]
