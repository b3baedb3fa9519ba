"""``classification``: one label among a closed set of classes (NLI, triage level, outcome…)."""

from __future__ import annotations

import math
import string
import unicodedata
from typing import Any

from pydantic import Field, model_validator

from ..errors import RecordError
from ..parse.overlap import is_cjk
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["Classification", "class_tokens"]

_TO_SPACE = str.maketrans({c: " " for c in string.punctuation + "‐‑‒–—―‘’“”•·…«»"})
_NEGATIONS = frozenset({"not", "no", "non", "不", "非", "无", "未", "没"})
# two-character Chinese negations ("不是阳性", "没有阳性"): the two tokens right before a mention
_NEGATION_PAIRS = frozenset({("不", "是"), ("并", "非"), ("没", "有"), ("排", "除"), ("否", "认")})
_MAX_TOKENS = 4096  # words of an answer scanned for class mentions


def class_tokens(text: str) -> tuple[str, ...]:
    """Words of a class name or answer: case-folded, accents and punctuation removed. Scripts
    written without spaces get no word boundaries from whitespace, so each Han or kana character
    is a word of its own ("结果为阳性" holds the two-word name "阳性"); Unicode punctuation
    ("，。、") separates words too.

    >>> class_tokens("Non-Urgent"), class_tokens("NOT_ENTAILMENT."), class_tokens("Réponse")
    (('non', 'urgent'), ('not', 'entailment'), ('reponse',))
    >>> class_tokens("结果：阳性。Positive")
    ('结', '果', '阳', '性', 'positive')
    """
    if not text.isascii():
        text = "".join(_fold(c) for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return tuple(text.casefold().translate(_TO_SPACE).split())


def _fold(char: str) -> str:
    if char.isascii():
        return char
    if is_cjk(char):
        return f" {char} "
    return " " if unicodedata.category(char).startswith("P") else char


@register
class Classification(RewardComponent):
    r"""1 (or the class weight) if the answer names the reference class and no other class.

    Formula: :math:`R = \mathbb{1}[\hat{c} = c^*] \cdot w_{c^*} / \max_c w_c`, with all
    :math:`w_c = 1` unless ``class_weights`` is given. With weights this is the per-sample form
    of weighted (balanced) recall used for imbalanced clinical prediction (e.g. ICU outcome
    and triage tasks): a correct answer on a rare class earns more than one on a common class,
    normalised so the largest weight scores 1; a wrong answer scores 0 whatever its class.
    Source: closed-set accuracy, the verifiable reward of R1-style RLVR (open-r1
    ``accuracy_reward``; MediX-R1's exact-match term; docs/formulas.md#closed-set-classification); the class
    weighting is medreward's choice ([UNVERIFIED: inferred] — no clinical RL paper with a
    published weighted-recall reward was read).

    Reading the answer (the ``<answer>`` section, or the whole completion when ``answer_tag``
    is ``None``): words are compared case-, accent- and punctuation-insensitively
    (``"Not-Entailment"`` = ``"not_entailment"``). An answer that is exactly a class name or a
    synonym is that class. Otherwise the answer is scanned for mentions of class names and
    synonyms, longest first ("non urgent" is one mention, not "urgent"); a mention right after
    "not"/"no"/"non" is dropped ("not urgent" does not name "urgent"). Exactly one class
    mentioned → that class; two different classes → ambiguous, 0.0 with
    ``info["mentioned"]``; none → 0.0 with ``info["reason"]`` (as is a missing section).

    Labels in any script: Chinese and Japanese put no spaces between words, so each Han/kana
    character is a word of its own (:func:`class_tokens`) and a class name is a sequence of
    them. "阳性" (positive) and "阴性" (negative) share 性 but are different sequences, so
    neither can match the other, and "结果为阳性" names 阳性. A mention right after one of the
    Chinese negations 不/非/无/未/没 or 不是/并非/没有/排除/否认 is dropped like "not X" ("非阳性",
    "不是阳性"); other Chinese negation (a negation further away, "阳性可能性不大") is not read.

    The reference (``reference[field]``) must be one of ``classes`` (case/punctuation
    insensitive; an int is read as its decimal string, for numeric triage levels); anything
    else raises :class:`~medreward.errors.RecordError`. A missing field is ``not_applicable``.

    Params: ``classes`` (required, ≥ 2, distinct), ``field`` (default ``"label"``),
    ``synonyms`` ({class: [alternative names]}), ``class_weights`` ({class: weight > 0} for
    every class, or none), ``answer_tag`` (default ``"answer"``).

    >>> nli = Classification(classes=["entailment", "neutral", "contradiction"],
    ...                      synonyms={"contradiction": ["contradicts"]})
    >>> ref = {"label": "contradiction"}
    >>> nli(["<answer>Contradiction</answer>", "<answer>it contradicts</answer>",
    ...      "<answer>neutral or contradiction</answer>"], [ref] * 3)
    [1.0, 1.0, 0.0]
    """

    kind = "classification"

    class Params(ComponentParams):
        classes: tuple[str, ...] = Field(min_length=2, description="The closed set of class names.")
        field: str = Field(default="label", min_length=1)
        synonyms: dict[str, tuple[str, ...]] = Field(default_factory=dict)
        class_weights: dict[str, float] | None = None
        answer_tag: str | None = "answer"

        @model_validator(mode="after")
        def _consistent(self) -> Classification.Params:
            seen: dict[tuple[str, ...], str] = {}
            for name in self.classes:
                tokens = class_tokens(name)
                if not tokens:
                    raise ValueError(f"class {name!r} has no letters or digits")
                if tokens in seen:
                    raise ValueError(f"classes {seen[tokens]!r} and {name!r} are the same name")
                seen[tokens] = name
            for name, alternatives in self.synonyms.items():
                if name not in self.classes:
                    raise ValueError(f"synonyms: {name!r} is not one of the classes")
                for alt in alternatives:
                    tokens = class_tokens(alt)
                    if not tokens:
                        raise ValueError(f"synonyms: {alt!r} has no letters or digits")
                    if tokens in seen and seen[tokens] != name:
                        raise ValueError(f"synonyms: {alt!r} of {name!r} already names {seen[tokens]!r}")
                    seen[tokens] = name
            if self.class_weights is not None:
                missing = [c for c in self.classes if c not in self.class_weights]
                extra = [c for c in self.class_weights if c not in self.classes]
                if missing or extra:
                    raise ValueError(
                        f"class_weights must give a weight for every class and only for them "
                        f"(missing: {missing}, unknown: {extra})"
                    )
                for name, weight in self.class_weights.items():
                    if not (math.isfinite(weight) and weight > 0):
                        raise ValueError(f"class_weights: weight of {name!r} must be > 0 and finite, got {weight}")
            return self

    params: Params

    def setup(self) -> None:
        table: dict[tuple[str, ...], str] = {}
        self._by_name: dict[tuple[str, ...], str] = {}
        for name in self.params.classes:
            table[class_tokens(name)] = name
            self._by_name[class_tokens(name)] = name
        for name, alternatives in self.params.synonyms.items():
            for alt in alternatives:
                table[class_tokens(alt)] = name
        self._table = table
        self._longest = max(len(k) for k in table)
        weights = self.params.class_weights
        top = max(weights.values()) if weights else 1.0
        self._value = {c: (weights[c] / top if weights else 1.0) for c in self.params.classes}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        raw = rollout.reference.get(self.params.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{self.params.field}'")
        expected = self._expected(raw)
        answer = answer_section(rollout, self.params.answer_tag)
        if answer is None:
            return ComponentScore(
                0.0, info={"reason": f"no <{self.params.answer_tag}> section", "predicted": None, "expected": expected}
            )
        mentioned = self.mentions(answer)
        info: dict[str, Any] = {"predicted": None, "expected": expected}
        if not mentioned:
            info["reason"] = "no class named"
            return ComponentScore(0.0, info=info)
        if len(mentioned) > 1:
            info.update(mentioned=mentioned, ambiguous=True, reason="several classes named")
            return ComponentScore(0.0, info=info)
        info["predicted"] = predicted = mentioned[0]
        return ComponentScore(self._value[expected] if predicted == expected else 0.0, info=info)

    def mentions(self, answer: str) -> list[str]:
        """Distinct classes the answer names, in order (see the class docstring).

        >>> Classification(classes=["urgent", "non-urgent"]).mentions("Not urgent; non urgent.")
        ['non-urgent']
        """
        tokens = class_tokens(answer)
        exact = self._table.get(tokens)
        if exact is not None:
            return [exact]
        if len(tokens) > _MAX_TOKENS:
            tokens = tokens[-_MAX_TOKENS:]  # the end of an answer states the conclusion
        found: dict[str, None] = {}
        table, longest, n = self._table, self._longest, len(tokens)
        i = 0
        while i < n:
            for size in range(min(longest, n - i), 0, -1):
                name = table.get(tokens[i : i + size])
                if name is not None:
                    if not (i and (tokens[i - 1] in _NEGATIONS or (i > 1 and tokens[i - 2 : i] in _NEGATION_PAIRS))):
                        found[name] = None
                    i += size
                    break
            else:
                i += 1
        return list(found)

    def _expected(self, raw: Any) -> str:
        if isinstance(raw, bool) or not isinstance(raw, (str, int)):
            raise RecordError(f"reference.{self.params.field} must be a class name, got {type(raw).__name__}")
        name = self._by_name.get(class_tokens(str(raw)))
        if name is None:
            raise RecordError(
                f"reference.{self.params.field}: {raw!r} is not one of the classes {list(self.params.classes)}"
            )
        return name
