"""A completion given as a list must be a conversation: a list of anything else is an ``error``
record with a message, never a silent ``ok`` 0.0 (issue 9, item 19)."""

from __future__ import annotations

import pytest

from medreward import Scorer, Status

REFERENCE = {"substances": ["opioids"]}


@pytest.mark.parametrize(
    "completion, message",
    [
        (["a", "b"], 'a list completion must hold message objects {"role", "content"}; item 0 is str'),
        ([], "an empty list (no messages)"),
        ([None, 3], "item 0 is null"),
        ([{"role": "assistant", "content": "<answer>x</answer>"}, "tail"], "item 1 is str"),
        ([{"content": 5}], "message content must be text, got int"),  # the case that was already right
    ],
)
def test_a_list_that_is_not_messages_is_an_error(completion, message):
    [record] = Scorer("toxicology").score([{"completion": completion, "reference": REFERENCE}])
    assert record.status is Status.ERROR and record.reward is None
    assert record.components == {"format": None, "substances": None}
    assert message in record.info["error"]
    assert record.info["error"].startswith("format: completion is not text: ")


def test_a_conversation_and_a_string_still_score():
    text = "<think>miosis</think><answer>opioids</answer>"
    records = Scorer("toxicology").score([
        {"completion": [{"role": "assistant", "content": text}], "reference": REFERENCE},
        {"completion": [{"role": "user", "content": "q"}, {"role": "assistant", "content": text}], "reference": REFERENCE},
        {"completion": text, "reference": REFERENCE},
    ])  # fmt: skip
    assert [(r.status, r.reward) for r in records] == [(Status.OK, 1.0)] * 3
