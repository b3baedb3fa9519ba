"""The toxicology vocabulary contract, normalisation rules and loading."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medreward.vocab.vocabulary as vocabulary_module
from medreward.vocab import (
    VocabClass,
    Vocabulary,
    VocabularyError,
    available_vocabularies,
    load_vocabulary,
    term_key,
)
from scaling import assert_linear

TOXICOLOGY_IDS = (
    "opioids", "benzodiazepines", "ethanol", "stimulants", "cannabinoids", "antidepressants", "antipsychotics",
    "anticholinergics", "acetaminophen", "salicylates", "anticonvulsants", "cardiovascular", "sedative_hypnotics",
    "toxic_alcohols",
)  # fmt: skip


@pytest.fixture(scope="module")
def tox() -> Vocabulary:
    return load_vocabulary("toxicology")


def test_the_fourteen_ids_are_the_contract(tox: Vocabulary) -> None:
    assert tox.ids == TOXICOLOGY_IDS
    assert len(tox) == 14 and list(tox) == list(TOXICOLOGY_IDS)
    assert "opioids" in tox and "opioid" not in tox
    assert tox.display_name("sedative_hypnotics") == "Sedative-hypnotics"
    assert "toxicology" in available_vocabularies()


@pytest.mark.parametrize(
    "raw, ids",
    [
        # class ids and display names
        *[(i, (i,)) for i in TOXICOLOGY_IDS],
        ("Toxic alcohols", ("toxic_alcohols",)),
        ("Sedative-hypnotics", ("sedative_hypnotics",)),
        # synonyms
        ("opiates", ("opioids",)),
        ("narcotics", ("opioids",)),
        ("benzos", ("benzodiazepines",)),
        ("alcohol", ("ethanol",)),
        ("EtOH", ("ethanol",)),
        ("sympathomimetics", ("stimulants",)),
        ("antihistamines", ("anticholinergics",)),
        ("TCAs", ("antidepressants",)),
        ("SSRIs", ("antidepressants",)),
        ("paracetamol", ("acetaminophen",)),
        ("APAP", ("acetaminophen",)),
        ("beta blockers", ("cardiovascular",)),
        ("calcium channel blockers", ("cardiovascular",)),
        ("z-drugs", ("sedative_hypnotics",)),
        ("barbiturates", ("sedative_hypnotics",)),
        ("antiepileptics", ("anticonvulsants",)),
        # member drugs, generic and brand
        ("heroin", ("opioids",)),
        ("fentanyl", ("opioids",)),
        ("oxycodone", ("opioids",)),
        ("OxyContin", ("opioids",)),
        ("Xanax", ("benzodiazepines",)),
        ("alprazolam", ("benzodiazepines",)),
        ("cocaine", ("stimulants",)),
        ("MDMA", ("stimulants",)),
        ("ecstasy", ("stimulants",)),
        ("bath salts", ("stimulants",)),
        ("methamphetamine", ("stimulants",)),
        ("marijuana", ("cannabinoids",)),
        ("THC", ("cannabinoids",)),
        ("amitriptyline", ("antidepressants",)),
        ("sertraline", ("antidepressants",)),
        ("quetiapine", ("antipsychotics",)),
        ("diphenhydramine", ("anticholinergics",)),
        ("Benadryl", ("anticholinergics",)),
        ("Tylenol", ("acetaminophen",)),
        ("aspirin", ("salicylates",)),
        ("oil of wintergreen", ("salicylates",)),
        ("valproic acid", ("anticonvulsants",)),
        ("metoprolol", ("cardiovascular",)),
        ("amlodipine", ("cardiovascular",)),
        ("digoxin", ("cardiovascular",)),
        ("zolpidem", ("sedative_hypnotics",)),
        ("phenobarbital", ("sedative_hypnotics",)),
        ("GHB", ("sedative_hypnotics",)),
        ("liquid ecstasy", ("sedative_hypnotics",)),  # GHB, not MDMA
        ("methanol", ("toxic_alcohols",)),
        ("ethylene glycol", ("toxic_alcohols",)),
        ("isopropanol", ("toxic_alcohols",)),
        ("rubbing alcohol", ("toxic_alcohols",)),
        ("Seroquel XR", ("antipsychotics",)),
    ],
)
def test_synonyms_and_members(tox: Vocabulary, raw: str, ids: tuple[str, ...]) -> None:
    assert tox.normalize(raw) == ids


@pytest.mark.parametrize(
    "raw",
    ["OPIOIDS", "opioid", "Opioid(s)", " opioids. ", "**opioids**", "Opioid overdose", "acute opioid toxicity",
     "opioid toxidrome", "suspected opioids", "opioid-s", "Opioïds"],
)  # fmt: skip
def test_case_punctuation_plural_and_qualifier_tolerance(tox: Vocabulary, raw: str) -> None:
    assert tox.normalize(raw) == ("opioids",)


@pytest.mark.parametrize(
    "raw, ids",
    [
        ("Percocet", ("opioids", "acetaminophen")),
        ("Vicodin", ("opioids", "acetaminophen")),
        ("Tylenol #3", ("opioids", "acetaminophen")),
        ("Tylenol PM", ("acetaminophen", "anticholinergics")),
        ("Excedrin", ("acetaminophen", "salicylates")),
        ("speedball", ("opioids", "stimulants")),
        ("oxycodone/acetaminophen", ("opioids", "acetaminophen")),
        ("heroin + cocaine", ("opioids", "stimulants")),
        ("fentanyl/heroin", ("opioids",)),  # two members of one class: one id
        ("Acetaminophen (Tylenol)", ("acetaminophen",)),
        ("benzodiazepines (e.g., alprazolam)", ("benzodiazepines",)),
        ("(Xanax)", ("benzodiazepines",)),
    ],
)
def test_combinations_map_to_several_ids(tox: Vocabulary, raw: str, ids: tuple[str, ...]) -> None:
    assert tox.normalize(raw) == ids


@pytest.mark.parametrize(
    "raw", ["none", "None.", "no intoxicant", "No substances", "no drugs", "nothing", "no toxic ingestion", "N/A"]
)
def test_none_means_the_empty_set(tox: Vocabulary, raw: str) -> None:
    assert tox.normalize(raw) == ()


@pytest.mark.parametrize(
    "raw",
    ["LSD", "caffeine", "lithium", "ibuprofen", "unicorn dust", "opioids or benzodiazepines", "cocaine/unicorn",
     "unknown", "", "   ", "s", "overdose"],
)  # fmt: skip
def test_out_of_vocabulary_is_none(tox: Vocabulary, raw: str) -> None:
    assert tox.normalize(raw) is None


def test_term_key() -> None:
    assert term_key("Beta-Blockers") == term_key("beta blocker") == "betablocker"
    assert term_key("therapies") == term_key("therapy") == "therapy"
    assert term_key("glass") == "glass"  # "ss" is not a plural
    assert term_key("overdose") == "overdose"  # a qualifier alone is kept
    assert term_key("") == ""


def test_normalisation_is_memoised(tox: Vocabulary) -> None:
    first = tox.normalize("Klonopin")
    assert tox.normalize("Klonopin") is first
    assert tox._cache["Klonopin"] == ("benzodiazepines",)


def test_normalize_all_is_normalize_of_each(tox: Vocabulary) -> None:
    labels = ["Klonopin", "LSD", "none", "oxycodone/APAP", "Klonopin", "never seen before 123"]
    expected = [tox.normalize(label) for label in labels]
    assert tox.normalize_all(labels) == expected
    assert tox.normalize_all([]) == []
    assert tox.normalize_all(["Sublimaze"], drug_ner=True) == [("opioids",)]


def test_drug_ner_fallback_maps_unlisted_brands(tox: Vocabulary) -> None:
    assert tox.normalize("Sublimaze") is None  # a fentanyl brand not in the TOML
    assert tox.normalize("Sublimaze", drug_ner=True) == ("opioids",)
    assert tox.normalize("unicorn dust", drug_ner=True) is None


def test_loading_is_cached(tmp_path: Path) -> None:
    assert load_vocabulary("toxicology") is load_vocabulary("toxicology")
    path = tmp_path / "mini.toml"
    path.write_text(
        'name = "mini"\nnone = ["nothing"]\n'
        '[[class]]\nid = "cats"\nname = "Cats"\nsynonyms = ["feline"]\nmembers = ["tabby"]\n'
        '[[class]]\nid = "dogs"\nmembers = ["beagle"]\n'
        '[combinations]\n"catdog" = ["cats", "dogs"]\n',
        encoding="utf-8",
    )
    mini = load_vocabulary(str(path))
    assert mini is load_vocabulary(path)
    assert mini.ids == ("cats", "dogs")
    assert mini.normalize("Tabbies") == mini.normalize("tabby") == ("cats",)  # "ies" plural
    assert mini.normalize("Felines") == ("cats",)
    assert mini.normalize("catdog") == ("cats", "dogs")
    assert mini.normalize("nothing") == ()


@pytest.mark.parametrize(
    "toml, message",
    [
        ('name = "x"\n', r"at least one \[\[class\]\]"),
        ('[[class]]\nid = "a"\nmembers = ["x"]\n[[class]]\nid = "b"\nmembers = ["X."]\n', "collides"),
        ('[[class]]\nid = "a"\n[[class]]\nid = "a"\n', "appears twice"),
        ('[[class]]\nid = "a b"\n', "must be"),
        ('[[class]]\nid = "a"\n[combinations]\n"ab" = ["a", "zzz"]\n', "unknown ids"),
        ('[[class]]\nid = "a"\ncolour = "red"\n', "unknown keys"),
        ('[[class]]\nid = "a"\nmembers = "x"\n', "list of strings"),
        ('[[class]]\nid = "a"\nmembers = ["!!"]\n', "no letters"),
        ("[[class]\n", "cannot be read"),
    ],
)
def test_bad_vocabulary_files_raise(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(VocabularyError, match=message):
        load_vocabulary(str(path))


def test_unknown_name_and_missing_file() -> None:
    with pytest.raises(VocabularyError, match=r"unknown vocabulary 'nope'.*toxicology"):
        load_vocabulary("nope")
    with pytest.raises(VocabularyError, match="does not exist"):
        load_vocabulary("/no/such/vocab.toml")


def test_build_from_classes() -> None:
    vocab = Vocabulary("mini", [VocabClass("a", "Alpha", synonyms=("first",))], none_terms=("zilch",))
    assert vocab.normalize("FIRST") == ("a",) and vocab.normalize("zilch") == ()
    assert vocab.table["alpha"] == ("a",)


# -- properties ------------------------------------------------------------------------------
@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_normalize_any_text(text: str) -> None:
    tox = load_vocabulary("toxicology")
    ids = tox.normalize(text)
    assert ids is None or (isinstance(ids, tuple) and all(i in tox for i in ids))
    assert len(set(ids or ())) == len(ids or ())


@pytest.mark.parametrize(("unit", "count"), [("(", 1_000_000), ("/", 1_000_000), ("opioids ", 125_000), ("é", 1_000_000)])
def test_megabyte_label_normalises_in_linear_time(tox: Vocabulary, unit: str, count: int) -> None:
    # the megabyte label is the large input of the scaling check (CPU time, not a wall-clock bound)
    assert assert_linear(tox.normalize, lambda k: unit * k, count // 8) is None


def test_docstring_examples() -> None:
    assert doctest.testmod(vocabulary_module).failed == 0
