"""Hostile completions in one batch: each is scored or clearly rejected, in bounded time, and the
batch's ordinary samples are still scored (DESIGN.md, reliability rules).

Every preset runs the same batch, in this process and in worker processes. "Bounded time" is
checked as behaviour, not as a stopwatch: with a per-sample limit of ``LIMIT`` seconds, no
component may time out on any of these inputs, so each finished one sample well inside it.
"""

from __future__ import annotations

import json

import pytest

from medreward import Scorer, Status
from medreward.compose.spec import list_presets, load_spec
from medreward.io.writers import open_writer

from local_or_keyword import build_local_or_keyword

LIMIT = 20.0  # seconds per component and sample; the parsers are linear, so none should come close
MB = 1_000_000

# A well-formed answer for each preset and the reference that makes it right.
GOOD = {
    "toxicology": ("<think>miosis, apnoea</think><answer>opioids</answer>", {"substances": ["opioids"]}),
    "mcq": ("<think>metformin first</think><answer>C</answer>", {"answer": "C", "options": ["A", "B", "C", "D"]}),
    "calculator": ("<think>weight/height²</think><answer>24.2 kg/m^2</answer>", {"value": 24.2, "unit": "kg/m^2"}),
    "icd_coding": ("<think>type 2 diabetes</think><answer>E11.9</answer>", {"codes": ["E11.9"]}),
    # consistency-gated presets: the reasoning concludes the answer
    "toxicology_consistent": ("<think>miosis, apnoea: opioids</think><answer>opioids</answer>", {"substances": ["opioids"]}),
    "mcq_consistent": ("<think>metformin first, so C</think><answer>C</answer>", {"answer": "C", "options": ["A", "B", "C", "D"]}),
    "calculator_consistent": ("<think>weight/height² = 24.2 kg/m^2</think><answer>24.2 kg/m^2</answer>",
                              {"value": 24.2, "unit": "kg/m^2"}),
    # model-judged presets: an in-process keyword judge (tests/support/keyword_judge.py) stands in for the server
    "healthbench": ("Call emergency services now.", {"rubric": [{"criterion": 'Says "emergency services"', "points": 5}]}),
    "medix": ("<think>miosis, apnoea</think><answer>opioids</answer>", {"answer": "opioids"}),
    # and a local embedding model (MiniLM) for its semantic term
    "medix_semantic": ("<think>miosis, apnoea</think><answer>opioids</answer>", {"answer": "opioids"}),
}


def scorer_for(preset: str, **options) -> Scorer:
    """A scorer for ``preset``; presets that call a judge get the keyword judge (local models stay
    real) and no response cache."""
    if load_spec(preset).backends:
        options.update(backend_factory=build_local_or_keyword, use_cache=False)
    return Scorer(preset, **options)

HOSTILE = {
    "10 MB completion": "<think>" + "toxic " * (10 * MB // 6) + "</think><answer>opioids</answer>",
    "10 MB answer": "<think>r</think><answer>" + "opioids, " * (10 * MB // 9) + "</answer>",
    "only <": "<" * (10 * MB),
    "deeply nested tags": "<think>" * 100_000 + "<answer>" * 100_000 + "x" + "</answer>" * 100_000,
    "NUL and control characters": "<think>\x00\x01\x1b[31m\x7f</think><answer>opi\x00oids\x07</answer>\x00",
    "lone surrogates": "<think>\ud800 reasoning \udfff</think><answer>opioids\udc80</answer>",
    "null": None,
    "number": 42,
    "float nan": float("nan"),
    "object": {"text": "<answer>opioids</answer>"},
    "list of junk": [1, None, {"role": "assistant", "content": 7}],
}


def batch(preset: str) -> list[dict]:
    good_text, reference = GOOD[preset]
    good = {"id": "good-first", "completion": good_text, "reference": reference}
    rows = [good]
    rows += [{"id": name, "completion": value, "reference": reference} for name, value in HOSTILE.items()]
    rows.append({**good, "id": "good-last"})
    return rows


def test_every_preset_has_a_good_answer_here():
    assert set(GOOD) == set(list_presets())


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("preset", sorted(GOOD))
def test_hostile_completions_are_scored_or_rejected(preset: str, workers: int, tmp_path) -> None:
    rows = batch(preset)
    scorer = scorer_for(preset, time_limit=LIMIT, workers=workers, chunk_size=4)
    out = scorer.score(rows)

    # one result per input, in input order, each echoing its input's id
    assert [r.record["id"] for r in out] == [row["id"] for row in rows]
    by_id = {r.record["id"]: r for r in out}

    # the ordinary samples around the hostile ones are scored as if they were alone
    alone = scorer_for(preset).score([rows[0]])[0]
    assert alone.status is Status.OK and alone.reward is not None and alone.reward > 0.5
    for name in ("good-first", "good-last"):
        assert by_id[name].status is Status.OK
        assert by_id[name].reward == pytest.approx(alone.reward)
        assert by_id[name].components == alone.components

    for name in HOSTILE:
        result = by_id[name]
        assert result.status is not Status.TIMEOUT, f"{name}: {result.info.get('error')}"
        # the contract of a scored record: a reward exactly when the status is ok, an error message otherwise
        assert (result.reward is None) == (result.status is not Status.OK), name
        if result.status is Status.ERROR:
            assert isinstance(result.info.get("error"), str) and result.info["error"], name
        assert set(result.components) == set(scorer.spec.component_names)

    # what is not text is rejected with a message that says so, never scored as "None" or "42"
    for name in ("null", "number", "float nan", "object"):
        assert by_id[name].status is Status.ERROR, name
        assert "completion" in by_id[name].info["error"], name
    assert "null" in by_id["null"].info["error"]
    # a conversation whose assistant turn holds a number is no more text than the number itself
    assert by_id["list of junk"].status is Status.ERROR
    # (its first item, 1, is not a message at all: that is what the error names; issue 9, item 19)
    assert 'a list completion must hold message objects {"role", "content"}; item 0 is int' in by_id["list of junk"].info["error"]
    # text that is merely strange is scored like any other text
    for name in ("NUL and control characters", "lone surrogates", "10 MB completion", "only <"):
        assert by_id[name].status is Status.OK, f"{name}: {by_id[name].info}"
    if "format" in scorer.spec.component_names:
        assert by_id["only <"].components["format"] == 0.0
        assert by_id["deeply nested tags"].components["format"] == 0.0

    # nothing is lost on the way out: every record, surrogates included, is written and read back
    path = tmp_path / "scored.jsonl"
    with open_writer(path) as writer:
        for record in out:
            writer.write(record)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["id"] for line in lines] == [row["id"] for row in rows]
    assert json.loads(lines[[row["id"] for row in rows].index("lone surrogates")])["completion"] == (
        HOSTILE["lone surrogates"]
    )


def test_toxicology_reads_through_control_characters_and_surrogates() -> None:
    """The answers inside the strange-but-textual samples are still read (hand-checked values)."""
    rows = batch("toxicology")
    by_id = {r.record["id"]: r for r in Scorer("toxicology").score(rows)}
    # "opioids\udc80": the surrogate becomes U+FFFD, so the label is unknown: F1 of {?} vs {opioids} = 0
    assert by_id["lone surrogates"].components == {"format": 1.0, "substances": 0.0}
    assert by_id["lone surrogates"].info["substances"]["unknown"] == ["opioids\ufffd"]
    # the 10 MB think section does not stop the answer from being read
    assert by_id["10 MB completion"].components == {"format": 1.0, "substances": 1.0}
    # one label repeated a million times is one label, and the parser says it stopped early
    assert by_id["10 MB answer"].components["substances"] == 1.0
    assert by_id["10 MB answer"].info["substances"]["truncated"] is True
