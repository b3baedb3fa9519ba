"""``medreward demo``: what the toxicology reward rewards, in seconds, on the CPU.

Generates a toxicology case set (fixed seed), runs every toxicology baseline policy, scores the
rollouts with the ``toxicology`` preset and prints mean reward vs micro-/macro-F1 per policy.
A reward worth optimising ranks the policies as the task metric does: the toxidrome reader
above the history reader above constant answers, and hedging (listing every class) low. The
last line says so in one number: Kendall's τ-b between mean reward and micro-F1 across the
policies, and the pairs the two order differently.
"""

from __future__ import annotations

import time

import typer

from ..baselines import list_policies
from ..baselines.base import policy_rng
from ..baselines.evaluate import EvaluationResult, evaluate
from ..runner import Scorer
from ..tasks import get_task
from .baselines import _HEADERS, print_results
from .console import out, progress_bar, user_errors
from .ranking import discordant_pairs, kendall_tau
from .tasks import check_n

TASK = "toxicology"


@user_errors
def demo_command(
    n: int = typer.Option(200, "--n", "-n", help="Number of toxicology cases."),
    seed: int = typer.Option(0, "--seed", help="Seed of the case set and the policies."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of a table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate toxicology cases, run every baseline, score with the toxicology preset, compare."""
    check_n(n)
    started = time.perf_counter()
    info = get_task(TASK)
    policies = list_policies(TASK)
    scorer = Scorer(info.preset)
    results: list[EvaluationResult] = []
    progress = progress_bar("demo", quiet=quiet)
    with progress:
        bar = progress.add_task("demo", total=n * (len(policies) + 1))
        cases = info.generate(n, seed)
        progress.advance(bar, n)
        for policy in policies:
            rng = policy_rng(TASK, policy.name, seed)
            rollouts = [{**case, "completion": policy.policy(case, rng), "policy": policy.name} for case in cases]
            scored = scorer.score(rollouts)
            results.append(evaluate(scored, task=TASK, policy=policy.name))
            progress.advance(bar, n)
    seconds = time.perf_counter() - started
    caption = f"{n} cases (seed {seed}) · spec {scorer.spec.name} · {seconds:.2f} s"
    print_results(results, title="medreward demo · toxicology baselines", caption=caption, as_json=as_json)
    if not as_json:
        out.print(rank_agreement(results), highlight=False, soft_wrap=True)
        out.print("[dim]`medreward baselines list toxicology` describes each policy.[/]")


def rank_agreement(results: list[EvaluationResult], metric: str = "micro_f1") -> str:
    """One line: does the mean reward order the policies as the task metric does (Kendall τ-b)?"""
    rated = [r for r in results if r.mean_reward is not None and metric in r.metrics]
    names = [r.policy for r in rated]
    reward = [r.mean_reward for r in rated]
    score = [r.metrics[metric] for r in rated]
    tau = kendall_tau(reward, score)
    label = _HEADERS.get(metric, metric)
    if tau is None:
        return f"rank agreement of reward and {label}: undefined ({len(rated)} policies, or all tied)"
    swapped = discordant_pairs(names, reward, score)
    verdict = (
        f"the reward orders the {len(rated)} policies as {label} does"
        if not swapped
        else "ordered the other way round by the reward: " + ", ".join(f"{a}/{b}" for a, b in swapped)
    )
    return f"Kendall τ between mean reward and {label} across the baselines: {tau:+.2f} (1 = same order); {verdict}"
