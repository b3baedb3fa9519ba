"""``pairwise``: an LLM judge compares the completions of a GRPO group (or each completion with the
reference answer), both ways round, and each completion's reward is its win rate or its
Bradley–Terry strength."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, model_validator

from ..backends.base import ChatRequest, ChatResponse
from ..errors import RecordError
from ..parse.verdicts import parse_json_object
from ..records import ComponentScore, Rollout, Status
from ..text import TextTypeError
from .base import register
from .judge import ModelComponent, ModelParams, Outcome
from .judge_prompts import PAIRWISE_SYSTEM, PAIRWISE_VERSION, pairwise_schema, pairwise_text, render_conversation
from .rubric import _retry

__all__ = ["Pairwise", "bradley_terry", "read_winner", "sample_pairs"]

_WINNER_WORDS = {
    "a": "A", "response a": "A", "b": "B", "response b": "B",
    "tie": "tie", "draw": "tie", "equal": "tie", "both": "tie", "neither": "tie",
}  # fmt: skip


def read_winner(text: Any) -> str | None:
    """The winner a comparison answer names: ``"A"``, ``"B"`` or ``"tie"``; ``None`` when it names none.

    Reads ``{"winner": ...}`` (tolerantly, see :func:`~medreward.parse.verdicts.parse_json_object`),
    else an answer that is only a winner word (``"**B**"``, ``"Response A."``). Never raises; linear.

    >>> [read_winner(t) for t in ('{"explanation": "x", "winner": "B"}', "**A**", "Tie.", "B is better")]
    ['B', 'A', 'tie', None]
    """
    if not isinstance(text, str):
        return None
    obj = parse_json_object(text)
    word = obj.get("winner") if obj is not None else text
    if not isinstance(word, str) or len(word) > 32:
        return None
    return _WINNER_WORDS.get(word.strip().strip(".!*_`\"'").strip().lower())


def sample_pairs(n: int, opponents: int | None, seed_text: str) -> list[tuple[int, int]]:
    """The unordered pairs ``(i, j)``, ``i < j``, of a group of ``n`` to compare.

    ``opponents = None`` (or at least ``n - 1``): every pair. Else a deterministic sample: the group
    is shuffled by a seed derived from ``seed_text`` (the group key: the same group gets the same
    pairs in every run, so the cache serves them) and each member is paired with the ``opponents``
    members after it on that circle, so every member meets at least ``opponents`` others (at most
    twice as many) and the pairs are spread evenly.

    >>> sample_pairs(3, None, "g")
    [(0, 1), (0, 2), (1, 2)]
    >>> len(sample_pairs(10, 2, "g"))  # 10 members x 2 steps on the circle
    20
    """
    if opponents is None or opponents >= n - 1:
        return [(i, j) for i in range(n) for j in range(i + 1, n)]
    seed = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8", "surrogatepass")).digest()[:8], "big")
    circle = list(range(n))
    random.Random(seed).shuffle(circle)
    pairs = set()
    for pos, i in enumerate(circle):
        for step in range(1, opponents + 1):
            j = circle[(pos + step) % n]
            pairs.add((min(i, j), max(i, j)))
    return sorted(pairs)


def bradley_terry(
    n: int, results: Sequence[tuple[int, int, float]], *, prior: float = 0.5, iterations: int = 100
) -> list[float]:
    r"""Bradley–Terry strengths of ``n`` players from ``results`` ``(i, j, s)`` (``s`` = i's score
    against j in [0, 1]: 1 win, 0.5 tie, 0 loss), each scaled to [0, 1] as the probability of
    beating the group's geometric-mean player, :math:`p_i / (p_i + \bar p)`.

    Fitted by Hunter's (2004) MM iteration :math:`p_i \leftarrow W_i / \sum_j n_{ij} / (p_i + p_j)`
    with ``prior`` pseudo-wins for each side of every compared pair (a tie's worth of evidence:
    it keeps an unbeaten or winless player finite), renormalised to geometric mean 1 each step,
    until the largest change in :math:`\log p` is below 1e-10 or after ``iterations`` steps.
    A player without results scores 0.5.

    >>> [round(s, 4) for s in bradley_terry(2, [(0, 1, 1.0)])]  # p0/p1 = 1.5/0.5 = 3
    [0.634, 0.366]
    """
    if prior <= 0:
        raise ValueError("prior must be > 0")
    wins = [0.0] * n
    games: list[dict[int, float]] = [{} for _ in range(n)]
    for i, j, s in results:
        wins[i] += s + prior
        wins[j] += 1.0 - s + prior
        games[i][j] = games[i].get(j, 0.0) + 1.0 + 2 * prior
        games[j][i] = games[j].get(i, 0.0) + 1.0 + 2 * prior
    p = [1.0] * n
    for _ in range(iterations):
        new = [wins[i] / sum(c / (p[i] + p[j]) for j, c in games[i].items()) if games[i] else 1.0 for i in range(n)]
        logs = [math.log(x) for x in new]
        centre = sum(logs) / n
        new = [math.exp(x - centre) for x in logs]
        change = max(abs(math.log(a) - math.log(b)) for a, b in zip(new, p))
        p = new
        if change < 1e-10:
            break
    return [x / (x + 1.0) for x in p]  # the geometric mean is 1


@dataclass
class _Member:
    """A completion taking part in the comparisons, and what it has gathered."""

    index: int  # in the batch
    block: str  # fenced text
    info: dict[str, Any]
    scores: list[float] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    disagreements: int = 0


@register
class Pairwise(ModelComponent):
    r"""Pairwise comparisons inside a GRPO group, judged by an LLM, both ways round.

    Each completion is compared with the other completions of its group (``against = "group"``,
    the default; the group is the record's ``group`` field, else its prompt) — every pair, or with
    ``opponents = k`` a deterministic sample in which each meets at least ``k`` others — or with
    ``reference[field]`` (``against = "reference"``). Every comparison is asked twice, with the
    two texts in both positions (A/B and B/A), to cancel the judge's position bias. The
    comparison's score for a completion :math:`x` against :math:`y`:

    .. math:: s(x, y) = \tfrac12\,[o_{AB}(x) + o_{BA}(x)], \quad o = 1 \text{ win}, \tfrac12 \text{ tie}, 0 \text{ loss}

    (``swap_rule = "average"``, the default), or with ``swap_rule = "agree"`` the common outcome
    when both orders agree and :math:`\tfrac12` otherwise. A judge that always prefers the first
    position gives every completion 0.5. The reward (range [0, 1]):

    * ``aggregate = "win_rate"`` (default): :math:`R_x = \mathrm{mean}_y\, s(x, y)`;
    * ``aggregate = "bradley_terry"``: Bradley–Terry strengths of the group fitted to the scores
      (:func:`bradley_terry`), :math:`R_x = p_x / (p_x + \bar p)` with :math:`\bar p` the group's
      geometric mean (0.5 = an average member). Needs ``against = "group"``.

    Source: pairwise comparison rewards computed within a GRPO group (PulseMind) and the
    Bradley–Terry model (Bradley & Terry, 1952; MM fit of Hunter, 2004). PulseMind's exact formula
    is not public in a form verified here: the two-order averaging, ties as 0.5 and the scaling of
    strengths to [0, 1] are medreward's choices (docs/formulas.md#pairwise-comparison-in-a-group).

    Batch-first: every comparison of the batch goes to the backend in one call (a second call asks
    again, once, the comparisons whose answer named no winner). A comparison counts only when both
    orders answered; a failed one is left out of both completions' aggregates
    (``info["failed_comparisons"]``); a completion all of whose comparisons failed is ``error``
    (``timeout`` when all timed out). A group of one is ``not_applicable``. Only the records of
    one batch are compared: the runner keeps a run of consecutive members of a group in one batch
    (:attr:`needs_whole_groups`), so write a group's records next to each other.
    """

    kind = "pairwise"

    class Params(ModelParams):
        against: Literal["group", "reference"] = "group"
        field: str = Field(default="answer", min_length=1)
        opponents: int | None = Field(default=None, ge=1)
        aggregate: Literal["win_rate", "bradley_terry"] = "win_rate"
        swap_rule: Literal["average", "agree"] = "average"
        ties: bool = True
        bt_prior: float = Field(default=0.5, gt=0, le=100)
        bt_iterations: int = Field(default=100, ge=1, le=10_000)
        structured: bool = True
        max_tokens: int = Field(default=512, ge=1, le=32_768)

        @model_validator(mode="after")
        def _consistent(self) -> Pairwise.Params:
            if self.against == "reference" and self.aggregate == "bradley_terry":
                raise ValueError("aggregate = 'bradley_terry' needs against = 'group' (a reference comparison is a win rate)")
            if self.against == "reference" and self.opponents is not None:
                raise ValueError("opponents applies to against = 'group' only")
            return self

    @property
    def needs_whole_groups(self) -> bool:
        return self.params.against == "group"

    def reference_keys(self) -> tuple[str, ...]:
        return (self.params.field,) if self.params.against == "reference" else ()

    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        p = self.params
        results: list[ComponentScore | None] = [None] * len(rollouts)
        # each comparison: (x, y) where y is a member or None (the reference), with its two requests
        comparisons: list[tuple[_Member, _Member | None]] = []
        requests: list[ChatRequest] = []
        groups: list[list[_Member]] = []
        by_key: dict[str, list[_Member]] = {}
        conversations: dict[int, str] = {}
        for i, rollout in enumerate(rollouts):
            info: dict[str, Any] = {}
            try:
                block = self.fenced_completion(rollout.completion_text, info)
                conversations[i] = render_conversation(rollout.prompt)
                reference = self._reference(rollout) if p.against == "reference" else None
            except (TextTypeError, RecordError, TypeError) as exc:
                results[i] = ComponentScore.error(f"bad input: {exc}")
                continue
            member = _Member(i, block, info)
            if p.against == "reference":
                if reference is None:
                    results[i] = ComponentScore.not_applicable(f"reference has no {p.field!r}")
                    continue
                ref_block, _ = self._fence_reference(reference)
                comparisons.append((member, None))
                requests += self._pair_requests(conversations[i], block, ref_block)
                groups.append([member])
                continue
            key = rollout.group_key
            if key not in by_key:
                by_key[key] = []
                groups.append(by_key[key])
            by_key[key].append(member)
        if p.against == "group":
            for key, members in by_key.items():
                if len(members) == 1:
                    results[members[0].index] = ComponentScore.not_applicable(
                        "a group of one: nothing to compare with", group_size=1
                    )
                    continue
                for a, b in sample_pairs(len(members), p.opponents, key):
                    x, y = members[a], members[b]
                    comparisons.append((x, y))
                    requests += self._pair_requests(conversations[x.index], x.block, y.block)
        outcomes = self.run_requests(requests, lambda _k, r: _parse_winner(r), retry=_retry)
        pair_results: list[tuple[_Member, _Member | None, float]] = []
        for k, (x, y) in enumerate(comparisons):
            first, second = outcomes[2 * k], outcomes[2 * k + 1]
            broken = [o for o in (first, second) if o.failure is not None or o.problem is not None]
            if broken:
                x.failed.append(broken[0])
                if y is not None:
                    y.failed.append(broken[0])
                continue
            score, agreed = self._combine(first.value, second.value)
            x.scores.append(score)
            if y is not None:
                y.scores.append(1.0 - score)
            if not agreed:
                x.disagreements += 1
                if y is not None:
                    y.disagreements += 1
            pair_results.append((x, y, score))
        trace = self.trace(outcomes, PAIRWISE_VERSION)
        for members in groups:
            if p.against == "group" and len(members) < 2:
                continue
            self._aggregate(members, pair_results, trace, results)
        return results  # type: ignore[return-value]

    def _reference(self, rollout: Rollout) -> str | None:
        value = rollout.reference.get(self.params.field)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        if not isinstance(value, str):
            raise RecordError(f"reference field {self.params.field!r} must be text, got {type(value).__name__}")
        return value

    def _fence_reference(self, text: str) -> tuple[str, dict[str, Any]]:
        scratch: dict[str, Any] = {}  # the reference is trusted: its flags are not the completion's
        return self.fenced_completion(text, scratch), scratch

    def _pair_requests(self, conversation: str, x: str, y: str) -> list[ChatRequest]:
        """The two requests of one comparison: x shown as A, then y shown as A."""
        p = self.params
        system = {"role": "system", "content": PAIRWISE_SYSTEM}
        schema = pairwise_schema(p.ties) if p.structured else None
        return [
            ChatRequest(
                messages=(system, {"role": "user", "content": pairwise_text(conversation, a, b, ties=p.ties)}),
                template=PAIRWISE_VERSION,
                max_tokens=p.max_tokens,
                response_schema=schema,
            )
            for a, b in ((x, y), (y, x))
        ]

    def _combine(self, first: str, second: str) -> tuple[float, bool]:
        """x's score from the two orders (x was A in the first, B in the second) and whether they agreed."""
        as_a = {"A": 1.0, "B": 0.0, "tie": 0.5}[first]
        as_b = {"A": 0.0, "B": 1.0, "tie": 0.5}[second]
        agreed = as_a == as_b
        if self.params.swap_rule == "agree":
            return (as_a if agreed else 0.5), agreed
        return (as_a + as_b) / 2, agreed

    def _aggregate(
        self,
        members: list[_Member],
        pair_results: list[tuple[_Member, _Member | None, float]],
        trace: dict[str, Any],
        results: list[ComponentScore | None],
    ) -> None:
        p = self.params
        strengths: dict[int, float] = {}
        if p.aggregate == "bradley_terry":
            # members whose comparisons all failed are left out of the fit (and of its geometric mean)
            players = [m for m in members if m.scores]
            position = {m.index: k for k, m in enumerate(players)}
            mine = [(position[x.index], position[y.index], s) for x, y, s in pair_results
                    if y is not None and x.index in position]  # fmt: skip
            fitted = bradley_terry(len(players), mine, prior=p.bt_prior, iterations=p.bt_iterations)
            strengths = {m.index: s for m, s in zip(players, fitted)}
        for m in members:
            info = {**trace, **m.info, "group_size": len(members) if p.against == "group" else None,
                    "comparisons": len(m.scores), "failed_comparisons": len(m.failed),
                    "order_disagreements": m.disagreements}  # fmt: skip
            if p.against == "reference":
                del info["group_size"]
            if not m.scores:
                failed = self.outcome_error(m.failed[0], info)
                assert failed is not None
                if any(o.failure is None or o.failure.status != "timeout" for o in m.failed):
                    failed.status = Status.ERROR
                results[m.index] = failed
                continue
            win_rate = sum(m.scores) / len(m.scores)
            info["win_rate"] = win_rate
            if p.aggregate == "bradley_terry":
                info["strength"] = strengths[m.index]
                results[m.index] = ComponentScore.ok(strengths[m.index], **info)
            else:
                results[m.index] = ComponentScore.ok(win_rate, **info)


def _parse_winner(response: ChatResponse) -> tuple[str | None, str | None]:
    winner = read_winner(response.text)
    if winner is None:
        return None, f"no winner (A, B or tie) in {response.text[:80]!r}"
    return winner, None
