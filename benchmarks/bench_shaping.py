"""Benchmark the shaping transforms on 1M rewards in groups of 8 and 16.

Prints µs per 1k rewards for each transform (best of ``--repeats`` runs) and, in the same run,
a naive per-group Python-loop GRPO next to the vectorised one, with their ratio. The naive
loop is the kindest version of it: groups are contiguous slices, each normalised with numpy.

    python benchmarks/bench_shaping.py            # 1M rewards
    python benchmarks/bench_shaping.py --n 200000 # quicker
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table

from medreward.shape import (
    ConfidenceCalibrator,
    RaggedSteps,
    ReferenceFrozenNormalizer,
    RunningMedianNormalizer,
    dense_pass_reward,
    dr_grpo_advantages,
    flip_rewards,
    gdpo_advantages,
    grpo_advantages,
    hard_sample_mask,
    lsc_reward,
    par_reward,
    prm_clip_delta,
    prm_delta,
    rloo_advantages,
    zero_variance_groups,
)


def naive_grpo(rewards: np.ndarray, group_size: int, eps: float = 1e-4) -> np.ndarray:
    """One Python iteration per group (what a hand-written loop does)."""
    out = np.empty_like(rewards)
    for start in range(0, rewards.size, group_size):
        sl = rewards[start : start + group_size]
        std = sl.std(ddof=1)
        out[start : start + group_size] = 0.0 if std == 0 else (sl - sl.mean()) / (std + eps)
    return out


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def cases(n: int, group_size: int, rng: np.random.Generator) -> dict[str, Callable[[], object]]:
    groups = np.repeat(np.arange(n // group_size), group_size)
    n = groups.size
    binary = rng.integers(0, 2, n).astype(np.float64)
    scores = rng.normal(size=n)
    scores[rng.random(n) < 0.01] = np.nan  # 1% not applicable
    components = rng.random((n, 3))
    refs = rng.normal(size=(n, 4))
    steps = RaggedSteps.from_lengths(rng.random(n), np.full(n // group_size, group_size))
    sources = np.array(["mcq", "icd", "calc", "tox"])[rng.integers(0, 4, n)]
    running = RunningMedianNormalizer(window=4096)
    rfn = ReferenceFrozenNormalizer().fit(rng.normal(size=10_000), sources[:10_000])
    calibrator = ConfidenceCalibrator()
    confidence = rng.uniform(0, 10, n)
    passes = rng.integers(0, 2, (n, 4)).astype(np.float64)
    return (
        {
            "GRPO (TRL, group std)": lambda: grpo_advantages(scores, groups),
            "GRPO (verl)": lambda: grpo_advantages(scores, groups, convention="verl"),
            "GRPO batch std (PPO Lite)": lambda: grpo_advantages(scores, groups, scale="batch"),
            "Dr. GRPO": lambda: dr_grpo_advantages(scores, groups),
            "RLOO": lambda: rloo_advantages(scores, groups),
            "GDPO (3 components)": lambda: gdpo_advantages(components, groups),
            "PAR (M=4 refs)": lambda: par_reward(scores, refs),
            "LSC (M=4 refs)": lambda: lsc_reward(scores, refs),
            "PRM Delta (1 step/reward)": lambda: prm_delta(steps),
            "PRM Clip+Delta": lambda: prm_clip_delta(steps, eta=0.5),
            "Running median norm (4 sources)": lambda: running(scores, sources),
            "Reference-frozen norm (4 sources)": lambda: rfn.transform(scores, sources),
            "PPO-C calibration": lambda: calibrator(scores, confidence),
            "Reward flip p=0.2": lambda: flip_rewards(binary, groups, p=0.2, seed=0),
            "Hard-sample mask": lambda: hard_sample_mask(binary, groups),
            "VeRPO dense (4 checks)": lambda: dense_pass_reward(passes, groups),
            "Zero-variance report": lambda: zero_variance_groups(binary, groups),
        },
        binary,
        groups,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rewards per batch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per transform (best is kept)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    sizes = (8, 16)
    per_k: dict[str, dict[int, float]] = {}
    naive: dict[int, float] = {}
    vec: dict[int, float] = {}
    for g in sizes:
        fns, binary, groups = cases(args.n, g, rng)
        for name, fn in fns.items():
            fn()  # warm-up (imports, page faults)
            per_k.setdefault(name, {})[g] = best_time(fn, args.repeats) / (groups.size / 1000) * 1e6
        # side by side: the vectorised GRPO and a per-group loop on the same binary rewards
        vec[g] = best_time(lambda b=binary, k=groups: grpo_advantages(b, k), args.repeats)
        naive[g] = best_time(lambda b=binary, size=g: naive_grpo(b, size), 1)
        np.testing.assert_allclose(grpo_advantages(binary, groups), naive_grpo(binary, g), atol=1e-9)

    table = Table(
        title=f"medreward shaping: µs per 1k rewards ({args.n:,} rewards)",
        caption=f"best of {args.repeats} runs; naive loop: 1 run",
    )
    table.add_column("transform")
    for g in sizes:
        table.add_column(f"groups of {g}", justify="right")
    for name, row in per_k.items():
        table.add_row(name, *(f"{row[g]:.1f}" for g in sizes))
    table.add_section()
    table.add_row("GRPO vectorised (binary rewards)", *(f"{vec[g] / (args.n / 1000) * 1e6:.1f}" for g in sizes))
    table.add_row("GRPO naive per-group Python loop", *(f"{naive[g] / (args.n / 1000) * 1e6:.1f}" for g in sizes))
    table.add_row("[bold]speed-up (naive / vectorised)[/bold]", *(f"{naive[g] / vec[g]:.0f}×" for g in sizes))
    console = Console()
    console.print(table)
    console.print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}")


if __name__ == "__main__":
    main()
