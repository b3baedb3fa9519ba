r"""``consistency``: the conclusion at the end of the reasoning agrees with the final answer (R1-Reward)."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..parse.choice import DEFAULT_LETTERS, letter_set, parse_choice
from ..parse.labels import parse_labels
from ..parse.mentions import find_mentions
from ..parse.numbers import ParsedNumber, final_number
from ..records import ComponentScore, Rollout
from ..vocab import Vocabulary, term_key
from .base import ComponentParams, RewardComponent, answer_section, register
from .choice import match_option_text, option_in_sentence, read_options
from .numeric import UnitError, convert

__all__ = ["Consistency", "reasoning_text"]

_SENTENCE_ENDS = (". ", "\n", "? ", "! ", "; ")


def reasoning_text(rollout: Rollout, tag: str) -> str | None:
    """The reasoning: the last complete ``<tag>`` section; else, when the completion closes the
    tag without opening it (the chat template opened it in the prompt), the text before the last
    ``</tag>``; else ``None``.

    >>> reasoning_text(Rollout(completion="so B.</think><answer>B</answer>"), "think")
    'so B.'
    """
    section = answer_section(rollout, tag)
    if section is not None:
        return section
    text = rollout.completion_text
    close = text.rfind(f"</{tag}>")
    return text[:close] if close >= 0 else None


@register
class Consistency(RewardComponent):
    r"""1 when the conclusion stated at the end of the reasoning agrees with the final answer, else 0.

    Formula: :math:`R = \mathbb{1}[\,\text{conclusion}(\text{reasoning}) \equiv \text{answer}\,]`,
    where :math:`\equiv` is, by ``compare``:

    * ``"choice"``: the same option letter (:func:`medreward.parse.choice.parse_choice` on the
      last ``window`` characters of the reasoning and on the answer; ``letters``, or the
      letters of ``reference.options`` when the record has them). With options, an answer that
      is one option's text chooses it (as ``choice`` reads it), and a reasoning whose last
      sentence names exactly one option's text and no letter concludes that option;
    * ``"number"``: the same value within :math:`\max(\text{abs\_tol}, \text{rel\_tol}\cdot|y|)`
      (:func:`medreward.parse.numbers.final_number` on both; when both carry units the
      reasoning's value is converted to the answer's unit with pint, and a different dimension
      disagrees);
    * ``"labels"``: the same set of ``vocabulary`` ids. The reasoning's conclusion is the last
      sentence of its last ``window`` characters that mentions a vocabulary term; its asserted
      terms are the set (negated ones are not: "…so opioids, not benzodiazepines" concludes
      ``{opioids}``, and a sentence that only negates terms concludes the empty set;
      :func:`medreward.parse.mentions.find_mentions`). The answer is read as a
      label list, as ``multilabel`` reads it (:func:`medreward.parse.labels.parse_labels`;
      unknown labels stay in its set, so they never agree).

    The reasoning is the ``think_tag`` section (or the text before a lone ``</think>``,
    :func:`reasoning_text`), the answer the ``answer_tag`` section.

    **No conclusion.** When the reasoning, its conclusion, the answer section or the answer's
    value cannot be found, the result follows ``missing``: ``"zero"`` (default) scores 0 with
    ``info["reason"]``; ``"not_applicable"`` leaves the record to the other components. Zero is
    the default because this component is meant as a gate (``gate = true``, ``gate_min = 1``
    in the spec: an inconsistent answer gets the spec's ``floor``), and a gate that is
    ``not_applicable`` does not fire — a policy could then escape it by never stating a
    conclusion. Choose ``not_applicable`` to measure consistency only where both sides speak.

    Source: R1-Reward (Zhang et al., "R1-Reward: Training Multimodal Reward Model Through Stable
    Reinforcement Learning", arXiv 2505.02835) adds a consistency reward to StableReinforce:
    a referee model checks that the reasoning's conclusion matches the final answer, and the
    reward multiplies the result reward by it [UNVERIFIED: recalled, not re-read: R = result ×
    (1 + 0.5·consistency) + 0.5·format]. medreward checks it with its rule-based parsers instead
    of a referee; the binary value and the gate use are our choices.

    ``info``: ``conclusion`` (what the reasoning concludes), ``answer`` (what the answer says),
    ``consistent``; ``reason`` when one side is missing or they disagree.

    Params: ``compare`` (``choice`` | ``number`` | ``labels``), ``think_tag`` (``"think"``),
    ``answer_tag`` (``"answer"``), ``window`` (characters at the end of the reasoning read for
    the conclusion, 600), ``letters`` (``"ABCDE"``), ``vocabulary`` (required for ``labels``),
    ``abs_tol`` (0), ``rel_tol`` (1e-6), ``missing`` (``"zero"`` | ``"not_applicable"``).

    >>> c = Consistency(compare="choice")
    >>> c(["<think>B fits best, so the answer is B.</think><answer>B</answer>",
    ...    "<think>Therefore the answer is (C).</think><answer>A</answer>",
    ...    "<think>Hard to say.</think><answer>A</answer>"])
    [1.0, 0.0, 0.0]
    """

    kind = "consistency"

    class Params(ComponentParams):
        compare: Literal["choice", "number", "labels"] = "choice"
        think_tag: str = Field(default="think", min_length=1)
        answer_tag: str | None = "answer"
        window: int = Field(default=600, ge=20, le=65536, description="Characters at the end of the reasoning read.")
        letters: str = DEFAULT_LETTERS
        options_field: str = Field(default="options", min_length=1)
        vocabulary: str | None = Field(default=None, min_length=1)
        abs_tol: float = Field(default=0.0, ge=0, allow_inf_nan=False)
        rel_tol: float = Field(default=1e-6, ge=0, allow_inf_nan=False)
        missing: Literal["zero", "not_applicable"] = "zero"

        @field_validator("letters")
        @classmethod
        def _letters(cls, value: str) -> str:
            letters = value.strip().upper()
            if not letters or not all(c.isascii() and c.isalpha() for c in letters) or len(set(letters)) != len(letters):
                raise ValueError("letters must be distinct ASCII letters, e.g. 'ABCDE'")
            return letters

        @model_validator(mode="after")
        def _labels_need_a_vocabulary(self) -> Consistency.Params:
            if self.compare == "labels" and self.vocabulary is None:
                raise ValueError("compare = 'labels' needs a vocabulary")
            return self

    params: Params

    def setup(self) -> None:
        self._vocab: Vocabulary | None = self.vocabulary_param(self.params.vocabulary)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        reasoning = reasoning_text(rollout, p.think_tag)
        if reasoning is None or not reasoning.strip():
            return self._missing(f"no <{p.think_tag}> reasoning")
        answer = answer_section(rollout, p.answer_tag)
        if answer is None or not answer.strip():
            return self._missing(f"no <{p.answer_tag}> section" if answer is None else "empty answer")
        tail = reasoning[-p.window :]
        if p.compare == "choice":
            return self._compare_choice(tail, answer, read_options(rollout.reference.get(p.options_field), p.options_field))
        if p.compare == "number":
            return self._compare_number(tail, answer)
        return self._compare_labels(tail, answer)

    def _missing(self, reason: str, **info: Any) -> ComponentScore:
        if self.params.missing == "not_applicable":
            return ComponentScore.not_applicable(reason, **info)
        return ComponentScore(0.0, info={"reason": reason, "consistent": False, **info})

    @staticmethod
    def _verdict(same: bool, conclusion: Any, answer: Any) -> ComponentScore:
        info: dict[str, Any] = {"conclusion": conclusion, "answer": answer, "consistent": same}
        if not same:
            info["reason"] = "the answer differs from the reasoning's conclusion"
        return ComponentScore(1.0 if same else 0.0, info=info)

    # -- choice --------------------------------------------------------------------------------
    def _compare_choice(self, tail: str, answer: str, options: dict[str, str] | None) -> ComponentScore:
        valid = letter_set(options) if options else letter_set(self.params.letters)
        concluded = parse_choice(tail, valid)
        letter = concluded.letter
        if letter is None and not concluded.ambiguous and options:
            letter = option_in_sentence(_last_sentence(tail), options)
        if letter is None:
            why = "ambiguous" if concluded.ambiguous else "no"
            return self._missing(f"{why} option letter concluded in the reasoning", candidates=list(concluded.candidates))
        chosen = (match_option_text(answer, options) if options else None) or parse_choice(answer, valid).letter
        if chosen is None:
            return self._missing("no option letter in the answer", conclusion=letter)
        return self._verdict(letter == chosen, letter, chosen)

    # -- number --------------------------------------------------------------------------------
    def _compare_number(self, tail: str, answer: str) -> ComponentScore:
        p = self.params
        concluded = final_number(tail)
        if concluded is None:
            return self._missing("no number concluded in the reasoning")
        stated = final_number(answer)
        if stated is None:
            return self._missing("no number in the answer", conclusion=_describe(concluded))
        x, y = concluded.value, stated.value
        if concluded.unit is not None and stated.unit is not None and concluded.unit != stated.unit:
            try:
                converted = convert(x, concluded.unit, stated.unit)
            except UnitError:
                converted = None
            if converted is None:
                return self._verdict(False, _describe(concluded), _describe(stated))
            x = converted
        same = math.isfinite(x) and math.isfinite(y) and abs(x - y) <= max(p.abs_tol, p.rel_tol * abs(y))
        return self._verdict(same, _describe(concluded), _describe(stated))

    # -- labels --------------------------------------------------------------------------------
    def _compare_labels(self, tail: str, answer: str) -> ComponentScore:
        vocab = self._vocab
        assert vocab is not None
        found = find_mentions(tail, vocabulary=vocab, drugs=False)
        final_start = _last_sentence_start(found.text)
        if _names_none(_last_sentence(tail), vocab) and not any(
            m.span[0] >= final_start and not m.negated for m in found.mentions
        ):
            concluded: list[str] = []  # "… so the answer is none"
        elif not found.mentions:
            return self._missing("no vocabulary term concluded in the reasoning")
        else:
            text = found.text
            last = found.mentions[-1].span[0]
            start = max(0, _last_sentence_start(text, last))
            concluded = sorted({m.id for m in found.mentions if m.span[0] >= start and not m.negated})
        parsed = parse_labels(answer)
        if not parsed.labels and not parsed.negated and parsed.format != "json":
            return self._missing("no labels in the answer", conclusion=concluded)
        stated: set[str] = set()
        for label, ids in zip(parsed.labels, vocab.normalize_all(parsed.labels)):
            stated.update(ids if ids is not None else (f"?{term_key(label) or label}",))
        return self._verdict(set(concluded) == stated, concluded, sorted(stated))


def _last_sentence_start(text: str, before: int | None = None) -> int:
    """Where the sentence holding position ``before`` (default: the end) starts in ``text``."""
    end = len(text.rstrip().rstrip(".!;")) if before is None else before
    return max(text.rfind(mark, 0, end) for mark in _SENTENCE_ENDS) + 1


def _last_sentence(text: str) -> str:
    """The last sentence of ``text``, without its final punctuation."""
    body = text.rstrip().rstrip(".!;")
    return body[_last_sentence_start(body) :].strip()


def _names_none(sentence: str, vocab: Vocabulary) -> bool:
    """Whether ``sentence`` ends with one of ``vocab``'s no-answer terms (up to four words)."""
    words = sentence.split()
    return any(vocab.is_none(" ".join(words[-k:])) for k in range(1, min(4, len(words)) + 1))


def _describe(num: ParsedNumber) -> dict[str, Any]:
    return {"value": num.value, "unit": num.unit, "raw": num.raw[:200]}
