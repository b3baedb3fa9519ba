"""Label vocabularies: closed sets of class ids with display names, synonyms and member drugs.

A :class:`Vocabulary` turns a raw label string written by a model ("Benzos", "Tylenol",
"acetaminophen overdose", "Percocet") into a tuple of class ids, or ``None`` when the label is
out of vocabulary. A tuple, because a combination product belongs to several classes
(Percocet = oxycodone + acetaminophen → ``("opioids", "acetaminophen")``), and the empty tuple
stands for the explicit "no intoxicant" answer ("none", "no substance", …).

Matching works on a *key* (:func:`term_key`), applied identically to the vocabulary's terms
and to the raw label, so every tolerance is symmetric:

* case-, accent-, punctuation- and whitespace-insensitive ("Beta-Blockers" = "beta blockers");
* a trailing clinical qualifier is dropped ("opioid overdose", "acetaminophen toxicity",
  "salicylate poisoning", "ethanol intoxication", release forms such as "Seroquel XR"), and
  so is a leading hedge ("acute", "suspected", "likely");
* plural/singular tolerant: a final "ies" reads as "y", a final "s" (not "ss") is dropped;
* Chinese terms: a trailing 中毒/过量/摄入/暴露/滥用 (poisoning, overdose, ingestion, exposure,
  abuse) and a leading 急性/慢性/疑似/可能 (acute, chronic, suspected, possible) are dropped
  the same way ("急性阿片类中毒" = "阿片类");
* when the whole label does not match, a parenthetical is tried ("Acetaminophen (Tylenol)"
  → outside first, then inside), then a "/" or "+" combination whose every part matches
  ("oxycodone/acetaminophen" → both classes);
* optionally (``drug_ner=True``), drug names the vocabulary lacks are mapped to their generic
  name with the ``drug-named-entity-recognition`` package and looked up again. It loads in
  about 2–3 s, so it is opt-in and imported lazily.

Vocabularies are TOML files (``vocab/data/*.toml`` for the packaged ones); see
``toxicology.toml`` for the layout. :func:`load_vocabulary` caches one instance per name or
path, and each instance memoises normalisations, so the hot path of a reward is a dict lookup.

>>> vocab = load_vocabulary("toxicology")
>>> vocab.normalize("Benzos"), vocab.normalize("Percocet"), vocab.normalize("none")
(('benzodiazepines',), ('opioids', 'acetaminophen'), ())
>>> vocab.normalize("unicorn dust") is None
True
"""

from __future__ import annotations

import logging
import os
import string
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..errors import MedrewardError

__all__ = [
    "VocabClass",
    "Vocabulary",
    "VocabularyError",
    "available_vocabularies",
    "load_vocabulary",
    "term_key",
]

log = logging.getLogger(__name__)


class VocabularyError(MedrewardError, ValueError):
    """A vocabulary file is missing or invalid (the message names the file and the entry)."""


# Punctuation (ASCII and the common typographic kinds) becomes a word break.
_PUNCTUATION = string.punctuation + "‐‑‒–—―‘’‚‛“”„‟•·…′″«»¡¿®™©°×"
_TO_SPACE = str.maketrans({c: " " for c in _PUNCTUATION})

# Words that qualify a substance without naming another one. Dropped at the end / start of a
# label (never when they are the only word), so "opioid overdose" and "opioids" share a key.
_TRAILING_QUALIFIERS = frozenset(
    {
        "toxicity", "toxicities", "poisoning", "poisonings", "overdose", "overdoses", "overdosage",
        "od", "intoxication", "intoxications", "ingestion", "ingestions", "toxidrome", "exposure",
        "exposures", "use", "abuse", "misuse", "class", "classes", "agent", "agents",
        "medication", "medications",
        # release forms of brand names: "Seroquel XR", "Ambien CR", "Toprol XL"
        "xr", "er", "sr", "cr", "xl", "la", "ir", "dr", "ec", "odt",
    }
)  # fmt: skip
_LEADING_QUALIFIERS = frozenset({"acute", "chronic", "suspected", "probable", "likely", "possible", "presumed"})
# The same for Chinese terms, which have no spaces: affixes of the key ("阿片类中毒" = "阿片类";
# "急性乙醇中毒" = "乙醇"), dropped when something is left.
_CJK_SUFFIXES = ("中毒", "过量", "摄入", "暴露", "滥用")
_CJK_PREFIXES = ("急性", "慢性", "疑似", "可能")

_CACHE_MAX = 16384  # memoised raw labels per vocabulary (cleared when full)
_CACHEABLE_CHARS = 256  # longer labels are normalised every time (keeps the memo small)
_MAX_PARTS = 8  # "/"- or "+"-separated parts tried in one label
_MISS = object()


def term_key(text: str) -> str:
    """The matching key of a label or vocabulary term (see the module docstring).

    >>> term_key("Beta-Blockers"), term_key("beta blocker"), term_key("Acute Opioid Overdose")
    ('betablocker', 'betablocker', 'opioid')
    >>> term_key("Paracétamol"), term_key("benzodiazepine(s)")
    ('paracetamol', 'benzodiazepine')
    """
    if not text.isascii():
        # accents off: "paracétamol" = "paracetamol"; NFKD also splits ligatures and full-width forms
        text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    words = text.casefold().translate(_TO_SPACE).split()
    while len(words) > 1 and words[-1] in _TRAILING_QUALIFIERS:
        words.pop()
    while len(words) > 1 and words[0] in _LEADING_QUALIFIERS:
        del words[0]
    key = "".join(words)
    if not key.isascii():
        key = _strip_cjk_affixes(key)
    if len(key) > 4 and key.endswith("ies"):
        return key[:-3] + "y"
    if len(key) > 3 and key.endswith("s") and not key.endswith("ss"):
        return key[:-1]
    return key


def _strip_cjk_affixes(key: str) -> str:
    """Drop Chinese qualifiers from the ends of a key (each at most once; never the whole key).

    >>> _strip_cjk_affixes("急性阿片类中毒"), _strip_cjk_affixes("中毒")
    ('阿片类', '中毒')
    """
    for suffix in _CJK_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    for prefix in _CJK_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix) :]
            break
    return key


@dataclass(frozen=True, slots=True)
class VocabClass:
    """One class of a vocabulary: its id, display name, synonyms and example member drugs."""

    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    members: tuple[str, ...] = ()
    description: str = ""


def _valid_id(value: str) -> bool:
    return (
        bool(value)
        and value[0].isascii()
        and value[0].isalpha()
        and all(c.isascii() and (c.isalnum() or c == "_") for c in value)
    )


class Vocabulary:
    """A closed label set with a normalisation table (raw label → class ids).

    Build one from :class:`VocabClass` objects, or load a TOML file with
    :func:`load_vocabulary`. Two terms whose keys collide but that map to different ids are a
    data bug and raise :class:`VocabularyError` here, not a silent mismatch at scoring time.
    """

    def __init__(
        self,
        name: str,
        classes: Sequence[VocabClass],
        *,
        none_terms: Sequence[str] = (),
        combinations: Mapping[str, Sequence[str]] | None = None,
        description: str = "",
        source: str | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.source = source or name
        where = self.source
        if not classes:
            raise VocabularyError(f"vocabulary {where}: no classes")
        by_id: dict[str, VocabClass] = {}
        for cls in classes:
            if not _valid_id(cls.id):
                raise VocabularyError(f"vocabulary {where}: class id {cls.id!r} must be [A-Za-z][A-Za-z0-9_]*")
            if cls.id in by_id:
                raise VocabularyError(f"vocabulary {where}: class id {cls.id!r} appears twice")
            by_id[cls.id] = cls
        self.classes: Mapping[str, VocabClass] = MappingProxyType(by_id)
        self.ids: tuple[str, ...] = tuple(by_id)
        self.none_terms: tuple[str, ...] = tuple(none_terms)
        self.combinations: Mapping[str, tuple[str, ...]] = MappingProxyType(
            {term: tuple(ids) for term, ids in (combinations or {}).items()}
        )

        table: dict[str, tuple[str, ...]] = {}
        origin: dict[str, str] = {}

        def add(term: str, ids: tuple[str, ...]) -> None:
            if not isinstance(term, str):
                raise VocabularyError(f"vocabulary {where}: term {term!r} is not a string")
            key = term_key(term)
            if not key:
                raise VocabularyError(f"vocabulary {where}: term {term!r} has no letters or digits")
            previous = table.get(key)
            if previous is not None and previous != ids:
                raise VocabularyError(
                    f"vocabulary {where}: {term!r} → {list(ids)} collides with {origin[key]!r} → "
                    f"{list(previous)} (both normalise to {key!r})"
                )
            table[key] = ids
            origin.setdefault(key, term)

        for cls in classes:
            for term in (cls.id, cls.name, *cls.synonyms, *cls.members):
                add(term, (cls.id,))
        for term in self.none_terms:
            add(term, ())
        for term, ids in self.combinations.items():
            unknown = [i for i in ids if i not in by_id]
            if unknown or not ids:
                raise VocabularyError(
                    f"vocabulary {where}: combination {term!r} names unknown ids {unknown}"
                    if unknown
                    else f"vocabulary {where}: combination {term!r} names no ids"
                )
            add(term, tuple(dict.fromkeys(ids)))
        self._table = table
        self._cache: dict[str, Any] = {}
        self._ner_cache: dict[str, Any] = {}

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> Vocabulary:
        """Build from the TOML layout: ``name``, ``none``, ``[[class]]`` tables, ``[combinations]``."""
        where = source or str(data.get("name", "<dict>"))
        raw_classes = data.get("class")
        if not isinstance(raw_classes, list) or not raw_classes:
            raise VocabularyError(f"vocabulary {where}: needs at least one [[class]] table")
        classes = []
        for i, entry in enumerate(raw_classes):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
                raise VocabularyError(f"vocabulary {where}: class #{i + 1} has no string 'id'")
            extra = set(entry) - {"id", "name", "synonyms", "members", "description"}
            if extra:
                raise VocabularyError(f"vocabulary {where}: class {entry['id']!r} has unknown keys {sorted(extra)}")
            lists = {}
            for key in ("synonyms", "members"):
                value = entry.get(key, [])
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise VocabularyError(
                        f"vocabulary {where}: class {entry['id']!r}: '{key}' must be a list of strings"
                    )
                lists[key] = tuple(value)
            classes.append(
                VocabClass(
                    id=entry["id"],
                    name=str(entry.get("name", entry["id"])),
                    description=str(entry.get("description", "")),
                    **lists,
                )
            )
        none_terms = data.get("none", [])
        combinations = data.get("combinations", {})
        if not isinstance(none_terms, list):
            raise VocabularyError(f"vocabulary {where}: 'none' must be a list of strings")
        if not isinstance(combinations, Mapping) or not all(isinstance(v, list) for v in combinations.values()):
            raise VocabularyError(f"vocabulary {where}: [combinations] must map terms to lists of ids")
        return cls(
            str(data.get("name", where)),
            classes,
            none_terms=none_terms,
            combinations=combinations,
            description=str(data.get("description", "")),
            source=source,
        )

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Vocabulary:
        """Read a vocabulary TOML file."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VocabularyError(f"vocabulary file {path} does not exist") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise VocabularyError(f"vocabulary file {path} cannot be read: {exc}") from None
        return cls.from_dict(data, source=str(path))

    # -- the label set -----------------------------------------------------------------------
    def __contains__(self, class_id: object) -> bool:
        return class_id in self.classes

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Vocabulary({self.name!r}, {len(self.ids)} classes, {len(self._table)} terms)"

    def display_name(self, class_id: str) -> str:
        """The human-readable name of a class id (``KeyError`` for an unknown id)."""
        return self.classes[class_id].name

    @property
    def table(self) -> Mapping[str, tuple[str, ...]]:
        """The normalisation table: :func:`term_key` of every term → class ids (read-only)."""
        return MappingProxyType(self._table)

    # -- normalisation ---------------------------------------------------------------------
    def normalize(self, raw: str, *, drug_ner: bool = False) -> tuple[str, ...] | None:
        """Class ids of a raw label: one id, several (a combination product), ``()`` for an
        explicit "none" answer, or ``None`` when the label is out of vocabulary.

        >>> vocab = load_vocabulary("toxicology")
        >>> vocab.normalize("Acetaminophen (Tylenol)"), vocab.normalize("oxycodone/APAP")
        (('acetaminophen',), ('opioids', 'acetaminophen'))
        >>> vocab.normalize("no intoxicant"), vocab.normalize("LSD")
        ((), None)
        """
        cache = self._ner_cache if drug_ner else self._cache
        hit = cache.get(raw, _MISS)
        if hit is not _MISS:
            return hit
        ids = self._resolve(raw, depth=0)
        if ids is None and drug_ner:
            ids = self._resolve_with_ner(raw)
        if len(raw) <= _CACHEABLE_CHARS:
            if len(cache) >= _CACHE_MAX:
                cache.clear()  # bounded memory; the common labels refill it at once
            cache[raw] = ids
        return ids

    def is_none(self, raw: str) -> bool:
        """Whether ``raw`` is one of the vocabulary's "no answer" terms ("none", "no intoxicant", …).

        The same terms an answer may use for the empty set, so a reference may use them too.

        >>> vocab = load_vocabulary("toxicology")
        >>> vocab.is_none("None"), vocab.is_none("No substances"), vocab.is_none("opioids")
        (True, True, False)
        """
        return self._table.get(term_key(raw)) == ()

    def normalize_all(self, raws: Sequence[str], *, drug_ner: bool = False) -> list[tuple[str, ...] | None]:
        """:meth:`normalize` of each label, in order (one memo lookup per label that was seen before).

        >>> load_vocabulary("toxicology").normalize_all(["Heroin", "LSD"])
        [('opioids',), None]
        """
        get = (self._ner_cache if drug_ner else self._cache).get
        found = [get(raw, _MISS) for raw in raws]
        if _MISS in found:
            found = [self.normalize(raw, drug_ner=drug_ner) if hit is _MISS else hit for raw, hit in zip(raws, found)]
        return found

    def _resolve(self, raw: str, depth: int) -> tuple[str, ...] | None:
        ids = self._table.get(term_key(raw))
        if ids is not None or depth > 1:
            return ids
        if "(" in raw:
            outside, inside = _split_parenthetical(raw)
            for part in (outside, inside):
                if part.strip():
                    ids = self._resolve(part, depth + 1)
                    if ids is not None:
                        return ids
        if "/" in raw or "+" in raw:
            parts = [p for p in raw.replace("+", "/").split("/") if p.strip()]
            if 1 < len(parts) <= _MAX_PARTS:
                found: list[str] = []
                for part in parts:
                    part_ids = self._resolve(part, depth + 1)
                    if part_ids is None:
                        return None
                    found.extend(part_ids)
                return tuple(dict.fromkeys(found))
        return None

    def _resolve_with_ner(self, raw: str) -> tuple[str, ...] | None:
        find_drugs = _drug_finder()
        try:
            found = find_drugs(raw.split(), is_ignore_case=True)
        except Exception as exc:  # noqa: BLE001 - third-party lookup; a miss, not a crash
            log.warning("drug-named-entity-recognition failed on %r: %s", raw[:80], exc)
            return None
        ids: list[str] = []
        for drug, *_ in found:
            for name in (drug.get("name", ""), *drug.get("synonyms", ())):
                hit = self._table.get(term_key(name)) if isinstance(name, str) and name else None
                if hit:
                    ids.extend(hit)
                    break
        return tuple(dict.fromkeys(ids)) or None


def _split_parenthetical(raw: str) -> tuple[str, str]:
    """("text outside parentheses", "text inside them"), one linear pass."""
    outside: list[str] = []
    inside: list[str] = []
    depth = 0
    for ch in raw:
        if ch == "(":
            depth += 1
            inside.append(" ")
        elif ch == ")" and depth:
            depth -= 1
            inside.append(" ")
        elif depth:
            inside.append(ch)
        else:
            outside.append(ch)
    return "".join(outside), "".join(inside)


@lru_cache(maxsize=1)
def _drug_finder():
    try:
        from drug_named_entity_recognition import find_drugs
    except ImportError as exc:  # pragma: no cover - it is a core dependency
        raise VocabularyError(
            "drug_ner needs the 'drug-named-entity-recognition' package (pip install drug-named-entity-recognition)"
        ) from exc
    log.info("loading drug-named-entity-recognition (a few seconds, once per process)")
    return find_drugs


# -- loading -------------------------------------------------------------------------------
def available_vocabularies() -> list[str]:
    """Names of the packaged vocabularies (``load_vocabulary`` accepts them)."""
    return list(_packaged_names())


@cache
def _packaged_names() -> tuple[str, ...]:
    data = resources.files(__package__).joinpath("data")
    return tuple(sorted(p.name[: -len(".toml")] for p in data.iterdir() if p.name.endswith(".toml")))


@cache
def _load_packaged(name: str) -> Vocabulary:
    resource = resources.files(__package__).joinpath("data", f"{name}.toml")
    data = tomllib.loads(resource.read_text(encoding="utf-8"))
    return Vocabulary.from_dict(data, source=f"{name} (packaged)")


@lru_cache(maxsize=32)
def _load_path(path: str, mtime_ns: int, size: int) -> Vocabulary:  # mtime/size: reload an edited file
    return Vocabulary.from_toml(path)


def load_vocabulary(name_or_path: str | os.PathLike[str]) -> Vocabulary:
    """A packaged vocabulary by name (``"toxicology"``) or a TOML file by path.

    Instances are cached (per name, or per path and modification time), so components that
    share a vocabulary share its normalisation table and memo.

    >>> load_vocabulary("toxicology").ids[:3]
    ('opioids', 'benzodiazepines', 'ethanol')
    """
    text = os.fspath(name_or_path)
    if not isinstance(text, str) or not text:
        raise VocabularyError("a vocabulary is named by a non-empty string or a path")
    looks_like_path = (
        isinstance(name_or_path, os.PathLike) or text.endswith(".toml") or any(sep in text for sep in ("/", os.sep))
    )
    if not looks_like_path:
        if text in _packaged_names():
            return _load_packaged(text)
        if not Path(text).is_file():
            known = ", ".join(available_vocabularies())
            raise VocabularyError(f"unknown vocabulary {text!r}; packaged: {known}; or give the path of a .toml file")
    path = Path(text).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise VocabularyError(f"vocabulary file {path} does not exist") from None
    return _load_path(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
