"""``error_correction``: medical error detection and correction in a clinical note (MEDIQA-CORR 2024)."""

from __future__ import annotations

import json
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..errors import RecordError
from ..parse.overlap import exact_match
from ..records import ComponentScore, Rollout
from .base import ComponentParams, RewardComponent, answer_section, register
from .text_overlap import require_modules, rouge_f

__all__ = ["Correction", "ErrorCorrection", "parse_correction"]

_MAX_CHARS = 10_000  # an answer is a flag, a number and one sentence: the head is enough
_YES = frozenset({"yes", "y", "true", "1", "error", "present", "has error", "contains error", "incorrect", "wrong"})
_NO = frozenset(
    {"no", "n", "false", "0", "none", "no error", "no errors", "correct", "absent", "na", "n/a", "-1", "null",
     "the text is correct", "the note is correct", "text is correct", "note is correct"}
)  # fmt: skip
_NA = frozenset({"na", "n/a", "none", "null", "", "-"})
# labels of "Label: value" lines (lower-case, "_"/"-" read as spaces)
_FLAG_KEYS = frozenset(
    {"error", "error flag", "flag", "has error", "contains error", "is error", "error present", "error detected"}
)
_SENTENCE_KEYS = frozenset(
    {"sentence", "sentence id", "error sentence", "error sentence id", "sentence number", "sentence index",
     "error sentence number", "error sentence index", "error id", "sentence with error", "erroneous sentence"}
)  # fmt: skip
_CORRECTION_KEYS = frozenset(
    {"correction", "corrected", "corrected sentence", "corrected text", "fix", "fixed sentence", "revised sentence"}
)


class Correction(NamedTuple):
    """What an answer says: ``has_error`` (None: not stated), ``sentence_id`` (None: none given;
    -1 is read as None), ``corrected`` (None: none or "NA"), and the ``layout`` it was read from
    (``"json"``, ``"mediqa"`` (the shared task's line), ``"lines"``, ``"verdict"`` or ``"none"``)."""

    has_error: bool | None
    sentence_id: int | None
    corrected: str | None
    layout: str


def _key(label: str) -> str:
    return " ".join(label.replace("_", " ").replace("-", " ").replace("*", " ").replace("#", " ").lower().split())


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = " ".join(value.lower().replace("_", " ").split()).strip(" .!\"'`*")
        if text in _YES:
            return True
        if text in _NO:
            return False
        first = text.split(" ", 1)[0].strip(",;")
        return True if first in ("yes", "true") else False if first in ("no", "false") else None
    return None


def _sentence(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str):
        for word in value.replace("#", " ").replace(",", " ").split()[:4]:  # "3", "#3", "sentence 3"
            if _is_id(word):
                number = int(word)
                return number if number >= 0 else None
    return None


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip().strip('"“”').strip()
    return None if text.lower() in _NA else text


def _read_json(text: str) -> Correction | None:
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    flag = sentence = corrected = None
    found = False
    for raw_key, item in value.items():
        key = _key(str(raw_key))
        if key in _FLAG_KEYS:
            flag, found = _flag(item), True
        elif key in _SENTENCE_KEYS:
            if isinstance(item, float):  # 3.0 is sentence 3; NaN or 2.5 is no sentence
                item = int(item) if item.is_integer() else None
            sentence, found = _sentence(item), True
        elif key in _CORRECTION_KEYS:
            corrected, found = _text(item), True
    return Correction(flag, sentence, corrected, "json") if found else None


def _read_mediqa(line: str) -> Correction | None:
    """The shared task's run line: ``<text-id> <flag 0|1> <sentence-id or -1> <correction or NA>``
    (the text id may be left out)."""
    parts = line.split(None, 3)
    if len(parts) >= 3 and parts[0] not in ("0", "1") and parts[1] in ("0", "1") and _is_id(parts[2]):
        flag, sentence, rest = parts[1], parts[2], parts[3] if len(parts) == 4 else "NA"
    elif len(parts) >= 2 and parts[0] in ("0", "1") and _is_id(parts[1]):
        parts = line.split(None, 2)
        flag, sentence, rest = parts[0], parts[1], parts[2] if len(parts) == 3 else "NA"
    else:
        return None
    if flag == "0":  # the official scorer enforces "NA" for a text flagged correct
        return Correction(False, _sentence(sentence), None, "mediqa")
    return Correction(True, _sentence(sentence), _text(rest), "mediqa")


def _is_id(word: str) -> bool:
    return word.lstrip("-").isdigit() and word.isascii() and len(word) <= 9


def _read_lines(text: str) -> Correction | None:
    flag = sentence = corrected = None
    found = False
    for raw in text.splitlines():
        line = raw.strip().lstrip("-•*> ").strip()
        colon = line.find(":", 0, 48)
        if colon <= 0:
            continue
        key, value = _key(line[:colon]), line[colon + 1 :].strip().strip("*_` ")
        if key in _FLAG_KEYS:
            flag, found = _flag(value), True
        elif key in _SENTENCE_KEYS:
            sentence, found = _sentence(value), True
        elif key in _CORRECTION_KEYS:
            corrected, found = _text(value), True
    return Correction(flag, sentence, corrected, "lines") if found else None


def parse_correction(answer: str) -> Correction:
    """Read an answer's error flag, sentence id and corrected sentence (bounded, linear).

    Layouts, first that applies: a JSON object (keys such as ``has_error``/``error_flag``,
    ``sentence_id``/``error_sentence_id``, ``corrected``/``correction``); the MEDIQA-CORR run line
    ``<text-id> <0|1> <sentence-id|-1> <corrected sentence|NA>``; labelled lines
    (``Error: yes`` / ``Sentence: 3`` / ``Correction: …``); a bare verdict (``CORRECT``, ``no
    error``, ``NA`` → no error). A sentence id or a correction without a flag implies the flag.

    >>> parse_correction("ms-val-0 1 3 The patient was started on ceftriaxone.")
    Correction(has_error=True, sentence_id=3, corrected='The patient was started on ceftriaxone.', layout='mediqa')
    >>> parse_correction("Error: yes\\nSentence: 3\\nCorrection: Start ceftriaxone.")
    Correction(has_error=True, sentence_id=3, corrected='Start ceftriaxone.', layout='lines')
    >>> parse_correction('{"has_error": false, "sentence_id": -1, "corrected": "NA"}')
    Correction(has_error=False, sentence_id=None, corrected=None, layout='json')
    """
    text = answer[:_MAX_CHARS].strip()
    if text.startswith("```"):
        text = text.strip("`").strip()
        if text[:4].lower() == "json":
            text = text[4:].strip()
    read = _read_json(text) or _read_lines(text)
    if read is None:
        first = text.split("\n", 1)[0].strip()
        read = _read_mediqa(first)
    if read is None:
        flag = _flag(text) if len(text) <= 40 else None
        read = Correction(flag, None, None, "verdict") if flag is not None else Correction(None, None, None, "none")
    if read.has_error is None and (read.sentence_id is not None or read.corrected is not None):
        read = read._replace(has_error=True)
    if read.has_error is False:  # a text flagged correct has no sentence and no correction
        read = read._replace(sentence_id=None, corrected=None)
    return read


class Weights(BaseModel):
    """Weights of the three parts (≥ 0, not all 0); the reward divides by their sum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flag: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    sentence: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    correction: float = Field(default=1.0, ge=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _not_all_zero(self) -> Weights:
        if self.flag + self.sentence + self.correction <= 0:
            raise ValueError("at least one weight must be > 0")
        return self


@register
class ErrorCorrection(RewardComponent):
    r"""Error flag, error sentence and corrected sentence of a clinical note, against the reference.

    Formula: :math:`R = (w_f\,A_{flag} + w_s\,A_{sent} + w_c\,C) / (w_f + w_s + w_c)` with

    * :math:`A_{flag} = 1` when the predicted flag equals ``reference.has_error`` (no flag: 0);
    * :math:`A_{sent} = 1` when the predicted sentence id equals ``reference.sentence_id``, a text
      without error counting as id −1 on both sides (so "no error" on a correct text scores 1);
    * :math:`C`: the correction term of the MEDIQA-CORR composite score — 1 when reference and
      prediction are both "NA" (no error, no correction), 0 when exactly one is, and otherwise the
      ROUGE-1 F-measure of the predicted against the reference corrected sentence
      (``correction_metric = "rouge1"``, rouge-score) or their normalised exact match (``"exact"``).

    Weights default to 1 each (the three official MEDIQA-CORR scores equally weighted).

    Source: MEDIQA-CORR 2024 shared task (Ben Abacha et al., ClinicalNLP 2024; MEDEC, arXiv
    2412.19260): error-flag accuracy, error-sentence accuracy, and ROUGE-1/BERTScore/BLEURT of the
    correction with NA handled as above (official evaluation script
    ``mediqa-corr-2024-eval-script-1-acc-rouge``: ``R1FC = (ΣROUGE-1 F + correct NA) / texts``).
    BERTScore and BLEURT need models, so only ROUGE-1 is used (the official script uses the
    ``rouge`` package; rouge-score tokenises slightly differently). As in the official scorer, a
    text flagged correct has correction "NA" whatever else it says. Combining the three per
    sample with weights is medreward's choice.

    Reading the answer (:func:`parse_correction`): a JSON object, the shared task's run line
    ``<text-id> <0|1> <sentence-id|-1> <correction|NA>``, labelled lines (``Error: yes`` /
    ``Sentence: 3`` / ``Correction: …``) or a bare verdict ("CORRECT", "no error"). ``info`` says
    what was parsed (``predicted``, ``layout``) and each part's score. An answer where none of
    them is found scores 0.0 with ``info["reason"]``; a missing section likewise.

    Reference: ``has_error`` (bool, or 0/1), ``sentence_id`` (int ≥ 0 when there is an error;
    ``null`` or −1 otherwise), ``corrected`` (the corrected sentence when there is an error;
    ``null`` or ``"NA"`` otherwise). Without ``has_error`` the component is ``not_applicable``;
    any other shape raises :class:`~medreward.errors.RecordError` naming the field.

    Params: ``weights`` (``{flag, sentence, correction}``), ``correction_metric`` (``"rouge1"`` |
    ``"exact"``), ``stemmer`` (rouge-score's Porter stemmer, default false), ``flag_field``,
    ``sentence_field``, ``correction_field`` (default ``has_error``, ``sentence_id``,
    ``corrected``), ``answer_tag`` (default ``"answer"``). Needs the ``metrics`` extra.

    >>> corr = ErrorCorrection(answer_tag=None)
    >>> ref = {"has_error": True, "sentence_id": 3, "corrected": "Patient was diagnosed with sepsis."}
    >>> corr(["text-1 1 3 Patient was diagnosed with sepsis.", "text-1 1 2 Patient has sepsis.", "text-1 0 -1 NA"],
    ...      [ref] * 3)  # [all right, flag only + ROUGE-1 F 0.5, all wrong]
    [1.0, 0.5, 0.0]
    """

    kind = "error_correction"

    class Params(ComponentParams):
        weights: Weights = Field(default_factory=Weights)
        correction_metric: Literal["rouge1", "exact"] = "rouge1"
        stemmer: bool = False
        flag_field: str = Field(default="has_error", min_length=1)
        sentence_field: str = Field(default="sentence_id", min_length=1)
        correction_field: str = Field(default="corrected", min_length=1)
        answer_tag: str | None = "answer"

    params: Params

    def setup(self) -> None:
        if self.params.correction_metric == "rouge1":
            require_modules(("rouge_score",), "metrics", f"{self.name} (kind {self.kind!r})")

    def reference_keys(self) -> tuple[str, ...]:
        p = self.params
        return (p.flag_field, p.sentence_field, p.correction_field)

    def score_one(self, rollout: Rollout) -> ComponentScore:
        p = self.params
        if rollout.reference.get(p.flag_field) is None:
            return ComponentScore.not_applicable(f"reference has no '{p.flag_field}'")
        expected = self._expected(rollout.reference)
        answer = answer_section(rollout, p.answer_tag)
        if answer is None:
            return ComponentScore(0.0, info={"reason": f"no <{p.answer_tag}> section", "expected": _fields(expected)})
        got = parse_correction(answer)
        info: dict[str, Any] = {
            "predicted": _fields(got),
            "layout": got.layout,
            "expected": _fields(expected),
        }
        if got.layout == "none":
            return ComponentScore(0.0, info={**info, "reason": "no error flag, sentence id or correction found"})
        flag = 1.0 if got.has_error is expected.has_error else 0.0
        sentence = 1.0 if _as_id(got.sentence_id) == _as_id(expected.sentence_id) else 0.0
        if expected.corrected is None or got.corrected is None:
            correction = 1.0 if expected.corrected is None and got.corrected is None else 0.0
        elif p.correction_metric == "exact":
            correction = exact_match(got.corrected, expected.corrected)
        else:
            correction = rouge_f(got.corrected, expected.corrected, use_stemmer=p.stemmer)["rouge1"]
        info.update(flag=flag, sentence=sentence, correction=correction)
        w = p.weights
        total = w.flag * flag + w.sentence * sentence + w.correction * correction
        value = total / (w.flag + w.sentence + w.correction)
        return ComponentScore(value, info=info)

    def _expected(self, reference: dict[str, Any]) -> Correction:
        p = self.params
        raw_flag = reference.get(p.flag_field)
        if not (isinstance(raw_flag, bool) or (isinstance(raw_flag, int) and raw_flag in (0, 1))):
            raise RecordError(f"reference.{p.flag_field} must be true/false (or 1/0), got {raw_flag!r}"[:200])
        has_error = bool(raw_flag)
        raw_sentence = reference.get(p.sentence_field)
        raw_corrected = reference.get(p.correction_field)
        if has_error:
            if isinstance(raw_sentence, bool) or not isinstance(raw_sentence, int) or raw_sentence < 0:
                raise RecordError(
                    f"reference.{p.sentence_field} must be a sentence number >= 0 when "
                    f"{p.flag_field} is true, got {raw_sentence!r}"[:200]
                )
            if not isinstance(raw_corrected, str) or _text(raw_corrected) is None:
                raise RecordError(
                    f"reference.{p.correction_field} must be the corrected sentence when "
                    f"{p.flag_field} is true, got {raw_corrected!r}"[:200]
                )
            return Correction(True, raw_sentence, raw_corrected.strip(), "reference")
        if raw_sentence not in (None, -1) or isinstance(raw_sentence, bool):
            raise RecordError(
                f"reference.{p.sentence_field} must be null or -1 when {p.flag_field} is false, "
                f"got {raw_sentence!r}"[:200]
            )
        if raw_corrected is not None and not (isinstance(raw_corrected, str) and _text(raw_corrected) is None):
            raise RecordError(
                f"reference.{p.correction_field} must be null or 'NA' when {p.flag_field} is false, "
                f"got {raw_corrected!r}"[:200]
            )
        return Correction(False, None, None, "reference")


def _fields(correction: Correction) -> dict[str, Any]:
    return {"has_error": correction.has_error, "sentence_id": correction.sentence_id, "corrected": correction.corrected}


def _as_id(sentence_id: int | None) -> int:
    return -1 if sentence_id is None else sentence_id
