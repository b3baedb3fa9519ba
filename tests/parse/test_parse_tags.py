"""Golden and property tests of the tagged-section parser (:mod:`medreward.parse.tags`)."""

from __future__ import annotations

import doctest

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.parse.tags as tags_module
from medreward.parse.tags import TaggedText, extract_section, format_problems, parse_tags
from scaling import assert_linear

FUZZ = settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])

# Bare tag names, as FormatTags accepts them: non-empty, no angle brackets, slash or space/tab/newline.
TAG_NAMES = st.text(st.characters(exclude_characters="<>/ \t\n"), min_size=1, max_size=8)
# Any text, lone surrogates included (model output can hold them).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=200)
# Plain chunks hold no "<", so every tag in a generated text comes from a tag token.
PLAIN = st.text(st.characters(exclude_characters="<"), max_size=6)


# -- golden ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, content",
    [
        ("<answer>C</answer>", "C"),
        ("<answer>A</answer> wait, no: <answer>C</answer>", "C"),  # the last complete section wins
        ("<answer>a<answer>b</answer>", "b"),  # its opening tag is the last one before the closing tag
        ("<answer>x</answer>y</answer>", "x</answer>y"),  # ...and its closing tag is the last one
        ("<answer></answer>", ""),
        ("<answer>C</answer><answer>D", "C"),  # a trailing unclosed section is not used
        ("a</answer>", None),
        ("</answer><answer>C", None),
        ("<Answer>C</Answer>", None),  # case-sensitive
        ('<answer type="x">C</answer>', None),  # exact tags only
        ("", None),
    ],
)
def test_extract_section_golden(text: str, content: str | None) -> None:
    section = extract_section(text, "answer")
    assert (None if section is None else section.content) == content
    if section is not None:
        assert section.closed and text[section.start : section.end] == f"<answer>{content}</answer>"


@pytest.mark.parametrize(
    "text, content, closed",
    [
        ("<answer>C", "C", False),
        ("<answer>A</answer><answer>B", "B", False),  # unclosed after the last complete one
        ("<answer>A</answer> <answer>", "", False),
        ("<answer>A</answer>", "A", True),  # nothing unclosed: the complete one
        ("no tags", None, None),
    ],
)
def test_extract_section_allow_unclosed(text: str, content: str | None, closed: bool | None) -> None:
    section = extract_section(text, "answer", allow_unclosed=True)
    if content is None:
        assert section is None
    else:
        assert (section.content, section.closed) == (content, closed)
        assert section.end == len(text) or closed


def test_parse_tags_golden() -> None:
    good = parse_tags("<think>pupils 1 mm</think>\n<answer>opioids</answer>")
    assert good.well_formed and good.unclosed == () and good.content("think") == "pupils 1 mm"
    assert good.content("answer") == "opioids" and good.content("other") is None
    cut = parse_tags("<think>long reasoning <answer>maybe")
    assert cut.unclosed == ("think", "answer") and cut.sections == {"think": None, "answer": None}
    assert cut.problems == (
        "<think> appears 1× and </think> 0× (expected once each)",
        "<answer> appears 1× and </answer> 0× (expected once each)",
    )
    revised = parse_tags("<think>a</think><answer>A</answer><answer>B</answer>")
    assert revised.content("answer") == "B" and not revised.well_formed
    custom = parse_tags("<reasoning>r</reasoning><final>x</final>", ("reasoning", "final"))
    assert custom.well_formed and custom.content("final") == "x"


# -- properties ----------------------------------------------------------------------------------------
@FUZZ
@given(ANY_TEXT, st.lists(TAG_NAMES, min_size=1, max_size=3, unique=True), st.booleans())
def test_no_exception_on_any_text_and_tag(text: str, tags: list[str], only_tags: bool) -> None:
    parsed = parse_tags(text, tuple(tags), only_tags=only_tags)
    assert set(parsed.sections) == set(tags)  # one entry per tag, found or not
    assert set(parsed.unclosed) <= set(tags)
    assert all(isinstance(p, str) for p in parsed.problems)
    for tag in tags:
        for allow in (False, True):
            section = extract_section(text, tag, allow_unclosed=allow)
            if section is not None:
                assert f"<{tag}>" not in section.content or not section.closed  # last opening tag
                assert text[section.start :].startswith(f"<{tag}>")


@FUZZ
@given(st.data(), TAG_NAMES, TAG_NAMES)
def test_last_complete_section_rule(data: st.DataObject, tag: str, other: str) -> None:
    """Model: a text built of plain chunks and tag tokens; the section is the tokens between the
    last closing token and the last opening token before it."""
    open_t, close_t = f"<{tag}>", f"</{tag}>"
    distractors = [f"<{other}>", f"</{other}>"] if other != tag else []
    tokens = data.draw(st.lists(st.one_of(PLAIN, st.sampled_from([open_t, close_t, *distractors])), max_size=25))
    text = "".join(tokens)
    closes = [i for i, t in enumerate(tokens) if t == close_t]
    expected = None
    if closes:
        opens = [i for i, t in enumerate(tokens[: closes[-1]]) if t == open_t]
        if opens:
            expected = "".join(tokens[opens[-1] + 1 : closes[-1]])
    section = extract_section(text, tag)
    assert (None if section is None else section.content) == expected


@FUZZ
@given(st.data(), TAG_NAMES)
def test_unclosed_detection(data: st.DataObject, tag: str) -> None:
    open_t, close_t = f"<{tag}>", f"</{tag}>"
    head = data.draw(st.sampled_from(["", f"{open_t}first{close_t}", f"x{close_t}"]))
    tail = data.draw(PLAIN)
    text = f"{head} {open_t}{tail}"  # a truncated generation: the last opening tag is never closed
    parsed = parse_tags(text, (tag,))
    assert parsed.unclosed == (tag,)
    unclosed = extract_section(text, tag, allow_unclosed=True)
    assert unclosed is not None and not unclosed.closed and unclosed.content == tail
    complete = extract_section(text, tag)
    assert (None if complete is None else complete.content) == ("first" if head.startswith(open_t) else None)
    assert format_problems(text, (tag,))  # never well formed
    # closing it removes the unclosed report
    closed = parse_tags(text + close_t, (tag,))
    assert closed.unclosed == () and closed.content(tag) == tail


@FUZZ
@given(
    st.lists(
        st.tuples(TAG_NAMES, PLAIN.filter(lambda s: s.strip())), min_size=1, max_size=3, unique_by=lambda t: t[0]
    )
)
def test_well_formed_texts_have_no_problems(sections: list[tuple[str, str]]) -> None:
    tags = tuple(tag for tag, _ in sections)
    text = "\n".join(f"<{tag}>{body}</{tag}>" for tag, body in sections)
    assert format_problems(text, tags, only_tags=True) == []
    parsed = parse_tags(text, tags)
    assert parsed.well_formed and all(parsed.content(tag) == body for tag, body in sections)


def _is_well_formed(text: str, tags: tuple[str, ...], only_tags: bool) -> bool:
    """Oracle: the definition, written out with find/count (each token once, in order, non-empty)."""
    end = 0
    outside = []
    for tag in tags:
        open_t, close_t = f"<{tag}>", f"</{tag}>"
        if text.count(open_t) != 1 or text.count(close_t) != 1:
            return False
        start, close = text.find(open_t), text.find(close_t)
        if start < end or close < start + len(open_t):
            return False
        if not text[start + len(open_t) : close].strip():
            return False
        outside.append(text[end:start])
        end = close + len(close_t)
    outside.append(text[end:])
    return not (only_tags and any(chunk.strip() for chunk in outside))


@FUZZ
@given(
    st.lists(TAG_NAMES, min_size=1, max_size=3, unique=True),
    st.data(),
    st.booleans(),
)
def test_format_check_matches_its_definition(tags: list[str], data: st.DataObject, only_tags: bool) -> None:
    # token soup: the tags' tokens (in and out of order, repeated, missing) between plain chunks
    tokens = [t for tag in tags for t in (f"<{tag}>", f"</{tag}>")]
    parts = data.draw(st.lists(st.one_of(st.sampled_from(tokens), PLAIN, st.sampled_from([" ", "\n", "<", ">"]))))
    text = "".join(parts)
    problems = format_problems(text, tuple(tags), only_tags=only_tags)
    assert (problems == []) == _is_well_formed(text, tuple(tags), only_tags), (text, problems)


@FUZZ
@given(st.lists(TAG_NAMES, min_size=1, max_size=3, unique=True), st.data())
def test_tag_census_counts_like_str_count(tags: list[str], data: st.DataObject) -> None:
    """The "<" walk behind the format messages ("<answer> appears 2× …") counts what str.count counts."""
    tokens = [t for tag in tags for t in (f"<{tag}>", f"</{tag}>")]
    text = "".join(data.draw(st.lists(st.one_of(st.sampled_from(tokens), PLAIN, st.sampled_from(["<", "<<", ">"])))))
    expected = [[text.count(f"<{t}>"), text.count(f"</{t}>"), text.find(f"<{t}>"), text.find(f"</{t}>")] for t in tags]
    assert tags_module._census(text, tuple(tags)) == expected


def test_tag_census_past_the_walk_limit_counts_instead():
    text = "<" * (tags_module._WALK_LIMIT + 5) + "<answer>x</answer><answer>"
    assert tags_module._census(text, ("answer",)) == [[2, 1, text.find("<answer>"), text.find("</answer>")]]
    assert format_problems(text, ("answer",)) == ["<answer> appears 2× and </answer> 1× (expected once each)"]


# -- bounded time --------------------------------------------------------------------------------------
# hostile text builders of size k, and k of the full-size input, which is the large input of a
# scaling check in CPU time (no wall-clock bound)
ADVERSARIAL = {
    "10MB of <": (lambda k: "<" * k, 10_000_000),
    "1e5 nested answers": (lambda k: "<answer>" * k + "x" + "</answer>" * k, 100_000),
    "1e6 opening answers": (lambda k: "<answer>" * k, 1_000_000),
    "1e6 closing answers": (lambda k: "</answer>" * k, 1_000_000),
    "1e6 empty sections": (lambda k: "<answer></answer>" * k, 1_000_000),
    "almost-tags": (lambda k: "<answer" * k + "</answe" * k, 1_000_000),
}


def _full(name: str) -> str:
    make, full = ADVERSARIAL[name]
    return make(full)


def _parse_every_way(text: str) -> TaggedText:
    extract_section(text, "answer")
    extract_section(text, "answer", allow_unclosed=True)
    return parse_tags(text, ("think", "answer"), only_tags=True)


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_adversarial_inputs_are_parsed_in_linear_time(name: str) -> None:
    make, full = ADVERSARIAL[name]
    parsed = assert_linear(_parse_every_way, make, full // 8)
    assert not parsed.well_formed  # none of these is a valid think/answer completion


def test_nested_sections_content() -> None:
    section = extract_section(_full("1e5 nested answers"), "answer")
    assert section is not None and section.content == "x" + "</answer>" * 99_999
    unclosed = extract_section(_full("1e6 opening answers"), "answer", allow_unclosed=True)
    assert unclosed is not None and unclosed.content == "" and unclosed.start == len("<answer>") * 999_999


def test_docstring_examples() -> None:
    assert doctest.testmod(tags_module).failed == 0
