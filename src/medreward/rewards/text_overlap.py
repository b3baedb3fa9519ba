"""``text_overlap``: exact match, token F1, ROUGE, BLEU or chrF of the answer against reference text(s)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any, Literal

from pydantic import Field

from ..errors import RecordError, SpecError
from ..parse.overlap import exact_match, has_cjk, is_cjk, token_f1
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register

__all__ = ["METRICS", "TextOverlap", "overlap_scores", "require_modules", "rouge_f"]

Metric = Literal["exact", "f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf"]
#: every metric ``text_overlap`` reports in ``info``, in this order
METRICS: tuple[str, ...] = ("exact", "f1", "rouge1", "rouge2", "rougeL", "bleu", "chrf")
_ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def require_modules(modules: Iterable[str], extra: str, where: str) -> None:
    """Raise :class:`SpecError` at spec load when an optional package is not installed, naming
    the extra that brings it (``pip install 'medreward[EXTRA]'``). Looks the packages up without
    importing them, so a spec loads fast and the scoring process imports them when first used."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise SpecError(
            f"{where}: needs the {extra!r} extra ({', '.join(missing)} not installed): pip install 'medreward[{extra}]'"
        )


class _MixedTokenizer:
    """rouge-score's own tokenizer for text without CJK characters (identical results); in text
    with CJK characters each Han/kana character is a token and the runs between them go through
    rouge-score's tokenizer (which would otherwise delete every non-Latin character)."""

    def __init__(self, use_stemmer: bool) -> None:
        from rouge_score.tokenizers import DefaultTokenizer

        self._default = DefaultTokenizer(use_stemmer=use_stemmer)

    def tokenize(self, text: str) -> list[str]:
        if not has_cjk(text):
            return self._default.tokenize(text)
        tokens: list[str] = []
        run: list[str] = []
        for char in text:
            if is_cjk(char):
                if run:
                    tokens.extend(self._default.tokenize("".join(run)))
                    run = []
                tokens.append(char)
            else:
                run.append(char)
        if run:
            tokens.extend(self._default.tokenize("".join(run)))
        return tokens


@cache
def _rouge_scorer(use_stemmer: bool) -> Any:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(list(_ROUGE_TYPES), use_stemmer=use_stemmer, tokenizer=_MixedTokenizer(use_stemmer))


def rouge_f(prediction: str, reference: str, *, use_stemmer: bool = False) -> dict[str, float]:
    """ROUGE-1/2/L F-measures of ``rouge-score`` (Lin 2004; Google's implementation), with CJK
    characters as tokens (see :class:`_MixedTokenizer`).

    >>> rouge_f("the patient has sepsis", "patient has severe sepsis")["rouge1"]
    0.75
    """
    scores = _rouge_scorer(use_stemmer).score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in _ROUGE_TYPES}


@cache
def _sacrebleu_metric(name: str, tokenize: str = "13a") -> Any:
    """The metric objects ``sacrebleu.sentence_bleu`` / ``sentence_chrf`` build on every call (with
    their defaults: effective order for BLEU), built once."""
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU(tokenize=tokenize, effective_order=True) if name == "bleu" else CHRF()


def _bleu_chrf(prediction: str, reference: str) -> tuple[float, float]:
    # sacrebleu's default 13a tokenizer keeps a run of Chinese characters as one word; its "zh"
    # tokenizer splits them (and treats other text as 13a does)
    tokenize = "zh" if has_cjk(prediction) or has_cjk(reference) else "13a"
    bleu = _sacrebleu_metric("bleu", tokenize).sentence_score(prediction, [reference]).score / 100.0
    chrf = _sacrebleu_metric("chrf").sentence_score(prediction, [reference]).score / 100.0
    return bleu, chrf


def overlap_scores(prediction: str, reference: str, *, use_stemmer: bool = False) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one (prediction, reference) pair, each in [0, 1].

    >>> s = overlap_scores("Aspirin 81 mg daily", "aspirin daily")
    >>> s["exact"], round(s["f1"], 4), s["rouge1"]
    (0.0, 0.6667, 0.6666666666666666)
    """
    bleu, chrf = _bleu_chrf(prediction, reference)
    return {
        "exact": exact_match(prediction, reference),
        "f1": token_f1(prediction, reference),
        **rouge_f(prediction, reference, use_stemmer=use_stemmer),
        "bleu": min(1.0, max(0.0, bleu)),
        "chrf": min(1.0, max(0.0, chrf)),
    }


@register
class TextOverlap(RewardComponent):
    r"""Overlap of the answer with the reference answer text: one metric is the reward, ``info`` has all.

    Metrics (``metric`` param), each in [0, 1]:

    * ``exact``: 1 if the normalised answer equals the normalised reference (SQuAD v1.1
      ``normalize_answer``: lower-case, no punctuation, no articles, single spaces), else 0;
    * ``f1``: SQuAD v1.1 token F1, :math:`2PR/(P+R)` with :math:`P = c/|pred|`,
      :math:`R = c/|ref|` and :math:`c` the common tokens (multiset);
    * ``rouge1`` / ``rouge2`` / ``rougeL``: ROUGE-N / ROUGE-L F-measure (Lin 2004) computed by
      Google's ``rouge-score`` package (``stemmer`` = its ``use_stemmer``, Porter stemming);
    * ``bleu``: sentence BLEU of ``sacrebleu`` (Papineni et al. 2002; Post 2018: exponential
      smoothing, effective order, tokenizer 13a) divided by 100;
    * ``chrf``: sentence chrF (Popović 2015; ``sacrebleu``, β = 2, character 6-grams) / 100.

    Several references (a list): each metric is the best over the references, taken per metric
    (so ``info["bleu"]`` and ``info["rouge1"]`` may come from different references);
    ``info["best_reference"]`` is the index that gave the reward. This is not sacrebleu's
    multi-reference BLEU, which pools n-gram counts over references.

    Chinese and Japanese text (no spaces between words): exact/F1 split CJK characters into
    tokens (CMRC 2018 / MLQA mixed segmentation, :mod:`medreward.parse.overlap`), ROUGE does the
    same around rouge-score's tokenizer (which would delete them), BLEU uses sacrebleu's ``zh``
    tokenizer when either text has a CJK character; chrF works on characters already.
    Text without CJK characters gets exactly the libraries' numbers.

    Source: the SQuAD v1.1 evaluation script (Rajpurkar et al. 2016) for exact/F1; ROUGE, BLEU
    and chrF as report-generation and captioning rewards and metrics (ARMed, MedGRPO captioning,
    MEDIQA-CORR's ROUGE-1, MedR-Bench). The per-metric best-of-references is medreward's choice.

    Reading: the answer section (``answer_tag``; ``None`` reads the whole completion), cut to
    ``max_chars`` characters (``info["truncated"]``) so that ROUGE-L's quadratic LCS stays
    bounded. A missing section or an empty answer scores 0.0 with ``info["reason"]``. The
    reference (``reference[field]``) is a non-empty string or a non-empty list of them; another
    type, an empty string or an empty list raises :class:`~medreward.errors.RecordError`; a
    missing field is ``not_applicable``.

    Params: ``metric`` (default ``"rougeL"``), ``field`` (default ``"answer"``), ``stemmer``
    (default false, rouge-score's default), ``answer_tag`` (default ``"answer"``),
    ``max_chars`` (default 5000). Needs the ``metrics`` extra (rouge-score, sacrebleu).

    >>> overlap = TextOverlap(metric="f1")
    >>> overlap(["<answer>The aspirin, 81 mg.</answer>", "<answer>阳性</answer>"],
    ...         [{"answer": ["aspirin 81 mg", "ASA"]}, {"answer": "结果阳性"}])
    [1.0, 0.6666666666666666]
    """

    kind = "text_overlap"

    class Params(ComponentParams):
        metric: Metric = "rougeL"
        field: str = Field(default="answer", min_length=1)
        stemmer: bool = False
        answer_tag: str | None = "answer"
        max_chars: int = Field(default=5000, ge=1)

    params: Params

    def setup(self) -> None:
        require_modules(("rouge_score", "sacrebleu"), "metrics", f"{self.name} (kind {self.kind!r})")

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        field = self.params.field
        raw = rollout.reference.get(field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{field}'")
        references = reference_texts(raw, field)
        answer = answer_section(rollout, self.params.answer_tag)
        metric = self.params.metric
        if answer is None:
            return ComponentScore(0.0, info={"metric": metric, "reason": f"no <{self.params.answer_tag}> section"})
        info: dict[str, Any] = {"metric": metric}
        if len(answer) > self.params.max_chars:
            answer = answer[: self.params.max_chars]
            info["truncated"] = True
        if not answer.strip():
            return ComponentScore(0.0, info={**info, "reason": "empty answer"})
        per_reference = [overlap_scores(answer, ref, use_stemmer=self.params.stemmer) for ref in references]
        for name in METRICS:
            info[name] = max(scores[name] for scores in per_reference)
        if len(per_reference) > 1:
            info["best_reference"] = max(range(len(per_reference)), key=lambda i: per_reference[i][metric])
        return ComponentScore(info[metric], info=info)


def reference_texts(raw: Any, field: str) -> Sequence[str]:
    """The reference texts of ``reference[field]``: a non-empty string, or a non-empty list of
    them; anything else raises :class:`RecordError` naming the field."""
    if isinstance(raw, str):
        if not raw.strip():
            raise RecordError(f"reference.{field} is an empty string")
        return (raw,)
    if isinstance(raw, (list, tuple)):
        if not raw:
            raise RecordError(f"reference.{field} is an empty list")
        for i, item in enumerate(raw):
            if not isinstance(item, str) or not item.strip():
                raise RecordError(
                    f"reference.{field}[{i}] must be a non-empty string, got "
                    f"{type(item).__name__ if not isinstance(item, str) else 'an empty string'}"
                )
        return tuple(raw)
    raise RecordError(f"reference.{field} must be a string or a list of strings, got {type(raw).__name__}")
