"""Label lists from model output: ``opioids, ethanol`` → ``("opioids", "ethanol")``.

Accepted layouts (mixable; the first that applies wins):

* a JSON array — ``["opioids", "ethanol"]`` — or an object holding exactly one array
  (``{"substances": [...]}``); ``[]`` is an explicit empty list (``format == "json"``);
* a bracketed list that is not valid JSON — ``[opioids, 'ethanol']`` — read as text;
* text: one label per line, bullets (``- x``, ``* x``, ``• x``, ``1. x``, ``1) x``) removed,
  and within a line labels separated by ``,`` ``;`` ``&`` or the word ``and`` (any case).
  Separators inside parentheses or brackets do not split ("opioids (e.g., heroin)" is one
  label). ``/`` and ``or`` never split: "A or B" is a hedge and stays one (unknown) label.

A leading ``Answer:``-style prefix (answer, final answer, labels, substances, classes,
prediction, diagnosis, and Chinese 答案/最终答案/诊断/结论…) and a Markdown code fence are dropped.
Chinese list punctuation reads as its ASCII counterpart (``、`` and ``，`` separate like ``,``,
``；`` like ``;``, ``：`` ends a prefix); a list joined by 和/与/及 ("and") is not split, and
Chinese negation (排除, 未见) is not read: such a label stays one (unknown) label. Each label is stripped of
whitespace, surrounding quotes, Markdown bold/italics/backticks and trailing ``.``/``:``/``!``.
Labels are deduplicated case-insensitively, first occurrence kept, order preserved.

Negated mentions are not labels: "cocaine; benzodiazepines excluded" gives ``("cocaine",)``
and lists ``"benzodiazepines"`` in ``negated`` (NegEx/ConText-style triggers and scopes, see
:mod:`medreward.parse.negation`). Answers without a trigger word skip that reader.

Bounded and linear: at most ``max_chars`` characters are read, ``max_labels`` labels kept
and each label cut to ``max_label_chars`` (a cut label gets a trailing "…" so it can never
match a vocabulary term by accident); any of these sets ``truncated``. Only ``str`` methods
and one Python ``re`` pattern made of fixed-width literal alternatives (`` and `` or one of
``,;&``) run on the text, and whitespace runs are collapsed first, so no pattern can
backtrack beyond its own length.

>>> parse_labels("opioids, ethanol").labels
('opioids', 'ethanol')
>>> parse_labels('["Opioids", "Benzodiazepines"]').labels
('Opioids', 'Benzodiazepines')
>>> parse_labels("- **Opioids**\\n- Ethanol.\\n- opioids").labels
('Opioids', 'Ethanol')
>>> parse_labels("Answer: cocaine and ethanol").labels
('cocaine', 'ethanol')
>>> parse_labels("cocaine; benzodiazepines excluded")
LabelList(labels=('cocaine',), truncated=False, format='text', negated=('benzodiazepines',))
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

from .negation import affirms, might_negate, negation_of, split_clauses

__all__ = ["LabelList", "parse_labels", "parse_labels_batch"]

MAX_LABELS = 256
MAX_LABEL_CHARS = 128
MAX_CHARS = 65536

# Fixed-width literal alternatives only (see module docstring): linear on any input.
_SPLIT = re.compile(r" and |[,;&]", re.IGNORECASE)
_STRIP = " \t\r\f\v*_`\"'“”‘’«».:!"
_BULLETS = ("- ", "* ", "• ", "+ ", "– ", "— ", "· ")
_PREFIXES = frozenset(
    {
        "answer", "final answer", "the answer", "labels", "label", "substances", "substance",
        "substance classes", "classes", "class", "prediction", "predictions", "predicted",
        "diagnosis", "diagnoses",
        "答案", "最终答案", "诊断", "结论", "物质", "中毒物质", "标签", "类别",
    }
)  # fmt: skip
# Chinese list punctuation read as its ASCII counterpart ("阿片类、乙醇" is a two-label list).
_CJK_PUNCTUATION = str.maketrans(
    {"、": ",", "，": ",", "；": ";", "：": ":", "（": "(", "）": ")", "【": "[", "】": "]", "。": "."}
)
_OPEN, _CLOSE = "([{", ")]}"
# A plain comma list ("opioids, Ethanol, toxic_alcohols"): word characters, spaces, hyphens and
# commas only (one character class: linear). `_is_plain_list` adds the rest of the definition.
_PLAIN_LIST = re.compile(r"[\w ,-]+")


class LabelList(NamedTuple):
    """Labels parsed from one answer (a named tuple: built once per distinct answer, cheaply).

    ``labels``: raw label strings, cleaned and deduplicated, in order. ``truncated``: a bound
    was hit (text, label count or label length). ``format``: ``"json"`` (a JSON array,
    possibly the explicit empty ``[]``), ``"text"``, or ``"empty"`` (nothing but blanks).
    ``negated``: labels the answer mentions as absent ("no X", "X ruled out"), cleaned and
    deduplicated like ``labels``; they are not in ``labels``.
    """

    labels: tuple[str, ...]
    truncated: bool = False
    format: Literal["json", "text", "empty"] = "text"
    negated: tuple[str, ...] = ()


_EMPTY = LabelList((), False, "empty")


def parse_labels(
    text: str,
    *,
    max_labels: int = MAX_LABELS,
    max_label_chars: int = MAX_LABEL_CHARS,
    max_chars: int = MAX_CHARS,
) -> LabelList:
    """Parse a list of labels from ``text`` (see the module docstring for the layouts).

    >>> parse_labels("1. Acetaminophen\\n2. Salicylates (aspirin, methyl salicylate)").labels
    ('Acetaminophen', 'Salicylates (aspirin, methyl salicylate)')
    >>> parse_labels("[]").format, parse_labels("  ").format
    ('json', 'empty')
    """
    if max_labels < 1 or max_label_chars < 1 or max_chars < 1:
        raise ValueError("max_labels, max_label_chars and max_chars must be >= 1")
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    s = text.strip()
    if not s:
        return LabelList((), truncated, "empty") if truncated else _EMPTY
    if not s.isascii():
        s = s.translate(_CJK_PUNCTUATION)
    negation = might_negate(s)
    if not negation and _is_plain_list(s):
        plain = _plain_list(s, max_labels, max_label_chars)
        if plain is not None:
            return LabelList(plain, truncated, "text")
    return _parse_layouts(s, max_labels, max_label_chars, truncated, negation)


def _parse_layouts(s: str, max_labels: int, max_label_chars: int, truncated: bool, negation: bool = False) -> LabelList:
    """The general reader of every layout, for stripped, non-empty text ``s`` (``negation``: it
    holds a trigger word, so negated mentions are looked for)."""
    if s.startswith("```"):  # ```json ... ```: drop the fence lines
        s = s[3:]
        s = s[s.find("\n") + 1 :] if "\n" in s else s.lstrip("abcdefghijklmnopqrstuvwxyz")
        if s.rstrip().endswith("```"):
            s = s.rstrip()[:-3]
        s = s.strip()
    s = _strip_prefix(s)
    if not s:
        return LabelList((), truncated, "empty")

    out = _Collector(max_labels, max_label_chars, truncated)
    negated = _Collector(max_labels, max_label_chars, False) if negation else None
    if s[:1] in "[{":
        items = _json_items(s)
        if items is not None:
            for item in items:
                if negated is not None:  # each array item is its own clause
                    read = negation_of(item)
                    negated.add(read.negated)
                    item = read.asserted
                if not out.add(item):
                    break
            return out.result("json", negated)
        # bracketed but not JSON, e.g. [opioids, 'ethanol']: read the inside as text
        if s[0] == "[":
            s = s[1:-1] if s.endswith("]") else s[1:]

    for line in s.splitlines() if "\n" in s or "\r" in s else (s,):
        line = _strip_bullet(line.strip())
        if not line:
            continue
        if not (out.add_all(_split_line(line)) if negated is None else _add_negated_line(line, out, negated)):
            break
    return out.result("text", negated)


def _add_negated_line(line: str, out: _Collector, negated: _Collector) -> bool:
    """Add one line's asserted labels to ``out`` and its negated ones to ``negated``, clause by
    clause (:mod:`medreward.parse.negation`); False once the label cap is reached."""
    for clause in split_clauses(line):
        reads = [negation_of(item) for item, _ in clause]
        scoped = [False] * len(reads)  # negated as a whole by a trigger in another item
        in_scope = False  # a pre-trigger earlier in this clause
        run_start = 0  # first item of the run joined by "and" that reaches item k
        covered = 0  # items before this one are already negated by a post-trigger of the run
        for k, read in enumerate(reads):
            if in_scope and affirms(clause[k][0]):  # "no X, positive for Y": Y is asserted
                in_scope = False
            scoped[k] = scoped[k] or in_scope
            in_scope = in_scope or read.opens_scope
            if read.closes_back:  # "A and B ruled out": the items joined to B by "and" too
                # from where the run's previous post-trigger stopped: linear in the clause
                for j in range(max(run_start, covered), k):
                    scoped[j] = True
                covered = k
            if not clause[k][1]:
                run_start = k + 1
        for read, whole in zip(reads, scoped):
            negated.add(read.negated)
            if whole:
                negated.add(read.asserted)
            elif not out.add(read.asserted):
                return False
    return True


def _is_plain_list(s: str) -> bool:
    """A plain comma list: :data:`_PLAIN_LIST`'s characters, no leading ``-`` (a bullet), no ``__``
    (Markdown), no run of spaces and no `` and `` separator."""
    return (
        s[0] != "-"
        and _PLAIN_LIST.fullmatch(s) is not None
        and "__" not in s
        and "  " not in s
        and " and " not in s.lower()
    )


def _plain_list(s: str, max_labels: int, max_label_chars: int) -> tuple[str, ...] | None:
    """Labels of a plain comma list (see :func:`_is_plain_list`), as the general path would
    read it; ``None`` when a label repeats or a bound is hit, which the general path handles
    (it deduplicates and sets ``truncated``).

    The general path would find no prefix, fence, bracket, bullet, ``;``/``&``/`` and ``
    separator or whitespace run in such text, and its cleaning strips only spaces and ``_``
    from these labels (they hold no ``__``), so splitting at
    commas gives the same labels. Most model answers are such lists; this is about three
    times cheaper than the general path.
    """
    pieces = [piece.strip(" _") for piece in s.split(",")]
    if "" in pieces:
        pieces = [piece for piece in pieces if piece]
    if (
        not pieces
        or len(pieces) > max_labels
        or max(map(len, pieces)) > max_label_chars
        or len(set(map(str.casefold, pieces))) != len(pieces)
    ):
        return None
    return tuple(pieces)


def parse_labels_batch(texts: Iterable[str], **options: Any) -> list[LabelList]:
    """:func:`parse_labels` over many texts; one result per text, in order."""
    return [parse_labels(t, **options) for t in texts]


class _Collector:
    """Cleans, deduplicates and counts labels under the bounds."""

    __slots__ = ("labels", "max_chars", "max_labels", "seen", "truncated")

    def __init__(self, max_labels: int, max_chars: int, truncated: bool) -> None:
        self.labels: list[str] = []
        self.seen: set[str] = set()
        self.max_labels = max_labels
        self.max_chars = max_chars
        self.truncated = truncated

    def add(self, raw: str) -> bool:
        """Add one label; False once the label cap is reached (stop feeding)."""
        return self.add_all((raw,))

    def add_all(self, raws: Iterable[str]) -> bool:
        """Add labels in order; False once the label cap is reached (stop feeding)."""
        labels, seen, max_chars = self.labels, self.seen, self.max_chars
        for raw in raws:
            label = _clean(raw)
            if not label:
                continue
            if len(label) > max_chars:
                label = label[:max_chars] + "…"
                self.truncated = True
            key = label.casefold()
            if key in seen:
                continue
            if len(labels) >= self.max_labels:
                self.truncated = True
                return False
            seen.add(key)
            labels.append(label)
        return True

    def result(self, fmt: Literal["json", "text"], negated: _Collector | None = None) -> LabelList:
        if negated is None or not negated.labels:
            return LabelList(tuple(self.labels), self.truncated or bool(negated and negated.truncated), fmt)
        return LabelList(tuple(self.labels), self.truncated or negated.truncated, fmt, tuple(negated.labels))


def _clean(label: str) -> str:
    label = label.strip(_STRIP)
    if "**" in label or "__" in label:
        label = label.replace("**", "").replace("__", "").strip(_STRIP)
    return label


def _strip_prefix(s: str) -> str:
    """Drop a leading 'Answer:' (or similar) prefix."""
    colon = s.find(":", 0, 40)
    if colon > 0 and s[:colon].strip(" *_#`").casefold() in _PREFIXES:
        return s[colon + 1 :].strip(" *_`\t\r\n")
    return s


def _strip_bullet(line: str) -> str:
    if line.startswith(_BULLETS):
        return line[2:].lstrip()
    if line in ("-", "*", "•"):
        return ""
    digits = 0
    while digits < 3 and digits < len(line) and line[digits].isdigit():
        digits += 1
    if digits and line[digits : digits + 1] in (".", ")") and line[digits + 1 : digits + 2] in (" ", "\t"):
        return line[digits + 2 :].lstrip()
    return line


def _split_line(line: str) -> list[str]:
    if "  " in line or "\t" in line or "\xa0" in line:
        line = " ".join(line.split())  # one space per run: the split pattern stays fixed-width
    if "(" not in line and "[" not in line and "{" not in line:
        if " and " not in line.lower():  # str.split is several times cheaper than the regex
            return line.replace(";", ",").replace("&", ",").split(",")
        return _SPLIT.split(line)
    # split only at bracket depth 0; count brackets between separators (linear overall)
    pieces: list[str] = []
    start = prev = depth = 0
    for match in _SPLIT.finditer(line):
        segment = line[prev : match.start()]
        depth += sum(segment.count(c) for c in _OPEN) - sum(segment.count(c) for c in _CLOSE)
        prev = match.start()
        if depth <= 0:
            depth = 0
            pieces.append(line[start : match.start()])
            start = match.end()
    pieces.append(line[start:])
    return pieces


def _json_items(s: str) -> list[str] | None:
    """Strings of a JSON array (or of the one array inside a JSON object); None if not JSON."""
    if not s.endswith(("]", "}")):
        return None
    try:
        value = json.loads(s)
    except (ValueError, RecursionError):
        return None
    if isinstance(value, dict):
        arrays = [v for v in value.values() if isinstance(v, list)]
        if len(arrays) != 1:
            return None
        value = arrays[0]
    if not isinstance(value, list):
        return None
    items: list[str] = []
    for item in value:
        if isinstance(item, str):
            items.append(item)
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            items.append(str(item))
        elif isinstance(item, list):  # [["opioids"], ["ethanol"]]: one level of nesting
            items.extend(x for x in item if isinstance(x, str))
    return items
