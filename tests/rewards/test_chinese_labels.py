"""Chinese answers (issue 15, item 10): ``classification`` with labels in any script (阳性/阴性 share 性
and must never be confused), the toxicology vocabulary's Chinese names through ``multilabel``, mixed
scripts, and negation (English as before; a few Chinese negations right before a class name)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.records import Rollout, Status
from medreward.rewards.classification import Classification, class_tokens
from medreward.rewards.multilabel import MultiLabel
from medreward.vocab import load_vocabulary
from scaling import assert_linear

POS, NEG = "阳性", "阴性"


@pytest.fixture(scope="module")
def test_result() -> Classification:
    return Classification(classes=[POS, NEG], synonyms={POS: ["positive"], NEG: ["negative"]})


@pytest.fixture(scope="module")
def tox() -> MultiLabel:
    return MultiLabel(vocabulary="toxicology", field="substances")


def classify(component: Classification, answer: str, label: str):
    return component.score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"label": label}))


def test_tokens_split_cjk_characters():
    assert class_tokens(POS) == ("阳", "性") and class_tokens(NEG) == ("阴", "性")
    assert class_tokens("结果：阳性。") == ("结", "果", "阳", "性")
    assert class_tokens("Result：POSITIVE（阳性）") == ("result", "positive", "阳", "性")


@pytest.mark.parametrize(
    "answer, predicted",
    [
        (POS, POS), (NEG, NEG),
        ("结果为阳性。", POS), ("检测结果：阴性", NEG),  # no spaces: found inside the sentence
        ("阳 性", POS),  # spacing between characters does not matter
        ("Result: 阳性 (positive)", POS),  # mixed scripts naming one class
        ("positive", POS), ("The test is negative.", NEG),
        ("非阳性，阴性", NEG), ("不是阳性，是阴性", NEG),  # a Chinese negation right before the name
        ("not 阳性; 阴性", NEG),  # English negation before a Chinese name
    ],
)  # fmt: skip
def test_positive_and_negative_are_never_confused(test_result, answer, predicted):
    result = classify(test_result, answer, predicted)
    assert result.status is Status.OK and result.info["predicted"] == predicted and result.value == 1.0
    other = NEG if predicted == POS else POS
    assert classify(test_result, answer, other).value == 0.0


@pytest.mark.parametrize(
    "answer, reason",
    [
        ("性", "no class named"),  # the shared character alone names nothing
        ("阳", "no class named"),
        ("非阳性", "no class named"),
        ("阳性或阴性", "several classes named"),
        ("阳性 but negative", "several classes named"),
    ],
)
def test_partial_negated_and_ambiguous_answers(test_result, answer, reason):
    result = classify(test_result, answer, POS)
    assert result.value == 0.0 and result.info["reason"] == reason


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="阳阴性结果为是 ，。", max_size=30))
def test_a_class_is_mentioned_exactly_when_its_name_occurs(answer):
    # 阳性 and 阴性 cannot overlap in a string, and the alphabet has no negation, so the mentions
    # are exactly the names that occur as substrings once spaces and punctuation are removed
    component = Classification(classes=[POS, NEG])
    squeezed = "".join(c for c in answer if c not in " ，。")
    assert set(component.mentions(answer)) == {name for name in (POS, NEG) if name in squeezed}


def test_three_character_names_and_longest_match():
    triage = Classification(classes=["紧急", "非紧急", "危重"])
    assert triage.mentions("该患者属于非紧急") == ["非紧急"]  # one mention, not a negated 紧急
    assert triage.mentions("患者情况危重，紧急处理") == ["危重", "紧急"]


def test_long_chinese_answers_cost_linear_time(test_result):
    result = assert_linear(lambda answer: classify(test_result, answer, NEG), lambda k: "患者结果" * k + NEG, 20_000)
    assert result.value == 1.0


# -- the toxicology vocabulary in Chinese ----------------------------------------------------------
CLASS_NAMES_ZH = {
    "opioids": "阿片类", "benzodiazepines": "苯二氮䓬类", "ethanol": "乙醇", "stimulants": "兴奋剂",
    "cannabinoids": "大麻类", "antidepressants": "抗抑郁药", "antipsychotics": "抗精神病药",
    "anticholinergics": "抗胆碱能药", "acetaminophen": "对乙酰氨基酚", "salicylates": "水杨酸盐",
    "anticonvulsants": "抗惊厥药", "cardiovascular": "心血管药物", "sedative_hypnotics": "镇静催眠药",
    "toxic_alcohols": "有毒醇类",
}  # fmt: skip
DRUGS_ZH = {
    "海洛因": "opioids", "芬太尼": "opioids", "曲马多": "opioids", "地西泮": "benzodiazepines",
    "阿普唑仑": "benzodiazepines", "苯二氮卓类": "benzodiazepines", "酒精": "ethanol", "冰毒": "stimulants",
    "可卡因": "stimulants", "大麻": "cannabinoids", "阿米替林": "antidepressants", "喹硫平": "antipsychotics",
    "苯海拉明": "anticholinergics", "扑热息痛": "acetaminophen", "阿司匹林": "salicylates",
    "丙戊酸钠": "anticonvulsants", "地高辛": "cardiovascular", "β受体阻滞剂": "cardiovascular",
    "唑吡坦": "sedative_hypnotics", "甲醇": "toxic_alcohols", "乙二醇": "toxic_alcohols",
}  # fmt: skip


def test_every_class_and_common_drugs_have_chinese_names():
    vocab = load_vocabulary("toxicology")
    assert set(CLASS_NAMES_ZH) == set(vocab.ids)
    for class_id, name in CLASS_NAMES_ZH.items():
        assert vocab.normalize(name) == (class_id,), name
    for drug, class_id in DRUGS_ZH.items():
        assert vocab.normalize(drug) == (class_id,), drug
    # Chinese qualifiers drop like "overdose"/"acute"; the Chinese "none" answers are the empty set
    assert vocab.normalize("急性阿片类中毒") == ("opioids",) and vocab.normalize("对乙酰氨基酚过量") == ("acetaminophen",)
    assert vocab.normalize("无") == () and vocab.normalize("未检出") == () and vocab.normalize("阴性") == ()
    assert vocab.normalize("中毒") is None  # a qualifier alone names nothing


@pytest.mark.parametrize(
    "answer, truth, value, predicted",
    [
        ("阿片类、乙醇", ["opioids", "ethanol"], 1.0, ["opioids", "ethanol"]),
        ("答案：急性阿片类中毒，苯二氮䓬类药物。", ["opioids", "benzodiazepines"], 1.0, ["opioids", "benzodiazepines"]),
        ("- 海洛因\n- 地西泮", ["opioids", "benzodiazepines"], 1.0, ["opioids", "benzodiazepines"]),
        ("opioids、乙醇", ["opioids", "ethanol"], 1.0, ["opioids", "ethanol"]),  # mixed scripts
        ("泰诺；阿司匹林", ["acetaminophen"], 2 / 3, ["acetaminophen", "salicylates"]),
        ("无", [], 1.0, []),
        ("阿片类", ["opioids", "ethanol"], 2 / 3, ["opioids"]),
    ],
)
def test_chinese_multilabel_answers(tox, answer, truth, value, predicted):
    result = tox.score_one(Rollout(completion=f"<answer>{answer}</answer>", reference={"substances": truth}))
    assert result.status is Status.OK and result.value == pytest.approx(value)
    assert result.info["predicted"] == predicted


def test_negation_english_as_before_chinese_not_read(tox):
    english = tox.score_one(
        Rollout(completion="<answer>阿片类; benzodiazepines excluded</answer>", reference={"substances": ["opioids"]})
    )
    assert english.value == 1.0 and english.info["negated"] == ["benzodiazepines"]
    # Chinese negation is not read by the label list parser (documented): "排除苯二氮䓬类" (benzodiazepines
    # excluded) stays one label outside the vocabulary, a hallucination, never a benzodiazepine
    chinese = tox.score_one(
        Rollout(completion="<answer>阿片类、排除苯二氮䓬类</answer>", reference={"substances": ["opioids"]})
    )
    assert chinese.info["predicted"] == ["opioids"] and chinese.info["unknown"] == ["排除苯二氮䓬类"]
    assert chinese.value == pytest.approx(2 / 3)
