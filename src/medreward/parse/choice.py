r"""The final multiple-choice letter of an answer: "The answer is (C)" → ``C``.

Model answers name their choice in many ways ("C", "(c)", "**C**", "Answer: C. Metformin",
"C) Metformin", "Option C", "The correct answer is **C**", ``\boxed{C}``), and prose is full of
one-letter words that are not choices ("A patient…", "I think…", "e.g.", "vitamin B12"). The
parser looks for the letter in four tiers, strongest first; the first tier that yields a
letter decides:

1. **claim** — an explicit statement: "answer" / "correct|right|best|final option|choice" /
   "choose|select|pick|go with", then optional filler ("is", "would be", ":", "-", "the
   option", "likely"…), then the letter; "C is correct" / "(C) is the best answer";
   ``\boxed{C}``. Letters chained to a claim by "or", "and", "/", "&" or "," count too, so
   "the answer is A or C" claims both.
2. **leading** — the answer *starts* with the letter, alone or followed by a delimiter:
   "C", "(c)", "**C**", "C.", "C) Metformin", "C: Metformin", "C - Metformin",
   "Option C".
3. **marked** — a letter set off anywhere: "(C)", "[C]", "**C**", "option C" / "choice C".
4. **bare** — only in short answers (at most 12 words): a standalone capital letter
   ("I think it's C", "C or D").

Within the deciding tier, two different letters are **ambiguous**: ``letter`` is ``None``,
``ambiguous`` is true and ``candidates`` lists them; the same letter repeated is fine.
Only letters of the valid set count (default A–E; e.g. the keys of the question's options).

Heuristics that keep English out (all tiers):

* a letter must stand alone: no letter, digit or apostrophe touches it ("B12", "I'm", "Cocaine");
* "e.g.", "i.e.", "U.S." — a letter followed by "." and another letter — and hyphenated words
  ("A-fib", "C-section", "T-cell") are not choices;
* "A"/"a" and "I"/"i" followed by a lower-case word ("A patient", "I think", "the answer is
  a beta blocker") are English, unless the word is "or"/"and" ("A or B") or the letter is in
  brackets/bold;
* lower-case letters count only after a claim or "option", at the very start, or when
  bracketed/bold; tier 4 takes capitals only;
* a letter followed by "is incorrect / wrong / not / unlikely / ruled out" is rejected, not
  claimed ("answer choice A is incorrect"), and so is one right after "not", "no", "except",
  "excluding", "never" or "rule(d) out" ("not C", "the answer is not (C)");
* letters chained to a leading letter by ",", "/", "&", "or", "and" hedge like chained claims:
  "C, A" and "A, B, C, D, E" are ambiguous, not ``C`` and ``A``.

Bounded and linear: claims, marks and bare letters are searched in the last ``WINDOW`` (4000)
characters, the leading letter in the first ``HEAD`` (200); whitespace runs are collapsed to
single spaces first. The patterns are Python ``re`` with only ``?`` and ``{0,k}``
quantifiers (no unbounded repetition), so each match attempt costs at most the pattern's
length and a search is linear in the (bounded) window.

>>> parse_choice("The answer is (C).").letter
'C'
>>> parse_choice("C) Metformin").letter, parse_choice("**b**").letter
('C', 'B')
>>> parse_choice("A patient with diabetes should start metformin.").letter is None
True
>>> parse_choice("The answer is A or C.")
Choice(letter=None, candidates=('A', 'C'), ambiguous=True, rule='claim')
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from .negation import negated_before

__all__ = ["DEFAULT_LETTERS", "HEAD", "WINDOW", "Choice", "letter_set", "parse_choice", "parse_choice_batch"]

DEFAULT_LETTERS = "ABCDE"
WINDOW = 4000  # characters from the end searched for claims, marks and bare letters
HEAD = 200  # characters from the start searched for a leading letter
_BARE_MAX_WORDS = 12

_AFTER = r"(?![A-Za-z0-9'’])"  # the letter stands alone
_CLAIM = re.compile(
    r"(?<![A-Za-z])(?:answer|(?:correct|right|best|final) (?:option|choice|letter|response)"
    r"|choose|select|pick|go with)(?![A-Za-z])"
    r"[*_`\"')\]>]{0,3}"
    r"(?: ?(?:is|would be|will be|should be|must be|=|:|-|–|—))?"
    r"[*_`\"':]{0,3} ?"
    r"(?:(?:likely|probably|definitely|clearly|therefore|thus) )?"
    r"(?:(?:the )?(?:option|choice|letter) ?)?"
    r"([(\[])?[*_`\"']{0,3}([A-Za-z])" + _AFTER,
    re.IGNORECASE,
)
_IS_CORRECT = re.compile(
    r"(?<![A-Za-z0-9'’.])((?:option|choice|letter) )?([(\[])?([A-Za-z])[)\]]?[*_]{0,2} "
    r"(?:is|would be) (?:the )?(?:correct|right|best|most likely|most appropriate)(?![A-Za-z])",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\boxed\{ ?(?:\\text(?:bf)?\{ ?)?\(?([A-Za-z])\)? ?\}?\}")
_CHAIN = re.compile(r" ?(?:,|/|&|or|and) ?(?:option |choice )?([(\[])?([A-Za-z])" + _AFTER, re.IGNORECASE)
_LEADING = re.compile(
    r"[ *_#>`\"'-]{0,8}(?:(?:option|choice|letter|answer)[:]? ?)?([(\[])?([A-Za-z])([)\]])?",
    re.IGNORECASE,
)
_MARKED = re.compile(
    r"(?<![A-Za-z0-9])[(\[]([A-Za-z])[)\]]"
    r"|\*\*([A-Za-z])\*\*|__([A-Za-z])__"
    r"|(?<![A-Za-z])(?:option|choice|letter) \(?([A-Za-z])\)?" + _AFTER,
    re.IGNORECASE,
)
_BARE = re.compile(r"(?<![A-Za-z0-9'’.])([A-Z])" + _AFTER)
# "answer choice A is incorrect", "(B) is wrong": a letter that is rejected is not a claim
_NEGATED = re.compile(
    r"[)\]*_]{0,3},? (?:is|are|would be|seems|was) (?:also |clearly |definitely )?"
    r"(?:incorrect|wrong|not|unlikely|less likely|false|ruled out|excluded)(?![A-Za-z])",
    re.IGNORECASE,
)
_FAST_STRIP = " \t\r\n*_()[].`\"'"
_CONNECTIVES = ("or", "and")


@dataclass(frozen=True, slots=True)
class Choice:
    """The parsed final choice.

    ``letter``: the chosen letter (upper case), or ``None`` when none was found or the answer
    is ambiguous. ``candidates``: the distinct letters of the deciding tier, in order of
    appearance. ``ambiguous``: two or more different letters were claimed. ``rule``: the tier
    that decided (``"claim"``, ``"leading"``, ``"marked"``, ``"bare"``), ``None`` if none did.
    """

    letter: str | None
    candidates: tuple[str, ...] = ()
    ambiguous: bool = False
    rule: str | None = None


_NONE = Choice(None)


@lru_cache(maxsize=256)
def _letter_set_cached(letters: tuple[str, ...]) -> frozenset[str]:
    out = set()
    for letter in letters:
        if not (isinstance(letter, str) and len(letter) == 1 and letter.isascii() and letter.isalpha()):
            raise ValueError(f"choice letters must be single ASCII letters, got {letter!r}")
        out.add(letter.upper())
    if not out:
        raise ValueError("the set of choice letters is empty")
    return frozenset(out)


def letter_set(letters: str | Iterable[str] = DEFAULT_LETTERS) -> frozenset[str]:
    """Upper-case letter set from ``"ABCD"`` or an iterable of letters (e.g. option keys).

    >>> sorted(letter_set("abcd")), sorted(letter_set({"A": "x", "b": "y"}))
    (['A', 'B', 'C', 'D'], ['A', 'B'])
    """
    return _letter_set_cached(tuple(letters))


def parse_choice(text: str, letters: str | Iterable[str] = DEFAULT_LETTERS) -> Choice:
    """The final choice of ``text`` among ``letters`` (see the module docstring).

    >>> parse_choice("Answer: C. Metformin is first-line.").letter
    'C'
    >>> parse_choice("I think it's d", letters="ABCD").letter is None  # lower-case bare: no
    True
    >>> parse_choice("Option B", letters="ABCD").letter
    'B'
    """
    return _parse(text, letter_set(letters))


def parse_choice_batch(texts: Sequence[str], letters: str | Iterable[str] = DEFAULT_LETTERS) -> list[Choice]:
    """:func:`parse_choice` over many texts with one letter set; one result per text."""
    valid = letter_set(letters)
    return [_parse(t, valid) for t in texts]


def _parse(text: str, valid: frozenset[str]) -> Choice:
    if not text:
        return _NONE
    if len(text) <= 16:  # fast path: "C", "(c)", "**C**", "C."
        core = text.strip(_FAST_STRIP)
        if len(core) == 1 and core.isascii() and core.isalpha():
            letter = core.upper()
            return Choice(letter, (letter,), False, "leading") if letter in valid else _NONE
    window = " ".join(text[-WINDOW:].split())
    if not window:
        return _NONE

    found = _claims(window, valid)
    if found:
        return _decide(found, "claim")
    head = window if len(text) <= HEAD else " ".join(text[:HEAD].split())
    leading = _leading(head, valid)
    if leading:
        found = [(0, leading[0])]
        _chain(head, leading[1], valid, found)  # "C, A" hedges two letters
        return _decide(found, "leading")
    found = _marked(window, valid)
    if found:
        return _decide(found, "marked")
    if window.count(" ") < _BARE_MAX_WORDS:
        found = _bare(window, valid)
        if found:
            return _decide(found, "bare")
    return _NONE


# -- tiers ---------------------------------------------------------------------------------------
def _decide(found: list[tuple[int, str]], rule: str) -> Choice:
    found.sort()
    candidates = tuple(dict.fromkeys(letter for _, letter in found))
    if len(candidates) == 1:
        return Choice(candidates[0], candidates, False, rule)
    return Choice(None, candidates, True, rule)


def _not_a_choice(s: str, start: int, end: int, *, bracketed: bool) -> bool:
    """English, an abbreviation or a negated letter rather than a choice at ``s[start:end]`` (see
    module doc)."""
    if negated_before(s, start):
        return True  # "not C"
    nxt = s[end : end + 1]
    if nxt in (".", "-") and s[end + 1 : end + 2].isalpha():
        return True  # e.g. / i.e. / U.S. / A-fib / C-section
    if bracketed:
        return False
    if s[start] in "AaIi" and nxt == " " and s[end + 1 : end + 2].islower():
        word = s[end + 1 : end + 8].split(" ", 1)[0].rstrip(",.;:")
        return word not in _CONNECTIVES
    return False


def _claims(s: str, valid: frozenset[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for m in _CLAIM.finditer(s):
        start = m.start(2)
        if _not_a_choice(s, start, m.end(2), bracketed=m.group(1) is not None):
            continue
        letter = m.group(2).upper()
        if letter in valid and not _NEGATED.match(s, m.end(2)):
            found.append((start, letter))
            _chain(s, m.end(2), valid, found)
    for m in _IS_CORRECT.finditer(s):
        lower = m.group(3).islower()
        if lower and not (m.group(1) or m.group(2)):
            continue  # "a is correct": lower case needs "option" or brackets
        if _not_a_choice(s, m.start(3), m.end(3), bracketed=True):
            continue
        letter = m.group(3).upper()
        if letter in valid:
            found.append((m.start(3), letter))
    for m in _BOXED.finditer(s):
        letter = m.group(1).upper()
        if letter in valid:
            found.append((m.start(1), letter))
    return found


def _chain(s: str, pos: int, valid: frozenset[str], found: list[tuple[int, str]]) -> None:
    """Letters chained to a claim: "answer is A or C", "answer: (b), (d)"."""
    if pos < len(s) and s[pos] in ")]":
        pos += 1
    for _ in range(4):  # a claim chains a few letters at most
        m = _CHAIN.match(s, pos)
        if m is None:
            return
        bracketed = m.group(1) is not None
        ch = m.group(2)
        if (ch.islower() and not bracketed) or _not_a_choice(s, m.start(2), m.end(2), bracketed=bracketed):
            return
        if ch.upper() in valid and not _NEGATED.match(s, m.end(2)):
            found.append((m.start(2), ch.upper()))
        pos = m.end(2) + (1 if m.end(2) < len(s) and s[m.end(2)] in ")]" else 0)


def _leading(head: str, valid: frozenset[str]) -> tuple[str, int] | None:
    """The leading letter and where it ends, or ``None``."""
    m = _LEADING.match(head)
    if m is None:
        return None
    letter = m.group(2).upper()
    if letter not in valid:
        return None
    rest = head[m.end() :].lstrip("*_`\"'")
    opened, closed = m.group(1) is not None, m.group(3) is not None
    if rest[:1].isalnum() or rest[:1] in ("'", "’"):
        return None  # part of a word: "Cocaine", "I'm"
    end = m.end(2)
    if opened and closed:
        return letter, end  # "(C) Metformin", "[c]"
    if _not_a_choice(head, m.start(2), m.end(2), bracketed=False) and not closed:
        return None
    if not rest or closed:
        return letter, end  # "C", "**C**", "C) Metformin"
    if rest[0] in ".:,;-–—=)/&":
        return letter, end  # "C. Metformin", "C: Metformin", "C - Metformin", "C, A" (chained)
    if rest[0] == " " and rest[1:2] in ("-", "–", "—", ":", "=", "("):
        return letter, end  # "C - Metformin", "C (Metformin)"
    return None  # "A patient…", "C because…" (left to the weaker tiers)


def _marked(s: str, valid: frozenset[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for m in _MARKED.finditer(s):
        group = m.lastindex or 0
        ch = m.group(group)
        start, end = m.start(group), m.end(group)
        if group == 4:  # "option x": the keyword makes capitals choices; lower case must pass the guard
            if ch.islower() and _not_a_choice(s, start, end, bracketed=False):
                continue
            if _not_a_choice(s, start, end, bracketed=True):
                continue
        letter = ch.upper()
        if letter in valid and not _NEGATED.match(s, end) and not negated_before(s, start):
            found.append((start, letter))
    return found


def _bare(s: str, valid: frozenset[str]) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for m in _BARE.finditer(s):
        letter = m.group(1)
        if (
            letter in valid
            and not _not_a_choice(s, m.start(1), m.end(1), bracketed=False)
            and not _NEGATED.match(s, m.end(1))
        ):
            found.append((m.start(1), letter))
    return found
