"""Turning untrusted model output into safe text.

Completions are untrusted: they can be ``None``, numbers, 10 MB strings, or strings with
lone surrogates that cannot be encoded to UTF-8 (and would crash a JSON or Parquet writer
later). Everything that reads a completion goes through :func:`as_text` once.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TextTypeError", "as_text", "clean_surrogates", "encodes_as_utf8"]


class TextTypeError(TypeError):
    """A value where text belongs is not text (``None``, a number, a dict…)."""


def encodes_as_utf8(text: str) -> bool:
    """False when ``text`` holds lone surrogates, which UTF-8 (JSON files, Arrow strings) cannot hold."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def clean_surrogates(text: str) -> str:
    """Replace lone surrogates (invalid in UTF-8) with U+FFFD; other text is returned as is."""
    if encodes_as_utf8(text):
        return text
    # Round-trip through UTF-16: paired surrogates survive, lone ones become U+FFFD.
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def as_text(value: Any) -> str:
    """Return ``value`` as a string that is safe to scan and to encode.

    Strings pass through (lone surrogates replaced by U+FFFD). ``None``, numbers and
    other objects raise :class:`TextTypeError` with a message that says what came: a
    reward must not silently score ``"None"`` or ``"42"``.

    >>> as_text("<answer>C</answer>")
    '<answer>C</answer>'
    >>> as_text("bad \\ud800 surrogate")
    'bad \\ufffd surrogate'
    """
    if isinstance(value, str):
        return clean_surrogates(value)
    if value is None:
        raise TextTypeError("expected text, got null")
    raise TextTypeError(f"expected text, got {type(value).__name__}")
