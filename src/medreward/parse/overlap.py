"""Answer normalisation and token overlap of the SQuAD v1.1 evaluation, extended to CJK text.

:func:`normalize_answer` and :func:`token_f1` follow the official SQuAD v1.1 evaluation script
(Rajpurkar et al. 2016, ``evaluate-v1.1.py``): lower-case, remove punctuation, remove the articles
"a", "an", "the", collapse whitespace; F1 over the multiset of whitespace tokens. On ASCII text
they give the official numbers exactly.

Whitespace tokens fail for Chinese and Japanese, which do not put spaces between words ("阳性"
and "结果为阳性" would share no token). So, as the CMRC 2018 and MLQA evaluation scripts do
("mixed segmentation"), every Han, Hiragana or Katakana character is a token of its own and
runs of other characters stay whitespace words; for non-ASCII text, punctuation is every Unicode
punctuation character (category ``P*``: "，。、" too), as MLQA's normaliser does, instead of
``string.punctuation`` alone. ASCII text takes the official path unchanged.

Linear: one pass over the characters, plus one regex of literal alternatives between word
boundaries (the official article pattern), which cannot backtrack beyond its own length.

>>> normalize_answer("The  Patient's BP, was (high)!")
'patients bp was high'
>>> answer_tokens("结果为阳性。Positive")
['结', '果', '为', '阳', '性', 'positive']
>>> round(token_f1("the acute kidney injury", "Acute kidney failure"), 4)
0.6667
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter

__all__ = ["answer_tokens", "exact_match", "has_cjk", "is_cjk", "normalize_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")  # the official pattern
_ASCII_PUNCTUATION = str.maketrans("", "", string.punctuation)


def is_cjk(char: str) -> bool:
    """Whether ``char`` is a Han ideograph (basic, extension A, compatibility) or Japanese kana,
    i.e. a character of a script written without spaces between words.

    >>> is_cjk("阳"), is_cjk("䓬"), is_cjk("カ"), is_cjk("a"), is_cjk("한")
    (True, True, True, False, False)
    """
    code = ord(char)
    return (
        0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0x3400 <= code <= 0x4DBF  # extension A (䓬 of 苯二氮䓬)
        or 0xF900 <= code <= 0xFAFF  # compatibility ideographs
        or 0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x20000 <= code <= 0x2FA1F  # extensions B–F and the supplement
    )


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any CJK character (:func:`is_cjk`); ASCII text returns at once."""
    return not text.isascii() and any(is_cjk(c) for c in text)


def _strip_punctuation(text: str) -> str:
    if text.isascii():
        return text.translate(_ASCII_PUNCTUATION)
    return "".join(c for c in text if not unicodedata.category(c).startswith("P"))


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 ``normalize_answer``: lower-case, drop punctuation, drop articles, one space
    between words (for non-ASCII text, Unicode punctuation is dropped; see the module docstring).

    >>> normalize_answer("An MI, not the PE.")
    'mi not pe'
    """
    text = _strip_punctuation(text.lower())
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str) -> list[str]:
    """Tokens of the normalised text: whitespace words, with each CJK character a token of its own.

    >>> answer_tokens("The ECG shows STEMI"), answer_tokens("心电图：ST段抬高")
    (['ecg', 'shows', 'stemi'], ['心', '电', '图', 'st', '段', '抬', '高'])
    """
    normal = normalize_answer(text)
    if normal.isascii():
        return normal.split()
    tokens: list[str] = []
    for word in normal.split():
        if not any(is_cjk(c) for c in word):
            tokens.append(word)
            continue
        run: list[str] = []
        for char in word:
            if is_cjk(char):
                if run:
                    tokens.append("".join(run))
                    run = []
                tokens.append(char)
            else:
                run.append(char)
        if run:
            tokens.append("".join(run))
    return tokens


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when both normalise to the same text (SQuAD v1.1 ``exact_match_score``), else 0.0.
    CJK text is compared token by token, so spacing between CJK characters does not matter.

    >>> exact_match("The aspirin.", "aspirin"), exact_match("阳 性", "阳性"), exact_match("a", "b")
    (1.0, 1.0, 0.0)
    """
    return 1.0 if answer_tokens(prediction) == answer_tokens(reference) else 0.0


def token_f1(prediction: str, reference: str) -> float:
    r"""SQuAD v1.1 token F1: with :math:`c` the tokens common to both (multiset intersection),
    :math:`P = c/|pred|`, :math:`R = c/|ref|`, :math:`F_1 = 2PR/(P+R)`, and 0 when :math:`c = 0`
    (so two empty texts also score 0, as in the official script).

    >>> token_f1("aspirin 81 mg daily", "aspirin daily")  # P = 2/4, R = 2/2
    0.6666666666666666
    >>> token_f1("阴性", "阳性")  # 性 is shared: P = R = 1/2
    0.5
    """
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)
