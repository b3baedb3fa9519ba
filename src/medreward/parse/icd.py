r"""ICD-10-CM codes from model output: ``"E11.9, I10"`` → ``("E11.9", "I10")``.

Pure syntax: whether a code exists in ICD-10-CM is the reward's job
(:mod:`medreward.rewards.icd_codes`, through ``simple-icd-10-cm``).

A code is a letter, a digit, a letter or digit (``E11``, ``C4A``, ``O9A``), then optionally
up to four letters or digits, with or without the dot: ``E11.9``, ``E119``, ``e11.9``,
``S72.001A``, ``S72001A``, ``T36.0X1A``. Every code is normalised to upper case with the
dot after the third character (``E119`` → ``E11.9``). Codes come back in order of first
mention, deduplicated.

What is *not* a code:

* anything glued to a letter, digit or ``_`` on either side (``HbA1c``, ``CYP2D6``,
  ``COVID19``, ``E119000``), or with a dotted tail (``E11.9.1``, a version number);
* a hyphenated part of a word (``anti-B12``: the code is preceded by ``letter-``);
* the ends of a block range (``I20-I25``): a block is not a code, so neither end counts.

Things that merely have the shape of a code (``B12`` on its own, ``H2O``) are returned:
they fail the code-set check in the reward and count as hallucinations there.

:func:`asserted_codes` drops the codes every mention of which is negated right where it stands
("not E11.9", "no I10", "rule out R07.9", "E11.9 excluded"): the local NegEx triggers of
:mod:`medreward.parse.negation`, looked for only next to the code, because ICD titles are full
of scope-opening words ("without complications", "not elsewhere classified") that must not
negate the codes after them.

Linear time: one :mod:`re2` scan (linear in the text) finds candidates; each is checked by
looking at the characters right around it. At most ``max_codes`` distinct codes are kept
and at most ``max_candidates`` candidates examined (``truncated`` says so).

>>> parse_icd_codes("Dx: E11.9 (type 2 DM), i10; e119 again; HbA1c 9").codes
('E11.9', 'I10')
>>> parse_icd_codes("Ischaemic heart disease I20-I25: I25.10").codes
('I25.10',)
>>> normalize_icd_code(" s72001a "), normalize_icd_code("E11.9.1") is None
('S72.001A', True)
>>> text = "not E11.9, I10; R07.9 ruled out"
>>> asserted_codes(text, parse_icd_codes(text))
('I10',)
"""

from __future__ import annotations

from dataclasses import dataclass

import re2

from .negation import negated_after, negated_before

__all__ = [
    "MAX_CANDIDATES",
    "MAX_CODES",
    "IcdCodeList",
    "IcdMention",
    "asserted_codes",
    "normalize_icd_code",
    "parse_icd_codes",
]

MAX_CODES = 256
MAX_CANDIDATES = 4096

_CODE = re2.compile(r"[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?")
_FULL = re2.compile(r"[A-Za-z][0-9][0-9A-Za-z](?:\.?[0-9A-Za-z]{1,4})?")
_DASHES = "-\u2013\u2014"


@dataclass(frozen=True, slots=True)
class IcdMention:
    """One code mention: the normalised ``code``, the ``raw`` text and its ``span``."""

    code: str
    raw: str
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class IcdCodeList:
    """Codes parsed from one text: ``codes`` (normalised, deduplicated, in order of first
    mention), ``mentions`` (every accepted mention, repeats included, bounded) and
    ``truncated`` (a bound was hit)."""

    codes: tuple[str, ...]
    mentions: tuple[IcdMention, ...]
    truncated: bool = False


def _normalise(raw: str) -> str:
    code = raw.upper().replace(".", "")
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _word_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _is_code_head(text: str, i: int) -> bool:
    """``text[i:i+3]`` looks like the start of a code (letter, digit, letter/digit)."""
    return (
        i + 2 < len(text)
        and text[i].isascii()
        and text[i].isalpha()
        and "0" <= text[i + 1] <= "9"
        and text[i + 2].isascii()
        and text[i + 2].isalnum()
    )


def _accept(text: str, s: int, e: int) -> bool:
    """Whether the candidate ``text[s:e]`` stands on its own as a code."""
    n = len(text)
    if s > 0:
        prev = text[s - 1]
        if _word_char(prev) or prev == ".":
            return False
        if prev in _DASHES and s > 1 and _word_char(text[s - 2]):
            return False  # anti-B12, or the upper end of I20-I25
    if e < n:
        nxt = text[e]
        if _word_char(nxt):
            return False
        if nxt == "." and e + 1 < n and _word_char(text[e + 1]):
            return False  # E11.9.1 or E11.12345
        if nxt in _DASHES and _is_code_head(text, e + 1):
            return False  # lower end of a block range I20-I25
    return True


def parse_icd_codes(text: str, *, max_codes: int = MAX_CODES, max_candidates: int = MAX_CANDIDATES) -> IcdCodeList:
    """ICD-10-CM-shaped codes in ``text`` (see the module doc for the rules).

    >>> parse_icd_codes("['E11.9', 'I10', 'Z79.4']").codes
    ('E11.9', 'I10', 'Z79.4')
    >>> parse_icd_codes("COVID19, CYP2D6, E11.9.1, 1E11").codes
    ()
    """
    if not text:
        return IcdCodeList((), ())
    seen: dict[str, None] = {}
    mentions: list[IcdMention] = []
    truncated = False
    for count, m in enumerate(_CODE.finditer(text)):
        if count >= max_candidates:
            truncated = True
            break
        s, e = m.span()
        if not _accept(text, s, e):
            continue
        raw = text[s:e]
        code = _normalise(raw)
        if code not in seen:
            if len(seen) >= max_codes:
                truncated = True
                break
            seen[code] = None
        if len(mentions) < max_codes:
            mentions.append(IcdMention(code, raw, (s, e)))
    return IcdCodeList(tuple(seen), tuple(mentions), truncated)


def normalize_icd_code(code: str) -> str | None:
    """One code string (surrounding blanks allowed) in its dotted upper-case form, or ``None``
    when it is not shaped like an ICD-10-CM code.

    >>> normalize_icd_code("e119"), normalize_icd_code("I10"), normalize_icd_code("I20-I25")
    ('E11.9', 'I10', None)
    """
    if not isinstance(code, str):
        return None
    s = code.strip()
    if not 3 <= len(s) <= 8 or _FULL.fullmatch(s) is None:
        return None
    return _normalise(s)


def asserted_codes(text: str, parsed: IcdCodeList | None = None) -> tuple[str, ...]:
    """The codes of ``parsed`` (read from ``text``; parsed here when not given) that at least one
    mention asserts: a mention right after a negation ("not E11.9", "rule out I10") or right before
    one ("E11.9 excluded") does not (see the module doc). What an answer predicts: the reward, the
    baseline metrics and ``medreward eval`` all read codes this way.

    >>> asserted_codes("E11.9, not I10")
    ('E11.9',)
    """
    if parsed is None:
        parsed = parse_icd_codes(text)
    asserted: set[str] = set()
    for mention in parsed.mentions:
        start, end = mention.span
        if not (negated_before(text, start) or negated_after(text, end)):
            asserted.add(mention.code)
    if len(parsed.mentions) < len(parsed.codes):  # mentions were capped: keep the codes not seen
        asserted.update(parsed.codes)
    return tuple(code for code in parsed.codes if code in asserted)
