"""Negated stretches of free text: "Denies chest pain; started aspirin." negates "chest pain".

The label reader (:mod:`medreward.parse.labels`) drops negated labels from a *list*; entity,
coverage and consistency rewards read *prose*, and need to know where in it a mention sits.
:func:`negation_view` reads a text with the same NegEx/ConText-style rules
(:mod:`medreward.parse.negation`: the same triggers, pseudo-triggers, terminators, affirmations
and scope rules the label reader applies), and returns the text with its whitespace collapsed
(one space per run within a line) together with the character spans that are negated:

* a pre-trigger ("no", "denies", "without", "negative for"…) negates the rest of its list item
  and, as in the label reader, the following items of its clause (to ``;``, ``. ``, a line end
  or a terminator such as "but"), unless an item starts with an affirmation ("positive for");
* a post-trigger ("ruled out", "excluded", "negative"…) negates its own item and the items
  joined to it by "and" / "&";
* pseudo-triggers ("cannot be ruled out", "not only") negate nothing.

>>> view = negation_view("Denies chest pain, started aspirin. No rash but fever")
>>> [view.text[s:e] for s, e in view.negated]
['chest pain', 'started aspirin', 'rash']
>>> [(piece, neg) for piece, neg in view.pieces()]
[('Denies ', False), ('chest pain', True), (', ', False), ('started aspirin', True), ('. No ', False), ('rash', True), (' but fever', False)]

Linear: one pass over the lines; :func:`~medreward.parse.negation.split_clauses` splits with a
pattern of fixed-width literal alternatives, and every item is located with ``str.find`` from a
moving cursor. At most ``max_chars`` characters are read (``truncated`` says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .negation import affirms, might_negate, negation_of, split_clauses

__all__ = ["MAX_CHARS", "NegationView", "negation_view"]

MAX_CHARS = 65536


@dataclass(frozen=True, slots=True)
class NegationView:
    """``text``: the input with whitespace runs inside a line collapsed to one space (lines
    joined by ``\\n``); ``negated``: sorted, non-overlapping ``(start, end)`` spans of ``text``
    that a negation covers; ``truncated``: the input was cut at the character bound."""

    text: str
    negated: tuple[tuple[int, int], ...]
    truncated: bool = False

    def _first_after(self, start: int) -> tuple[int, int] | None:
        """The first negated span that ends after ``start`` (binary search: spans are sorted)."""
        spans = self.negated
        lo, hi = 0, len(spans)
        while lo < hi:
            mid = (lo + hi) // 2
            if spans[mid][1] <= start:
                lo = mid + 1
            else:
                hi = mid
        return spans[lo] if lo < len(spans) else None

    def is_negated(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` lies inside one negated span."""
        span = self._first_after(start)
        return span is not None and span[0] <= start and end <= span[1]

    def overlaps_negation(self, start: int, end: int) -> bool:
        """Whether ``[start, end)`` shares a character with a negated span."""
        span = self._first_after(start)
        return span is not None and span[0] < end

    def pieces(self) -> Iterator[tuple[str, bool]]:
        """The text cut into consecutive ``(piece, negated)`` parts, in order."""
        cursor = 0
        for s, e in self.negated:
            if s > cursor:
                yield self.text[cursor:s], False
            yield self.text[s:e], True
            cursor = e
        if cursor < len(self.text):
            yield self.text[cursor:], False


def negation_view(text: str, *, max_chars: int = MAX_CHARS) -> NegationView:
    """Read ``text`` for negation (see the module docstring).

    >>> negation_view("opioids and ethanol ruled out; cocaine").negated
    ((0, 7), (12, 19))
    >>> negation_view("Pneumonia cannot be ruled out").negated
    ()
    """
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    flat = "\n".join(lines)
    if not might_negate(flat):
        return NegationView(flat, (), truncated)
    spans: list[tuple[int, int]] = []
    offset = 0
    for line in lines:
        if line:
            _negated_in_line(line, offset, spans)
        offset += len(line) + 1
    return NegationView(flat, tuple(_merged(spans)), truncated)


def _negated_in_line(line: str, offset: int, spans: list[tuple[int, int]]) -> None:
    """Append the negated spans of one (whitespace-collapsed) line, as the label reader scopes them."""
    cursor = 0
    for clause in split_clauses(line):
        located: list[int] = []
        for item, _ in clause:
            at = line.find(item, cursor) if item else cursor
            if at < 0:  # cannot happen for split_clauses' items; keep the cursor honest anyway
                at = cursor
            located.append(at)
            cursor = at + len(item)
        reads = [negation_of(item) for item, _ in clause]
        scoped = [False] * len(reads)
        in_scope = False
        run_start = covered = 0
        for k, read in enumerate(reads):
            if in_scope and affirms(clause[k][0]):
                in_scope = False
            scoped[k] = scoped[k] or in_scope
            in_scope = in_scope or read.opens_scope
            if read.closes_back:
                for j in range(max(run_start, covered), k):
                    scoped[j] = True
                covered = k
            if not clause[k][1]:
                run_start = k + 1
        for (item, _), at, read, whole in zip(clause, located, reads, scoped):
            if not item:
                continue
            if whole:
                spans.append((offset + at, offset + at + len(item)))
            elif read.negated:
                # a pre-trigger negates a suffix of the item, a post-trigger a prefix
                rel = item.rfind(read.negated) if read.opens_scope else item.find(read.negated)
                if rel < 0:
                    rel, length = 0, len(item)
                else:
                    length = len(read.negated)
                spans.append((offset + at + rel, offset + at + rel + length))


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out
