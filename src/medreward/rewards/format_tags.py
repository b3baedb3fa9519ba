"""``format.tags``: the completion follows the required tagged format."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..parse.tags import FormatCheck, open_r1_format, tag_count_credit, trl_think_format
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, register

Mode = Literal["strict", "open_r1", "trl_think", "tag_count"]


@register
class FormatTags(RewardComponent):
    r"""1 if the required sections are present, in order, non-empty (and, optionally, nothing
    stands outside them); else 0, with the problems listed in ``info["problems"]``.

    Formula (``mode = "strict"``, the default): :math:`R = \mathbb{1}[\text{each tag once} \wedge
    \text{in order} \wedge \text{non-empty} (\wedge \text{nothing outside})]`.

    Source: the R1 format reward of DeepSeek-R1 as open-r1 ``rewards.py::format_reward`` and TRL
    ``think_format_reward`` write it; MediX-R1 uses the same check with ``<thinking>``. The
    default reads the *intent* of those checks, not their regular expressions, and differs:

    * newlines around the tags are not required (open-r1 requires ``<think>\n…\n</think>\n<answer>\n…\n</answer>``
      exactly, so ``<think>r</think><answer>C</answer>`` scores 0 there): models prompted
      without that layout are not punished for whitespace;
    * text before the first tag or after the last is allowed unless ``only_tags`` (open-r1
      refuses a preamble but, through ``$`` under ``re.MULTILINE``, accepts anything after a
      newline that follows ``</answer>``);
    * an empty section fails (open-r1 accepts ``<think>\n\n</think>``; TRL accepts
      ``<think></think>``): Visual-RFT #176 saw a policy collapse to rewarded empty answers;
    * each tag exactly once: open-r1's lazy ``.*?`` spans tags, so two ``<answer>`` sections
      pass there (a model can hedge with several answers and still collect the format reward);
    * a linear scan, so a 10 MB completion costs milliseconds.

    Compatibility modes reproduce the peers exactly (checked against their own test cases and,
    for TRL, against the installed function), for runs that must match a published setup:

    * ``"open_r1"``: open-r1's ``format_reward`` (1 or 0), tags generalised from think/answer;
    * ``"trl_think"``: TRL's ``think_format_reward`` (1 or 0): the text starts with the first
      tag, which occurs once and is closed; the other tags are not checked;
    * ``"tag_count"``: open-r1's ``tag_count_reward``: 0.25 for each of ``<think>\n``,
      ``\n</think>\n``, ``\n<answer>\n``, ``\n</answer>`` that occurs exactly once (partial credit).

    All modes scan in linear time (:func:`~medreward.parse.tags.open_r1_format`,
    :func:`~medreward.parse.tags.trl_think_format`, :func:`~medreward.parse.tags.tag_count_credit`).

    Params: ``tags`` (default ``["think", "answer"]``), ``mode`` (default ``"strict"``),
    ``only_tags`` (default ``false``; strict mode only): also require that nothing but whitespace
    is outside the tags.

    >>> FormatTags()(["<think>pinpoint pupils</think><answer>opioids</answer>", "opioids"])
    [1.0, 0.0]
    >>> FormatTags(mode="open_r1")(["<think>pinpoint pupils</think><answer>opioids</answer>",
    ...                             "<think>\npinpoint pupils\n</think>\n<answer>\nopioids\n</answer>"])
    [0.0, 1.0]
    """

    kind = "format.tags"

    class Params(ComponentParams):
        tags: tuple[str, ...] = Field(default=("think", "answer"), min_length=1)
        mode: Mode = "strict"
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

        @model_validator(mode="after")
        def _only_tags_is_strict(self) -> FormatTags.Params:
            if self.only_tags and self.mode != "strict":
                raise ValueError(f"only_tags applies to mode 'strict', not {self.mode!r} (which has its own rule)")
            return self

    def setup(self) -> None:
        self._check = FormatCheck(self.params.tags, only_tags=self.params.only_tags)

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        # a linear scan per text cannot hang, so the runner may time the batch as a whole
        mode = self.params.mode
        if mode != "strict":
            return [self._compatible(rollout.completion_text, mode) for rollout in rollouts]
        check, out = self._check, []
        for rollout in rollouts:
            problems = check(rollout.completion_text)
            out.append(ComponentScore(0.0, info={"problems": problems}) if problems else ComponentScore(1.0))
        return out

    def score_one(self, rollout: Rollout) -> ComponentScore:
        return self.score_batch((rollout,))[0]

    def _compatible(self, text: str, mode: Mode) -> ComponentScore:
        tags = self.params.tags
        if mode == "tag_count":
            credit, problems = tag_count_credit(text, tags)
            return ComponentScore(credit, info={"problems": problems}) if problems else ComponentScore(credit)
        if mode == "open_r1":
            if open_r1_format(text, tags):
                return ComponentScore(1.0)
            return ComponentScore(0.0, info={"problems": ["does not match open-r1's format_reward pattern"]})
        if trl_think_format(text, tags[0]):
            return ComponentScore(1.0)
        return ComponentScore(0.0, info={"problems": ["does not match TRL's think_format_reward pattern"]})
