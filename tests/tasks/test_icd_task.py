"""The ICD-10-CM coding generator: determinism, billable reference codes, chapter spread,
Excludes1, the wording of the diagnoses, lazy loading and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from medreward.errors import MedrewardError
from medreward.tasks import get_task
from medreward.tasks.icd_coding import (
    DEFAULT_CHAPTERS,
    IcdConfig,
    generate_icd_coding,
    icd,
    is_billable,
)


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return generate_icd_coding(400, seed=13)


def _dump(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def test_same_seed_gives_byte_identical_output_and_other_seeds_differ():
    first = _dump(generate_icd_coding(150, seed=2))
    assert first == _dump(generate_icd_coding(150, seed=2))
    assert first != _dump(generate_icd_coding(150, seed=3))
    assert generate_icd_coding(40, seed=2)[:9] == generate_icd_coding(9, seed=2)


def test_registered_task_and_record_shape():
    info = get_task("icd_coding")
    assert info.preset == "icd_coding"
    [case] = info.generate(1, 4)
    assert sorted(case) == ["case", "id", "prompt", "reference", "task"]
    assert case["task"] == "icd_coding" and sorted(case["reference"]) == ["codes"]
    assert "<answer>" in case["prompt"][0]["content"]


def test_every_reference_code_is_a_valid_billable_leaf(cases):
    cm = icd()
    for case in cases:
        for code in case["reference"]["codes"]:
            assert cm.is_valid_item(code) and cm.is_leaf(code), code
            assert is_billable(code)
        assert case["reference"]["codes"] == case["case"]["codes"]


def test_one_to_four_codes_from_distinct_default_chapters(cases):
    cm = icd()
    sizes = Counter(len(c["reference"]["codes"]) for c in cases)
    assert set(sizes) == {1, 2, 3, 4}
    chapters = Counter()
    for case in cases:
        found = [cm.get_ancestors(code)[-1] for code in case["reference"]["codes"]]
        assert found == case["case"]["chapters"]
        assert len(set(found)) == len(found) and set(found) <= set(DEFAULT_CHAPTERS)
        assert not {"15", "16"} <= set(found)  # a mother's and a newborn's record are not one case
        chapters.update(found)
    assert set(chapters) == set(DEFAULT_CHAPTERS)  # spread across the classification
    assert max(chapters.values()) < 3 * min(chapters.values())


def test_no_pair_of_codes_is_excludes1(cases):
    cm = icd()
    for case in cases:
        codes = case["reference"]["codes"]
        for a in codes:
            notes = " ".join(n for item in [a, *cm.get_ancestors(a)] for n in cm.get_excludes1(item))
            for b in codes:
                if b != a:
                    assert f"({b})" not in notes and f"({b[:3]}.-)" not in notes and f"({b[:3]})" not in notes


def test_diagnoses_are_titles_or_inclusion_terms_in_the_note(cases):
    cm = icd()
    kinds = Counter()
    for case in cases:
        note = case["prompt"][1]["content"]
        for code, title, phrase in zip(case["case"]["codes"], case["case"]["titles"], case["case"]["phrases"]):
            assert title == cm.get_description(code)
            assert phrase in note
            if phrase == title or phrase.startswith(title + " ("):
                kinds["title"] += 1
            else:
                assert any(phrase == t or phrase.startswith(t + " (") for t in cm.get_inclusion_term(code)), (code, phrase)
                kinds["inclusion"] += 1
            if phrase.endswith(")") and not (phrase == title or phrase in cm.get_inclusion_term(code)):
                kinds["context"] += 1
    assert kinds["title"] and kinds["inclusion"] and kinds["context"]


def test_config_knobs():
    config = IcdConfig(min_codes=2, max_codes=2, chapters=("4", "9", "10"), inclusion_terms=0.0, parent_context=0.0)
    for case in generate_icd_coding(30, seed=1, config=config):
        assert len(case["reference"]["codes"]) == 2
        assert set(case["case"]["chapters"]) <= {"4", "9", "10"}
        assert case["case"]["phrases"] == case["case"]["titles"]


@pytest.mark.parametrize("n", [0, -1])
def test_non_positive_n_is_a_clear_error(n):
    with pytest.raises(MedrewardError, match="positive number of cases"):
        generate_icd_coding(n, seed=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"min_codes": 3, "max_codes": 2}, "above max_codes"), ({"max_codes": 0}, "max_codes"),
     ({"chapters": ("4", "99")}, "chapter ids"), ({"chapters": ("4", "9")}, "fewer than max_codes"),
     ({"inclusion_terms": 2}, "inclusion_terms")],
)  # fmt: skip
def test_bad_config_is_a_clear_error(kwargs, message):
    with pytest.raises(MedrewardError, match=message):
        IcdConfig(**kwargs)


def test_importing_the_module_does_not_load_the_classification():
    code = "import sys, medreward.tasks.icd_coding; print('simple_icd_10_cm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
