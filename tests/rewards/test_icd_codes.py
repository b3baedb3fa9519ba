"""Golden and property tests of the ``icd_codes`` reward (hand-computed values)."""

from __future__ import annotations

import doctest
import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.rewards.icd_codes as icd_module
from medreward.compose.spec import load_spec
from medreward.errors import RecordError, SpecError
from medreward.records import Rollout, Status
from medreward.rewards import component_class
from medreward.rewards.icd_codes import IcdCodeF1, code_info, match_codes

FUZZ = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])


def run(answer: str, codes, **params):
    return IcdCodeF1(**params).score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"codes": codes}))


def value(answer: str, codes, **params) -> float | None:
    return run(answer, codes, **params).value


@pytest.mark.parametrize(
    "answer, codes, params, expected",
    [
        # exact sets: S = 2, F1 = 2·2/(2+2)
        ("E11.9, I10", ["E11.9", "I10"], {}, 1.0),
        ("I10\nE11.9", ["E11.9", "I10"], {}, 1.0),  # order does not matter
        ("E119, i10", ["E11.9", "I10"], {}, 1.0),  # dotless, lower case
        # same category E11: S = 0.5, F1 = 2·0.5/2
        ("E11.65", ["E11.9"], {}, 0.5),
        # same block I20-I25 (I25 vs I21): S = 0.25
        ("I25.10", ["I21.4"], {}, 0.25),
        # same chapter only (I10 is in I10-I1A, I21.4 in I20-I25): nothing
        ("I10", ["I21.4"], {}, 0.0),
        # E11.9 exact + I25.10~I21.4 block, B12 invalid: S = 1.25, F1 = 2·1.25/(3+2)
        ("E11.9, I25.10, B12", ["E11.9", "I21.4"], {}, 0.5),
        # invalid code is a hallucination: S = 1, F1 = 2/(2+1)
        ("E11.9, E11.90", ["E11.9"], {}, 2 / 3),
        # one-to-one: E11.65 cannot reuse E11.9: S = 1, F1 = 2/3
        ("E11.9, E11.65", ["E11.9"], {}, 2 / 3),
        # two category pairs: S = 0.5 + 0.5, F1 = 2/4
        ("E11.65, E11.69", ["E11.9", "E11.8"], {}, 0.5),
        # E11.65 and I25.10 vs E11.9 and I21.4: S = 0.5 + 0.25, F1 = 1.5/4
        ("E11.65, I25.10", ["E11.9", "I21.4"], {}, 0.375),
        # best assignment, not first-come: E11.65=E11.65 (1) + E11.9~E11.8 (0.5), F1 = 3/4
        ("E11.9, E11.65", ["E11.65", "E11.8"], {}, 0.75),
        # custom credits: category 0.8 / block 0.1
        ("E11.65", ["E11.9"], {"category": 0.8, "block": 0.1}, 0.8),
        ("I25.10", ["I21.4"], {"category": 0.8, "block": 0.1}, 0.1),
        ("E11.65", ["E11.9"], {"category": 0.0, "block": 0.0}, 0.0),
        # a category where a billable code exists: partial credit unless billable codes are required
        ("E11", ["E11.9"], {}, 0.5),
        ("E11", ["E11.9"], {"require_billable": True}, 0.0),
        # 7th-character codes
        ("S72001A", ["S72.001A"], {}, 1.0),
        ("S72.001D", ["S72.001A"], {}, 0.5),
    ],
)
def test_golden_scores(answer, codes, params, expected):
    assert value(answer, codes, **params) == pytest.approx(expected)


@pytest.mark.parametrize(
    "answer, codes, expected",
    [
        ("none", [], 1.0),  # ∅/∅
        ("No codes apply.", [], 1.0),
        ("none", ["E11.9"], 0.0),
        ("E11.9", [], 0.0),
        ("none", "", 1.0),  # an empty reference string is the empty set
    ],
)
def test_empty_sets(answer, codes, expected):
    assert value(answer, codes) == expected


def test_missing_or_blank_answer_scores_zero_with_a_reason():
    component = IcdCodeF1()
    missing = component.score_one(Rollout(completion="E11.9", reference={"codes": ["E11.9"]}))
    assert missing.value == 0.0 and missing.info["reason"] == "no <answer> section"
    assert missing.info["missed"] == ["E11.9"]
    blank = component.score_one(Rollout(completion="<answer>  </answer>", reference={"codes": []}))
    assert blank.value == 0.0 and blank.info["reason"] == "empty answer"
    whole = IcdCodeF1(answer_tag=None).score_one(Rollout(completion="Dx E11.9", reference={"codes": ["E11.9"]}))
    assert whole.value == 1.0


def test_info_lists_matches_misses_and_hallucinations():
    info = run("E11.9, I25.10, B12, J18.9", ["E11.9", "I21.4", "I10"]).info
    assert info["predicted"] == ["E11.9", "I25.10", "B12", "J18.9"]
    assert info["matched"] == [
        {"predicted": "E11.9", "reference": "E11.9", "level": "exact", "credit": 1.0},
        {"predicted": "I25.10", "reference": "I21.4", "level": "block", "credit": 0.25},
    ]
    assert info["missed"] == ["I10"]
    assert info["invalid"] == ["B12"]
    assert info["hallucinated"] == ["B12", "J18.9"]
    assert info["precision"] == pytest.approx(1.25 / 4) and info["recall"] == pytest.approx(1.25 / 3)
    assert "non_billable" not in info


def test_require_billable_lists_non_billable_codes():
    result = run("E11, I10", ["E11.9", "I10"], require_billable=True)
    assert result.value == pytest.approx(2 * 1.0 / 4)
    assert result.info["non_billable"] == ["E11"] and result.info["hallucinated"] == ["E11"]


@pytest.mark.parametrize(
    "codes",
    [
        ["E11.9", "I10"],
        ("E11.9", "I10"),
        "E11.9, I10",
        "E11.9; I10",
        "E119 I10",
        '["E11.9", "I10"]',
        ["e11.9", "I10", "E119"],
    ],
)
def test_reference_forms(codes):
    assert value("E11.9 I10", codes) == 1.0


@pytest.mark.parametrize(
    "codes",
    [["E11.90"], ["I20-I25"], ["B12"], [5], 5, {"E11.9": 1}, '["E11.9"', '{"codes": 1}', "E11.9, xyz"],
)
def test_bad_reference_raises(codes):
    with pytest.raises(RecordError):
        run("E11.9", codes)


@pytest.mark.parametrize("reference", [{}, {"codes": None}, {"labels": ["E11.9"]}])
def test_missing_reference_is_not_applicable(reference):
    result = IcdCodeF1().score_one(Rollout(completion="<answer>E11.9</answer>", reference=reference))
    assert result.status is Status.NOT_APPLICABLE and result.value is None


def test_code_info_levels_and_cache():
    assert code_info("I21.4").block == code_info("I25.10").block == "I20-I25"
    assert code_info("I10").block == "I10-I1A"
    assert code_info("E11").valid and not code_info("E11").billable and code_info("E11.9").billable
    assert not code_info("E11.90").valid and not code_info("B12").valid
    before = code_info.cache_info().hits
    code_info("I21.4")
    assert code_info.cache_info().hits == before + 1


POOL = ["E11.9", "E11.65", "E11.8", "E10.9", "E13.9", "I10", "I21.4", "I25.10", "I21.9", "J18.9", "J44.9",
        "J45.909", "C50.911", "C34.90", "Z79.4", "E11"]  # fmt: skip


def _brute_force(pred: list[str], truth: list[str], credits: tuple[float, float, float]) -> float:
    def credit(p: str, t: str) -> float:
        (m,) = match_codes([p], [t], *credits) or [None]
        return m.credit if m else 0.0

    table = [[credit(p, t) for t in truth] for p in pred]

    def best(i: int, used: frozenset[int]) -> float:
        if i == len(pred):
            return 0.0
        out = best(i + 1, used)
        for j in range(len(truth)):
            if j not in used:
                out = max(out, table[i][j] + best(i + 1, used | {j}))
        return out

    return best(0, frozenset())


@FUZZ
@given(
    st.lists(st.sampled_from(POOL), max_size=5, unique=True),
    st.lists(st.sampled_from(POOL), max_size=5, unique=True),
    st.sampled_from([(1.0, 0.5, 0.25), (1.0, 0.9, 0.1), (0.8, 0.8, 0.8), (1.0, 0.0, 0.0), (1.0, 0.5, 0.5)]),
)
def test_greedy_matching_is_optimal(pred, truth, credits):
    matches = match_codes(pred, truth, *credits)
    assert len({m.predicted for m in matches}) == len(matches) == len({m.reference for m in matches})
    total = sum(m.credit for m in matches)
    assert total == pytest.approx(_brute_force(pred, truth, credits))
    exact, category, block = credits
    score = value(", ".join(pred) or "none", truth, exact=exact, category=category, block=block)
    expected = 1.0 if not pred and not truth else 2 * total / (len(pred) + len(truth))
    assert score == pytest.approx(expected) and 0.0 <= score <= 1.0


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_any_answer_scores_in_range(text):
    for codes in (["E11.9", "I10"], []):
        result = IcdCodeF1().score_one(Rollout(completion=f"<answer>{text}</answer>", reference={"codes": codes}))
        assert result.status is Status.OK and 0.0 <= result.value <= 1.0


@pytest.mark.parametrize(
    "params", [{"block": 0.6}, {"exact": 0.0}, {"category": 1.5}, {"exact": 0.4}, {"credit": {"exact": 1}}]
)
def test_bad_params_fail_at_construction(params):
    with pytest.raises(SpecError):
        IcdCodeF1(**params)


def test_registered_pickles_and_preset_loads():
    assert component_class("icd_codes") is IcdCodeF1
    component = IcdCodeF1(name="codes", category=0.6)
    clone = pickle.loads(pickle.dumps(component))
    answers, refs = ["<answer>E11.65</answer>"], [{"codes": ["E11.9"]}]
    assert clone(answers, refs) == component(answers, refs) == [pytest.approx(0.6)]
    spec = load_spec("icd_coding")
    (built,) = [c for c in spec.build() if c.name == "codes"]
    assert isinstance(built, IcdCodeF1) and built.params.field == "codes"


def test_doctests():
    result = doctest.testmod(icd_module)
    assert result.attempted > 0 and result.failed == 0
