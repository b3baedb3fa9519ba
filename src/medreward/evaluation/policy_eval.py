"""Evaluate a policy: sample it on held-out cases, score the samples, report the task's numbers.

:func:`evaluate_policy` takes any *generate* callable, so the same code evaluates a model loaded by
``medreward eval``, a model behind an OpenAI-compatible server, or the model being trained (a GRPO
trainer's eval-every-N-steps hook)::

    generate(prompts: list[list[dict]], n: int, seed: int) -> list[list[str]]

``prompts`` are chat conversations (``[{"role": ..., "content": ...}, ...]``); the callable returns
``n`` completions (assistant text) per prompt, in order. :mod:`medreward.evaluation.sampling` has
the transformers and OpenAI-server implementations.

What is reported (:class:`PolicyEvalReport`):

- ``mean_reward``: mean reward of the ``ok`` samples under the spec (default: the task's preset);
- ``metrics``: the task's registered metrics (:func:`medreward.baselines.evaluate.evaluate`) over
  every sample (micro-F1 for toxicology, accuracy for MCQ and calculators, code F1 for ICD);
- ``pass_at_1``, ``pass_at_k``: the unbiased estimator of Chen et al. 2021 over ``samples`` draws
  per case (:mod:`medreward.evaluation.estimators`), "correct" as
  :mod:`medreward.evaluation.answers` defines it per task (or ``reward >= correct_threshold``);
- ``maj_at_k``: majority vote over the parsed answers of the first ``k`` samples of each case;
- ``format_rate``: share of samples that are exactly ``<think>…</think>`` then ``<answer>…</answer>``
  (each tag once, in order, neither empty; text around them allowed) — independent of the spec;
- ``mean_length_chars`` always, ``mean_length_tokens`` when a token counter is given;
- for label tasks (toxicology, ICD): ``mean_predicted_labels`` (over the samples that gave an
  ``<answer>``; ``None`` if none did) vs ``mean_reference_labels`` (over every sample's case), and
  their ratio ``hedge_ratio`` (> 1: the policy lists more labels than the references hold — hedging).

>>> from medreward.tasks import get_task
>>> cases = get_task("mcq").generate(2, 5)
>>> def always_a(prompts, n, seed):
...     return [["<think>guess</think><answer>A</answer>"] * n for _ in prompts]
>>> report = evaluate_policy(always_a, cases, task="mcq", k=2)
>>> report.format_rate, report.n_samples, report.pass_at_k == report.maj_at_k == report.metrics["accuracy"]
(1.0, 4, True)
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..parse.tags import FormatCheck
from ..records import Rollout, ScoredRecord, Status
from .answers import LABEL_TASKS, correctness_rule, judge_samples
from .estimators import maj_at_k, mean_pass_at_k

if TYPE_CHECKING:
    from ..compose import Spec
    from ..runner import Scorer

__all__ = [
    "HELDOUT_SEED",
    "GenerateFn",
    "Messages",
    "PolicyEvalReport",
    "check_cases",
    "check_spec_fits",
    "evaluate_policy",
    "heldout_cases",
    "prompt_messages",
]

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]
#: ``generate(prompts, n, seed) -> n completions per prompt`` (see the module docstring)
GenerateFn = Callable[[list[Messages], int, int], list[list[str]]]

#: Seed of the held-out cases drawn from a task generator. Training data (``medreward train`` SFT and
#: GRPO) is drawn with small seeds (0 by default); generators seed every case from (task, seed, index),
#: so this seed gives other cases. Tasks drawing from a finite bank (MCQ) can repeat a question under
#: two seeds: pass the training cases as ``exclude`` to :func:`heldout_cases` to drop those.
HELDOUT_SEED = 1_000_003

_FORMAT = FormatCheck(("think", "answer"))


@dataclass(frozen=True)
class PolicyEvalReport:
    """The numbers of one policy on one task (see the module docstring for each field)."""

    task: str
    spec: str
    policy: str
    n_cases: int
    k: int
    samples_per_case: int
    n_samples: int
    seed: int
    mean_reward: float | None
    metrics: dict[str, float]
    pass_at_1: float
    pass_at_k: float
    maj_at_k: float
    correct_definition: str
    format_rate: float
    mean_length_chars: float
    mean_length_tokens: float | None
    mean_predicted_labels: float | None
    mean_reference_labels: float | None
    hedge_ratio: float | None
    statuses: dict[str, int] = field(default_factory=dict)
    seconds_generate: float = 0.0
    seconds_score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (every field; ``pass@k`` keys spelled as fields)."""
        return asdict(self)


def prompt_messages(case: Mapping[str, Any]) -> Messages:
    """The case's prompt as a conversation (a plain-string prompt becomes one user turn).

    Raises:
        InputError: the case has no usable prompt.
    """
    prompt = case.get("prompt")
    if isinstance(prompt, str) and prompt.strip():
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, list) and prompt and all(
        isinstance(m, Mapping) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in prompt
    ):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise InputError(f"case {case.get('id', '?')!r} has no prompt (a string or a list of {{role, content}} turns)")


def check_cases(cases: Sequence[Mapping[str, Any]], task: str) -> None:
    """Every case has a prompt and a reference object, and names no other task.

    Raises:
        InputError: no cases, or the first bad case (with its id and what is missing).
    """
    if not cases:
        raise InputError("no cases to evaluate")
    for position, case in enumerate(cases, start=1):
        if not isinstance(case, Mapping):
            raise InputError(f"case #{position} is not a JSON object")
        prompt_messages(case)
        reference = case.get("reference")
        if not isinstance(reference, Mapping) or not reference:
            raise InputError(
                f"case #{position} (id {case.get('id', '?')!r}) has no reference: evaluation needs the task's ground "
                "truth in 'reference' (see docs/contracts.md)"
            )
        other = case.get("task")
        if isinstance(other, str) and other and other != task:
            raise InputError(f"case #{position} (id {case.get('id', '?')!r}) is a {other!r} case, not {task!r}")


def check_spec_fits(scorer: Scorer, task: str, cases: Sequence[Mapping[str, Any]]) -> None:
    """Score a placeholder answer on the first cases: a spec that cannot judge any of them (every
    record ``not_applicable`` or ``error``, e.g. the MCQ preset on toxicology references) does not
    fit the task.

    Raises:
        InputError: the spec judged none of the probe records; the message gives the reason.
    """
    probe = [{**dict(c), "completion": "<think>-</think><answer>-</answer>"} for c in cases[:4]]
    runner_log = logging.getLogger("medreward.runner.scorer")
    level = runner_log.level
    runner_log.setLevel(logging.ERROR)  # the probe's not_applicable warning is this function's message
    try:
        scored = scorer.score(probe)
    finally:
        runner_log.setLevel(level)
    if any(s.status is Status.OK for s in scored):
        return
    reasons = Counter(str(s.info.get("error") or s.info.get("reason") or s.info or s.status.value)[:200] for s in scored)
    reason = reasons.most_common(1)[0][0] if reasons else "no record scored"
    raise InputError(
        f"spec {scorer.spec.name!r} does not fit task {task!r}: it could not score any of the first "
        f"{len(probe)} cases ({reason})"
    )


def heldout_cases(task: str, n: int, *, seed: int = HELDOUT_SEED, exclude: Iterable[Mapping[str, Any]] = ()) -> list[dict[str, Any]]:
    """``n`` cases of ``task`` from its generator with the held-out ``seed``, leaving out any case
    whose prompt equals that of a case in ``exclude`` (the training cases); more are drawn to make up
    for those left out (at most ``4 n`` in all).

    Raises:
        InputError: ``n < 1``, or fewer than ``n`` cases remain.
    """
    from ..tasks import get_task

    if n < 1:
        raise InputError(f"the number of held-out cases must be >= 1, got {n}")
    info = get_task(task)
    seen = {_prompt_key(c) for c in exclude}
    drawn = n
    while True:
        cases = [c for c in info.generate(drawn, seed) if _prompt_key(c) not in seen]
        if len(cases) >= n or drawn >= 4 * n:
            break
        drawn = min(4 * n, drawn + (n - len(cases)) * 2 + 1)
    if len(cases) < n:
        raise InputError(f"only {len(cases)} {task} cases with seed {seed} are not in the excluded (training) set")
    return cases[:n]


def _prompt_key(case: Mapping[str, Any]) -> str:
    prompt = case.get("prompt")
    if isinstance(prompt, list):
        return "\x1e".join(f"{m.get('role')}:{m.get('content')}" for m in prompt if isinstance(m, Mapping))
    return str(prompt)


def evaluate_policy(
    generate: GenerateFn,
    cases: Sequence[Mapping[str, Any]],
    *,
    task: str,
    spec: str | Spec | Mapping[str, Any] | None = None,
    k: int = 1,
    samples: int | None = None,
    seed: int = 0,
    correct_threshold: float | None = None,
    scorer: Scorer | None = None,
    count_tokens: Callable[[str], int] | None = None,
    batch_size: int = 16,
    policy: str = "policy",
    on_progress: Callable[[int], None] | None = None,
    keep: list[ScoredRecord] | None = None,
) -> PolicyEvalReport:
    """Sample ``samples`` (default ``k``) completions per case with ``generate``, score them with
    ``spec`` (default: the task's preset; or pass a ready ``scorer``) and report (see the module
    docstring).

    Args:
        generate: ``(prompts, n, seed) -> n completions per prompt``.
        cases: rollout records without completion (``prompt``, ``reference``).
        task: the task name (its metrics and its definition of a correct answer).
        k: the k of pass@k and maj@k (``1 <= k <= samples``).
        seed: passed to ``generate`` as ``seed + index of the batch's first case``.
        correct_threshold: count a sample correct when its reward >= this, instead of the task's rule.
        count_tokens: text → token count, for ``mean_length_tokens``.
        batch_size: cases per ``generate`` call (progress is reported per call).
        on_progress: called with the number of cases sampled after each call.
        keep: a list that receives the scored samples (e.g. to write them out).

    Raises:
        InputError: bad cases, a spec that does not fit the task, or ``generate`` returning the wrong
            shape.
    """
    from ..runner import Scorer as _Scorer
    from ..tasks import get_task

    info = get_task(task)
    samples = k if samples is None else samples
    if not 1 <= k <= samples:
        raise InputError(f"need 1 <= k <= samples per case, got k={k}, samples={samples}")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    check_cases(cases, task)
    if scorer is not None:
        return _evaluate(generate, cases, scorer, task, k, samples, seed, correct_threshold, count_tokens, batch_size,
                         policy, on_progress, keep)  # fmt: skip
    with _Scorer(spec if spec is not None else info.preset) as own:
        return _evaluate(generate, cases, own, task, k, samples, seed, correct_threshold, count_tokens, batch_size,
                         policy, on_progress, keep)  # fmt: skip


def _evaluate(
    generate: GenerateFn,
    cases: Sequence[Mapping[str, Any]],
    scorer: Scorer,
    task: str,
    k: int,
    samples: int,
    seed: int,
    correct_threshold: float | None,
    count_tokens: Callable[[str], int] | None,
    batch_size: int,
    policy: str,
    on_progress: Callable[[int], None] | None,
    keep: list[ScoredRecord] | None,
) -> PolicyEvalReport:
    from ..baselines.evaluate import evaluate

    prompts = [prompt_messages(c) for c in cases]

    started = time.perf_counter()
    completions: list[list[str]] = []
    for start in range(0, len(cases), batch_size):
        batch = prompts[start : start + batch_size]
        out = generate(batch, samples, seed + start)
        if not isinstance(out, list) or len(out) != len(batch) or any(
            not isinstance(row, list) or len(row) != samples for row in out
        ):
            raise InputError(f"generate must return {samples} completions for each of the {len(batch)} prompts")
        completions.extend([str(t) for t in row] for row in out)
        if on_progress is not None:
            on_progress(len(batch))
    seconds_generate = time.perf_counter() - started

    records = []
    for index, (case, row) in enumerate(zip(cases, completions)):
        case_id = str(case.get("id", index))
        for j, text in enumerate(row):
            records.append({**dict(case), "id": f"{case_id}#{j}", "group": case_id, "policy": policy, "completion": text})
    started = time.perf_counter()
    scored = scorer.score(records)
    seconds_score = time.perf_counter() - started
    if keep is not None:
        keep.extend(scored)

    result = evaluate(scored, task=task, policy=policy)
    judged = judge_samples(task, scored, correct_threshold=correct_threshold)
    per_case = [judged[i * samples : (i + 1) * samples] for i in range(len(cases))]
    counts = [(samples, sum(j.correct for j in row)) for row in per_case]
    votes = [([j.answer for j in row], [j.correct for j in row]) for row in per_case]

    texts = [Rollout.from_dict(r).completion_text for r in records]
    label_task = task in LABEL_TASKS
    mean_pred = _mean([j.predicted_labels for j in judged]) if label_task else None  # answered samples only
    mean_ref = _mean([j.reference_labels for j in judged]) if label_task else None  # every sample's case
    hedge = mean_pred / mean_ref if mean_pred is not None and mean_ref else None
    return PolicyEvalReport(
        task=task,
        spec=scorer.spec.name,
        policy=policy,
        n_cases=len(cases),
        k=k,
        samples_per_case=samples,
        n_samples=len(records),
        seed=seed,
        mean_reward=result.mean_reward,
        metrics=dict(result.metrics),
        pass_at_1=mean_pass_at_k(counts, 1),
        pass_at_k=mean_pass_at_k(counts, k),
        maj_at_k=maj_at_k(votes, k),
        correct_definition=correctness_rule(task, correct_threshold),
        format_rate=sum(not _FORMAT(t) for t in texts) / len(texts),
        mean_length_chars=sum(len(t) for t in texts) / len(texts),
        mean_length_tokens=sum(count_tokens(t) for t in texts) / len(texts) if count_tokens is not None else None,
        mean_predicted_labels=mean_pred,
        mean_reference_labels=mean_ref,
        hedge_ratio=hedge,
        statuses=dict(result.statuses),
        seconds_generate=seconds_generate,
        seconds_score=seconds_score,
    )


def _mean(values: Sequence[int | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
