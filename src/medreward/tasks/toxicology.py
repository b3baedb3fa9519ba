"""Toxicology (DeToxR-style) case generator: acute poly-substance intoxication at ED arrival.

Each case is a paramedic scene narrative (containers found, bystander reports, self-report,
known history — some of it misleading), vital signs, examination findings, an ECG and basic
laboratory values, produced from the toxidrome table ``tasks/data/toxidromes.toml`` (sources
named there). The ground truth is the set of substance classes of the 14-class toxicology
vocabulary (``medreward.vocab``), 0-3 classes per case.

How a case is made (all randomness from one ``random.Random`` per case, seeded from the
generator seed and the case index, so the same seed gives byte-identical output and case
``i`` does not depend on ``n``):

1. the number of classes k is drawn from ``[frequencies] count_weights`` (default 10% none,
   42% one, 33% two, 15% three); classes are drawn without replacement by
   ``class_weights``, and for the 2nd/3rd class ethanol's weight is multiplied by
   ``ethanol_boost`` and classic pairs by their ``pair_boosts`` (co-ingestion with ethanol is
   the commonest). With probability ``config.masking`` a multi-class case starts from a
   *masking pair* (opioid + stimulant, beta-blocker + stimulant, ...). Each class picks an
   effect profile (agent group, e.g. TCA vs SSRI for antidepressants) and an agent.
   k = 0 cases get a non-toxicological mimic (well patient, postictal, sepsis, head injury,
   heat stroke, panic attack);
2. each agent gets a severity s ~ U(0.6, 1.2). **Combination rule**: every finding is
   ``clip(baseline + sum_i s_i * shift_i)`` — effects are signed shifts, summed, so opposing
   effects partially cancel (masking), then clipped to physiological limits. Ordinal exam
   scales (pupils, skin moisture, bowel sounds, reflexes, behaviour) are summed, rounded and
   clipped the same way. Discrete signs are a union: each profile shows its sign with
   probability ``p * (0.4 + 0.6 s)``. Three non-additive rules (``[interactions]``): two or
   more CNS depressants multiply their GCS/RR/SpO2 shifts by 1.25 (synergy); ethanol scales a
   toxic alcohol's anion-gap shift and visual symptoms by 0.3 (alcohol dehydrogenase
   competition); coma (GCS <= 8) hides agitation and the signs that need the patient to speak,
   walk or report a symptom;
3. the history is written: each ingested agent is named with probability ``config.evidence``
   (an empty container, a bystander, the patient, the medication list); noise knobs add a
   misleading item (a bystander naming an absent substance, or a denial of a present one),
   distractor medications in the home (classes not ingested) and drop vital signs;
4. :func:`check_consistency` validates the case; a case that fails is drawn again (next
   attempt seed) — so no case contradicts its reference (e.g. a lone opioid with mydriasis and
   tachycardia, a tinnitus complaint without salicylates, a comatose patient reporting
   blurred vision).

The record: ``id``, ``prompt`` (system + user conversation asking for ``<think>`` reasoning and
an ``<answer>`` with comma-separated class ids or ``none``), ``task: "toxicology"``,
``reference: {"substances": [...]}`` (vocabulary order) and ``case``: the structured findings
(``patient``, ``setting``, ``narrative``, ``history``, ``hours_since_exposure``, ``vitals``,
``exam``, ``ecg``, ``labs``) plus ``case["truth"]``, the hidden generative facts (profiles,
agents, severities, mimic, masking, the role of every history item). Baseline policies may
read the findings but never ``truth`` or ``reference``.

Units: ``hr``/``rr`` per minute, ``sbp``/``dbp`` mmHg, ``spo2`` % on room air, ``temp`` °C,
``glucose`` mg/dL, ``qrs``/``qtc`` ms, ``anion_gap`` mEq/L, ``osmolal_gap`` mOsm/kg, ``alt`` U/L.
A value that was not recorded is ``None``; GCS is always recorded; ``ecg``/``labs`` are
``None`` when not obtained.

>>> cases = generate_toxicology(3, seed=7)
>>> [c["task"] for c in cases], cases[0]["id"]
(['toxicology', 'toxicology', 'toxicology'], 'toxicology-7-00000')
>>> all(check_consistency(c) == [] for c in cases)
True
>>> generate_toxicology(3, seed=7) == cases
True
"""

from __future__ import annotations

import logging
import math
import random
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ..vocab import load_vocabulary
from .base import register_task

__all__ = [
    "CLASS_IDS",
    "NUMERIC_AXES",
    "ORDINAL_AXES",
    "Findings",
    "Hallmark",
    "Profile",
    "ToxicologyConfig",
    "ToxidromeTable",
    "check_consistency",
    "generate_toxicology",
    "iter_toxicology_cases",
    "load_toxidromes",
    "observed_findings",
    "ordinal_level",
    "system_prompt",
]

log = logging.getLogger(__name__)

TASK = "toxicology"
#: The 14 class ids, in the vocabulary's order (a contract: docs/contracts.md).
CLASS_IDS: tuple[str, ...] = (
    "opioids", "benzodiazepines", "ethanol", "stimulants", "cannabinoids", "antidepressants",
    "antipsychotics", "anticholinergics", "acetaminophen", "salicylates", "anticonvulsants",
    "cardiovascular", "sedative_hypnotics", "toxic_alcohols",
)  # fmt: skip

VITAL_AXES = ("hr", "sbp", "dbp", "rr", "spo2", "temp", "gcs", "glucose")
ECG_AXES = ("qrs", "qtc")
LAB_AXES = ("anion_gap", "osmolal_gap", "alt")
NUMERIC_AXES = VITAL_AXES + ECG_AXES + LAB_AXES
#: ordinal exam axes -> (case["exam"] key, level of the first word of the scale)
ORDINAL_AXES: dict[str, tuple[str, int]] = {
    "pupils": ("pupils", -2),
    "skin": ("skin", -2),
    "bowel": ("bowel_sounds", -2),
    "tone": ("reflexes", -1),
    "behaviour": ("behaviour", 0),
}
_DEPRESSANT_AXES = ("gcs", "rr", "spo2")
_SEVERITY = (0.6, 1.2)
_MAX_ATTEMPTS = 200
# |contribution| from which an effect counts as opposed by another one (truth["masked_axes"])
_MASK_MIN = {
    "hr": 15, "sbp": 15, "dbp": 10, "rr": 4, "temp": 0.5, "glucose": 20, "spo2": 4, "gcs": 2,
    "qrs": 15, "qtc": 30, "anion_gap": 6, "osmolal_gap": 10, "alt": 200,
    "pupils": 1, "skin": 1, "bowel": 1, "tone": 1, "behaviour": 1,
}  # fmt: skip
_CAPABILITY_GCS = {"report": 13, "speak": 9, "walk": 14}
_INT_AXES = frozenset(NUMERIC_AXES) - {"temp"}


# -- the toxidrome table --------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hallmark:
    """A predicate on observed findings: ``axis op value`` or ``sign:id``.

    >>> Hallmark.parse("rr < 10").holds({"rr": 7}, set(), {}), Hallmark.parse("sign:tinnitus").holds({}, set(), {})
    (True, False)
    """

    text: str
    axis: str | None = None
    op: str | None = None
    value: float = 0.0
    sign: str | None = None

    @classmethod
    def parse(cls, text: str) -> Hallmark:
        if text.startswith("sign:"):
            return cls(text, sign=text[5:])
        parts = text.split()
        if len(parts) != 3 or parts[1] not in ("<", "<=", ">", ">="):
            raise ValueError(f"hallmark {text!r}: expected 'axis op number' or 'sign:id'")
        return cls(text, axis=parts[0], op=parts[1], value=float(parts[2]))

    def holds(self, numeric: Mapping[str, float | None], signs: set[str], ordinal: Mapping[str, int]) -> bool:
        """True when the finding is observed and satisfies the predicate."""
        if self.sign is not None:
            return self.sign in signs
        observed = ordinal.get(self.axis) if self.axis in ORDINAL_AXES else numeric.get(self.axis)
        if observed is None:
            return False
        return {
            "<": observed < self.value, "<=": observed <= self.value,
            ">": observed > self.value, ">=": observed >= self.value,
        }[self.op]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Agent:
    name: str
    form: str  # pill | street | beverage | liquid | plant | patch | edible


@dataclass(frozen=True)
class Profile:
    """One effect profile of the table: a substance agent group, or a mimic (``cls is None``)."""

    id: str
    cls: str | None
    weight: float
    description: str
    shifts: Mapping[str, float]
    signs: Mapping[str, float]
    hallmarks: tuple[Hallmark, ...]
    agents: tuple[Agent, ...] = ()
    depressant: bool = False
    onset_h: tuple[float, float] = (0.0, 1000.0)
    history: str = ""


@dataclass(frozen=True)
class ToxidromeTable:
    """``tasks/data/toxidromes.toml`` parsed and checked (see that file for the meaning)."""

    baseline: Mapping[str, tuple[float, float]]
    limits: Mapping[str, tuple[float, float]]
    normal: Mapping[str, tuple[float, float]]
    scales: Mapping[str, tuple[str, ...]]
    signs: Mapping[str, Mapping[str, str]]
    count_weights: tuple[float, ...]
    class_weights: Mapping[str, float]
    ethanol_boost: float
    pair_boosts: tuple[tuple[frozenset[str], float], ...]
    masking_pairs: tuple[tuple[str, ...], ...]
    interactions: Mapping[str, float]
    profiles: Mapping[str, Profile]
    mimics: Mapping[str, Profile]
    sources: tuple[Mapping[str, str], ...]

    def profiles_of(self, cls: str) -> list[Profile]:
        return [p for p in self.profiles.values() if p.cls == cls]

    def profile(self, profile_id: str) -> Profile:
        return self.profiles.get(profile_id) or self.mimics[profile_id]


def _profile(entry: Mapping[str, Any], *, mimic: bool, signs: Mapping[str, Any]) -> Profile:
    where = f"toxidromes.toml {'mimic' if mimic else 'profile'} {entry.get('id')!r}"
    shifts = {k: float(v) for k, v in entry.get("shifts", {}).items()}
    unknown = set(shifts) - set(NUMERIC_AXES) - set(ORDINAL_AXES)
    bad_signs = set(entry.get("signs", {})) - set(signs)
    if unknown or bad_signs:
        raise ValueError(f"{where}: unknown axes {sorted(unknown)} / signs {sorted(bad_signs)}")
    hallmarks = tuple(Hallmark.parse(h) for h in entry.get("hallmarks", []))
    for h in hallmarks:
        if (h.sign and h.sign not in signs) or (h.axis and h.axis not in NUMERIC_AXES and h.axis not in ORDINAL_AXES):
            raise ValueError(f"{where}: hallmark {h.text!r} names an unknown sign or axis")
    return Profile(
        id=entry["id"],
        cls=None if mimic else entry["class"],
        weight=float(entry["weight"]),
        description=entry.get("toxidrome") or entry.get("description", ""),
        shifts=shifts,
        signs={k: float(v) for k, v in entry.get("signs", {}).items()},
        hallmarks=hallmarks,
        agents=tuple(Agent(a["name"], a["form"]) for a in entry.get("agents", [])),
        depressant=bool(entry.get("depressant", False)),
        onset_h=tuple(entry.get("onset_h", (0.0, 1000.0))),  # type: ignore[arg-type]
        history=entry.get("history", ""),
    )


@lru_cache(maxsize=1)
def load_toxidromes() -> ToxidromeTable:
    """The packaged toxidrome table (parsed once per process)."""
    text = resources.files(__package__).joinpath("data", "toxidromes.toml").read_text(encoding="utf-8")
    data = tomllib.loads(text)
    signs = data["signs"]
    freq = data["frequencies"]
    profiles = {p["id"]: _profile(p, mimic=False, signs=signs) for p in data["profile"]}
    mimics = {m["id"]: _profile(m, mimic=True, signs=signs) for m in data["mimic"]}
    missing = [c for c in CLASS_IDS if not any(p.cls == c for p in profiles.values())]
    if missing or set(freq["class_weights"]) != set(CLASS_IDS):
        raise ValueError(f"toxidromes.toml: classes without a profile {missing} or class_weights mismatch")
    masking = tuple(tuple(m["profiles"]) for m in data.get("masking_pair", []))
    for pair in masking:
        if any(p not in profiles for p in pair):
            raise ValueError(f"toxidromes.toml: masking pair {pair} names an unknown profile")
    return ToxidromeTable(
        baseline={k: (float(v[0]), float(v[1])) for k, v in data["baseline"].items()},
        limits={k: (float(v[0]), float(v[1])) for k, v in data["limits"].items()},
        normal={k: (float(v[0]), float(v[1])) for k, v in data["normal"].items()},
        scales={k: tuple(v) for k, v in data["scales"].items()},
        signs=signs,
        count_weights=tuple(float(w) for w in freq["count_weights"]),
        class_weights={k: float(v) for k, v in freq["class_weights"].items()},
        ethanol_boost=float(freq["coingestion"]["ethanol_boost"]),
        pair_boosts=tuple((frozenset(b["pair"]), float(b["factor"])) for b in freq["coingestion"]["pair_boosts"]),
        masking_pairs=masking,
        interactions={k: float(v) for k, v in data["interactions"].items()},
        profiles=profiles,
        mimics=mimics,
        sources=tuple(data["source"]),
    )


def ordinal_level(axis: str, word: str | None) -> int | None:
    """Level of an exam word on its ordinal scale (``ordinal_level("pupils", "pinpoint") == -2``)."""
    if word is None:
        return None
    scale = load_toxidromes().scales[axis]
    return scale.index(word) + ORDINAL_AXES[axis][1] if word in scale else None


# -- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class ToxicologyConfig:
    """Knobs of the generator (probabilities in [0, 1]).

    Args:
        misleading_history: a case gets one misleading history item (a bystander or the patient
            naming a substance that was not taken, or denying one that was).
        missing_vitals: each vital sign except GCS is independently "not recorded".
        distractor_meds: the home holds 1-2 medications of classes that were not taken.
        masking: a multi-class case is built from a masking pair (opposing effects).
        evidence: each ingested agent is named somewhere in the history (container, bystander,
            patient, medication list); the rest must be inferred from the findings.
        labs: laboratory values (anion gap, osmolal gap, ALT) were obtained.
        ecg: an ECG was obtained.
        count_weights: override of P(0..3 classes) from the data file.

    >>> ToxicologyConfig(misleading_history=0.0).evidence
    0.6
    """

    misleading_history: float = 0.2
    missing_vitals: float = 0.08
    distractor_meds: float = 0.35
    masking: float = 0.15
    evidence: float = 0.6
    labs: float = 0.75
    ecg: float = 0.85
    count_weights: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        for name in ("misleading_history", "missing_vitals", "distractor_meds", "masking", "evidence", "labs", "ecg"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"ToxicologyConfig.{name} must be a probability in [0, 1], got {value!r}")
        weights = self.count_weights
        if weights is not None and (len(weights) != 4 or any(w < 0 for w in weights) or sum(weights) <= 0):
            raise ValueError("ToxicologyConfig.count_weights must be 4 non-negative weights for 0..3 classes")


# -- one case ----------------------------------------------------------------------------
@dataclass
class _Present:
    """A profile present in the case with its agent and severity."""

    profile: Profile
    agent: Agent | None
    severity: float


@dataclass
class _Draft:
    """The case under construction (internal; written out as the record's ``case``)."""

    present: list[_Present]
    mimic: Profile | None
    sex: str
    age: int
    hours: float
    numeric: dict[str, float] = field(default_factory=dict)
    ordinal: dict[str, int] = field(default_factory=dict)
    signs: list[str] = field(default_factory=list)
    masked_axes: list[str] = field(default_factory=list)


def _weighted(rng: random.Random, items: Sequence[Any], weights: Sequence[float]) -> Any:
    total = sum(weights)
    x = rng.random() * total
    for item, w in zip(items, weights):
        x -= w
        if x < 0:
            return item
    return items[-1]


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def _draw_classes(rng: random.Random, table: ToxidromeTable, k: int, chosen: Sequence[str] = ()) -> list[str]:
    """Classes drawn without replacement until there are ``k``; after the first, ethanol and
    the classic pairs are boosted (``[frequencies.coingestion]``)."""
    chosen = list(chosen)
    while len(chosen) < k:
        candidates = [c for c in CLASS_IDS if c not in chosen]
        weights = []
        for c in candidates:
            w = table.class_weights[c]
            if chosen:
                if c == "ethanol":
                    w *= table.ethanol_boost
                for pair, factor in table.pair_boosts:
                    if c in pair and (pair - {c}) & set(chosen):
                        w *= factor
            weights.append(w)
        chosen.append(_weighted(rng, candidates, weights))
    return chosen


def _profile_of(rng: random.Random, table: ToxidromeTable, cls: str) -> Profile:
    options = table.profiles_of(cls)
    return _weighted(rng, options, [p.weight for p in options])


def _draw_profiles(rng: random.Random, table: ToxidromeTable, config: ToxicologyConfig) -> tuple[list[Profile], Profile | None]:
    counts = config.count_weights or table.count_weights
    k = _weighted(rng, range(4), counts)
    if k == 0:
        mimics = list(table.mimics.values())
        return [], _weighted(rng, mimics, [m.weight for m in mimics])
    if k >= 2 and rng.random() < config.masking:
        profiles = [table.profiles[p] for p in rng.choice(table.masking_pairs)]
        pair_classes = [p.cls for p in profiles if p.cls]
        extra = _draw_classes(rng, table, k, pair_classes)[len(pair_classes):]
        return profiles + [_profile_of(rng, table, cls) for cls in extra], None
    return [_profile_of(rng, table, cls) for cls in _draw_classes(rng, table, k)], None


def _contributions(draft: _Draft, table: ToxidromeTable) -> dict[str, list[float]]:
    """Per axis, each present profile's (and the mimic's) severity-scaled shift."""
    inter = table.interactions
    n_depressants = sum(1 for p in draft.present if p.profile.depressant)
    has_ethanol = any(p.profile.cls == "ethanol" for p in draft.present)
    out: dict[str, list[float]] = {}
    sources = [(p.profile, p.severity) for p in draft.present]
    if draft.mimic is not None:
        sources.append((draft.mimic, 1.0))
    for profile, severity in sources:
        for axis, shift in profile.shifts.items():
            value = shift * severity
            if profile.depressant and n_depressants >= 2 and axis in _DEPRESSANT_AXES:
                value *= inter["depressant_synergy"]
            if has_ethanol and profile.cls == "toxic_alcohols" and axis == "anion_gap":
                value *= inter["ethanol_blocks_toxic_alcohol"]
            out.setdefault(axis, []).append(value)
    return out


def _findings(rng: random.Random, draft: _Draft, table: ToxidromeTable) -> None:
    contributions = _contributions(draft, table)
    for axis in NUMERIC_AXES:
        mean, sd = table.baseline[axis]
        base = rng.gauss(mean, sd) if sd > 0 else mean
        lo, hi = table.limits[axis]
        value = min(hi, max(lo, base + sum(contributions.get(axis, ()))))
        draft.numeric[axis] = _round_half_away(value) if axis in _INT_AXES else round(value, 1)
    # a pulse pressure of at least 15 mmHg
    draft.numeric["dbp"] = max(table.limits["dbp"][0], min(draft.numeric["dbp"], draft.numeric["sbp"] - 15))
    for axis, (_, first) in ORDINAL_AXES.items():
        last = first + len(table.scales[axis]) - 1
        draft.ordinal[axis] = min(last, max(first, _round_half_away(sum(contributions.get(axis, ())))))
    for axis, values in contributions.items():
        if any(v >= _MASK_MIN[axis] for v in values) and any(v <= -_MASK_MIN[axis] for v in values):
            draft.masked_axes.append(axis)

    gcs = draft.numeric["gcs"]
    coma = gcs <= table.interactions["coma_gcs"]
    if coma:
        draft.ordinal["behaviour"] = 0
    has_ethanol = any(p.profile.cls == "ethanol" for p in draft.present)
    sources = [(p.profile, p.severity) for p in draft.present]
    if draft.mimic is not None:
        sources.append((draft.mimic, 1.0))
    seen: set[str] = set()
    for profile, severity in sources:
        for sign, p in profile.signs.items():
            prob = min(1.0, p * (0.4 + 0.6 * severity))
            if has_ethanol and profile.cls == "toxic_alcohols" and sign == "visual_blurring":
                prob *= table.interactions["ethanol_blocks_toxic_alcohol"]
            if rng.random() < prob and sign not in seen:
                needs = table.signs[sign].get("needs")
                if needs is None or gcs >= _CAPABILITY_GCS[needs]:
                    seen.add(sign)
                    draft.signs.append(sign)


# -- history and narrative ------------------------------------------------------------------
_CONTAINER = {
    "pill": [
        "An empty pill bottle labelled {agent} was found next to {him}.",
        "Several empty blister packs of {agent} were found on the bedside table.",
        "Loose {agent} tablets were scattered on the floor beside {him}.",
    ],
    "street": [
        "Police found a small bag in {his} pocket that the roommate says contained {agent}.",
        "Paraphernalia and a wrap labelled '{agent}' were found beside {him}.",
    ],
    "beverage": [
        "Several empty bottles of {agent} were on the table.",
        "An open, half-empty bottle of {agent} was next to {him}.",
    ],
    "liquid": [
        "An open container of {agent} was found in the garage.",
        "A bottle of {agent} was found under the kitchen sink with its cap off.",
    ],
    "plant": ["Crushed {agent} seeds were found in a cup on the table."],
    "edible": ["A half-eaten packet of {agent} was found beside {him}."],
    "patch": ["A chewed {agent} was found in {his} mouth."],
}
_BYSTANDER = {
    "beverage": ["{His} partner reports {he} had been drinking {agent} all afternoon.",
                 "A friend says {he} drank a lot of {agent} at the party."],
    "street": ["A friend reports {he} used {agent} about an hour before {he} collapsed.",
               "A bystander says {he} took {agent} earlier tonight."],
    "other": ["A friend says {he} took {agent} earlier this evening.",
              "{His} sister reports {he} had been taking extra {agent} after an argument."],
}  # fmt: skip
_SELF_REPORT = ["The patient admits to taking {agent}.", "The patient says {he} took 'a handful' of {agent}."]
_RECORDS = ["{His} medication list includes {agent}, and the bottle at home is missing many tablets."]
_MISLEADING = [
    "A bystander believes {he} took {agent}.",
    "A friend insists that {he} only had {agent} tonight.",
    "The caller told the dispatcher it was an overdose of {agent}.",
]
_MISLEADING_SELF = ["The patient claims to have taken {agent}."]
_DENIALS = ["The patient denies taking any drugs or alcohol.", "The patient insists {he} has taken nothing."]
_DENY_AGENT_FAMILY = ["{His} family are adamant that {he} has never used {agent}."]
_DENY_AGENT_SELF = ["The patient denies any {agent}."]
_TRUE_DENIAL = ["The patient denies any ingestion.", "The patient says {he} has not taken anything."]
_DISTRACTOR = [
    "{His} own prescription of {agent} was found in the bathroom cabinet.",
    "The home contains {agent} belonging to a family member.",
    "{His} medication list includes {agent}.",
]
_SETTINGS = [
    "to a private home", "to a shared apartment", "to a public park", "to a nightclub",
    "to a house party", "to a parked car", "to a homeless shelter", "to a workplace",
    "to a hotel room", "to a university dormitory",
]  # fmt: skip


def _pronouns(sex: str) -> dict[str, str]:
    he, his, him = ("he", "his", "him") if sex == "male" else ("she", "her", "her")
    return {"he": he, "his": his, "him": him, "He": he.capitalize(), "His": his.capitalize()}


def _fill(template: str, sex: str, agent: str = "") -> str:
    return template.format(agent=agent, **_pronouns(sex))


def _history_item(
    source: str, stance: str, mentions: list[str], text: str, role: str, classes: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        {"source": source, "stance": stance, "mentions": mentions, "text": text},
        {"role": role, "classes": classes},
    )


def _history(rng: random.Random, draft: _Draft, table: ToxidromeTable, config: ToxicologyConfig) -> tuple[list[dict], list[dict]]:
    """Public history items and, aligned, their hidden roles."""
    items: list[tuple[dict[str, Any], dict[str, Any]]] = []
    sex = draft.sex
    conscious = draft.numeric["gcs"] >= 13
    truth_classes = sorted({p.profile.cls for p in draft.present if p.profile.cls})

    for present in draft.present:
        agent = present.agent
        assert agent is not None and present.profile.cls is not None
        if rng.random() >= config.evidence:
            continue
        kinds = ["container", "bystander"] + (["patient"] if conscious else []) + (["records"] if agent.form == "pill" else [])
        kind = rng.choice(kinds)
        if kind == "container":
            text, stance = _fill(rng.choice(_CONTAINER[agent.form]), sex, agent.name), "found"
        elif kind == "bystander":
            group = agent.form if agent.form in ("beverage", "street") else "other"
            text, stance = _fill(rng.choice(_BYSTANDER[group]), sex, agent.name), "reported"
        elif kind == "patient":
            text, stance = _fill(rng.choice(_SELF_REPORT), sex, agent.name), "reported"
        else:
            text, stance = _fill(rng.choice(_RECORDS), sex, agent.name), "reported"
        items.append(_history_item(kind, stance, [agent.name], text, "evidence", [present.profile.cls]))

    if rng.random() < config.misleading_history:
        if truth_classes and rng.random() < 0.4:  # a denial of what was taken
            if conscious and rng.random() < 0.5:
                text = _fill(rng.choice(_DENIALS), sex)
                items.append(_history_item("patient", "denied", [], text, "misleading", list(truth_classes)))
            else:
                present = rng.choice(draft.present)
                assert present.agent is not None and present.profile.cls is not None
                templates = _DENY_AGENT_FAMILY + (_DENY_AGENT_SELF if conscious else [])
                text = _fill(rng.choice(templates), sex, present.agent.name)
                source = "patient" if text.startswith("The patient") else "family"
                items.append(_history_item(source, "denied", [present.agent.name], text, "misleading", [present.profile.cls]))
        else:  # a substance that was not taken
            cls = _weighted(rng, [c for c in CLASS_IDS if c not in truth_classes],
                            [table.class_weights[c] for c in CLASS_IDS if c not in truth_classes])
            agent = rng.choice([a for p in table.profiles_of(cls) for a in p.agents])
            templates = _MISLEADING + (_MISLEADING_SELF if conscious else [])
            text = _fill(rng.choice(templates), sex, agent.name)
            source = "patient" if text.startswith("The patient") else "bystander"
            items.append(_history_item(source, "reported", [agent.name], text, "misleading", [cls]))
    elif not truth_classes and conscious and rng.random() < 0.5:
        items.append(_history_item("patient", "denied", [], _fill(rng.choice(_TRUE_DENIAL), sex), "denial", []))

    if rng.random() < config.distractor_meds:
        # household medications of classes not taken (prescription pills only)
        free = [
            c for c in CLASS_IDS
            if c not in truth_classes and any(a.form == "pill" for p in table.profiles_of(c) for a in p.agents)
        ]  # fmt: skip
        for _ in range(1 if rng.random() < 0.7 else 2):
            cls = _weighted(rng, free, [table.class_weights[c] for c in free])
            free.remove(cls)
            agent = rng.choice([a for p in table.profiles_of(cls) for a in p.agents if a.form == "pill"])
            text = _fill(rng.choice(_DISTRACTOR), sex, agent.name)
            items.append(_history_item("home", "found", [agent.name], text, "distractor", [cls]))

    rng.shuffle(items)
    return [i for i, _ in items], [r for _, r in items]


def _presentation(draft: _Draft) -> str:
    gcs, behaviour = draft.numeric["gcs"], draft.ordinal["behaviour"]
    if "seizure" in draft.signs:
        return "after a witnessed seizure"
    if gcs <= 8:
        return "found unresponsive"
    if gcs <= 12:
        return "found drowsy and confused"
    if behaviour >= 2:
        return "who was agitated and combative"
    if behaviour == 1:
        return "who was restless and anxious"
    return "feeling unwell"


def _narrative(rng: random.Random, draft: _Draft, history: list[dict[str, Any]], hours_public: float | None) -> str:
    p = _pronouns(draft.sex)
    sentences = [f"EMS were called {rng.choice(_SETTINGS)} for a {draft.age}-year-old {draft.sex} {_presentation(draft)}."]
    if draft.mimic is not None and draft.mimic.history:
        sentences.append(_fill(draft.mimic.history, draft.sex))
    sentences.extend(item["text"] for item in history)
    if hours_public is None:
        sentences.append("The time of any exposure is unknown.")
    else:
        sentences.append(f"{p['He']} was last seen well about {_fmt_hours(hours_public)} before arrival.")
    return " ".join(sentences)


def _fmt_hours(hours: float) -> str:
    if hours < 1:
        return f"{round(hours * 60)} minutes"
    if hours >= 24:
        days = round(hours / 24, 1)
        return f"{days:g} day" + ("" if days == 1 else "s")
    return f"{round(hours):d} hour" + ("" if round(hours) == 1 else "s")


# -- rendering the findings -----------------------------------------------------------------
def _mental_status(gcs: int, behaviour: int, signs: Sequence[str]) -> str:
    if gcs <= 5:
        text = "unresponsive to pain"
    elif gcs <= 8:
        text = "responds to pain only"
    elif gcs <= 12:
        text = "drowsy, rousable to voice, confused"
    elif gcs <= 14:
        text = "lethargic and mildly confused"
    else:
        text = "alert and oriented"
    if behaviour >= 2:
        text = "agitated and combative" if gcs >= 13 else text + ", intermittently agitated"
    elif behaviour == 1:
        text = "restless and anxious" if gcs == 15 else text + ", restless"
    if "hallucinations" in signs:
        text += ", hallucinating"
    return text


def _render_vitals(v: Mapping[str, Any]) -> str:
    def show(key: str, fmt: str) -> str:
        return fmt.format(v[key]) if v.get(key) is not None else ""

    parts = [
        f"HR {v['hr']}/min" if v.get("hr") is not None else "HR not recorded",
        f"BP {v['sbp']}/{v['dbp']} mmHg" if v.get("sbp") is not None and v.get("dbp") is not None else "BP not recorded",
        show("rr", "RR {}/min") or "RR not recorded",
        show("spo2", "SpO2 {}% on room air") or "SpO2 not recorded",
        show("temp", "temperature {:.1f} °C") or "temperature not recorded",
        f"GCS {v['gcs']}",
        show("glucose", "capillary glucose {} mg/dL") or "glucose not measured",
    ]
    return ", ".join(parts)


def _render_exam(exam: Mapping[str, Any], table: ToxidromeTable) -> str:
    parts = [
        f"pupils {exam['pupils']}", f"skin {exam['skin']}", f"bowel sounds {exam['bowel_sounds']}",
        f"reflexes {exam['reflexes']}", f"mental status: {exam['mental_status']}",
    ]
    text = "; ".join(parts) + "."
    if exam["signs"]:
        text += " Also noted: " + "; ".join(table.signs[s]["text"] for s in exam["signs"]) + "."
    return text


def system_prompt() -> str:
    """The system message of every toxicology case (lists the vocabulary)."""
    return (
        "You are a clinical toxicologist supporting emergency physicians. Read the case and decide which "
        "substance classes the patient has taken. Think step by step inside <think>...</think>, then give "
        "the final answer inside <answer>...</answer> as a comma-separated list of class ids chosen from: "
        + ", ".join(CLASS_IDS)
        + ". List every class you believe is involved and no others; answer <answer>none</answer> if no "
        "intoxicant is involved."
    )


def _user_prompt(case: Mapping[str, Any], table: ToxidromeTable) -> str:
    ecg, labs = case["ecg"], case["labs"]
    lines = [
        "Prehospital and emergency department triage report.",
        "",
        f"Scene: {case['narrative']}",
        "",
        f"Vital signs on arrival: {_render_vitals(case['vitals'])}.",
        f"Examination: {_render_exam(case['exam'], table)}",
        f"ECG: {ecg['rhythm']} {ecg['rate']}/min, QRS {ecg['qrs']} ms, QTc {ecg['qtc']} ms."
        if ecg else "ECG: not yet obtained.",
        f"Laboratory: anion gap {labs['anion_gap']} mEq/L, osmolal gap {labs['osmolal_gap']} mOsm/kg, "
        f"ALT {labs['alt']} U/L." if labs else "Laboratory: results pending.",
        "",
        "Which substance classes are involved?",
    ]
    return "\n".join(lines)


def _record(
    index: int, seed: int, draft: _Draft, rng: random.Random, table: ToxidromeTable, config: ToxicologyConfig
) -> dict[str, Any]:
    history, roles = _history(rng, draft, table, config)
    hours_public = round(draft.hours * (1 + rng.uniform(-0.2, 0.2)), 1) if rng.random() < 0.7 else None
    vitals: dict[str, Any] = {}
    for axis in VITAL_AXES:
        missing = axis != "gcs" and rng.random() < config.missing_vitals
        vitals[axis] = None if missing else draft.numeric[axis]
    if vitals["sbp"] is None or vitals["dbp"] is None:  # BP is recorded as a pair
        vitals["sbp"] = vitals["dbp"] = None
    scales = table.scales
    exam = {
        key: scales[axis][draft.ordinal[axis] - first] for axis, (key, first) in ORDINAL_AXES.items()
    }
    exam["mental_status"] = _mental_status(draft.numeric["gcs"], draft.ordinal["behaviour"], draft.signs)
    exam["signs"] = list(draft.signs)
    ecg = None
    if rng.random() < config.ecg:
        hr = draft.numeric["hr"]
        rhythm = "sinus bradycardia" if hr < 60 else "sinus tachycardia" if hr > 100 else "sinus rhythm"
        ecg = {"rhythm": rhythm, "rate": hr, "qrs": draft.numeric["qrs"], "qtc": draft.numeric["qtc"]}
    labs = {axis: draft.numeric[axis] for axis in LAB_AXES} if rng.random() < config.labs else None

    case: dict[str, Any] = {
        "patient": {"age": draft.age, "sex": draft.sex},
        "narrative": "",
        "history": history,
        "hours_since_exposure": hours_public,
        "vitals": vitals,
        "exam": exam,
        "ecg": ecg,
        "labs": labs,
    }
    case["narrative"] = _narrative(rng, draft, history, hours_public)
    case["truth"] = {
        "profiles": [
            {"class": p.profile.cls, "profile": p.profile.id, "agent": p.agent.name if p.agent else None,
             "severity": p.severity}
            for p in draft.present
        ],
        "mimic": draft.mimic.id if draft.mimic else None,
        "hours_since_exposure": draft.hours,
        "masking": bool(draft.masked_axes),
        "masked_axes": sorted(draft.masked_axes),
        "history": roles,
    }  # fmt: skip
    substances = [c for c in CLASS_IDS if any(p.profile.cls == c for p in draft.present)]
    return {
        "id": f"{TASK}-{seed}-{index:05d}",
        "prompt": [
            {"role": "system", "content": system_prompt()},
            {"role": "user", "content": _user_prompt(case, table)},
        ],
        "task": TASK,
        "reference": {"substances": substances},
        "case": case,
    }


def _attempt(index: int, seed: int, attempt: int, table: ToxidromeTable, config: ToxicologyConfig) -> dict[str, Any] | None:
    rng = random.Random(f"{TASK}:{seed}:{index}:{attempt}")
    profiles, mimic = _draw_profiles(rng, table, config)
    lo = max([p.onset_h[0] for p in profiles], default=0.5)
    hi = min([p.onset_h[1] for p in profiles], default=6.0)
    if lo > hi:  # e.g. late acetaminophen hepatotoxicity with a short-acting co-ingestant
        return None
    present = [_Present(p, rng.choice(p.agents), round(rng.uniform(*_SEVERITY), 2)) for p in profiles]
    draft = _Draft(
        present=present,
        mimic=mimic,
        sex=rng.choice(("male", "female")),
        age=rng.randint(16, 85),
        hours=round(rng.uniform(lo, hi), 1),
    )
    _findings(rng, draft, table)
    return _record(index, seed, draft, rng, table, config)


def iter_toxicology_cases(n: int, seed: int, *, config: ToxicologyConfig | None = None) -> Iterator[dict[str, Any]]:
    """Yield ``n`` cases one at a time (same cases as :func:`generate_toxicology`)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    config = config or ToxicologyConfig()
    table = load_toxidromes()
    for index in range(n):
        for attempt in range(_MAX_ATTEMPTS):
            record = _attempt(index, seed, attempt, table, config)
            if record is None:
                continue
            problems = check_consistency(record)
            if not problems:
                if attempt:
                    log.debug("case %d: accepted at attempt %d", index, attempt)
                yield record
                break
            log.debug("case %d attempt %d rejected: %s", index, attempt, "; ".join(problems))
        else:  # pragma: no cover - would mean the table cannot produce a consistent case
            raise RuntimeError(f"toxicology case {index} (seed {seed}): no consistent case in {_MAX_ATTEMPTS} attempts")


@register_task(
    TASK,
    description="Acute poly-substance intoxication (DeToxR-style): scene narrative, vitals, exam, ECG and labs "
    "from a toxidrome table; answer = the 14-class substance set (0-3 classes, 'none' allowed).",
    preset="toxicology",
)
def generate_toxicology(n: int, seed: int, *, config: ToxicologyConfig | None = None) -> list[dict[str, Any]]:
    """``n`` toxicology cases for ``seed`` (deterministic; see the module docstring).

    >>> [case] = generate_toxicology(1, seed=0)
    >>> sorted(case), case["reference"]["substances"] == sorted(case["reference"]["substances"], key=CLASS_IDS.index)
    (['case', 'id', 'prompt', 'reference', 'task'], True)
    """
    return list(iter_toxicology_cases(n, seed, config=config))


# -- consistency ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Findings:
    """The observed (public) findings of a case: numeric values (``None`` = not recorded),
    ordinal exam levels and signs. This is what a baseline may read; it never holds ``truth``.

    >>> [case] = generate_toxicology(1, seed=0)
    >>> f = observed_findings(case["case"])
    >>> f.value("gcs") == case["case"]["vitals"]["gcs"], f.level("pupils") in range(-2, 3)
    (True, True)
    """

    numeric: Mapping[str, float | None]
    ordinal: Mapping[str, int]
    signs: frozenset[str]

    def value(self, axis: str) -> float | None:
        return self.numeric.get(axis)

    def level(self, axis: str) -> int:
        """Ordinal level (0 = normal when the exam word is missing or unknown)."""
        return self.ordinal.get(axis, 0)

    def has(self, sign: str) -> bool:
        return sign in self.signs


def observed_findings(case: Mapping[str, Any]) -> Findings:
    """Read the public findings (vitals, ECG, labs, exam) of a record's ``case`` object.

    The ECG rate stands in for a heart rate that was not recorded with the vital signs.
    """
    vitals = case.get("vitals") or {}
    ecg = case.get("ecg") or {}
    labs = case.get("labs") or {}
    numeric: dict[str, float | None] = {axis: vitals.get(axis) for axis in VITAL_AXES}
    if numeric["hr"] is None and ecg.get("rate") is not None:
        numeric["hr"] = ecg["rate"]
    numeric.update({axis: ecg.get(axis) for axis in ECG_AXES})
    numeric.update({axis: labs.get(axis) for axis in LAB_AXES})
    exam = case.get("exam") or {}
    ordinal = {}
    for axis, (key, _) in ORDINAL_AXES.items():
        level = ordinal_level(axis, exam.get(key))
        if level is not None:
            ordinal[axis] = level
    return Findings(numeric, ordinal, frozenset(exam.get("signs") or ()))


def check_consistency(record: Mapping[str, Any]) -> list[str]:
    """Contradictions between a toxicology case's reference and its findings ([] = consistent).

    Checks that: the reference equals the classes of the hidden profiles (known ids, 0-3, in
    vocabulary order; a mimic exactly when there is none); every abnormal value, every non-normal
    exam level and every sign is explained by a present profile or mimic pushing that way; a lone
    profile or mimic shows at least one of its hallmarks; symptoms are only reported by a patient
    who can report them and agitation is not charted in coma; the exposure time fits each
    profile's onset window; and every history item's role agrees with the reference (evidence
    names a taken class, a distractor or a misleading claim an absent one, a misleading denial a
    taken one).

    >>> [case] = generate_toxicology(1, seed=3)
    >>> check_consistency(case)
    []
    >>> broken = {**case, "reference": {"substances": ["toxic_alcohols", "salicylates"]}}
    >>> bool(check_consistency(broken))
    True
    """
    table = load_toxidromes()
    problems: list[str] = []
    case = record.get("case")
    reference = record.get("reference")
    if not isinstance(case, Mapping) or not isinstance(reference, Mapping):
        return ["record has no 'case' or 'reference' object"]
    truth = case.get("truth") or {}
    substances = reference.get("substances")
    if not isinstance(substances, list):
        return ["reference.substances is not a list"]
    unknown = [s for s in substances if s not in CLASS_IDS]
    if unknown:
        problems.append(f"unknown substance ids {unknown}")
    if len(set(substances)) != len(substances) or len(substances) > 3:
        problems.append("reference.substances must hold 0-3 distinct ids")
    if substances != sorted(set(substances) & set(CLASS_IDS), key=CLASS_IDS.index):
        problems.append("reference.substances is not in vocabulary order")

    present: list[tuple[Profile, float]] = []
    for entry in truth.get("profiles", []):
        profile = table.profiles.get(entry.get("profile"))
        if profile is None:
            problems.append(f"unknown profile {entry.get('profile')!r}")
            continue
        if entry.get("class") != profile.cls:
            problems.append(f"profile {profile.id} belongs to {profile.cls}, not {entry.get('class')}")
        present.append((profile, float(entry.get("severity", 1.0))))
    mimic = table.mimics.get(truth.get("mimic")) if truth.get("mimic") else None
    if truth.get("mimic") and mimic is None:
        problems.append(f"unknown mimic {truth.get('mimic')!r}")
    truth_classes = {p.cls for p, _ in present}
    if truth_classes != set(substances):
        problems.append(f"reference {sorted(substances)} differs from the profiles' classes {sorted(truth_classes)}")
    if bool(mimic) == bool(present):
        problems.append("a case has a mimic exactly when it has no substance")
    explainers = [p for p, _ in present] + ([mimic] if mimic else [])

    findings = observed_findings(case)
    numeric, ordinal, signs = dict(findings.numeric), dict(findings.ordinal), set(findings.signs)
    for axis in NUMERIC_AXES:
        value = numeric[axis]
        if value is None:
            continue
        lo, hi = table.limits[axis]
        if not lo <= value <= hi:
            problems.append(f"{axis} {value} outside physiological limits {lo}-{hi}")
        low, high = table.normal[axis]
        direction = -1 if value < low else 1 if value > high else 0
        if direction and not any(p.shifts.get(axis, 0) * direction > 0 for p in explainers):
            problems.append(f"{axis} {value} is {'low' if direction < 0 else 'high'} but nothing present pushes it that way")
    for axis, level in ordinal.items():
        if level and not any(p.shifts.get(axis, 0) * level > 0 for p in explainers):
            key = ORDINAL_AXES[axis][0]
            problems.append(f"{key} '{case['exam'][key]}' is not explained by anything present")
    for axis, (key, _) in ORDINAL_AXES.items():
        if axis not in ordinal:
            problems.append(f"exam.{key} {(case.get('exam') or {}).get(key)!r} is not a word of its scale")
    for sign in sorted(signs):
        if sign not in table.signs:
            problems.append(f"unknown sign {sign!r}")
        elif not any(sign in p.signs for p in explainers):
            problems.append(f"sign {sign!r} is not produced by anything present")
    gcs = numeric["gcs"]
    if not isinstance(gcs, int) or not 3 <= gcs <= 15:
        problems.append(f"GCS {gcs!r} must be an integer 3-15")
    else:
        for sign in sorted(signs & set(table.signs)):
            needs = table.signs[sign].get("needs")
            if needs and gcs < _CAPABILITY_GCS[needs]:
                problems.append(f"sign {sign!r} needs a patient who can {needs} (GCS {gcs})")
        if gcs <= table.interactions["coma_gcs"] and ordinal.get("behaviour", 0) > 0:
            problems.append(f"agitation charted in coma (GCS {gcs})")
    if len(explainers) == 1 and explainers[0].hallmarks:
        only = explainers[0]
        if not any(h.holds(numeric, signs, ordinal) for h in only.hallmarks):
            problems.append(f"lone {only.id} shows none of its hallmarks {[h.text for h in only.hallmarks]}")
    hours = truth.get("hours_since_exposure")
    if hours is not None:
        for p, _ in present:
            if not p.onset_h[0] <= hours <= p.onset_h[1]:
                problems.append(f"{hours} h since exposure is outside the onset window of {p.id} {p.onset_h}")

    problems.extend(_check_history(case, truth, set(substances)))
    return problems


def _check_history(case: Mapping[str, Any], truth: Mapping[str, Any], reference: set[str]) -> list[str]:
    vocab = load_vocabulary("toxicology")
    history = case.get("history") or []
    roles = truth.get("history") or []
    if len(roles) != len(history):
        return [f"{len(history)} history items but {len(roles)} hidden roles"]
    problems = []
    gcs = (case.get("vitals") or {}).get("gcs")
    for i, (item, role) in enumerate(zip(history, roles, strict=True)):
        if item.get("source") == "patient" and isinstance(gcs, int) and gcs < _CAPABILITY_GCS["report"]:
            problems.append(f"history item {i}: a statement by a patient with GCS {gcs}")
        named: set[str] = set()
        for mention in item.get("mentions", []):
            ids = vocab.normalize(mention)
            if not ids:
                problems.append(f"history item {i}: mention {mention!r} is not a vocabulary substance")
            else:
                named.update(ids)
        classes = set(role.get("classes", []))
        if named and named != classes:
            problems.append(f"history item {i}: mentions map to {sorted(named)}, its role says {sorted(classes)}")
        kind, stance = role.get("role"), item.get("stance")
        if kind == "evidence" and not (classes and classes <= reference and stance in ("found", "reported")):
            problems.append(f"history item {i}: evidence for {sorted(classes)} not in the reference")
        elif kind == "distractor" and classes & reference:
            problems.append(f"history item {i}: distractor {sorted(classes)} was in fact taken")
        elif kind == "misleading" and stance == "reported" and classes & reference:
            problems.append(f"history item {i}: 'misleading' report of {sorted(classes)} is true")
        elif kind == "misleading" and stance == "denied" and not (reference and classes <= reference):
            problems.append(f"history item {i}: 'misleading' denial of {sorted(classes)} is true")
        elif kind == "denial" and (reference if not classes else classes & reference):
            problems.append(f"history item {i}: denial contradicts the reference")
        elif kind not in ("evidence", "distractor", "misleading", "denial"):
            problems.append(f"history item {i}: unknown role {kind!r}")
    return problems
