"""Score N toxicology rollouts (~2 KB completions) with the `toxicology` preset and, in the same run,
with reward functions written the way TRL/open-r1 users write them (a format regex + an F1 function,
summed with the preset's weights as TRL's `reward_weights` would). Checks both give identical rewards
and prints rollouts/s for each and the ratio.

    python benchmarks/bench_scoring.py [--n 100000] [--workers 2] [--repeat 3] [--group-size 1] [--floor]
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from medreward import Scorer
from medreward.parse.tags import FormatCheck
from medreward.records import Rollout, ScoredRecord, Status
from medreward.runner.scorer import _gc_paused
from medreward.vocab import load_vocabulary

CLASSES = list(load_vocabulary("toxicology").ids)  # the 14 class ids of the preset's vocabulary
SENTENCES = [
    "The patient has pinpoint pupils and a respiratory rate of 6, which suggests an opioid toxidrome.",
    "Heart rate is 124 with dilated pupils and diaphoresis, so a sympathomimetic is possible.",
    "Skin is dry and flushed, bowel sounds are absent, consistent with anticholinergic effects.",
    "An empty bottle of vodka was found at the scene and the breath smells of alcohol.",
    "Glucose is normal, which makes hypoglycaemia unlikely as the cause of the altered mental status.",
    "The QRS is widened on the monitor, raising concern for a tricyclic antidepressant.",
    "GCS is 9 with preserved airway reflexes; the bystander reports pills were taken an hour ago.",
    "Hyperthermia and clonus in the lower limbs would point towards serotonin toxicity.",
]


def make_rollouts(n: int, seed: int = 0, group_size: int = 1) -> list[dict]:
    """``n`` rollouts; with ``group_size`` G > 1, each run of G shares a case (reference and group id),
    as a GRPO group does, while its answers are drawn independently."""
    rng = random.Random(seed)
    rollouts = []
    truth: list[str] = []
    for i in range(n):
        if i % group_size == 0:
            truth = rng.sample(CLASSES, rng.choice([0, 1, 1, 2, 2, 3]))
        think = " ".join(rng.choice(SENTENCES) for _ in range(22))[:1900]
        roll = rng.random()
        if roll < 0.55:
            pred = list(truth)
        elif roll < 0.8:
            pred = rng.sample(CLASSES, rng.choice([1, 2, 3]))
        elif roll < 0.9:
            pred = truth[:1] + ["chloroquine"]  # a hallucinated, out-of-vocabulary label
        else:
            pred = rng.sample(CLASSES, 8)  # hedging
        answer = ", ".join(p if rng.random() < 0.8 else p.upper() for p in pred) if pred else ""
        shape = rng.random()
        if shape < 0.85:
            text = f"<think>{think}</think>\n<answer>{answer}</answer>"
        elif shape < 0.95:
            text = f"{think}\n<answer>{answer}</answer>"  # no think section
        else:
            text = f"<think>{think}"  # truncated generation
        if not pred and shape < 0.95:
            text = text.replace("<answer></answer>", "<answer>[]</answer>")
        rollout = {"id": str(i), "completion": text, "substances": truth, "reference": {"substances": truth}}
        if group_size > 1:
            rollout["group"] = str(i // group_size)
        rollouts.append(rollout)
    return rollouts


# --- the naive reward functions, as users write them for TRL / open-r1 (docs/integrations.md) ---
def format_reward(completions, **kwargs):
    pattern = r"^\s*<think>(?!\s*</think>).*?</think>\s*<answer>(?!\s*</answer>).*?</answer>\s*$"
    return [1.0 if re.match(pattern, c, re.DOTALL) else 0.0 for c in completions]


def f1_reward(completions, substances, **kwargs):
    rewards = []
    for completion, truth in zip(completions, substances):
        match = re.search(r"<answer>(.*?)</answer>", completion, re.DOTALL)
        if not match:
            rewards.append(0.0)
            continue
        text = match.group(1).strip()
        if text == "[]":
            pred = set()
        elif not text:
            rewards.append(0.0)
            continue
        else:
            pred = {p.strip().lower() for p in re.split(r"[,;\n]", text) if p.strip()}
        true = set(truth)
        if not pred and not true:
            rewards.append(1.0)
            continue
        rewards.append(2 * len(pred & true) / (len(pred) + len(true)))
    return rewards


def naive_rewards(rollouts):
    completions = [r["completion"] for r in rollouts]
    substances = [r["substances"] for r in rollouts]
    fmt = format_reward(completions)
    f1 = f1_reward(completions, substances)
    return [0.1 * a + 0.9 * b for a, b in zip(fmt, f1)]


def linear_format_reward(completions, **kwargs):
    """`format_reward` with medreward's linear tag scan in place of the backtracking regex
    (the same verdicts on this data: the rewards are checked to be identical)."""
    check = FormatCheck(("think", "answer"))
    return [0.0 if check(c) else 1.0 for c in completions]


def checks_without_records(rollouts):
    """The two checks alone, as floats: what any scorer of this data pays before it builds
    per-sample records (statuses, components, info)."""
    completions = [r["completion"] for r in rollouts]
    fmt = linear_format_reward(completions)
    f1 = f1_reward(completions, [r["substances"] for r in rollouts])
    return [0.1 * a + 0.9 * b for a, b in zip(fmt, f1)]


def component_floor(rollouts: list[dict]) -> list[float | None]:
    """The toxicology preset's two components called directly on the batch, with one scored
    record each: what the Scorer costs without its runner (isolation, time limits, statistics)."""
    scorer = Scorer("toxicology")
    fmt, labels = scorer.components
    out = []
    with _gc_paused():  # as Scorer.score does
        batch = [Rollout.from_dict(record) for record in rollouts]
        for rollout, a, b in zip(batch, fmt.score_batch(batch), labels.score_batch(batch)):
            reward = 0.1 * a.value + 0.9 * b.value
            out.append(ScoredRecord(rollout.record_dict(), reward, {"format": a.value, "substances": b.value},
                                    Status.OK, {"substances": b.info}))
    return [r.reward for r in out]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each contender's best round is reported")
    parser.add_argument("--group-size", type=int, default=1,
                        help="rollouts per case, as in a GRPO group (1: every rollout has its own case)")
    parser.add_argument("--floor", action="store_true",
                        help="also time the preset's components called directly (no isolation, time limits or statistics) "
                             "and the naive functions with medreward's linear format check (no records at all)")
    args = parser.parse_args()
    console = Console()
    if args.group_size < 1:
        parser.error("--group-size must be >= 1")
    rollouts = make_rollouts(args.n, group_size=args.group_size)

    scorers: list[Scorer] = []

    def medreward_rewards() -> list[float | None]:
        scorers.append(Scorer("toxicology"))  # a fresh Scorer each round: memos start empty, as in a new run
        return [r.reward for r in scorers[-1].score(rollouts)]

    contenders: list[tuple[str, Callable[[], list[float | None]]]] = [
        ("naive TRL-style functions (1 process)", lambda: naive_rewards(rollouts)),
        ("medreward Scorer (1 process)", medreward_rewards),
    ]
    if args.floor:
        contenders.append(("medreward components called directly (no runner)", lambda: component_floor(rollouts)))
        contenders.append(("naive functions, linear format check (no records)", lambda: checks_without_records(rollouts)))
    if args.workers > 1:
        contenders.append((
            f"medreward Scorer (--workers {args.workers}, incl. start-up)",
            lambda: [r.reward for r in Scorer("toxicology", workers=args.workers, chunk_size=2048).score(rollouts)],
        ))
    best = {name: float("inf") for name, _ in contenders}
    results: dict[str, list[float | None]] = {}
    # Rounds alternate the contenders, so a slow spell on a shared machine hits all of them;
    # each contender's best round is reported (timeit's convention: the least disturbed run).
    for _ in range(args.repeat):
        for name, run in contenders:
            started = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)

    naive_name = contenders[0][0]
    naive = results[naive_name]
    mismatches = sum(
        1 for name, _ in contenders[1:] for a, b in zip(naive, results[name]) if b is None or abs(a - b) > 1e-9
    )
    naive_s = best[naive_name]
    groups = f", groups of {args.group_size}" if args.group_size > 1 else ""
    table = Table(title=f"{args.n:,} toxicology rollouts (~2 KB{groups}), toxicology preset, best of {args.repeat} rounds")
    table.add_column("scorer")
    table.add_column("seconds", justify="right")
    table.add_column("rollouts/s", justify="right")
    table.add_column("vs naive", justify="right")
    for name, _ in contenders:
        seconds = best[name]
        table.add_row(name, f"{seconds:.2f}", f"{args.n / seconds:,.0f}", f"{naive_s / seconds:.2f}×")
    console.print(table)
    console.print(f"identical rewards: {'yes' if mismatches == 0 else f'NO ({mismatches} differ)'}")
    # where the single-process time goes, from the Scorer's own statistics (fastest round)
    stats = min(scorers, key=lambda scorer: scorer.stats.seconds).stats
    parts = ", ".join(f"{c.name} {c.us_per_sample:.1f}" for c in stats.components.values() if c.us_per_sample)
    rest = 1e6 * stats.seconds / stats.n - sum(c.us_per_sample or 0 for c in stats.components.values())
    console.print(f"medreward µs per rollout: {parts}, records/combine/statistics {rest:.1f}")
    single = naive_s / best[contenders[1][0]]
    verdict = "[green]met[/]" if single >= 2 else "[red]not met[/]"
    console.print(f"target (issue 2): medreward ≥ 2× the naive functions in one process: {verdict} ({single:.2f}×)")
    if mismatches:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
