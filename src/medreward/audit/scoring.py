"""How the audit scores the completions it writes (gold, baselines, probes, search, benchmark).

One place for three things every audit stage needs:

- :func:`open_scorer`: a spec (name, path, mapping, :class:`~medreward.compose.spec.Spec`) or an
  already built scorer, and whether the caller owns (must close) it;
- :func:`score_all`: all records in one scorer call, with a rich progress bar on a terminal;
- stated conclusions: a spec with a ``consistency`` component (R1-Reward's gate) zeroes any
  completion whose reasoning does not conclude its answer. The audit's own completions have a
  neutral reasoning (:func:`medreward.audit.cases.gold_completion`), so under such a spec every
  one of them, gold included, would hit the gate and the audit would measure nothing. The
  scorer :func:`open_scorer` returns for such a spec therefore restates each completion's
  answer as the last sentence of its reasoning (:func:`state_conclusion`) — what a policy that
  learnt the gate does — and the rest of the reward is audited as usual. User rollouts scored as
  they are (``run_audit``'s *rollouts*) never go through it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..compose.spec import Spec
from ..parse.tags import section_content
from ..records import Rollout, ScoredRecord
from ..runner import Scorer

__all__ = ["CONCLUSION_PHRASES", "ConclusionStatingScorer", "conclusion_style", "open_scorer", "score_all", "state_conclusion"]


#: How a completion states its conclusion, by the consistency component's ``compare``. Numbers
#: and labels: no answer cue ("is", ":", "="), so the number reader takes the same (last) value
#: from both sides of a listed hedge, which stays a consistent hedge for the rest of the reward to
#: judge. Letters: the choice reader needs a claim ("the answer is C") once the reasoning is long.
CONCLUSION_PHRASES = {"choice": "So the answer is {}.", "number": "So I conclude {}.", "labels": "So I conclude {}."}


def state_conclusion(completion: Any, *, think_tag: str = "think", answer_tag: str = "answer",
                     phrase: str = CONCLUSION_PHRASES["number"]) -> Any:  # fmt: skip
    """``completion`` with its answer restated as the last sentence of its reasoning (``phrase``
    filled with the answer, whitespace folded, a final full stop dropped).

    Unchanged when it is not a string, has no non-empty ``<answer_tag>`` section, or no
    ``</think_tag>`` before that section.

    >>> state_conclusion("<think>I weigh each option.</think>\\n<answer>C</answer>", phrase="So the answer is {}.")
    '<think>I weigh each option. So the answer is C.</think>\\n<answer>C</answer>'
    >>> state_conclusion("<answer>C</answer>")  # no reasoning to state it in
    '<answer>C</answer>'
    """
    if not isinstance(completion, str):
        return completion
    answer = section_content(completion, answer_tag)
    if answer is None or not answer.strip():
        return completion
    close = completion.rfind(f"</{think_tag}>", 0, completion.rfind(f"<{answer_tag}>"))
    if close < 0:
        return completion
    stated = phrase.format(" ".join(answer.split()).rstrip("."))
    return f"{completion[:close].rstrip()} {stated}{completion[close:]}"


def conclusion_style(spec: Spec) -> dict[str, str] | None:
    """:func:`state_conclusion`'s keywords for the spec's first ``consistency`` component
    (``think_tag``, ``answer_tag``, ``phrase``; the component's own defaults), or ``None``."""
    from ..rewards.consistency import Consistency

    for component in spec.components:
        if component.kind == Consistency.kind:
            params = Consistency.Params.model_validate(component.params or {})
            return {"think_tag": params.think_tag, "answer_tag": params.answer_tag or "answer",
                    "phrase": CONCLUSION_PHRASES[params.compare]}  # fmt: skip
    return None


class ConclusionStatingScorer:
    """A scorer whose records' completions state their conclusion (:func:`state_conclusion`)
    before the wrapped scorer scores them; ``spec``, ``close`` and the context manager are the
    wrapped scorer's."""

    def __init__(self, scorer: Scorer, **style: str) -> None:
        self.scorer = scorer
        self.style = style  # state_conclusion's keywords

    @property
    def spec(self) -> Spec:
        return self.scorer.spec

    def _stated(self, records: Iterable[Any]) -> Iterator[Any]:
        for record in records:
            if isinstance(record, Mapping) and "completion" in record:
                text = state_conclusion(record["completion"], **self.style)
                yield record if text is record["completion"] else {**record, "completion": text}
            elif isinstance(record, Rollout):
                yield self._stated_rollout(record)
            else:
                yield record

    def _stated_rollout(self, rollout: Rollout) -> Rollout:
        text = state_conclusion(rollout.completion, **self.style)
        return rollout if text is rollout.completion else Rollout.from_dict({**rollout.to_dict(), "completion": text})

    def score(self, records: Iterable[Any]) -> list[ScoredRecord]:
        return self.scorer.score(self._stated(records))

    def iter_score(self, records: Iterable[Any], **options: Any) -> Iterator[ScoredRecord]:
        return self.scorer.iter_score(self._stated(records), **options)

    def close(self) -> None:
        self.scorer.close()

    def __enter__(self) -> ConclusionStatingScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_scorer(spec_or_scorer: Any) -> tuple[Any, bool]:
    """The scorer the audit's stages score their own completions with, and whether the caller
    built it (and must ``close()`` it).

    A :class:`Scorer` (or any object with ``score`` that is not a spec) is used as it is, except
    that under a spec with a ``consistency`` component it is wrapped in a
    :class:`ConclusionStatingScorer` (see the module docstring); anything else is a spec and
    builds a new scorer.
    """
    owned = False
    scorer = spec_or_scorer
    if isinstance(scorer, (str, Path, Mapping, Spec)) or not callable(getattr(scorer, "score", None)):
        scorer, owned = Scorer(scorer), True
    if isinstance(scorer, Scorer):
        style = conclusion_style(scorer.spec)
        if style is not None:
            scorer = ConclusionStatingScorer(scorer, **style)
    return scorer, owned


def score_all(scorer: Any, records: list[Any], label: str, progress: bool) -> list[ScoredRecord]:
    """All ``records`` in one scorer call; a transient rich bar on stderr when ``progress`` and
    stderr is a terminal (or ``MEDREWARD_PROGRESS=1``)."""
    if not progress or not records:
        return scorer.score(records)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    shown = sys.stderr.isatty() or os.environ.get("MEDREWARD_PROGRESS") == "1"
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=not shown, transient=True) as bar:  # fmt: skip
        task = bar.add_task(label, total=len(records))
        return list(scorer.iter_score(records, on_progress=lambda n: bar.advance(task, n)))
