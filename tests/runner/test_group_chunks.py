"""Batches never cut a GRPO group for components that compare a group's members (``pairwise``):
the runner extends a chunk to the end of a run of consecutive members of one group."""

from __future__ import annotations

from medreward.runner import Scorer
from medreward.runner.scorer import _group_chunks


def records(groups: list[tuple[str, int]]) -> list[dict]:
    return [{"prompt": f"question {g}", "completion": f"answer {k}"} for g, n in groups for k in range(n)]


def test_a_group_is_never_cut_by_the_chunk_size():
    spec = {"name": "groups", "components": [{"name": "seen", "kind": "model_backed:GroupSizeSeen"}]}
    data = records([("a", 3), ("b", 3), ("c", 2)])
    with Scorer(spec, chunk_size=2) as scorer:  # 2 < group size: plain chunks would cut every group
        scored = scorer.score(data)
    assert [r.components["seen"] for r in scored] == [3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.0]


def test_group_chunks_keep_runs_whole_and_otherwise_respect_the_size():
    data = records([("a", 3), ("b", 1), ("c", 1), ("d", 1), ("e", 4)])
    sizes = [len(c) for c in _group_chunks(data, 2)]
    assert sizes == [3, 2, 5]  # a whole; b+c; d and the whole of e
    explicit = [{"group": "g", "prompt": str(i), "completion": "x"} for i in range(5)]  # group field wins over prompt
    assert [len(c) for c in _group_chunks(explicit, 2)] == [5]


def test_a_huge_group_is_cut_at_the_slack_limit(caplog):
    data = records([("a", 40)])
    sizes = [len(c) for c in _group_chunks(data, 2)]
    assert sizes == [16, 16, 8] and "split between batches" in caplog.text


def test_rule_components_keep_plain_chunks():
    spec = {"name": "plain", "components": [{"name": "f", "kind": "format.tags"}]}
    with Scorer(spec, chunk_size=2) as scorer:
        assert not any(c.needs_whole_groups for c in scorer.components)
