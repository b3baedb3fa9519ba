"""Phrase occurrences with negation flags (parse/phrases.py): golden cases and linear time."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.parse.phrases import PhraseIndex, phrase_keys


def test_occurrences_and_their_negation():
    index = PhraseIndex("Start a beta-blocker. No antibiotics; aspirin not excluded. Denies chest pain.")
    assert index.occurrences("beta blockers") == [False]
    assert index.occurrences("antibiotic") == [True]
    assert index.occurrences("aspirin") == [False]  # "not excluded" is a pseudo-trigger
    assert index.occurrences("chest pain") == [True] and index.negated_occurrences("chest pain") == [True]
    assert index.occurrences("pain chest") == [] and index.occurrences("") == []


def test_phrase_keys_fold_case_accents_plurals_and_punctuation():
    assert phrase_keys("Œdèmes, IV-fluids") == ("œdeme", "iv", "fluid")
    assert phrase_keys("glass") == ("glass",) and phrase_keys("gas") == ("gas",)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.sampled_from(["no ", "aspirin ", "beta ", "blocker", ", ", ". ", "\n", "ruled out ", "é"]), max_size=60).map("".join))
def test_any_text_gives_one_flag_per_occurrence(text):
    index = PhraseIndex(text)
    for phrase in ("aspirin", "beta blocker", "no aspirin"):
        assert len(index.occurrences(phrase)) == len(index.find(phrase_keys(phrase)))


def test_repetitive_text_is_searched_in_linear_time():
    timings = []
    for n in (2000, 16000):
        index = PhraseIndex("a " * n)
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            index.find(("a",) * 20 + ("b",))
            best = min(best, time.perf_counter() - start)
        timings.append(best)
    assert timings[1] < 24 * timings[0] + 0.02  # 8× the words: about 8× the time
