"""Baseline policies for the ``toxicology`` task.

* ``toxidrome`` — a rule-based toxidrome classifier: points for each class from the vital
  signs, ECG, labs and examination (the textbook toxidrome patterns of Goldfrank's /
  Holstege & Borek, written independently of the generator's table), then every class whose
  evidence reaches its threshold (at most 3). Reads :func:`~medreward.tasks.toxicology.observed_findings`
  only — never ``reference`` nor ``case["truth"]``.
* ``history`` — a history-only reader (a DeToxR-style history-only comparison; the paper's method
  section was not read; docs/formulas.md#multi-label-set-agreement): the classes of the substances the scene report
  names (containers, bystanders, the patient, the medication list), mapped through the toxicology
  vocabulary; denials are skipped. It believes distractors and misleading reports and misses what
  nobody mentioned.
* ``hedge`` — lists all 14 classes (recall 1, precision ≈ 0.1): what a set reward must not pay.
* ``majority`` — always the most frequent class (``ethanol``).
* ``empty`` — format-correct, answers ``none`` every time (right only on the no-intoxicant cases).
* ``format_only`` — format-correct, answer names no class ("undetermined"): isolates the format
  component (reward = the format weight).

Every completion is ``<think>short reasoning</think>\\n<answer>ids</answer>``.

>>> from medreward.tasks.toxicology import generate_toxicology
>>> import random
>>> [case] = generate_toxicology(1, seed=0)
>>> completion = toxidrome_policy(case, random.Random(0))
>>> completion.startswith("<think>") and "<answer>" in completion
True
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RecordError
from ..records import conversation_text
from ..tasks.toxicology import CLASS_IDS, Findings, observed_findings
from ..vocab import load_vocabulary, term_key
from .base import register_policy

__all__ = ["Evidence", "history_classes", "toxidrome_classes", "toxidrome_evidence"]

TASK = "toxicology"
_MAX_CLASSES = 3
# Evidence points a class needs before the toxidrome policy names it.
_THRESHOLD = {c: 3.0 for c in CLASS_IDS} | {"stimulants": 3.5, "anticholinergics": 3.5}


@dataclass
class Evidence:
    """Points for one class and the findings that gave them (for the reasoning text)."""

    points: float = 0.0
    reasons: list[str] = field(default_factory=list)

    def add(self, points: float, reason: str) -> None:
        self.points += points
        if points > 0:
            self.reasons.append(reason)


def _findings(case: Mapping[str, Any]) -> Findings:
    structured = case.get("case")
    if not isinstance(structured, Mapping) or not isinstance(structured.get("vitals"), Mapping):
        raise RecordError("the toxidrome policy needs the generator's structured 'case' (vitals, exam) in each record")
    return observed_findings(structured)


def toxidrome_evidence(f: Findings) -> dict[str, Evidence]:
    """Evidence points per class from the observed findings (rules per toxidrome).

    >>> from medreward.tasks.toxicology import Findings
    >>> f = Findings({"rr": 6, "gcs": 8}, {"pupils": -2, "bowel": -1}, frozenset())
    >>> round(toxidrome_evidence(f)["opioids"].points, 1)
    6.0
    """
    ev = {c: Evidence() for c in CLASS_IDS}

    def v(axis: str) -> float | None:
        return f.value(axis)

    def lt(axis: str, x: float) -> bool:
        value = v(axis)
        return value is not None and value < x

    def gt(axis: str, x: float) -> bool:
        value = v(axis)
        return value is not None and value > x

    pupils, skin, bowel, tone, behaviour = (f.level(a) for a in ("pupils", "skin", "bowel", "tone", "behaviour"))
    odor = f.has("odor_ethanol")

    # opioid toxidrome: miosis, respiratory depression, CNS depression, hypoactive bowel
    e = ev["opioids"]
    if pupils == -2:
        e.add(3, "pinpoint pupils")
    elif pupils == -1:
        e.add(1.5, "small pupils")
    if lt("rr", 10):
        e.add(2, f"respiratory depression (RR {v('rr')}/min)")
    elif lt("rr", 12):
        e.add(1, f"slow breathing (RR {v('rr')}/min)")
    if lt("gcs", 13):
        e.add(0.5, f"depressed consciousness (GCS {v('gcs')})")
    if bowel < 0:
        e.add(0.5, "hypoactive bowel sounds")
    if pupils < 0 and lt("hr", 50) and not lt("rr", 10):
        e.add(-1, "")  # miosis with marked bradycardia and preserved breathing: think clonidine

    # ethanol: the breath, slurred speech, flushing, an osmolal gap without acidosis
    e = ev["ethanol"]
    if odor:
        e.add(3.5, "odour of alcohol")
    if f.has("slurred_speech"):
        e.add(0.5, "slurred speech")
    if f.has("flushed"):
        e.add(0.5, "flushed face")
    if gt("osmolal_gap", 14) and not gt("anion_gap", 16):
        e.add(1, f"osmolal gap {v('osmolal_gap')} without acidosis")

    # sedative-hypnotic pattern: CNS depression with near-normal vital signs, pupils, reflexes
    # down; less likely when something else explains the depressed consciousness
    e = ev["benzodiazepines"]
    if lt("gcs", 13):
        e.add(2, f"CNS depression (GCS {v('gcs')})")
    elif lt("gcs", 14):
        e.add(1, f"mild CNS depression (GCS {v('gcs')})")
    if pupils == 0 and not lt("rr", 10):
        e.add(1, "mid-size pupils and preserved breathing")
    if not (lt("hr", 55) or gt("hr", 100) or lt("sbp", 90)):
        e.add(0.5, "near-normal haemodynamics")
    if tone < 0:
        e.add(0.5, "hyporeflexia")
    for sign in ("slurred_speech", "ataxia"):
        if f.has(sign):
            e.add(0.4, sign.replace("_", " "))
    if odor and not lt("gcs", 11):
        e.add(-1.5, "")  # ethanol explains mild CNS depression
    if gt("hr", 100) or gt("rr", 22):
        e.add(-1, "")  # sedation with tachycardia or tachypnoea: another agent
    if gt("temp", 38.0):
        e.add(-1.5, "")  # fever: infection, heat or a hypermetabolic toxidrome
    if gt("anion_gap", 16) or (gt("osmolal_gap", 14) and not odor):
        e.add(-1, "")  # a gap acidosis / osmolal gap explains the CNS depression better
    if any(f.has(s) for s in ("scalp_hematoma", "anisocoria", "tongue_laceration", "incontinence", "productive_cough")):
        e.add(-2, "")  # signs of a non-toxic cause (trauma, seizure, infection)
    if f.has("nystagmus") and tone >= 0 and not odor:
        e.add(-0.5, "")  # nystagmus with preserved reflexes: anticonvulsants

    # sympathomimetic: tachycardia, hypertension, mydriasis, diaphoresis, agitation
    e = ev["stimulants"]
    if gt("hr", 110):
        e.add(1, f"tachycardia ({v('hr')}/min)")
    if gt("sbp", 160):
        e.add(1, f"hypertension ({v('sbp')} mmHg)")
    if pupils >= 1:
        e.add(1, "mydriasis")
    if skin >= 1:
        e.add(1.5, "diaphoresis")
    if behaviour >= 1:
        e.add(1, "agitation")
    if gt("temp", 38.0):
        e.add(0.5, f"hyperthermia ({v('temp')} °C)")
    for sign in ("chest_pain", "bruxism"):
        if f.has(sign):
            e.add(1, sign.replace("_", " "))
    if skin <= -1:
        e.add(-2, "")  # dry skin: anticholinergic, not sympathomimetic
    if tone >= 2 or bowel >= 1:
        e.add(-1.5, "")  # clonus or hyperactive bowel: serotonergic

    # anticholinergic: dry skin, mydriasis, absent bowel sounds, retention, delirium
    e = ev["anticholinergics"]
    if skin <= -1:
        e.add(2.5, "dry skin and mucosa")
    if bowel <= -1:
        e.add(1.5 if bowel == -2 else 1, "absent/hypoactive bowel sounds")
    if pupils >= 1:
        e.add(1, "mydriasis")
    for sign, pts in (("urinary_retention", 1.5), ("hallucinations", 1), ("flushed", 0.5), ("dry_mouth", 0.5)):
        if f.has(sign):
            e.add(pts, sign.replace("_", " "))
    if gt("hr", 100):
        e.add(0.5, "tachycardia")
    if gt("qrs", 110):
        e.add(-1.5, "")  # QRS widening with anticholinergic signs: a tricyclic

    # antidepressants: TCA (QRS widening, seizures), serotonin toxicity (clonus), bupropion
    e = ev["antidepressants"]
    if gt("qrs", 110):
        e.add(2.5 + (0.5 if gt("qrs", 130) else 0), f"QRS widening ({v('qrs')} ms)")
        if skin <= -1 or pupils >= 1:
            e.add(1, "with anticholinergic features")
    if tone >= 2:
        e.add(3, "inducible clonus")
    elif tone == 1:
        e.add(1.5, "hyperreflexia")
    for sign, pts in (("tremor", 0.5), ("myoclonus", 0.5), ("shivering", 1)):
        if f.has(sign):
            e.add(pts, sign)
    if bowel >= 1:
        e.add(1.5, "hyperactive bowel sounds")
    if f.has("seizure"):
        e.add(1, "seizure")

    # cannabinoids: conjunctival injection
    e = ev["cannabinoids"]
    if f.has("conjunctival_injection"):
        e.add(3.5, "conjunctival injection")
    if gt("hr", 100):
        e.add(0.5, "tachycardia")
    if f.has("dry_mouth"):
        e.add(0.3, "dry mouth")

    # antipsychotics: dystonia/rigidity, QTc prolongation, hypotension with reflex tachycardia
    e = ev["antipsychotics"]
    if f.has("dystonia"):
        e.add(3.5, "acute dystonia")
    if f.has("rigidity"):
        e.add(2.5, "rigidity")
    if gt("qtc", 470):
        e.add(1.5 + (0.5 if gt("qtc", 500) else 0), f"QTc prolongation ({v('qtc')} ms)")
    if lt("sbp", 90) and gt("hr", 100):
        e.add(1.5, "hypotension with tachycardia")
    elif lt("gcs", 13) and gt("hr", 95) and lt("sbp", 115) and not gt("qrs", 110):
        e.add(1.5, "sedation with tachycardia and soft blood pressure")
    if lt("gcs", 13):
        e.add(0.5, "sedation")
    if pupils == -1:
        e.add(0.3, "small pupils")

    # acetaminophen: silent early; hepatotoxicity late
    e = ev["acetaminophen"]
    if gt("alt", 1000):
        e.add(3.5, f"ALT {v('alt')} U/L")
    elif gt("alt", 100):
        e.add(2, f"raised ALT ({v('alt')} U/L)")
    for sign, pts in (("ruq_tenderness", 2), ("jaundice", 1.5)):
        if f.has(sign):
            e.add(pts, sign.replace("_", " "))

    # salicylates: tinnitus, hyperpnoea with normal saturation, anion-gap acidosis
    e = ev["salicylates"]
    if f.has("tinnitus"):
        e.add(3.5, "tinnitus")
    if gt("rr", 22) and not lt("spo2", 94):
        e.add(1.5, f"tachypnoea (RR {v('rr')}/min) with normal SpO2")
    if gt("anion_gap", 16):
        e.add(1, f"anion gap {v('anion_gap')}")
    if f.has("vomiting"):
        e.add(0.5, "vomiting")
    if gt("temp", 38.0):
        e.add(0.3, "hyperthermia")

    # anticonvulsants: cerebellar signs without alcohol
    e = ev["anticonvulsants"]
    if f.has("nystagmus"):
        e.add(2.5 if not odor else 0.5, "nystagmus")
        if tone >= 0:
            e.add(0.5, "with preserved reflexes")
        else:
            e.add(-1, "")  # nystagmus with hyporeflexia: a sedative-hypnotic
    if f.has("ataxia"):
        e.add(0.7, "ataxia")
    if lt("gcs", 14):
        e.add(0.5, "CNS depression")
    if f.has("slurred_speech") and not odor:
        e.add(0.3, "slurred speech")

    # cardiovascular drugs: bradycardia and hypotension; CCB hyperglycaemia; digoxin vision
    e = ev["cardiovascular"]
    brady, hypo = lt("hr", 55), lt("sbp", 90)
    if brady:
        e.add(2, f"bradycardia ({v('hr')}/min)")
    if hypo:
        e.add(2, f"hypotension ({v('sbp')} mmHg)")
    if brady and hypo:
        e.add(1, "bradycardia with hypotension")
    elif lt("hr", 65) and lt("sbp", 100):
        e.add(1.5, "relative bradycardia with low blood pressure")
    if lt("sbp", 100) and gt("glucose", 150):
        e.add(1.5, f"hyperglycaemia ({v('glucose')} mg/dL) with low blood pressure")
    if f.has("xanthopsia"):
        e.add(3, "yellow vision")
    if brady and pupils < 0 and not lt("rr", 10):
        e.add(1, "miosis with bradycardia but preserved breathing")

    # other sedative-hypnotics: barbiturate hypothermic coma and bullae; GHB coma with bradycardia
    e = ev["sedative_hypnotics"]
    if lt("temp", 35.5) and lt("gcs", 9):
        e.add(2.5, f"hypothermic coma ({v('temp')} °C)")
    if f.has("bullae"):
        e.add(3, "bullae")
    if lt("gcs", 9) and lt("hr", 60) and f.has("myoclonus"):
        e.add(2.5, "coma with bradycardia and myoclonus")
    elif lt("gcs", 9) and lt("hr", 60) and pupils >= -1 and not lt("rr", 8):
        e.add(1, "deep coma with bradycardia")

    # toxic alcohols: visual symptoms, anion and osmolal gaps, acetone without acidosis
    e = ev["toxic_alcohols"]
    if f.has("visual_blurring"):
        e.add(3.5, "blurred vision")
    if f.has("acetone_odor"):
        e.add(3, "acetone odour")
    if gt("anion_gap", 20) and not f.has("tinnitus"):
        e.add(1.5, f"anion gap {v('anion_gap')}")
    if gt("osmolal_gap", 20):
        e.add(1 if odor else 2, f"osmolal gap {v('osmolal_gap')}")
    if gt("anion_gap", 16) and gt("osmolal_gap", 14):
        e.add(1, "anion and osmolal gaps together")
    return ev


def toxidrome_classes(f: Findings) -> tuple[list[str], dict[str, Evidence]]:
    """The classes the toxidrome policy names (best first, at most 3) and all the evidence."""
    ev = toxidrome_evidence(f)
    chosen = [c for c in CLASS_IDS if ev[c].points >= _THRESHOLD[c]]
    chosen.sort(key=lambda c: (-ev[c].points, CLASS_IDS.index(c)))
    return chosen[:_MAX_CLASSES], ev


_NEGATION = ("denies", "denied", "never", "adamant", "has not taken", "nothing")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\-]*")
_MAX_NGRAM = 4


def _scan_text(text: str) -> list[str]:
    """Vocabulary classes named in free text (fallback for records without structured history).

    Longest n-gram first per position; sentences with a denial are skipped.
    """
    vocab = load_vocabulary("toxicology")
    found: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+", text[:20000]):
        if any(neg in sentence.casefold() for neg in _NEGATION):
            continue
        words = _WORD.findall(sentence)
        i = 0
        while i < len(words):
            for n in range(min(_MAX_NGRAM, len(words) - i), 0, -1):
                ids = vocab.table.get(term_key(" ".join(words[i : i + n])))
                if ids:
                    found.extend(ids)
                    i += n
                    break
            else:
                i += 1
    return list(dict.fromkeys(found))


def history_classes(case: Mapping[str, Any]) -> list[str]:
    """Classes of the substances the history names as found or reported (not denied).

    Uses the structured ``case["history"]`` items (their ``mentions`` and ``stance``) when
    present, else scans the scene text of the prompt.

    >>> history_classes({"case": {"history": [
    ...     {"stance": "found", "mentions": ["Percocet"]}, {"stance": "denied", "mentions": ["vodka"]}]}})
    ['opioids', 'acetaminophen']
    """
    vocab = load_vocabulary("toxicology")
    structured = case.get("case")
    if isinstance(structured, Mapping) and isinstance(structured.get("history"), list):
        found: list[str] = []
        for item in structured["history"]:
            if not isinstance(item, Mapping) or item.get("stance") == "denied":
                continue
            for mention in item.get("mentions") or ():
                found.extend(vocab.normalize(str(mention)) or ())
        ids = set(found)
    else:
        prompt = case.get("prompt")
        text = conversation_text(prompt, roles=("user",)) if isinstance(prompt, list) else str(prompt or "")
        scene = text.split("Scene:", 1)[1].split("\n\n", 1)[0] if "Scene:" in text else text
        ids = set(_scan_text(scene))
    return [c for c in CLASS_IDS if c in ids]


def _completion(reasoning: str, classes: list[str] | tuple[str, ...]) -> str:
    answer = ", ".join(classes) if classes else "none"
    return f"<think>{reasoning}</think>\n<answer>{answer}</answer>"


_OPENERS = ("Reviewing the findings.", "Toxidrome assessment.", "Systematic review of vitals and exam.")


@register_policy(TASK, "toxidrome", description="Rule-based toxidrome classifier from vitals, ECG, labs and exam "
                 "(reads the structured findings only, never the reference or the hidden truth).")
def toxidrome_policy(case: dict[str, Any], rng: random.Random) -> str:
    classes, ev = toxidrome_classes(_findings(case))
    lines = [rng.choice(_OPENERS)]
    for c in classes:
        lines.append(f"{c}: " + ", ".join(ev[c].reasons[:4]) + ".")
    if not classes:
        lines.append("No toxidrome reaches the threshold; the findings do not point to an intoxicant.")
    return _completion(" ".join(lines), classes)


@register_policy(TASK, "history", description="History only (DeToxR-style comparison): the classes of the substances "
                 "the scene report names, mapped through the vocabulary; denials skipped, findings ignored.")
def history_policy(case: dict[str, Any], rng: random.Random) -> str:
    classes = history_classes(case)
    reasoning = (
        "Going by the history: substances named at the scene map to " + ", ".join(classes) + "."
        if classes else "The history names no substance, so I assume no intoxicant."
    )
    return _completion(reasoning, classes)


@register_policy(TASK, "hedge", description="Lists all 14 classes every time (recall 1, low precision).")
def hedge_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("Poly-substance exposure cannot be excluded, so I list every class.", CLASS_IDS)


@register_policy(TASK, "majority", description="Always the most frequent class (ethanol), ignoring the case.")
def majority_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("Ethanol is the most common intoxicant in the emergency department.", ["ethanol"])


@register_policy(TASK, "empty", description="Format-correct, always answers 'none' (right only on no-intoxicant cases).")
def empty_policy(case: dict[str, Any], rng: random.Random) -> str:
    return _completion("No intoxicant identified.", [])


@register_policy(TASK, "format_only", description="Format-correct but names no class ('undetermined'): its reward is "
                 "the format weight alone.")
def format_only_policy(case: dict[str, Any], rng: random.Random) -> str:
    return "<think>The case does not allow a conclusion.</think>\n<answer>undetermined</answer>"
