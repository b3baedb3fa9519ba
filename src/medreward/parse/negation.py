"""Negated mentions in label answers: "cocaine; benzodiazepines excluded" predicts cocaine only.

A NegEx/ConText-style reader for the short lists a model writes as its answer. The triggers are
the negation rules of medspaCy's ConText (``resources/en/context_rules.json``, category
``NEGATED_EXISTENCE``) that fit label lists, plus their obvious inflections:

* **pre-triggers** negate what follows them to the end of the clause: ``no``, ``not``,
  ``without``, ``negative for``, ``denies``, ``free of``, ``absence of``, ``lack of``,
  ``never had``, ``ruled out``, ``rather than``, ``inconsistent with``…;
* **post-triggers** negate the label they end: ``excluded``, ``ruled out``, ``unlikely``,
  ``negative``, ``absent``, ``not detected``…, and the labels joined to it by ``and`` / ``&``
  ("opioids and benzodiazepines ruled out"), but not those before a comma or ``;``;
* **pseudo-triggers** look like negation but are not: ``not excluded``, ``cannot be ruled
  out``, ``not only``… (the label stays a prediction, the phrase is dropped);
* **terminators** end a clause, and with it a pre-trigger's scope: a new line, ``;``, ``. ``,
  and ``but``, ``however``, ``although``, ``though``, ``yet``, ``except``, ``apart from``,
  ``aside from``, ``whereas``;
* **affirmations** at the start of a list item end a pre-trigger's scope too (ConText ends a
  scope at a modifier of another kind): "negative for opioids, positive for ethanol" does not
  negate ethanol. The phrase stays part of the label, as everywhere else.

Differences from ConText, on purpose: a post-trigger's scope is its own label and the labels
joined to it by "and" (ConText reaches back to the start of the sentence, which in a comma list
"cocaine, benzodiazepines excluded" would also negate cocaine, the one label the answer asserts);
triggers are matched on whole words of a label's start and end (and pre-triggers anywhere in
it), not on a dependency parse.

Linear: text is split by one pattern of literal alternatives and every check is a dict lookup
of a few words, so no pattern can backtrack. Answers without a trigger word (most of them) are
recognised by one set lookup per word and read by the plain list reader.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "NegationSplit",
    "affirms",
    "might_negate",
    "negated_after",
    "negated_before",
    "negation_of",
    "split_clauses",
]

# Words of each trigger, lower-cased. The first word of every pre- and pseudo-trigger and the
# last of every post-trigger appear in `_HINT`, which decides whether an answer needs this reader.
_PRE = (
    "no", "not", "without", "negative for", "neg for", "free of", "absence of", "absent", "lack of",
    "lacked", "lacking", "deny", "denies", "denied", "denying", "never had", "never developed",
    "no evidence of", "no signs of", "no sign of", "no history of", "with no", "ruled out", "rules out",
    "rather than", "inconsistent with", "not associated with", "excluding", "exclude", "to exclude",
    "was not", "is not", "are not", "were not",
)  # fmt: skip
_POST = (
    "excluded", "is excluded", "was excluded", "are excluded", "were excluded", "ruled out",
    "is ruled out", "was ruled out", "are ruled out", "were ruled out", "has been ruled out",
    "have been ruled out", "unlikely", "is unlikely", "negative", "is negative", "was negative",
    "are negative", "has been negative", "absent", "not present", "not detected", "not found",
    "not seen", "not identified", "not suspected", "not supported", "not evident", "are not evident",
    "no longer present", "free",
)  # fmt: skip
_PSEUDO = (
    "not excluded", "not ruled out", "cannot be excluded", "cannot be ruled out", "can not be excluded",
    "can not be ruled out", "can't be excluded", "can't be ruled out", "not be excluded", "not be ruled out",
    "cannot exclude", "cannot rule out", "can't exclude", "can't rule out", "not only", "no increase",
    "not necessarily", "not certain if", "not rule out",
)  # fmt: skip
_AFFIRM = ("positive for", "pos for", "consistent with", "suggestive of", "confirmed", "present", "detected")
_TERMINATORS = ("but", "however", "nevertheless", "although", "though", "yet", "except", "whereas", "apart from", "aside from")


def _by_word(phrases: tuple[str, ...], *, last: bool) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Phrases as word tuples, keyed by their first (or last) word, longest first."""
    table: dict[str, list[tuple[str, ...]]] = {}
    for phrase in phrases:
        words = tuple(phrase.split())
        table.setdefault(words[-1] if last else words[0], []).append(words)
    return {k: tuple(sorted(v, key=len, reverse=True)) for k, v in table.items()}


_PRE_BY_FIRST = _by_word(_PRE, last=False)
_PSEUDO_BY_FIRST = _by_word(_PSEUDO, last=False)
_POST_BY_LAST = _by_word(_POST, last=True)
_PSEUDO_BY_LAST = _by_word(_PSEUDO, last=True)
_AFFIRM_BY_FIRST = _by_word(_AFFIRM, last=False)

# Every trigger holds one of these words: an answer without any of them skips this reader (a
# set lookup per word, several times cheaper than a search for every trigger).
_HINT_WORDS = frozenset(
    {
        "no", "not", "without", "neg", "negative", "free", "absence", "absent", "lack", "lacked", "lacking",
        "deny", "denies", "denied", "denying", "never", "ruled", "rules", "rather", "inconsistent",
        "excluding", "exclude", "excluded", "unlikely", "cannot", "can't",
    }
)  # fmt: skip
_TO_SPACE = str.maketrans(dict.fromkeys("!\"#$%&()*+,./:;<=>?@[\\]^_`{|}~\n\t\r", " "))

# Clause terminators and list separators: literal alternatives only (linear on any input).
_SEPARATORS = re.compile(
    "|".join([*(f" {re.escape(t)} " for t in _TERMINATORS), " and ", r"\. ", "[,;&]"]), re.IGNORECASE
)
_WORD_STRIP = " \t\"'`*_.,:;!()[]{}"
_OPEN, _CLOSE = "([{", ")]}"


def might_negate(text: str) -> bool:
    """Whether ``text`` holds a trigger word at all (else the plain label reader suffices).

    >>> might_negate("opioids, ethanol"), might_negate("cocaine; benzodiazepines excluded")
    (False, True)
    """
    return not _HINT_WORDS.isdisjoint(text.casefold().translate(_TO_SPACE).split())


class NegationSplit(NamedTuple):
    """One list item read for negation: the part it asserts, the part it negates, and whether a
    pre-trigger opened a scope that continues into the following items of the clause."""

    asserted: str
    negated: str
    opens_scope: bool
    closes_back: bool  # a post-trigger: the items joined to this one by "and" are negated too


def negation_of(item: str) -> NegationSplit:
    """Read one list item (one label, as the list reader split it).

    >>> negation_of("no benzodiazepines")
    NegationSplit(asserted='', negated='benzodiazepines', opens_scope=True, closes_back=False)
    >>> negation_of("benzodiazepines ruled out")
    NegationSplit(asserted='', negated='benzodiazepines', opens_scope=False, closes_back=True)
    >>> negation_of("benzodiazepines not excluded")
    NegationSplit(asserted='benzodiazepines', negated='', opens_scope=False, closes_back=False)
    >>> negation_of("cocaine rather than amphetamines")
    NegationSplit(asserted='cocaine', negated='amphetamines', opens_scope=True, closes_back=False)
    >>> negation_of("no")  # a trigger alone is a label ("no" can mean the empty set)
    NegationSplit(asserted='no', negated='', opens_scope=False, closes_back=False)
    """
    words = item.split()
    keys = [w.strip(_WORD_STRIP).casefold() for w in words]
    split = _negation_of(words, keys)
    if split.asserted and split.negated:  # "opioids (no ethanol)": no bracket left dangling
        return split._replace(asserted=_balanced(split.asserted), negated=_balanced(split.negated))
    return split


def affirms(item: str) -> bool:
    """Whether a list item starts with an affirmation ("positive for X"), which ends the scope
    of a pre-trigger earlier in its clause.

    >>> affirms("positive for ethanol"), affirms("ethanol")
    (True, False)
    """
    keys = [w.strip(_WORD_STRIP).casefold() for w in item.split(None, 2)[:2]]
    return bool(keys) and bool(_phrase_at(keys, 0, _AFFIRM_BY_FIRST))


def _balanced(text: str) -> str:
    """``text`` without a leading or trailing bracket whose partner is not in it."""
    for open_, close in zip(_OPEN, _CLOSE):
        if text.count(open_) != text.count(close):
            text = text.strip(open_ + close + " ")
    return text


def _negation_of(words: list[str], keys: list[str]) -> NegationSplit:
    n = len(words)
    if not n:
        return NegationSplit("", "", False, False)
    # a pseudo-trigger at either end: drop it, the rest is asserted ("cannot be ruled out" alone: nothing)
    end = _phrase_ending(keys, n, _PSEUDO_BY_LAST)
    if end:
        return NegationSplit(" ".join(words[: n - end]), "", False, False)
    start = _phrase_at(keys, 0, _PSEUDO_BY_FIRST)
    if start:
        return NegationSplit(" ".join(words[start:]), "", False, False)
    # a post-trigger at the end negates the item
    end = _phrase_ending(keys, n, _POST_BY_LAST)
    if end and end < n:
        return NegationSplit("", " ".join(words[: n - end]), False, True)
    # a pre-trigger anywhere negates what follows it
    for i in range(n - 1):
        length = _phrase_at(keys, i, _PRE_BY_FIRST)
        if length and i + length < n and not _phrase_at(keys, i, _PSEUDO_BY_FIRST):
            return NegationSplit(" ".join(words[:i]), " ".join(words[i + length :]), True, False)
    return NegationSplit(" ".join(words), "", False, False)


def _phrase_at(keys: list[str], i: int, table: dict[str, tuple[tuple[str, ...], ...]]) -> int:
    """Length in words of the longest phrase of ``table`` starting at word ``i`` (0: none)."""
    for phrase in table.get(keys[i], ()):
        if tuple(keys[i : i + len(phrase)]) == phrase:
            return len(phrase)
    return 0


def _phrase_ending(keys: list[str], n: int, table: dict[str, tuple[tuple[str, ...], ...]]) -> int:
    """Length in words of the longest phrase of ``table`` that ends the item (0: none)."""
    if not n:
        return 0
    for phrase in table.get(keys[-1], ()):
        if len(phrase) <= n and tuple(keys[n - len(phrase) :]) == phrase:
            return len(phrase)
    return 0


def split_clauses(line: str) -> list[list[tuple[str, bool]]]:
    """One line as clauses, each a list of ``(item, joined_to_next)`` pairs: ``joined_to_next``
    when the item and the next are joined by "and" / "&" (not a comma). Separators inside
    brackets do not split.

    >>> split_clauses("cocaine; benzodiazepines excluded")
    [[('cocaine', False)], [('benzodiazepines excluded', False)]]
    >>> split_clauses("opioids and ethanol, no cocaine but cannabis")
    [[('opioids', True), ('ethanol', False), ('no cocaine', False)], [('cannabis', False)]]
    """
    if "  " in line or "\t" in line or "\xa0" in line:
        line = " ".join(line.split())  # one space per run: the separators stay fixed-width
    clauses: list[list[tuple[str, bool]]] = [[]]
    start = prev = depth = 0
    for match in _SEPARATORS.finditer(line):
        segment = line[prev : match.start()]
        depth += sum(segment.count(c) for c in _OPEN) - sum(segment.count(c) for c in _CLOSE)
        prev = match.start()
        if depth > 0:
            continue
        depth = 0
        sep = match.group().strip().casefold()
        clauses[-1].append((line[start : match.start()].strip(), sep in ("and", "&")))
        if sep not in (",", "and", "&"):  # ";", ". " or a terminator word ends the clause
            clauses.append([])
        start = match.end()
    clauses[-1].append((line[start:].strip(), False))
    return [clause for clause in clauses if clause]


# -- negation right next to one mention (a code, a letter, a value) -----------------------------------
# Bounded look-around, so linear in the number of mentions. Used where a scope-based reading would
# be wrong: ICD titles ("without complications", "not elsewhere classified") and answer prose are
# full of scope-opening words that must not negate the mentions after them.
LOCAL_WINDOW = 32
_LOCAL_BEFORE = re.compile(
    r"(?<![A-Za-z])(?:not|no|without|except|exclude|excluding|excluded|never|rule out|rules out|ruled out"
    r"|negative for)[ :]{0,2}(?:(?:option|choice|letter|answer) ?)?[(\[*_`\"']{0,3}$",
    re.IGNORECASE,
)
_LOCAL_AFTER = re.compile(
    r"[)\]*_`\"']{0,3},? ?(?:(?:is|was|are|were|has been|have been) )?"
    r"(?:excluded|ruled out|unlikely|negative|absent|not present|not supported)(?![A-Za-z])",
    re.IGNORECASE,
)


def negated_before(text: str, start: int) -> bool:
    """Whether the mention starting at ``text[start]`` follows a negation right before it:
    "not C", "rule out (I10)", "is not 49.2".

    >>> negated_before("the answer is not 49.2 mL/hr", 18), negated_before("49.2 mL/hr", 0)
    (True, False)
    """
    return _LOCAL_BEFORE.search(text, max(0, start - LOCAL_WINDOW), start) is not None


def negated_after(text: str, end: int) -> bool:
    """Whether the mention ending at ``text[end]`` is negated by the words right after it:
    "E11.9 excluded", "I10 is ruled out".

    >>> negated_after("E11.9 excluded", 5), negated_after("E11.9, I10", 5)
    (True, False)
    """
    return _LOCAL_AFTER.match(text[end : end + LOCAL_WINDOW]) is not None
