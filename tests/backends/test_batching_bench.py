"""The core of ``benchmarks/bench_batching.py`` on a tiny random Llama: the token-budget path and
the naive path give the same per-sequence mean token log-prob, and both equal a hand-written
teacher-forced computation on each sequence alone. Outputs and padding only, never timings."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_batching.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_batching", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_batching"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model(bench):
    return bench.random_model("tiny")


def _alone(model, row: list[int]) -> float:
    """Mean log-prob of tokens 2..n given the tokens before them: one row, no padding, full logits."""
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([row])).logits[0, :-1].float()
        logprobs = logits.log_softmax(-1).gather(1, torch.tensor(row[1:])[:, None]).squeeze(1)
    return float(logprobs.sum()) / (len(row) - 1)


def test_both_paths_compute_the_same_outputs(bench, model):
    lengths = bench.sample_lengths(20, 2, 120, seed=3)
    rows = bench.random_rows(lengths, model.config.vocab_size, seed=3)
    budget, naive = bench.compare(model, rows, pad_id=0, max_batch_tokens=300, naive_batch=4)
    assert bench.max_abs_difference(budget.values, naive.values) <= 1e-5
    expected = [_alone(model, row) for row in rows]
    assert budget.values == pytest.approx(expected, abs=1e-5)
    assert all(math.isfinite(v) and v < 0 for v in budget.values)
    # the same tokens, fewer computed: sorting by length pads less than dataset order
    assert budget.stats.real_tokens == naive.stats.real_tokens == sum(lengths)
    assert budget.stats.padding_fraction < naive.stats.padding_fraction
    assert naive.stats.batches == 5
    assert budget.stats.splits == naive.stats.splits == 0


def test_without_an_attention_mask_right_padded_rows_give_the_same_outputs(bench, model):
    """Causal attention never reaches the padding to the right of a row's real tokens."""
    lengths = bench.sample_lengths(12, 2, 90, seed=5)
    rows = bench.random_rows(lengths, model.config.vocab_size, seed=5)
    budget, naive, mask_free = bench.compare(model, rows, pad_id=0, max_batch_tokens=400, naive_batch=4, mask_free=True)
    assert mask_free.name == "token budget, no attention mask"
    assert mask_free.stats.padded_tokens == budget.stats.padded_tokens > mask_free.stats.real_tokens  # padding is there
    assert mask_free.values == pytest.approx([_alone(model, row) for row in rows], abs=1e-5)
    assert bench.max_abs_difference(mask_free.values, naive.values) <= 1e-5


def test_a_row_is_independent_of_its_batch(bench, model):
    """Right padding with a mask: a short row gives the same result next to a long one."""
    rows = bench.random_rows([5, 100], model.config.vocab_size, seed=1)
    together = bench.mean_token_logprobs(model, rows, pad_id=0)
    apart = [bench.mean_token_logprobs(model, [row], pad_id=0)[0] for row in rows]
    assert together == pytest.approx(apart, abs=1e-6)
    with pytest.raises(ValueError, match="at least two tokens"):
        bench.mean_token_logprobs(model, [[7]], pad_id=0)


def test_matmul_parameters_of_a_tied_model(bench, model):
    total = sum(p.numel() for p in model.parameters())
    assert bench.matmul_parameters(model) == total  # tied: the embedding table is the output head


def test_lengths_are_seeded_and_in_range(bench):
    lengths = bench.sample_lengths(200, 50, 1500, seed=0)
    assert lengths == bench.sample_lengths(200, 50, 1500, seed=0) != bench.sample_lengths(200, 50, 1500, seed=1)
    assert min(lengths) >= 50 and max(lengths) <= 1500 and lengths != sorted(lengths)
