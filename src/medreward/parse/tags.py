"""Tagged sections of model output: ``<think>…</think><answer>…</answer>``.

Plain string scanning (``str.find``/``rfind``/``count``), so every function is linear in
the length of the text whatever it contains: no backtracking regular expression ever
sees a completion. Tag names are configurable and matched exactly (case-sensitive).

Rules, chosen to match how the clinical RL literature reads these outputs:

* the **last complete** ``<tag>…</tag>`` section wins (a model that revises its answer is
  judged on the final one); its opening tag is the last ``<tag>`` before that closing tag;
* an opening tag after the last complete section with no closing tag is reported in
  ``unclosed`` (truncated generations), and its text is available but never silently used;
* the format check is strict: each tag exactly once, in the given order, non-empty, and
  (optionally) nothing but whitespace outside the tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise
from typing import NamedTuple

__all__ = [
    "FormatCheck",
    "Section",
    "TaggedText",
    "extract_section",
    "format_problems",
    "open_r1_format",
    "parse_tags",
    "section_content",
    "tag_count_credit",
    "trl_think_format",
]


@dataclass(frozen=True, slots=True)
class Section:
    """One ``<tag>…</tag>`` section: its content and where it stands in the text."""

    tag: str
    content: str
    start: int  # index of "<tag>"
    end: int  # index just past "</tag>" (or len(text) when unclosed)
    closed: bool = True


def _last_section_span(text: str, open_tag: str, close_tag: str) -> tuple[int, int] | None:
    """Indices of the opening and closing token of the last complete section (the rule above)."""
    close_at = text.rfind(close_tag)
    if close_at == -1:
        return None
    open_at = text.rfind(open_tag, 0, close_at)
    return None if open_at == -1 else (open_at, close_at)


def section_content(text: str, tag: str) -> str | None:
    """Content of the last complete ``<tag>…</tag>`` section (``extract_section(text, tag).content``
    without building a :class:`Section`; this runs once per sample for every answer reader).

    >>> section_content("<think>…</think><answer>C</answer>", "answer")
    'C'
    """
    open_tag = f"<{tag}>"
    span = _last_section_span(text, open_tag, f"</{tag}>")
    return None if span is None else text[span[0] + len(open_tag) : span[1]]


def extract_section(text: str, tag: str, *, allow_unclosed: bool = False) -> Section | None:
    """The last complete ``<tag>…</tag>`` section of ``text``, or ``None``.

    With ``allow_unclosed=True``, an opening tag after the last complete section (or with
    no closing tag at all) yields its tail as an unclosed section.

    >>> extract_section("<answer>A</answer> wait <answer>C</answer>", "answer").content
    'C'
    >>> extract_section("<answer>C", "answer") is None
    True
    >>> extract_section("<answer>C", "answer", allow_unclosed=True).content
    'C'
    """
    open_tag, close_tag = f"<{tag}>", f"</{tag}>"
    span = _last_section_span(text, open_tag, close_tag)
    complete: Section | None = None
    if span is not None:
        open_at, close_at = span
        complete = Section(tag, text[open_at + len(open_tag) : close_at], open_at, close_at + len(close_tag))
    if allow_unclosed:
        tail_from = complete.end if complete else 0
        open_at = text.rfind(open_tag, tail_from)
        if open_at != -1:
            return Section(tag, text[open_at + len(open_tag) :], open_at, len(text), closed=False)
    return complete


def format_problems(text: str, tags: tuple[str, ...], *, only_tags: bool = False) -> list[str]:
    """What keeps ``text`` from being exactly ``<t1>…</t1> <t2>…</t2> …`` (empty list: well formed).

    Checks, in order: each opening and closing tag occurs exactly once, the sections come in
    the given order, none is empty (whitespace only counts as empty), and with
    ``only_tags`` nothing but whitespace stands outside them. A component that checks many
    texts builds one :class:`FormatCheck` and calls it.

    >>> format_problems("<think>r</think><answer>C</answer>", ("think", "answer"))
    []
    >>> format_problems("<answer>C</answer><think>r</think>", ("think", "answer"))
    ['sections out of order: answer before think']
    """
    return _format_check(tuple(tags), only_tags)(text)


class FormatCheck:
    """:func:`format_problems` for one tuple of tag names, built once and called per text.

    >>> check = FormatCheck(("think", "answer"))
    >>> check("<think>r</think><answer>C</answer>"), check("<answer>C</answer>")
    ([], ['missing <think>'])
    """

    __slots__ = ("_sections", "_table", "only_tags", "tags")

    def __init__(self, tags: tuple[str, ...], *, only_tags: bool = False) -> None:
        self.tags = tuple(tags)
        self.only_tags = only_tags
        self._table = _tag_tokens(self.tags)
        # per tag: its name, the length of "<tag>" and of "</tag>"
        self._sections = [(tag, len(tag) + 2, len(tag) + 3) for tag in self.tags]

    def __call__(self, text: str) -> list[str]:
        starts = _token_starts(text, self._table) if self._table is not None else None
        if starts is None:  # not each token once, in order: say what is wrong
            return _diagnose(text, self.tags, self.only_tags)
        problems = []
        for k, (tag, open_len, _) in enumerate(self._sections):
            begin, end = starts[2 * k] + open_len, starts[2 * k + 1]
            # the first character settles most sections without copying them
            if begin == end or (text[begin].isspace() and text[begin:end].isspace()):
                problems.append(f"empty <{tag}>")
        if self.only_tags:
            ends = [start + close_len for start, (_, _, close_len) in zip(starts[1::2], self._sections)]
            outside = [text[: starts[0]], *(text[e:s] for e, s in zip(ends, starts[2::2])), text[ends[-1] :]]
            if any(chunk and not chunk.isspace() for chunk in outside):
                problems.append("text outside the tags")
        return problems


@lru_cache(maxsize=64)
def _format_check(tags: tuple[str, ...], only_tags: bool) -> FormatCheck:
    return FormatCheck(tags, only_tags=only_tags)


def _diagnose(text: str, tags: tuple[str, ...], only_tags: bool) -> list[str]:
    """The problems of text that is not well formed (the tokens are not each once, in order)."""
    problems = []
    spans: list[tuple[str, int, int, int]] = []  # tag, open index, content start, close index
    for tag, (n_open, n_close, open_at, close_at) in zip(tags, _census(text, tags)):
        open_tag = f"<{tag}>"
        if n_open != 1 or n_close != 1:
            if n_open == 0 and n_close == 0:
                problems.append(f"missing <{tag}>")
            else:
                problems.append(f"<{tag}> appears {n_open}× and </{tag}> {n_close}× (expected once each)")
            continue
        if close_at < open_at:
            problems.append(f"</{tag}> before <{tag}>")
            continue
        spans.append((tag, open_at, open_at + len(open_tag), close_at))
    if problems:
        return problems
    for (tag_a, _, _, close_a), (tag_b, open_b, _, _) in pairwise(spans):
        if open_b < close_a + len(f"</{tag_a}>"):
            problems.append(f"sections out of order: {tag_b} before {tag_a}")
    if problems:
        return problems
    for tag, _, content_at, close_at in spans:
        if text[content_at:close_at].isspace() or content_at == close_at:
            problems.append(f"empty <{tag}>")
    if only_tags:
        outside = [text[: spans[0][1]]]
        for (tag_a, _, _, close_a), (_, open_b, _, _) in pairwise(spans):
            outside.append(text[close_a + len(f"</{tag_a}>") : open_b])
        last_tag, _, _, last_close = spans[-1]
        outside.append(text[last_close + len(f"</{last_tag}>") :])
        if any(chunk and not chunk.isspace() for chunk in outside):
            problems.append("text outside the tags")
    return problems


class _TagTokens(NamedTuple):
    """What the scans need to know about a tuple of tag names, built once per tuple."""

    pattern: re.Pattern[str]  # splits text at any opening/closing token
    expected: tuple[str, ...]  # the token sequence of well-formed text: <t1>, </t1>, <t2>, …
    lookup: dict[str, tuple[int, int]]  # token -> (tag index, 0 opening | 1 closing)
    longest: int  # characters in the longest token


@lru_cache(maxsize=64)
def _tag_tokens(tags: tuple[str, ...]) -> _TagTokens | None:
    """The tokens of ``tags``; ``None`` for names holding ``<`` or ``>``, whose tokens could
    overlap (those take the counting path)."""
    if any("<" in tag or ">" in tag for tag in tags):
        return None
    tokens = tuple(token for tag in tags for token in (f"<{tag}>", f"</{tag}>"))
    # one literal "<" in front lets the regex engine skip to candidate positions quickly
    names = "|".join(re.escape(tag) for tag in tags)
    lookup = {token: (k // 2, k % 2) for k, token in enumerate(tokens)}
    return _TagTokens(re.compile(f"(</?(?:{names})>)"), tokens, lookup, max(map(len, tokens)))


_WALK_LIMIT = 64  # "<" walked one by one before a census falls back to counting each token


def _census(text: str, tags: tuple[str, ...]) -> list[list[int]]:
    """``[n_open, n_close, first_open, first_close]`` per tag (-1 where absent), in linear time.

    Walking the few ``<`` of ordinary output is far cheaper than counting every token over
    the whole text; past :data:`_WALK_LIMIT` of them (markup, hostile input) each token is
    counted with ``str.count``, which is linear too.
    """
    table = _tag_tokens(tags)
    if table is not None:
        census = [[0, 0, -1, -1] for _ in tags]
        find, lookup, longest = text.find, table.lookup, table.longest
        walked = 0
        at = find("<")
        while at != -1 and walked < _WALK_LIMIT:
            walked += 1
            end = find(">", at + 1, at + longest)
            hit = lookup.get(text[at : end + 1]) if end != -1 else None
            if hit is not None:
                entry = census[hit[0]]
                entry[hit[1]] += 1
                if entry[hit[1] + 2] < 0:
                    entry[hit[1] + 2] = at
            at = find("<", at + 1)
        if at == -1:
            return census
    return [
        [text.count(f"<{tag}>"), text.count(f"</{tag}>"), text.find(f"<{tag}>"), text.find(f"</{tag}>")]
        for tag in tags
    ]


def _token_starts(text: str, table: _TagTokens) -> list[int] | None:
    """Where each token of ``<t1>``, ``</t1>``, ``<t2>``, … starts, when each occurs exactly once
    and in that order; else ``None`` (the caller then says what is wrong).

    Most model output holds no ``<`` besides its tags: then walking the ``<`` with ``str.find``
    (memchr) settles it in one fast pass. Otherwise one regex split finds every token in a
    single pass, its ``maxsplit`` bounding work and memory on text full of tags.
    """
    pattern, expected = table.pattern, table.expected
    find, startswith = text.find, text.startswith
    starts = []
    at = find("<")
    for token in expected:
        if at == -1:
            return None  # a token is missing
        if not startswith(token, at):
            if startswith(expected, at):
                return None  # another tag's token where this one belongs
            break  # a "<" that starts no tag ("<5 mg"): the split decides
        starts.append(at)
        at = find("<", at + 1)
    else:
        if at == -1:  # no other "<" anywhere
            return starts
    pieces = pattern.split(text, maxsplit=len(expected) + 1)
    if tuple(pieces[1::2]) != expected:
        return None
    starts, offset = [], 0
    for i, piece in enumerate(pieces[:-1]):
        if i % 2:
            starts.append(offset)
        offset += len(piece)
    return starts


# -- the peers' format checks, reproduced exactly without their regular expressions ---------------
def open_r1_format(text: str, tags: tuple[str, ...] = ("think", "answer")) -> bool:
    r"""Whether open-r1's ``format_reward`` would pay ``text`` (its tags generalised to ``tags``).

    open-r1 (``src/open_r1/rewards.py``) matches ``^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$``
    with ``re.DOTALL | re.MULTILINE``: the text starts with ``<think>\n``; each later delimiter
    (``\n</think>\n<answer>\n``, then ``\n</answer>``) occurs somewhere after the previous one,
    with anything (other tags, nothing at all) in between; and the last is followed by the end
    of the text or by a newline (``$`` under ``MULTILINE``), whatever comes after that. Taking
    the first occurrence of each delimiter leaves the most room for the next, so this
    ``str.find`` chain decides the same in linear time.

    >>> open_r1_format("<think>\nr\n</think>\n<answer>\nC\n</answer>"), open_r1_format("<think>r</think><answer>C</answer>")
    (True, False)
    """
    first = f"<{tags[0]}>\n"
    if not text.startswith(first):
        return False
    at = len(first)
    for before, after in pairwise(tags):
        middle = f"\n</{before}>\n<{after}>\n"
        found = text.find(middle, at)
        if found == -1:
            return False
        at = found + len(middle)
    last = f"\n</{tags[-1]}>"
    if text.find(last + "\n", at) != -1:
        return True
    return text.endswith(last) and len(text) - len(last) >= at


def trl_think_format(text: str, tag: str = "think") -> bool:
    r"""Whether TRL's ``think_format_reward`` would pay ``text`` (its tag generalised to ``tag``).

    TRL (``trl/rewards/format_rewards.py``) matches ``^<think>(?!.*<think>)(.*?)</think>.*$`` with
    ``re.DOTALL | re.MULTILINE``: the text starts with ``<think>``, no second ``<think>`` follows,
    and a ``</think>`` does; what follows it, and whether the reasoning is empty, do not matter.

    >>> trl_think_format("<think>r</think>answer"), trl_think_format("x<think>r</think>")
    (True, False)
    """
    opening = f"<{tag}>"
    return (
        text.startswith(opening) and text.find(opening, len(opening)) == -1 and text.find(f"</{tag}>", len(opening)) != -1
    )


def tag_count_credit(text: str, tags: tuple[str, ...] = ("think", "answer")) -> tuple[float, list[str]]:
    r"""open-r1's ``tag_count_reward``: partial credit for each delimiter that occurs exactly once,
    and what is wrong with the others.

    For ``("think", "answer")`` the delimiters are open-r1's four, worth 0.25 each:
    ``<think>\n``, ``\n</think>\n``, ``\n<answer>\n`` and ``\n</answer>``. With other tags: the
    first opening tag with a newline after it, the last closing tag with one before it, every
    other tag with a newline on both sides; each worth ``1 / (2 × len(tags))``.

    >>> tag_count_credit("<think>\nr\n</think>\n<answer>\nC\n</answer>")
    (1.0, [])
    >>> tag_count_credit("r\n</think>\n<answer>\nC\n</answer>")
    (0.75, ["'<think>\\n' appears 0× (expected once)"])
    """
    tokens = []
    last = len(tags) - 1
    for k, tag in enumerate(tags):
        tokens.append(f"<{tag}>\n" if k == 0 else f"\n<{tag}>\n")
        tokens.append(f"\n</{tag}>" if k == last else f"\n</{tag}>\n")
    problems = []
    for token in tokens:
        n = text.count(token)
        if n != 1:
            problems.append(f"{token!r} appears {n}× (expected once)")
    return (len(tokens) - len(problems)) / len(tokens), problems


@dataclass(frozen=True, slots=True)
class TaggedText:
    """All tagged sections of one completion, parsed once and shared by components."""

    sections: dict[str, Section | None]
    unclosed: tuple[str, ...]
    problems: tuple[str, ...]

    @property
    def well_formed(self) -> bool:
        return not self.problems

    def content(self, tag: str) -> str | None:
        section = self.sections.get(tag)
        return None if section is None else section.content


def parse_tags(text: str, tags: tuple[str, ...] = ("think", "answer"), *, only_tags: bool = False) -> TaggedText:
    """Parse every tag of ``tags``: last complete sections, unclosed tags and format problems.

    >>> t = parse_tags("<think>opioid toxidrome</think><answer>opioids</answer>")
    >>> t.well_formed, t.content("answer")
    (True, 'opioids')
    >>> parse_tags("<think>long reasoning cut off…").unclosed
    ('think',)
    """
    sections = {tag: extract_section(text, tag) for tag in tags}
    unclosed = tuple(
        tag
        for tag in tags
        if (tail := extract_section(text, tag, allow_unclosed=True)) is not None and not tail.closed
    )
    return TaggedText(sections, unclosed, tuple(format_problems(text, tags, only_tags=only_tags)))
