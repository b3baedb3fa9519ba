"""``choice``: multiple-choice accuracy on the final letter of the answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from ..errors import RecordError
from ..parse.choice import DEFAULT_LETTERS, Choice, letter_set, parse_choice
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["MultipleChoice", "match_option_text", "option_in_sentence", "read_options"]

_OPTION_TEXT_MAX = 1000  # longer answers are never compared with option texts
_TEXT_STRIP = " \t\r\n*_`\"'.“”‘’"


def _option_key(text: str) -> str:
    """Comparison form of an answer or option text: case-folded, whitespace collapsed,
    surrounding quotes/Markdown/final period removed."""
    return " ".join(text.strip(_TEXT_STRIP).casefold().split())


def _words(text: str) -> str:
    """Case-folded words of ``text`` (letters and digits), one blank between them."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def read_options(raw: Any, field: str = "options") -> dict[str, str] | None:
    """A reference's options as ``{LETTER: text}`` (from an object keyed by letters, or a list
    lettered A, B, …); ``None`` when there are none; a :class:`RecordError` naming
    ``reference.<field>`` when they have another shape.

    >>> read_options(["Insulin", "Metformin"]), read_options({"b": "Diet"})
    ({'A': 'Insulin', 'B': 'Metformin'}, {'B': 'Diet'})
    """
    if raw is None:
        return None
    if isinstance(raw, Mapping):
        items = list(raw.items())
    elif isinstance(raw, (list, tuple)):
        if len(raw) > 26:
            raise RecordError(f"reference.{field}: more than 26 options")
        items = [(chr(ord("A") + i), text) for i, text in enumerate(raw)]
    else:
        raise RecordError(f"reference.{field} must be an object {{letter: text}} or a list, got {type(raw).__name__}")
    out: dict[str, str] = {}
    for key, text in items:
        if not (isinstance(key, str) and len(key.strip()) == 1 and key.strip().isascii() and key.strip().isalpha()):
            raise RecordError(f"reference.{field}: option key {key!r} is not a single letter")
        out[key.strip().upper()] = text if isinstance(text, str) else str(text)
    return out or None


def match_option_text(answer: str, options: Mapping[str, str]) -> str | None:
    """The letter whose option text the whole ``answer`` equals (case-, whitespace- and
    quote-insensitive; exactly one option), else ``None``.

    >>> match_option_text("**metformin.**", {"A": "Insulin", "B": "Metformin"})
    'B'
    """
    if len(answer) > _OPTION_TEXT_MAX:
        return None
    key = _option_key(answer)
    if len(key) < 2:  # "C" is a letter, never an option text
        return None
    hits = [letter for letter, text in options.items() if _option_key(text) == key]
    return hits[0] if len(hits) == 1 else None


def option_in_sentence(sentence: str, options: Mapping[str, str]) -> str | None:
    """The letter of the one option whose text ``sentence`` names as whole words (e.g. a
    reasoning that ends "so the answer is metformin"), else ``None`` (none or several named; an
    option named only inside a longer named option does not count).

    >>> option_in_sentence("So the answer is Metformin.", {"A": "Insulin", "B": "Metformin"})
    'B'
    >>> option_in_sentence("Insulin or metformin.", {"A": "Insulin", "B": "Metformin"}) is None
    True
    """
    hay = f" {_words(sentence[-_OPTION_TEXT_MAX:])} "
    named = {letter: key for letter, text in options.items() if len(key := _words(text)) >= 2 and f" {key} " in hay}
    # "metformin extended release" names that option, not also the shorter "metformin" inside it
    hits = [a for a, key in named.items() if not any(key != other and f" {key} " in f" {other} " for other in named.values())]
    return hits[0] if len(hits) == 1 else None


@register
class MultipleChoice(RewardComponent):
    r"""1 if the final choice of the answer is the reference letter, else 0.

    Formula: :math:`R = \mathbb{1}[\hat{\ell} = \ell^*]`, where :math:`\hat{\ell}` is the final
    letter parsed by :func:`medreward.parse.choice.parse_choice` from the ``<answer>`` section.

    Source: the binary accuracy reward of R1-style RLVR (DeepSeek-R1; open-r1 ``accuracy_reward``,
    MediX-R1's exact-match term; docs/formulas.md#multiple-choice) applied to MedQA / MedMCQA-style
    questions, as medical GRPO work on multiple choice does (Med-R1, MedVLM-R1 — [UNVERIFIED:
    recalled]). The letter extraction is medreward's own (:mod:`medreward.parse.choice`): it
    follows the "the answer is (X)" convention of open evaluation harnesses, and adds the
    ambiguity rule (two different letters score 0, so hedging is never rewarded).

    Reading the answer:

    * the valid letters are the keys of ``reference["options"]`` when present (a dict
      ``{"A": "...", ...}``, or a list read as A, B, C…), else the ``letters`` param
      (default A–E);
    * an answer whose whole text equals exactly one option's text (case-, whitespace- and
      quote-insensitive; e.g. ``<answer>Metformin</answer>`` when option C is "Metformin")
      chooses that option. Only an exact match counts — "Metformin 500 mg" does not match
      "Metformin" — and a single-letter answer is always read as a letter;
    * otherwise the letter parser decides; two different letters claimed as the final answer
      are ambiguous and score 0.0 with ``info["ambiguous"]``, as does an answer with no letter
      or a missing ``<answer>`` section (``info["reason"]``).

    A reference without the field is ``not_applicable``; a reference letter that is not a
    single valid letter raises :class:`~medreward.errors.RecordError` (the runner records
    ``error``).

    ``info``: ``predicted`` (letter or null), ``expected``, ``matched_by`` (``letter`` |
    ``option_text``), ``candidates`` and ``ambiguous`` when the parser found several letters.

    Params: ``field`` (default ``"answer"``), ``options_field`` (default ``"options"``),
    ``answer_tag`` (default ``"answer"``; ``None`` reads the whole completion), ``letters``
    (valid letters when the reference has no options, e.g. ``"ABCD"``; default A–E).

    >>> mc = MultipleChoice()
    >>> ref = {"answer": "C", "options": {"A": "Insulin", "B": "Glipizide", "C": "Metformin", "D": "Diet"}}
    >>> mc(["<answer>The answer is (C)</answer>", "<answer>metformin</answer>", "<answer>A or C</answer>"], [ref] * 3)
    [1.0, 1.0, 0.0]
    """

    kind = "choice"

    class Params(ComponentParams):
        field: str = Field(default="answer", min_length=1)
        options_field: str = Field(default="options", min_length=1)
        answer_tag: str | None = "answer"
        letters: str | None = Field(default=None, description="Valid letters without options, e.g. 'ABCD'.")

        @field_validator("letters")
        @classmethod
        def _letters(cls, value: str | None) -> str | None:
            # canonical form ("dcba" → "ABCD") so that specs round-trip and compare equal
            return None if value is None else "".join(sorted(letter_set(value)))

    params: Params

    def setup(self) -> None:
        self._default_letters = letter_set(self.params.letters or DEFAULT_LETTERS)

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field, self.params.options_field)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        reference = rollout.reference
        expected_raw = reference.get(self.params.field)
        if expected_raw is None:
            return ComponentScore.not_applicable(f"reference has no '{self.params.field}'")
        options = read_options(reference.get(self.params.options_field), self.params.options_field)
        valid = letter_set(options) if options else self._default_letters
        expected = self._expected(expected_raw, valid)

        info: dict[str, Any]
        answer = answer_section(rollout, self.params.answer_tag)
        if answer is None:
            return ComponentScore(
                0.0, info={"reason": f"no <{self.params.answer_tag}> section", "predicted": None, "expected": expected}
            )
        by_text = match_option_text(answer, options) if options else None
        if by_text is not None:
            info = {"predicted": by_text, "expected": expected, "matched_by": "option_text"}
            return ComponentScore(float(by_text == expected), info=info)
        choice: Choice = parse_choice(answer, valid)
        info = {"predicted": choice.letter, "expected": expected, "matched_by": "letter"}
        if choice.ambiguous:
            info.update(candidates=list(choice.candidates), ambiguous=True, reason="several letters claimed")
            return ComponentScore(0.0, info=info)
        if choice.letter is None:
            info["reason"] = "no choice letter found"
            return ComponentScore(0.0, info=info)
        return ComponentScore(float(choice.letter == expected), info=info)

    # -- reference ---------------------------------------------------------------------------
    def _expected(self, raw: Any, valid: frozenset[str]) -> str:
        letter = raw.strip().strip("()[]*. ").upper() if isinstance(raw, str) else None
        if not letter or len(letter) != 1 or letter not in valid:
            raise RecordError(
                f"reference.{self.params.field}: {raw!r} is not one of the valid letters {''.join(sorted(valid))}"
            )
        return letter
