"""Preference pairs for offline methods (DPO) from scored groups of rollouts (``medreward pairs``).

A *group* is the rollouts of one prompt (a GRPO group): records sharing the ``group`` field (or
another field, ``group_key``), else the same prompt. From each group one pair is written:

**Selection rule.** Only ``ok`` records take part (``error`` / ``timeout`` / ``not_applicable`` ones
are excluded and counted). Candidate pairs are ordered pairs (chosen, rejected) of the group with
``reward(chosen) - reward(rejected) >= min_margin`` (up to 1e-9, float rounding) and a strictly
positive difference.

- without length control: chosen = the highest reward, rejected = the lowest (ties: the first in
  the input), written if their margin reaches ``min_margin``;
- with length control (the default): among the candidates whose chosen is **not longer** than its
  rejected (``len(chosen) <= len(rejected)``, characters of the completion text), the one with the
  largest margin (ties: the smallest length ratio, then input order); when every candidate's chosen
  is longer, the candidate with the **smallest length ratio** ``len(chosen) / len(rejected)``
  (ties: the largest margin). This avoids teaching "longer is better": DPO exploits length when the
  preferred answer is systematically longer (Park et al., "Disentangling Length from Quality in
  Direct Preference Optimization", 2024; on chest X-ray reports, Hein et al., "Preference
  Fine-Tuning for Factuality in Chest X-Ray Interpretation Models Without Human Feedback", 2024,
  report the same length exploitation [recalled, not re-checked offline]). The rule itself is
  medreward's choice, not a published algorithm.

A group of one usable record, a group where no candidate reaches the margin, and a group whose
records carry different prompts are skipped and counted. :class:`PairsReport` gives those counts
and the length statistics of the pairs written (share whose chosen is longer, mean length
difference chosen − rejected, in characters).

**Output** (one JSON object per pair) is TRL's conversational preference format, what
``trl.DPOTrainer`` reads: ``prompt`` a list of ``{role, content}`` messages, ``chosen`` and
``rejected`` each a list holding the assistant message(s); plus ``group``, ``chosen_reward``,
``rejected_reward``, ``margin``, ``chosen_chars`` and ``rejected_chars`` (TRL drops columns it does
not use).

>>> from medreward.records import ScoredRecord, Status
>>> def rec(text, reward):
...     return ScoredRecord({"group": "g", "prompt": "Q?", "completion": text}, reward, {}, Status.OK)
>>> pairs, report = build_pairs([rec("short right", 1.0), rec("a much longer right answer", 1.0), rec("wrong", 0.0)])
>>> pairs[0]["chosen"], pairs[0]["rejected"], pairs[0]["margin"]
([{'role': 'assistant', 'content': 'short right'}], [{'role': 'assistant', 'content': 'wrong'}], 1.0)
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ..records import BadRecord, Rollout, ScoredRecord, Status

__all__ = ["PairsReport", "build_pairs", "select_pair"]


@dataclass
class PairsReport:
    """What :func:`build_pairs` read, skipped and wrote."""

    records: int = 0
    excluded: dict[str, int] = field(default_factory=dict)  # status (or "unreadable") → count
    groups: int = 0
    singleton_groups: int = 0
    below_margin_groups: int = 0
    mixed_prompt_groups: int = 0
    pairs: int = 0
    chosen_longer: int = 0
    mean_margin: float | None = None
    mean_chosen_chars: float | None = None
    mean_rejected_chars: float | None = None
    mean_length_difference: float | None = None  # chosen − rejected, characters

    @property
    def fraction_chosen_longer(self) -> float | None:
        return self.chosen_longer / self.pairs if self.pairs else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fraction_chosen_longer": self.fraction_chosen_longer}


@dataclass(frozen=True)
class _Item:
    index: int
    reward: float
    text: str
    record: Mapping[str, Any]

    @property
    def chars(self) -> int:
        return len(self.text)


#: rewards are floats: 0.7 - 0.4 must reach a margin of 0.3
_MARGIN_SLACK = 1e-9


def _reaches(margin: float, min_margin: float) -> bool:
    return margin > 0 and margin >= min_margin - _MARGIN_SLACK


def select_pair(items: list[_Item], *, min_margin: float, length_control: bool) -> tuple[_Item, _Item] | None:
    """The (chosen, rejected) pair of one group under the module's rule, or ``None``."""
    if len(items) < 2:
        return None
    if not length_control:
        best = max(items, key=lambda i: (i.reward, -i.index))
        worst = min(items, key=lambda i: (i.reward, i.index))
        return (best, worst) if _reaches(best.reward - worst.reward, min_margin) else None
    candidates = [(c, r) for c in items for r in items if _reaches(c.reward - r.reward, min_margin)]
    if not candidates:
        return None

    def ratio(pair: tuple[_Item, _Item]) -> float:
        chosen, rejected = pair
        return chosen.chars / rejected.chars if rejected.chars else (math.inf if chosen.chars else 1.0)

    not_longer = [p for p in candidates if p[0].chars <= p[1].chars]
    if not_longer:
        return min(not_longer, key=lambda p: (-(p[0].reward - p[1].reward), ratio(p), p[0].index, p[1].index))
    return min(candidates, key=lambda p: (ratio(p), -(p[0].reward - p[1].reward), p[0].index, p[1].index))


def _messages(value: Any, role: str) -> list[dict[str, str]]:
    if isinstance(value, list):
        return [{"role": str(m.get("role", role)), "content": str(m.get("content", ""))} for m in value if isinstance(m, Mapping)]
    return [{"role": role, "content": "" if value is None else str(value)}]


def _group_of(record: Mapping[str, Any], rollout: Rollout, group_key: str) -> str:
    value = record.get(group_key)
    return str(value) if value is not None else rollout.group_key


def build_pairs(
    scored: Iterable[ScoredRecord | BadRecord],
    *,
    min_margin: float = 0.0,
    length_control: bool = True,
    group_key: str = "group",
) -> tuple[list[dict[str, Any]], PairsReport]:
    """One DPO pair per group of scored rollouts (see the module docstring), in first-seen group
    order, and the :class:`PairsReport`.

    Raises:
        ValueError: ``min_margin`` is negative or not finite.
    """
    if not (math.isfinite(min_margin) and min_margin >= 0):
        raise ValueError(f"min_margin must be a finite number >= 0, got {min_margin}")
    report = PairsReport()
    excluded: Counter[str] = Counter()
    groups: dict[str, list[_Item]] = {}
    prompts: dict[str, set[str]] = {}
    for index, s in enumerate(scored):
        report.records += 1
        if isinstance(s, BadRecord):
            excluded["unreadable"] += 1
            continue
        if s.status is not Status.OK or s.reward is None or not math.isfinite(s.reward):
            excluded[s.status.value if s.status is not Status.OK else "no_reward"] += 1
            continue
        try:
            rollout = Rollout.from_dict(s.record)
        except Exception:  # noqa: BLE001 - the scorer accepted it; a record it cannot rebuild is unusable here
            excluded["unreadable"] += 1
            continue
        key = _group_of(s.record, rollout, group_key)
        groups.setdefault(key, []).append(_Item(index, float(s.reward), rollout.completion_text, s.record))
        prompts.setdefault(key, set()).add(json.dumps(s.record.get("prompt"), sort_keys=True, default=str))
    report.excluded = dict(excluded)
    report.groups = len(groups)

    pairs: list[dict[str, Any]] = []
    for key, items in groups.items():
        if len(items) < 2:
            report.singleton_groups += 1
            continue
        if len(prompts[key]) > 1:
            report.mixed_prompt_groups += 1
            continue
        chosen_rejected = select_pair(items, min_margin=min_margin, length_control=length_control)
        if chosen_rejected is None:
            report.below_margin_groups += 1
            continue
        chosen, rejected = chosen_rejected
        pairs.append({
            "prompt": _messages(chosen.record.get("prompt"), "user"),
            "chosen": _messages(chosen.record.get("completion"), "assistant"),
            "rejected": _messages(rejected.record.get("completion"), "assistant"),
            "group": key,
            "chosen_reward": chosen.reward,
            "rejected_reward": rejected.reward,
            "margin": chosen.reward - rejected.reward,
            "chosen_chars": chosen.chars,
            "rejected_chars": rejected.chars,
        })  # fmt: skip
    report.pairs = len(pairs)
    if pairs:
        n = len(pairs)
        report.chosen_longer = sum(p["chosen_chars"] > p["rejected_chars"] for p in pairs)
        report.mean_margin = sum(p["margin"] for p in pairs) / n
        report.mean_chosen_chars = sum(p["chosen_chars"] for p in pairs) / n
        report.mean_rejected_chars = sum(p["rejected_chars"] for p in pairs) / n
        report.mean_length_difference = report.mean_chosen_chars - report.mean_rejected_chars
    return pairs, report
