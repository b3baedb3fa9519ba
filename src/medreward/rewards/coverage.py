r"""``coverage``: the fraction of the reference's key points that the answer states (negation-aware)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from pydantic import Field

from ..backends.base import BackendFailure
from ..backends.scoring import EmbedRequest, EmbedResponse
from ..errors import RecordError, SpecError
from ..parse.phrases import PhraseIndex, phrase_keys
from ..parse.scopes import negation_view
from ..records import ComponentScore, Rollout, Status
from .base import ComponentParams, RewardComponent, answer_section, register, remember
from .semantic import require_embedding_backends

__all__ = ["Coverage", "KeyPoint", "read_key_points"]

_CACHE_MAX = 16384
_SENTENCE_ENDS = (". ", "; ", "? ", "! ", "\n")
_MAX_SENTENCES = 64  # answer sentences embedded per sample (the first ones)


class KeyPoint(NamedTuple):
    """One key point: ``label`` (its first phrasing, as written); ``positive``: the word keys of
    its affirmative phrasings; ``negative``: the word keys of what its negative phrasings deny
    ("no antibiotics" → ``("antibiotic",)``)."""

    label: str
    positive: tuple[tuple[str, ...], ...]
    negative: tuple[tuple[str, ...], ...]
    positive_texts: tuple[str, ...] = ()
    negative_texts: tuple[str, ...] = ()


def read_key_points(raw: Any, field: str = "key_points") -> tuple[KeyPoint, ...]:
    """Key points from a reference value: a list whose items are a phrase or a list of
    acceptable phrasings. A phrasing that is itself negated ("no antibiotics", "antibiotics
    ruled out") is a *negative* key point: it is stated when the answer negates what it denies.

    >>> [(k.label, k.positive, k.negative) for k in read_key_points([["beta blocker", "metoprolol"], "no antibiotics"])]
    [('beta blocker', (('beta', 'blocker'), ('metoprolol',)), ()), ('no antibiotics', (), (('antibiotic',),))]
    """
    if not isinstance(raw, (list, tuple)):
        raise RecordError(
            f"reference.{field} must be a list of key points (each a phrase or a list of phrasings), "
            f"got {type(raw).__name__}"
        )
    out = []
    for k, item in enumerate(raw):
        phrasings = [item] if isinstance(item, str) else item
        if not isinstance(phrasings, (list, tuple)) or not phrasings:
            raise RecordError(
                f"reference.{field}[{k}] must be a phrase or a non-empty list of phrasings, got {item!r}"
            )
        positive: list[tuple[str, ...]] = []
        negative: list[tuple[str, ...]] = []
        texts: tuple[list[str], list[str]] = ([], [])
        for j, phrasing in enumerate(phrasings):
            where = f"reference.{field}[{k}]" + ("" if isinstance(item, str) else f"[{j}]")
            if not isinstance(phrasing, str) or not phrase_keys(phrasing):
                raise RecordError(f"{where} must be a phrase with at least one word, got {phrasing!r}")
            view = negation_view(phrasing)
            denied = [phrase_keys(view.text[s:e]) for s, e in view.negated]
            denied = [d for d in denied if d]
            if denied:
                negative.extend(denied)
                texts[1].append(phrasing.strip())
            else:
                positive.append(phrase_keys(phrasing))
                texts[0].append(phrasing.strip())
        out.append(
            KeyPoint(str(phrasings[0]).strip(), tuple(positive), tuple(negative), tuple(texts[0]), tuple(texts[1]))
        )
    return tuple(out)


@register
class Coverage(RewardComponent):
    r"""The fraction of the reference's key points that the answer states, lexically and
    negation-aware (Clinical-R1's comprehensiveness, rule-based), optionally by embedding too.

    Formula: :math:`R = |\{k : \text{stated}(k)\}| / K` over the :math:`K` key points of
    ``reference.key_points`` (each a phrase or a list of acceptable phrasings, its synonyms).

    A key point is **stated** when one of its phrasings occurs in the answer — as a run of
    words, case-, accent-, punctuation- and plural-insensitive ("Beta-blockers" states "beta
    blocker"; :class:`medreward.parse.phrases.PhraseIndex`) — and **not negated** there (the
    ConText-style rules of the label reader, :mod:`medreward.parse.scopes`): "no beta blocker"
    or "beta blockers were ruled out" does not state "beta blocker". A key point that is itself
    negative ("no antibiotics") is stated when the answer *negates* what it denies ("Do not
    give antibiotics", "antibiotics ruled out", "no antibiotics"), and not by a bare
    "antibiotics". A key point mentioned only with the opposite polarity is listed in
    ``info["contradicted"]`` (it scores as not stated).

    **Semantic matching** (optional; ``backend`` names a ``[backends.NAME]`` table of kind
    ``sentence_transformers``, which needs ``pip install 'medreward[models]'``): a key point that
    no phrasing states lexically (and that is not contradicted) is also stated when the cosine
    similarity between one of its phrasings and one sentence of the answer reaches
    ``threshold``. Negation stays in charge: an affirmative key point is compared only with
    answer sentences free of negation, a negative one only with sentences that negate
    something. ``info["semantic"]`` gives the best cosine of each key point so stated. A failed
    embedding makes the sample ``error`` (``timeout``) with ``info["error"]``, never a 0.

    Source: Clinical-R1 (CRPO, Clinical-Objective Relative Policy Optimization) rewards
    comprehensiveness — the coverage of the key clinical points of a reference — next to
    accuracy and faithfulness [UNVERIFIED: formula not read; there a model makes the
    judgement; medreward's rule-based key-point recall is its own choice].

    Rules: a reference without the field is ``not_applicable``, as is an empty list (nothing to
    cover); a field of the wrong shape raises :class:`~medreward.errors.RecordError` naming it
    (``reference.key_points[2][0] must be a phrase …``). A missing answer section or an empty
    answer scores 0 with ``info["reason"]``.

    ``info``: ``stated``, ``missed``, ``contradicted`` (key points by their first phrasing),
    ``n_key_points``; ``semantic`` with a backend; ``truncated`` when the answer was cut at the
    reader's bound.

    Params: ``field`` (``"key_points"``), ``answer_tag`` (``"answer"``; ``None`` reads the whole
    completion), ``backend`` (none), ``threshold`` (0.8, the cosine that states a key point).

    >>> cov = Coverage()
    >>> cov(["<answer>Start a beta-blocker and aspirin. No antibiotics.</answer>",
    ...      "<answer>No beta blocker; give antibiotics.</answer>"],
    ...     [{"key_points": [["beta blocker", "metoprolol"], "aspirin", "no antibiotics"]}] * 2)
    [1.0, 0.0]
    """

    kind = "coverage"

    class Params(ComponentParams):
        field: str = Field(default="key_points", min_length=1, description="Reference key of the key points.")
        answer_tag: str | None = "answer"
        backend: str | None = Field(
            default=None, min_length=1, description="A [backends.NAME] of kind sentence_transformers (semantic matching)."
        )
        threshold: float = Field(default=0.8, gt=-1.0, le=1.0, allow_inf_nan=False)

    params: Params
    _backend: Any = None

    def setup(self) -> None:
        self._truths: dict[Any, tuple[KeyPoint, ...]] = {}

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,)

    def _key_points(self, raw: Any) -> tuple[KeyPoint, ...]:
        """Key points of a reference value, memoised (a GRPO group shares one; the value nests lists,
        so its JSON text is the memo key)."""
        try:
            key = json.dumps(raw, sort_keys=True)
        except (TypeError, ValueError):
            return read_key_points(raw, self.params.field)
        hit = self._truths.get(key)
        if hit is None:
            hit = read_key_points(raw, self.params.field)
            remember(self._truths, key, hit, _CACHE_MAX)
        return hit

    # -- the optional embedding backend ------------------------------------------------------------
    def backend_names(self) -> tuple[str, ...]:
        return () if self.params.backend is None else (self.params.backend,)

    def check_backends(self, configs: Mapping[str, Any]) -> None:
        """Semantic matching needs a ``sentence_transformers`` backend and the 'models' extra."""
        require_embedding_backends(self.name, configs)

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        if self.params.backend is None:
            return
        backend = backends.get(self.params.backend)
        if backend is None:
            raise SpecError(f"{self.name}: backend {self.params.backend!r} is not among the bound backends {sorted(backends)}")
        self._backend = backend

    # -- scoring -----------------------------------------------------------------------------------
    def score_one(self, rollout: Rollout) -> ComponentScore:
        return self.score_batch((rollout,))[0]

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        results: list[ComponentScore] = []
        pending: list[tuple[int, PhraseIndex, tuple[KeyPoint, ...]]] = []  # samples with missed key points
        for rollout in rollouts:
            score, index, points = self._lexical(rollout)
            if self.params.backend is not None and index is not None and score.info.get("missed"):
                pending.append((len(results), index, points))
            results.append(score)
        if pending:
            self._semantic(results, pending)
        return results

    def _lexical(self, rollout: Rollout) -> tuple[ComponentScore, PhraseIndex | None, tuple[KeyPoint, ...]]:
        p = self.params
        raw = rollout.reference.get(p.field)
        if raw is None:
            return ComponentScore.not_applicable(f"reference has no '{p.field}'"), None, ()
        points = self._key_points(raw)
        if not points:
            return ComponentScore.not_applicable(f"reference.{p.field} is empty"), None, ()
        labels = [k.label for k in points]
        answer = answer_section(rollout, p.answer_tag)
        if answer is None or not answer.strip():
            reason = f"no <{p.answer_tag}> section" if answer is None else "empty answer"
            info = {"reason": reason, "stated": [], "missed": labels, "contradicted": []}
            return ComponentScore(0.0, info=info), None, points
        index = PhraseIndex(answer)
        stated, missed, contradicted = _judge(index, points)
        info: dict[str, Any] = {
            "stated": stated,
            "missed": missed,
            "contradicted": contradicted,
            "n_key_points": len(points),
        }
        if index.truncated:
            info["truncated"] = True
        return ComponentScore(len(stated) / len(points), info=info), index, points

    def _semantic(self, results: list[ComponentScore], pending: list[tuple[int, PhraseIndex, tuple[KeyPoint, ...]]]) -> None:
        """Give the missed key points of ``pending`` samples a second chance by embedding."""
        if self._backend is None:
            raise SpecError(
                f"{self.name}: no backend bound for {self.params.backend!r}; score through a spec that declares "
                f"[backends.{self.params.backend}] (medreward.compose.Scorer binds it), or call bind_backends first"
            )
        texts: dict[str, int] = {}
        plans = []
        for i, index, points in pending:
            plain, negating = _sentences(index)
            missed = set(results[i].info["missed"])
            pairs = []  # (label, phrasing texts, sentences)
            for point in points:
                if point.label in missed:
                    if point.positive_texts and plain:
                        pairs.append((point.label, point.positive_texts, plain))
                    if point.negative_texts and negating:
                        pairs.append((point.label, point.negative_texts, negating))
            for _, phrasings, sentences in pairs:
                for text in (*phrasings, *sentences):
                    texts.setdefault(text, len(texts))
            plans.append((i, pairs))
        if not texts:
            return
        ordered = list(texts)
        out = self._backend.embed([EmbedRequest(t) for t in ordered])
        if len(out) != len(ordered):
            raise RuntimeError(f"backend {self.params.backend!r} returned {len(out)} embeddings for {len(ordered)} texts")
        for i, pairs in plans:
            needed = {texts[t] for _, phrasings, sentences in pairs for t in (*phrasings, *sentences)}
            failure = next((out[k] for k in sorted(needed) if isinstance(out[k], BackendFailure)), None)
            if failure is not None:
                score = ComponentScore.error(f"{self.params.backend}: {failure.message}", _status(failure))
                score.info.update(results[i].info)
                results[i] = score
                continue
            best: dict[str, float] = {}
            for label, phrasings, sentences in pairs:
                for a in phrasings:
                    for b in sentences:
                        cosine = _cosine(out[texts[a]], out[texts[b]])
                        if cosine > best.get(label, -2.0):
                            best[label] = cosine
            hits = {label: round(c, 6) for label, c in best.items() if c >= self.params.threshold}
            if not hits:
                continue
            info = dict(results[i].info)
            info["stated"] = info["stated"] + [x for x in info["missed"] if x in hits]
            info["missed"] = [x for x in info["missed"] if x not in hits]
            info["semantic"] = hits
            results[i] = ComponentScore(len(info["stated"]) / info["n_key_points"], info=info)


def _status(failure: BackendFailure) -> Status:
    return Status.TIMEOUT if failure.status == "timeout" else Status.ERROR


def _cosine(a: EmbedResponse | BackendFailure, b: EmbedResponse | BackendFailure) -> float:
    assert isinstance(a, EmbedResponse) and isinstance(b, EmbedResponse)
    if a.vector == b.vector:
        return 1.0  # the same text: exactly 1, not 1 - 1e-7
    return max(-1.0, min(1.0, sum(x * y for x, y in zip(a.vector, b.vector))))


def _sentences(index: PhraseIndex) -> tuple[list[str], list[str]]:
    """The answer's sentences free of negation, and those that negate something (at most
    :data:`_MAX_SENTENCES` in all)."""
    text = index.view.text
    plain: list[str] = []
    negating: list[str] = []
    start = 0
    n = len(text)
    while start < n and len(plain) + len(negating) < _MAX_SENTENCES:
        ends = [e for e in (text.find(sep, start) for sep in _SENTENCE_ENDS) if e >= 0]
        end = min(ends) + 1 if ends else n
        sentence = text[start:end].strip(" .;?!\n")
        if sentence:
            (negating if index.view.overlaps_negation(start, end) else plain).append(sentence)
        start = end
    return plain, negating


def _judge(index: PhraseIndex, points: Sequence[KeyPoint]) -> tuple[list[str], list[str], list[str]]:
    stated: list[str] = []
    missed: list[str] = []
    contradicted: list[str] = []
    for point in points:
        opposite = False
        ok = False
        for keys in point.positive:
            flags = index.occurrences(keys)
            if not all(flags):  # one occurrence free of negation
                ok = True
                break
            opposite = opposite or bool(flags)
        if not ok:
            for keys in point.negative:
                flags = index.negated_occurrences(keys)
                if any(flags):
                    ok = True
                    break
                opposite = opposite or bool(flags)
        if ok:
            stated.append(point.label)
        elif opposite:
            contradicted.append(point.label)
        else:
            missed.append(point.label)
    return stated, missed, contradicted
