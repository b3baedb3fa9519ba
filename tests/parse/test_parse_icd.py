"""Golden and property tests of the ICD-10-CM code parser."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.icd as icd_module
from medreward.parse.icd import (
    MAX_CODES,
    IcdCodeList,
    asserted_codes,
    normalize_icd_code,
    parse_icd_codes,
)
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=200, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    "text, codes",
    [
        ("E11.9", ("E11.9",)),
        ("E119", ("E11.9",)),
        ("e11.9", ("E11.9",)),
        ("I10", ("I10",)),
        ("I10.", ("I10",)),  # sentence end
        ("E11.9, I10", ("E11.9", "I10")),
        ("E11.9/I10;Z79.4", ("E11.9", "I10", "Z79.4")),
        ('["E11.9", "I10"]', ("E11.9", "I10")),
        ("- E11.9\n- I10\n", ("E11.9", "I10")),
        ("**E11.9** (type 2 diabetes)", ("E11.9",)),
        ("S72.001A", ("S72.001A",)),
        ("S72001A", ("S72.001A",)),
        ("T36.0X1A", ("T36.0X1A",)),
        ("O9A.211 and C4A.9", ("O9A.211", "C4A.9")),
        ("I10, E11.9, i10, E119", ("I10", "E11.9")),  # deduplicated across spellings, first order kept
        ("Codes: E11.65 then E11.9", ("E11.65", "E11.9")),
        # inside words or ids: not codes
        ("HbA1c 9%", ()),
        ("CYP2D6", ()),
        ("COVID19", ()),
        ("E11900000", ()),
        ("E11.9.1", ()),
        ("E11.12345", ()),
        ("x.E11", ()),
        ("anti-B12 antibody", ()),
        ("1E11", ()),
        ("E11_9", ()),
        # a block range is not a code
        ("I20-I25", ()),
        ("block I20–I25: I25.10", ("I25.10",)),
        # shape only: validity is the reward's job
        ("B12", ("B12",)),
        ("", ()),
        ("no codes here", ()),
    ],
)
def test_codes(text, codes):
    assert parse_icd_codes(text).codes == codes


def test_mentions_keep_raw_text_and_spans():
    text = "E119 and e11.9"
    result = parse_icd_codes(text)
    assert result.codes == ("E11.9",)
    assert [(m.code, m.raw, m.span) for m in result.mentions] == [
        ("E11.9", "E119", (0, 4)),
        ("E11.9", "e11.9", (9, 14)),
    ]
    assert not result.truncated


@pytest.mark.parametrize(
    "raw, code",
    [
        ("E11.9", "E11.9"),
        (" e119 ", "E11.9"),
        ("I10", "I10"),
        ("S72001A", "S72.001A"),
        ("E11.", None),
        ("E1", None),
        ("I20-I25", None),
        ("E11.9 I10", None),
        ("", None),
        (None, None),
        (119, None),
    ],
)
def test_normalize_icd_code(raw, code):
    assert normalize_icd_code(raw) == code


def test_bounds():
    many = " ".join(f"A{i:02d}" for i in range(100)) + " " + " ".join(f"B{i:02d}" for i in range(100))
    capped = parse_icd_codes(many, max_codes=150)
    assert len(capped.codes) == 150 and capped.truncated
    assert parse_icd_codes("I10 " * 10, max_candidates=3).truncated
    assert len(parse_icd_codes(many).codes) == 200 <= MAX_CODES


def test_result_is_frozen():
    result = parse_icd_codes("I10")
    with pytest.raises(AttributeError):
        result.codes = ()  # type: ignore[misc]


def _check(text: str, result: IcdCodeList) -> None:
    assert isinstance(result, IcdCodeList)
    assert len(result.codes) == len(set(result.codes)) <= MAX_CODES
    assert len(result.mentions) <= MAX_CODES
    for code in result.codes:
        assert normalize_icd_code(code) == code  # normal form is a fixed point
    for m in result.mentions:
        s, e = m.span
        assert text[s:e] == m.raw and normalize_icd_code(m.raw) == m.code
    assert set(result.codes) <= {m.code for m in result.mentions}  # each code's first mention is kept


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_any_text(text):
    result = parse_icd_codes(text)
    assert len(result.codes) == len(set(result.codes)) <= MAX_CODES
    for m in result.mentions:
        assert text[m.span[0] : m.span[1]] == m.raw


_PIECES = st.sampled_from(["E", "e", "I", "1", "0", "9", ".", "-", "–", " ", ",", "A", "X", "a", "_", "\n", "/"])


@FUZZ
@given(st.lists(_PIECES, max_size=60).map("".join))
def test_fuzz_code_like_text(text):
    result = parse_icd_codes(text)
    if result.codes:
        _check(text, result)


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from("ABCDEIKZ"),
            st.integers(0, 99),
            st.text(alphabet="0123456789X", min_size=0, max_size=3),
            st.booleans(),
        ),
        min_size=1,
        max_size=8,
    ),
    st.sampled_from([", ", "; ", "\n", " and "]),
)
def test_fuzz_generated_codes_are_found(parts, sep):
    raws = [f"{letter}{num:02d}{'.' if dot and tail else ''}{tail}" for letter, num, tail, dot in parts]
    expected = tuple(dict.fromkeys(normalize_icd_code(r) for r in raws))
    assert parse_icd_codes(sep.join(raws)).codes == expected


_HUNDRED_CODES = " ".join(f"Z{i % 100:02d}.{i % 10}" for i in range(100))  # the "distinct" codes repeat every 100

# hostile text builders of size k, and k of the megabyte input. The scaling check (CPU time, no
# wall-clock bound) compares 1 MB with 8 MB: the parser stops after a fixed number of candidates, and
# that fixed work must not hide a scan that grows quadratically with the text
ADVERSARIAL = {
    "dotted": (lambda k: "E11." * k, 250_000),
    "glued": (lambda k: "E11" * k, 333_336),
    "spaced": (lambda k: "E11 " * k, 250_000),
    "digits": (lambda k: "1" * k, 10**6),
    "pairs": (lambda k: "E1" * k, 500_000),
    "words": (lambda k: "a1b" * k, 333_336),
    "dashes": (lambda k: "I20-" * k, 250_000),
    "distinct": (lambda k: " ".join([_HUNDRED_CODES] * (k // 100)), 120_000),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_linear_time_on_adversarial_megabyte(name):
    make, full = ADVERSARIAL[name]
    result = assert_linear(parse_icd_codes, make, full)
    assert len(result.codes) <= MAX_CODES and len(result.mentions) <= MAX_CODES


def test_doctests():
    result = doctest.testmod(icd_module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    "text, asserted",
    [
        ("not E11.9", ()),  # the audit's negation probe: "not E11.9" used to earn full credit
        ("no E11.9 but I10", ("I10",)),
        ("rule out R07.9; I10", ("I10",)),
        ("E11.9, I10 (hypertension) excluded", ("E11.9", "I10")),  # a post-trigger negates its own item
        ("E11.9, R07.9 ruled out", ("E11.9",)),
        ("without E11.9", ()),
        ("not E11.9, but E11.9 after all", ("E11.9",)),  # one asserted mention is enough
        # ICD titles are full of scope words: they do not negate the codes around them
        ("E11.9 Type 2 diabetes mellitus without complications, I10", ("E11.9", "I10")),
        ("G98.8 Other disorders of nervous system not elsewhere classified, R07.9", ("G98.8", "R07.9")),
    ],
)
def test_asserted_codes_drop_codes_negated_where_they_stand(text, asserted):
    assert asserted_codes(text, parse_icd_codes(text)) == asserted
