"""Token-budget batching (``medreward.backends.batching``): packing under a budget and a row cap,
results in input order, the split-and-retry path of a failing batch, and the padding accounting,
against hand-worked cases and a hypothesis property test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.backends.base import BackendFailure
from medreward.backends.batching import PackingStats, pack, pack_fixed, run_packed


def _width(batch: list[int], lengths: list[int]) -> int:
    return max(max(1, lengths[i]) for i in batch)


def test_pack_by_hand():
    # longest first: 100 and 98 share a batch (2 × 100 = 200 ≤ 200); 7 and 5 the next one
    assert pack([5, 100, 7, 98], max_batch_tokens=200) == [[1, 3], [2, 0]]
    # a budget of 199 cannot hold two rows of 100; 98 then takes 7 (2 × 98 = 196), and 5 is left over
    assert pack([5, 100, 7, 98], max_batch_tokens=199) == [[1], [3, 2], [0]]


def test_pack_respects_the_row_cap():
    lengths = [3] * 7
    batches = pack(lengths, max_batch_tokens=1000, max_batch_size=3)
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]  # equal lengths: input order breaks the tie
    assert pack(lengths, max_batch_tokens=1000) == [list(range(7))]


def test_an_item_over_the_budget_is_a_batch_alone():
    batches = pack([10, 500, 10, 10], max_batch_tokens=64)
    assert batches[0] == [1]
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3]
    assert all(len(b) * _width(b, [10, 500, 10, 10]) <= 64 for b in batches[1:])


def test_empty_and_zero_lengths():
    assert pack([], max_batch_tokens=8) == []
    # a zero-length row still takes one token of the budget (the model sees at least one position)
    assert pack([0, 0, 0], max_batch_tokens=2) == [[0, 1], [2]]


def test_bad_budgets_are_refused():
    with pytest.raises(ValueError, match="max_batch_tokens must be >= 1"):
        pack([1, 2], max_batch_tokens=0)
    with pytest.raises(ValueError, match="max_batch_size must be >= 1 or None, not 0"):
        pack([1, 2], max_batch_tokens=8, max_batch_size=0)  # was: silently one row per batch
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        pack_fixed(3, 0)


def test_pack_fixed_is_dataset_order():
    assert pack_fixed(5, 2) == [[0, 1], [2, 3], [4]]
    assert pack_fixed(0, 16) == []
    assert pack_fixed(3, 16) == [[0, 1, 2]]


def test_results_come_back_in_input_order():
    items = ["e", "aaaaa", "bb", "dddd", "c", "ccc"]
    lengths = [len(s) for s in items]
    seen: list[list[str]] = []

    def run(batch: list[str]) -> list[str]:
        seen.append(batch)
        return [s.upper() for s in batch]

    assert run_packed(items, lengths, run, max_batch_tokens=8) == [s.upper() for s in items]
    # the model saw them length-sorted, longest first, not in input order
    assert seen[0][0] == "aaaaa" and [s for b in seen for s in b] != items


def test_padding_fraction_by_hand():
    stats = PackingStats()
    # fixed batches of 2 in input order: [1, 9] → 2 × 9 = 18, [2, 8] → 16, [5] → 5
    run_packed(list("abcde"), [1, 9, 2, 8, 5], lambda b: b, max_batch_tokens=1, batches=pack_fixed(5, 2), stats=stats)
    assert (stats.batches, stats.real_tokens, stats.padded_tokens) == (3, 25, 39)
    assert stats.padding_fraction == pytest.approx(1 - 25 / 39)
    # sorted under a budget of 18: [9, 8] → 18, then [5, 2, 1] → 3 × 5 = 15: padding 1 + 3 + 4 = 8 of 33
    sorted_stats = PackingStats()
    run_packed(list("abcde"), [1, 9, 2, 8, 5], lambda b: b, max_batch_tokens=18, stats=sorted_stats)
    assert (sorted_stats.batches, sorted_stats.real_tokens, sorted_stats.padded_tokens) == (2, 25, 33)
    assert sorted_stats.padding_fraction == pytest.approx(8 / 33)
    assert PackingStats().padding_fraction == 0.0
    sorted_stats.merge(stats)
    assert (sorted_stats.batches, sorted_stats.real_tokens, sorted_stats.padded_tokens) == (5, 50, 72)


def test_a_poisoned_item_fails_alone_and_the_splits_are_counted():
    """One batch of 8 with item 5 poisoned: [0..7] fails → [0..3] ok, [4..7] fails → [4, 5] fails →
    [4] ok, [5] fails alone; [6, 7] ok. Three splits; only item 5 is a failure."""
    calls: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        calls.append(batch)
        if 5 in batch:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [10 * i for i in batch]

    stats = PackingStats()
    results = run_packed(list(range(8)), [4] * 8, run, max_batch_tokens=1, batches=[list(range(8))], stats=stats)
    failure = results[5]
    assert isinstance(failure, BackendFailure) and failure.status == "error"
    assert failure.message == "batch failed: RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert [r for i, r in enumerate(results) if i != 5] == [0, 10, 20, 30, 40, 60, 70]
    assert stats.splits == 3
    assert calls == [list(range(8)), [0, 1, 2, 3], [4, 5, 6, 7], [4, 5], [4], [5], [6, 7]]
    # padding counts only the batches that ran: [0..3], [4], [6, 7]
    assert (stats.batches, stats.real_tokens, stats.padded_tokens) == (3, 28, 28)


def test_a_size_limit_splits_down_to_batches_that_fit():
    """A simulated memory cap (more than two rows fails) splits the batch until every part fits:
    no item fails, every result is right."""

    def run(batch: list[str]) -> list[str]:
        if len(batch) > 2:
            raise MemoryError(f"{len(batch)} rows do not fit")
        return [s * 2 for s in batch]

    stats = PackingStats()
    items = [chr(ord("a") + i) for i in range(9)]
    results = run_packed(items, [1] * 9, run, max_batch_tokens=100, stats=stats, label="reward model")
    assert results == [s * 2 for s in items]
    assert stats.splits >= 3 and stats.batches >= 5
    assert all(not isinstance(r, BackendFailure) for r in results)


def test_a_wrong_number_of_results_is_a_failure_not_a_misalignment():
    def run(batch: list[int]) -> list[int]:
        return [0] * (len(batch) + 1)  # one too many: results cannot be matched to inputs

    results = run_packed([1, 2], [1, 1], run, max_batch_tokens=10, label="scorer")
    assert all(isinstance(r, BackendFailure) for r in results)
    assert results[0].message == "scorer failed: RuntimeError: scorer returned 2 results for 1 inputs"


def test_items_and_lengths_must_pair():
    with pytest.raises(ValueError, match="3 items but 2 lengths"):
        run_packed([1, 2, 3], [1, 1], lambda b: b, max_batch_tokens=4)


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=-3, max_value=300), max_size=60),
    budget=st.integers(min_value=1, max_value=2000),
    cap=st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
)
def test_packing_properties(lengths, budget, cap):
    batches = pack(lengths, budget, max_batch_size=cap)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(lengths)))  # every index exactly once
    for b in batches:
        assert b, "no empty batch"
        assert cap is None or len(b) <= cap
        assert len(b) == 1 or len(b) * _width(b, lengths) <= budget  # only a singleton may exceed it
    # and run_packed returns each item's own result, in input order
    stats = PackingStats()
    assert run_packed(list(range(len(lengths))), lengths, lambda b: [-i for i in b], max_batch_tokens=budget,
                      max_batch_size=cap, stats=stats) == [-i for i in range(len(lengths))]  # fmt: skip
    assert stats.batches == len(batches) and stats.real_tokens == sum(max(1, n) for n in lengths)


def test_the_default_token_budget_depends_on_the_device_and_a_set_one_wins():
    from medreward.backends.config import CPU_BATCH_TOKENS, GPU_BATCH_TOKENS, BackendConfig

    default = BackendConfig(kind="transformers", model="m")
    assert default.max_batch_tokens is None
    assert default.batch_tokens("cpu") == CPU_BATCH_TOKENS < GPU_BATCH_TOKENS
    assert default.batch_tokens("cuda") == default.batch_tokens("cuda:1") == GPU_BATCH_TOKENS
    assert BackendConfig(kind="transformers", model="m", max_batch_tokens=64).batch_tokens("cpu") == 64
    with pytest.raises(ValueError):
        BackendConfig(kind="transformers", model="m", max_batch_tokens=8)  # below 16

