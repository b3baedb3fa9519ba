"""Tolerant, linear-time parsing of what an LLM judge answers.

Judges are asked for JSON (with a JSON schema where the server can constrain its output), but
servers that cannot constrain output, and small models, wrap it in code fences, add prose around
it, leave trailing commas, use single quotes or Python's ``True``/``False``. :func:`parse_json_object`
reads all of these; :func:`parse_bool` and :func:`parse_yes_no` read a verdict word. Every function
takes any string, never raises, and runs in time linear in its (capped) input.

>>> parse_json_object("Sure! ```json\\n{'criteria_met': True, 'explanation': 'ok',}\\n``` Hope this helps.")
{'criteria_met': True, 'explanation': 'ok'}
>>> parse_yes_no("**Yes.** The answer matches.")
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MAX_VERDICT_CHARS",
    "JsonObject",
    "criterion_verdicts",
    "parse_bool",
    "parse_json_object",
    "parse_yes_no",
]

#: Judge answers are short; a longer one is cut to this many characters before parsing, which
#: bounds the time any answer can take.
MAX_VERDICT_CHARS = 200_000

_TRUE_WORDS = frozenset({"true", "yes", "y", "met", "1", "pass", "correct"})
_FALSE_WORDS = frozenset({"false", "no", "n", "not met", "unmet", "0", "fail", "incorrect"})
# bare words outside strings that a repaired object may hold
_BARE = {"True": "true", "False": "false", "None": "null", "yes": "true", "no": "false", "Yes": "true", "No": "false"}


class JsonObject(dict):
    """A parsed JSON object that remembers the keys it held more than once (``json`` keeps the last)."""

    duplicates: tuple[str, ...] = ()


def _object_hook(pairs: list[tuple[str, Any]]) -> JsonObject:
    obj = JsonObject()
    seen_twice = []
    for key, value in pairs:
        if key in obj:
            seen_twice.append(key)
        obj[key] = value
    if seen_twice:
        obj.duplicates = tuple(seen_twice)
    return obj


def _loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object_hook)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; deep nesting recurses
        return None


def _fenced(text: str) -> str | None:
    """The content of the first ``` fence (its language word, e.g. ``json``, skipped), if any."""
    start = text.find("```")
    if start < 0:
        return None
    body = start + 3
    while body < len(text) and text[body].isalpha():
        body += 1
    end = text.find("```", body)
    return text[body : end if end >= 0 else len(text)]


def _repair(text: str) -> str:
    """One linear pass that turns near-JSON into JSON: single-quoted strings become double-quoted,
    trailing commas before ``}``/``]`` are dropped, bare ``True``/``False``/``None``/``yes``/``no``
    become JSON literals. Text inside strings is kept as written."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            quote, j, buf = c, i + 1, ['"']
            while j < n and text[j] != quote:
                ch = text[j]
                if ch == "\\" and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append(nxt if (nxt == "'" and quote == "'") else ch + nxt)
                    j += 2
                    continue
                buf.append('\\"' if ch == '"' else "\\n" if ch == "\n" else ch)
                j += 1
            buf.append('"')
            out.append("".join(buf))
            i = j + 1
        elif c == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i = j  # drop the trailing comma
            else:
                out.append(c)
                i += 1
        elif c.isalpha():
            j = i
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            word = text[i:j]
            out.append(_BARE.get(word, word))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_json_object(text: Any) -> JsonObject | None:
    """The JSON object in a judge's answer, or ``None`` when there is none.

    Tries, in order: the whole text; the first code fence; the span from the first ``{`` to the
    last ``}``; then each of these repaired (single quotes, trailing commas, Python literals).
    Only the first :data:`MAX_VERDICT_CHARS` characters are read. Never raises.

    >>> parse_json_object('The verdict is {"criteria_met": false} as shown.')
    {'criteria_met': False}
    >>> parse_json_object("no json here") is None
    True
    """
    if not isinstance(text, str):
        return None
    text = text[:MAX_VERDICT_CHARS].strip()
    candidates = [text]
    fenced = _fenced(text)
    if fenced is not None:
        candidates.append(fenced.strip())
    for source in (fenced, text):
        if source is None:
            continue
        start, end = source.find("{"), source.rfind("}")
        if 0 <= start < end:
            candidates.append(source[start : end + 1])
    for repair in (False, True):
        for candidate in candidates:
            value = _loads(_repair(candidate) if repair else candidate)
            if isinstance(value, JsonObject):
                return value
    return None


def parse_bool(value: Any) -> bool | None:
    """A verdict value as a bool: JSON booleans, ``1``/``0``, and the words true/false, yes/no,
    met/not met, pass/fail, correct/incorrect (any case, surrounding space and punctuation
    ignored). ``None`` for anything else.

    >>> [parse_bool(v) for v in (True, "Yes", " false.", 1, "maybe", None)]
    [True, True, False, True, None, None]
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and len(value) <= 32:
        word = value.strip().strip(".!*_`\"'").strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def parse_yes_no(text: Any, *, max_words: int = 8) -> bool | None:
    """A YES/NO answer: the first of the first ``max_words`` words that is "yes" or "no" (any case,
    markup and punctuation ignored). ``None`` when there is none (the caller makes that an error,
    never a 0).

    >>> parse_yes_no("Answer: NO")
    False
    >>> parse_yes_no("I cannot tell") is None
    True
    """
    if not isinstance(text, str):
        return None
    words = 0
    word: list[str] = []
    for ch in text[:2000]:
        if ch.isalpha():
            word.append(ch)
            continue
        if word:
            found = _yes_no_word("".join(word))
            if found is not None:
                return found
            words += 1
            if words >= max_words:
                return None
            word = []
    return _yes_no_word("".join(word)) if word else None


def _yes_no_word(word: str) -> bool | None:
    low = word.lower()
    return True if low == "yes" else False if low == "no" else None


def criterion_verdicts(obj: Any, ids: tuple[str, ...]) -> tuple[dict[str, tuple[bool, str]], list[str]]:
    """Per-criterion verdicts from a batched judge answer, and the problems found.

    Accepts ``{"verdicts": [{"id", "criteria_met", "explanation"}, ...]}`` (what medreward's schema
    asks for) and, from servers that ignore the schema, ``{"<id>": true, ...}`` or
    ``{"<id>": {"criteria_met": ..., "explanation": ...}}``. Returns ``(verdicts, problems)`` with
    ``verdicts[id] = (met, explanation)``; ``problems`` names missing, unknown (extra), duplicate
    ids and unreadable verdicts. The caller accepts the answer only when ``problems`` is empty.

    >>> criterion_verdicts({"verdicts": [{"id": "c1", "criteria_met": True}]}, ("c1", "c2"))
    ({'c1': (True, '')}, ['missing ids: c2'])
    """
    verdicts: dict[str, tuple[bool, str]] = {}
    problems: list[str] = []
    if not isinstance(obj, Mapping):
        return verdicts, ["no JSON object"]
    wanted = set(ids)
    entries: list[tuple[Any, Any]] = []
    listed = obj.get("verdicts")
    if isinstance(listed, list):
        for item in listed:
            if isinstance(item, Mapping):
                entries.append((item.get("id"), item))
            else:
                problems.append("a verdict that is not an object")
    else:
        entries = list(obj.items())
        if isinstance(obj, JsonObject) and obj.duplicates:
            problems.append("duplicate ids: " + ", ".join(sorted({str(d) for d in obj.duplicates})))
    duplicates: set[str] = set()
    extra: set[str] = set()
    unreadable: set[str] = set()
    for key, value in entries:
        key = str(key).strip() if key is not None else ""
        if key not in wanted:
            extra.add(key or "<no id>")
            continue
        if key in verdicts:
            duplicates.add(key)
            continue
        raw, explanation = (value.get("criteria_met"), value.get("explanation", "")) if isinstance(value, Mapping) else (value, "")
        met = parse_bool(raw)
        if met is None:
            unreadable.add(key)
            continue
        verdicts[key] = (met, explanation if isinstance(explanation, str) else str(explanation))
    missing = [i for i in ids if i not in verdicts and i not in unreadable]
    if missing:
        problems.append("missing ids: " + ", ".join(missing))
    if extra:
        problems.append("unknown ids: " + ", ".join(sorted(extra)))
    if duplicates:
        problems.append("duplicate ids: " + ", ".join(sorted(duplicates)))
    if unreadable:
        problems.append("unreadable criteria_met for: " + ", ".join(sorted(unreadable)))
    return verdicts, problems
