"""Each corruption really makes the change it is named for, read back with the project's own
parsers and the task data (the toxicology vocabulary, ICD-10-CM through simple-icd-10-cm, the
MCQ options, the calculator reference), on generated cases of every task."""

from __future__ import annotations

import random

import pytest

from medreward.audit.cases import gold_completion
from medreward.audit.corruptions import (
    HALLUCINATED_FINDINGS,
    WRONG_UNITS,
    Corruption,
    UnknownCorruptionError,
    get_corruption,
    list_corruptions,
    register_corruption,
    sibling_codes,
)
from medreward.parse.icd import parse_icd_codes
from medreward.parse.numbers import final_number, normalize_unit
from medreward.parse.tags import section_content
from medreward.rewards.numeric import convert
from medreward.tasks.base import get_task
from medreward.tasks.icd_coding import icd, is_billable, load_icd_index
from medreward.vocab import load_vocabulary

N = 40
VOCAB = load_vocabulary("toxicology")


@pytest.fixture(scope="module")
def cases() -> dict[str, list[dict]]:
    out = {}
    for task in ("toxicology", "icd_coding", "calculator", "mcq"):
        generated = get_task(task).generate(N, 7)
        out[task] = [{**c, "gold": gold_completion(c)} for c in generated]
    return out


def _apply(name: str, cases: list[dict], seed: int = 0) -> list[tuple[dict, str | None]]:
    corruption = get_corruption(name)
    return [(c, corruption.transform(c, c["gold"], random.Random(f"{seed}:{c['id']}"))) for c in cases]


def _answer(text: str) -> str:
    content = section_content(text, "answer")
    assert content is not None, text
    return content


def _think(text: str) -> str | None:
    return section_content(text, "think")


def _tox_ids(text: str) -> list[str]:
    """Class ids named in the answer, in order (a 'none' answer gives [])."""
    ids: list[str] = []
    for item in _answer(text).split(","):
        found = VOCAB.normalize(item.strip())
        if found:
            ids += found
        else:
            assert VOCAB.is_none(item.strip()), item
    return ids


def _codes(text: str) -> list[str]:
    return list(parse_icd_codes(_answer(text)).codes)


# -- toxicology -------------------------------------------------------------------------------


def test_drop_substance_removes_exactly_one_reference_class(cases):
    applied = _apply("drop_substance", cases["toxicology"])
    done = 0
    for case, text in applied:
        gold_ids = _tox_ids(case["gold"])
        if not gold_ids:  # a "none" gold has nothing to drop
            assert text is None
            continue
        done += 1
        ids = _tox_ids(text)
        assert len(ids) == len(gold_ids) - 1 and set(ids) < set(gold_ids)
        assert _think(text) == _think(case["gold"])
    assert done >= N // 2


def test_add_substance_adds_one_class_outside_the_reference(cases):
    for case, text in _apply("add_substance", cases["toxicology"]):
        gold_ids, ids = _tox_ids(case["gold"]), _tox_ids(text)
        extra = [i for i in ids if i not in gold_ids]
        assert ids[: len(gold_ids)] == gold_ids and len(extra) == 1
        assert extra[0] not in case["reference"]["substances"]


def test_swap_substance_replaces_one_class_with_a_wrong_one(cases):
    for case, text in _apply("swap_substance", cases["toxicology"]):
        gold_ids = _tox_ids(case["gold"])
        if not gold_ids:
            assert text is None
            continue
        ids = _tox_ids(text)
        changed = [(a, b) for a, b in zip(gold_ids, ids) if a != b]
        assert len(ids) == len(gold_ids) and len(changed) == 1
        assert changed[0][1] not in case["reference"]["substances"]


def test_drop_of_a_single_substance_answers_none():
    case = {"task": "toxicology", "reference": {"substances": ["opioids"]}}
    text = get_corruption("drop_substance").transform(case, "<think>x</think><answer>Opioids</answer>", random.Random(0))
    assert _answer(text) == "none" and _tox_ids(text) == []


def test_add_substance_to_a_none_answer_replaces_none():
    case = {"task": "toxicology", "reference": {"substances": []}}
    text = get_corruption("add_substance").transform(case, "<think>x</think><answer>none</answer>", random.Random(3))
    assert len(_tox_ids(text)) == 1 and "none" not in _answer(text).lower()


# -- ICD-10-CM --------------------------------------------------------------------------------


def test_swap_code_sibling_replaces_one_code_by_a_billable_sibling(cases):
    cm = icd()
    for case, text in _apply("swap_code_sibling", cases["icd_coding"]):
        gold, codes = _codes(case["gold"]), _codes(text)
        changed = [(a, b) for a, b in zip(gold, codes) if a != b]
        assert len(codes) == len(gold) and len(changed) == 1, (gold, codes)
        old, new = changed[0]
        assert is_billable(new) and new not in case["reference"]["codes"]
        assert new in sibling_codes(old, set(case["reference"]["codes"]))
        # a sibling: it shares the nearest ancestor that has another leaf
        shared = [a for a in cm.get_ancestors(old) if a in cm.get_ancestors(new)]
        assert shared and not cm.is_chapter(shared[0])


def test_sibling_codes_are_the_leaves_of_the_nearest_ancestor():
    assert sibling_codes("M23.621", set()) == ["M23.622", "M23.629"]  # M23.62: three leaves
    assert sibling_codes("M23.621", {"M23.622"}) == ["M23.629"]
    assert "S32.484A" in sibling_codes("S32.484K", set())  # 7th-character siblings
    assert sibling_codes("XYZ", set()) == []


def test_drop_code_removes_one_code_and_needs_two(cases):
    for case, text in _apply("drop_code", cases["icd_coding"]):
        gold = _codes(case["gold"])
        if len(gold) < 2:
            assert text is None
            continue
        codes = _codes(text)
        assert len(codes) == len(gold) - 1 and set(codes) < set(gold)


def test_add_code_adds_a_billable_code_from_another_chapter(cases):
    index = load_icd_index()
    for case, text in _apply("add_code", cases["icd_coding"]):
        gold, codes = _codes(case["gold"]), _codes(text)
        assert codes[: len(gold)] == gold and len(codes) == len(gold) + 1
        added = codes[-1]
        assert is_billable(added)
        assert index.chapter_of(added) not in {index.chapter_of(c) for c in gold}


# -- calculators ------------------------------------------------------------------------------


def _band(case: dict) -> tuple[float, float]:
    ref = case["reference"]
    return ref.get("lower", ref["value"]), ref.get("upper", ref["value"])


def test_change_value_moves_the_number_out_of_the_band_and_keeps_the_unit(cases):
    for case, text in _apply("change_value", cases["calculator"]):
        gold, new = final_number(_answer(case["gold"])), final_number(_answer(text))
        assert new is not None and new.unit == gold.unit
        low, high = _band(case)
        assert not (low <= new.value <= high), (case["reference"], new.value)
        assert abs(new.value - case["reference"]["value"]) > 0.05 * abs(case["reference"]["value"]) - 1e-12


def test_change_unit_keeps_the_number_and_makes_the_unit_wrong(cases):
    done = 0
    for case, text in _apply("change_unit", cases["calculator"]):
        unit = case["reference"].get("unit")
        if unit not in WRONG_UNITS:
            assert text is None
            continue
        done += 1
        gold, new = final_number(_answer(case["gold"])), final_number(_answer(text))
        assert new.value == gold.value
        assert WRONG_UNITS[unit] in _answer(text) and unit not in _answer(text).replace(WRONG_UNITS[unit], "")
        if new.unit is None:  # a unit the number parser does not know (kPa): see the benchmark test
            assert WRONG_UNITS[unit] == "kPa"
            continue
        low, high = _band(case)
        as_reference = convert(new.value, new.unit, normalize_unit(unit))
        assert as_reference is None or not (low <= as_reference <= high), (unit, new.unit, as_reference)
    assert done >= 5


# -- multiple choice --------------------------------------------------------------------------


def test_flip_letter_answers_another_option(cases):
    letters = set()
    for case, text in _apply("flip_letter", cases["mcq"]):
        new = _answer(text).strip()
        assert new in case["reference"]["options"] and new != case["reference"]["answer"]
        letters.add(new)
    assert len(letters) >= 3  # the wrong letter is drawn, not always the same


def test_flip_letter_also_swaps_the_option_text():
    case = {"task": "mcq", "reference": {"answer": "B", "options": {"A": "Aspirin", "B": "Heparin"}}}
    text = get_corruption("flip_letter").transform(case, "<think>x</think><answer>B. Heparin</answer>", random.Random(0))
    assert _answer(text) == "A. Aspirin"


# -- any task ---------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["toxicology", "icd_coding", "calculator", "mcq"])
def test_hallucinated_finding_changes_only_the_reasoning(cases, task):
    statements = [s for s, _ in HALLUCINATED_FINDINGS]
    for case, text in _apply("hallucinated_finding", cases[task]):
        assert _answer(text) == _answer(case["gold"])
        added = _think(text).replace(_think(case["gold"]), "", 1).strip()
        assert added in statements
        words = dict(HALLUCINATED_FINDINGS)[added]
        prompt = " ".join(m["content"] for m in case["prompt"]).lower()
        assert not any(w in prompt for w in words)


def test_hallucinated_finding_without_a_think_section_adds_one():
    text = get_corruption("hallucinated_finding").transform({"prompt": "q"}, "<answer>C</answer>", random.Random(0))
    assert _answer(text) == "C" and _think(text) in [s for s, _ in HALLUCINATED_FINDINGS]


# -- what does not apply, the registry ----------------------------------------------------------


def test_not_applicable_cases_give_none():
    rng = random.Random(0)
    one_code = {"task": "icd_coding", "reference": {"codes": ["I10"]}}
    assert get_corruption("drop_code").transform(one_code, "<answer>I10</answer>", rng) is None
    unitless = {"task": "calculator", "reference": {"value": 3, "lower": 3, "upper": 3}}
    assert get_corruption("change_unit").transform(unitless, "<answer>3</answer>", rng) is None
    single = {"task": "mcq", "reference": {"answer": "A", "options": {"A": "x"}}}
    assert get_corruption("flip_letter").transform(single, "<answer>A</answer>", rng) is None
    tox = {"task": "toxicology", "reference": {"substances": ["opioids"]}}
    for name in ("drop_substance", "add_substance", "swap_substance"):  # no answer section
        assert get_corruption(name).transform(tox, "opioids", rng) is None
    no_value = {"task": "calculator", "reference": {"unit": "kg"}}
    assert get_corruption("change_value").transform(no_value, "<answer>70 kg</answer>", rng) is None


def test_the_same_seed_gives_the_same_corruption(cases):
    for name in ("swap_code_sibling", "add_code"):
        assert _apply(name, cases["icd_coding"], seed=5) == _apply(name, cases["icd_coding"], seed=5)
    assert _apply("flip_letter", cases["mcq"], seed=1) != _apply("flip_letter", cases["mcq"], seed=2)


def test_registry():
    names = {c.name for c in list_corruptions()}
    assert {"drop_substance", "add_substance", "swap_code_sibling", "change_value", "change_unit", "flip_letter",
            "hallucinated_finding"} <= names  # fmt: skip
    assert {c.name for c in list_corruptions("mcq")} == {"flip_letter", "hallucinated_finding"}
    assert all(c.changes == "answer" for c in list_corruptions("calculator") if c.name != "hallucinated_finding")
    with pytest.raises(UnknownCorruptionError, match="known corruptions: .*flip_letter"):
        get_corruption("nope")
    same = get_corruption("flip_letter")
    assert register_corruption(same) is same  # re-registering the same object is a no-op
    with pytest.raises(TypeError, match="registered twice"):
        register_corruption(Corruption("flip_letter", "other", None, "answer", lambda r, g, rng: None))


def test_a_registered_corruption_is_listed_for_its_task():
    upper = Corruption("test_upper_answer", "Upper-cases the answer.", ("test_task",), "answer",
                       lambda r, g, rng: g.upper() if g.upper() != g else None)  # fmt: skip
    register_corruption(upper)
    assert upper in list_corruptions("test_task") and upper not in list_corruptions("mcq")


# -- untrusted input --------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
_references = st.one_of(
    _scalars,
    st.fixed_dictionaries({}, optional={
        "substances": st.one_of(_scalars, st.lists(st.sampled_from(["opioids", "ethanol", "x", ""]), max_size=3)),
        "codes": st.one_of(_scalars, st.lists(st.sampled_from(["I10", "E11.9", "S32.484K", "ZZZ"]), max_size=3)),
        "value": _scalars, "unit": st.one_of(_scalars, st.sampled_from(list(WRONG_UNITS))),
        "lower": _scalars, "upper": _scalars, "answer": st.one_of(_scalars, st.sampled_from(["A", "B"])),
        "options": st.one_of(_scalars, st.dictionaries(st.sampled_from(["A", "B", "C"]), st.text(max_size=5), max_size=3)),
    }),
)  # fmt: skip
_golds = st.one_of(
    st.text(max_size=60),
    st.builds(lambda t, a: f"<think>{t}</think><answer>{a}</answer>", st.text(max_size=20),
              st.one_of(st.text(max_size=30), st.sampled_from(["I10, E11.9", "opioids; ethanol", "49.2 mL/hr", "B", "none",
                                                                "-3.5 mg/dL", "120 mmHg", "7"]))),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=st.sampled_from(["toxicology", "icd_coding", "calculator", "mcq", None]), reference=_references,
       gold=_golds, prompt=st.one_of(st.text(max_size=20), st.just([{"role": "user", "content": "potassium"}]), _scalars),
       seed=st.integers(0, 3))  # fmt: skip
def test_every_corruption_takes_any_input(task, reference, gold, prompt, seed):
    record = {"task": task, "reference": reference, "prompt": prompt}
    for corruption in list_corruptions():
        result = corruption.transform(record, gold, random.Random(seed))
        assert result is None or (isinstance(result, str) and result != gold)
