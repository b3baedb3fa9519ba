"""Typed rollout and scored records: the contracts of docs/contracts.md.

A :class:`Rollout` is what the policy saw and produced plus the task's ground truth.
A :class:`ScoredRecord` is the input record plus ``reward``, ``components``, ``status``
and ``info``. Readers and writers live in :mod:`medreward.io`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar

from .errors import RecordError
from .text import TextTypeError, as_text

T = TypeVar("T")

Message = dict[str, Any]  # {"role": str, "content": str}
Conversation = list[Message]

_KNOWN_FIELDS = frozenset(("id", "prompt", "completion", "task", "group", "reference"))
_MISSING = object()


class Status(str, Enum):
    """Outcome of scoring one sample (or one component on one sample)."""

    OK = "ok"
    NOT_APPLICABLE = "not_applicable"
    ERROR = "error"
    TIMEOUT = "timeout"

    def __str__(self) -> str:  # so f-strings and JSON print "ok", not "Status.OK"
        return self.value


def message_text(content: Any) -> str:
    """Text of a chat message's ``content`` (a string, or a list of typed parts).

    Content that is neither (a number, an object) raises
    :class:`~medreward.text.TextTypeError`: a reward must not score ``"7"`` for ``7``.
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI-style multi-part content
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    raise TextTypeError(f"message content must be text, got {type(content).__name__}")


def conversation_text(value: str | Conversation | None, *, roles: tuple[str, ...] | None = None) -> str:
    """Flatten a prompt or completion to text; for a conversation, join the chosen roles' turns."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    texts = []
    for msg in value:
        if isinstance(msg, Mapping) and (roles is None or msg.get("role") in roles):
            texts.append(message_text(msg.get("content")))
    return "\n".join(texts)


def _check_messages(value: list[Any]) -> None:
    """Raise :class:`TextTypeError` unless ``value`` is a non-empty list of message objects.

    ``["a", "b"]``, ``[]`` or ``[null, 3]`` as a completion would otherwise flatten to ``""``
    and score a silent 0: they are errors, like a message whose content is a number.
    """
    if not value:
        raise TextTypeError("an empty list (no messages)")
    for i, message in enumerate(value):
        if not isinstance(message, Mapping):
            kind = "null" if message is None else type(message).__name__
            raise TextTypeError(f'a list completion must hold message objects {{"role", "content"}}; item {i} is {kind}')


@dataclass(slots=True, eq=False)
class Rollout:
    """One rollout: what the policy saw, what it produced, and the reference.

    ``prompt``/``completion`` are plain strings or conversations (lists of
    ``{"role", "content"}``). ``extra`` keeps every other field of the input record so
    that it is written back unchanged. ``completion_text`` is what rewards read: the
    completion string, or the assistant turns of a conversational completion joined.

    Untrusted values are kept as they came: a completion that is ``None`` or a number is
    stored as-is and turned into text by :func:`medreward.text.as_text` when a
    component reads it, so a bad sample is scored or rejected on its own.
    """

    prompt: Any = ""
    completion: Any = ""
    reference: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    task: str | None = None
    group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: the mapping this rollout was read from, echoed unchanged into the scored record
    source: Mapping[str, Any] | None = field(default=None, repr=False)
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    _text: str | None = field(default=None, repr=False)  # completion_text, once computed

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Rollout:
        """Build a rollout from a record dict, checking the contract's field types."""
        # This runs once per sample on the scoring hot path: plain dicts skip the ABC check.
        if type(record) is not dict and not isinstance(record, Mapping):
            raise RecordError(f"a record must be a JSON object, got {type(record).__name__}")
        get = record.get
        completion = get("completion", _MISSING)
        if completion is _MISSING:
            raise RecordError("record has no 'completion' field")
        reference = get("reference")
        if reference is None:
            reference = {}
        elif type(reference) is dict:
            reference = reference.copy()
        elif isinstance(reference, Mapping):
            reference = dict(reference)
        else:
            raise RecordError(f"'reference' must be an object, got {type(reference).__name__}")
        rid, task, grp = get("id"), get("task"), get("group")
        if (
            (rid is not None and type(rid) is not str)
            or (task is not None and type(task) is not str)
            or (grp is not None and type(grp) is not str)
        ):  # the usual strings pass with three identity tests; the rest is checked in full
            for key, value in (("id", rid), ("task", task), ("group", grp)):
                if value is not None and not isinstance(value, (str, int)):
                    raise RecordError(f"'{key}' must be a string, got {type(value).__name__}")
        extra = {k: v for k, v in record.items() if k not in _KNOWN_FIELDS}
        return cls(
            get("prompt", ""),
            completion,
            reference,
            None if rid is None else str(rid),
            task,
            None if grp is None else str(grp),
            extra,
            record,
        )

    @classmethod
    def coerce(cls, record: Rollout | Mapping[str, Any]) -> Rollout:
        return record if isinstance(record, Rollout) else cls.from_dict(record)

    def to_dict(self) -> dict[str, Any]:
        """The record as it came in (known fields first, then the extra ones)."""
        out: dict[str, Any] = {}
        if self.id is not None:
            out["id"] = self.id
        out["prompt"] = self.prompt
        out["completion"] = self.completion
        if self.task is not None:
            out["task"] = self.task
        if self.group is not None:
            out["group"] = self.group
        out["reference"] = self.reference
        out.update(self.extra)
        return out

    def record_dict(self) -> dict[str, Any]:
        """The input record to echo in the scored record: the source mapping if there was one."""
        source = self.source
        if source is None:
            return self.to_dict()
        return source.copy() if type(source) is dict else dict(source)

    @property
    def completion_text(self) -> str:
        """The completion as text (assistant turns of a conversation, joined)."""
        text = self._text
        if text is None:  # a plain attribute, not the cache dict: every component reads this
            text = self._text = self._completion_text()
        return text

    def _completion_text(self) -> str:
        value = self.completion
        if isinstance(value, list):  # only conversations reach this check; strings skip it
            _check_messages(value)
            value = conversation_text(value, roles=("assistant",)) or conversation_text(value)
        return as_text(value)

    @property
    def prompt_text(self) -> str:
        value = self.prompt
        if isinstance(value, list):
            value = conversation_text(value)
        return as_text(value)

    @property
    def group_key(self) -> str:
        """The GRPO group: the ``group`` field, else a hash of the prompt."""
        if self.group is not None:
            return self.group
        return self.cached("group_key", self._prompt_hash)

    def _prompt_hash(self) -> str:
        raw = json.dumps(self.prompt, sort_keys=True, ensure_ascii=False, default=str)
        return "p:" + hashlib.blake2b(raw.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()

    def cached(self, key: Any, compute: Callable[..., T], *args: Any) -> T:
        """Memoise a derived value (e.g. a parse) on this rollout, shared by its components:
        ``compute(*args)`` the first time ``key`` is asked for (arguments rather than a closure,
        because this runs once per sample and component)."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:  # a miss is the common case (one read per sample): no KeyError
            value = self._cache[key] = compute(*args)
        return value

    def __getstate__(self):  # slots dataclass: pickle without the parse cache
        return (self.prompt, self.completion, self.reference, self.id, self.task, self.group, self.extra, self.source)

    def __setstate__(self, state) -> None:
        (self.prompt, self.completion, self.reference, self.id, self.task, self.group, self.extra, self.source) = state
        self._cache = {}
        self._text = None


@dataclass(slots=True)
class ComponentScore:
    """One component's verdict on one sample.

    ``value`` is a float in the component's declared range when ``status`` is ``ok`` and
    ``None`` otherwise. ``info`` says what was parsed and why it scored so.
    """

    value: float | None
    status: Status = Status.OK
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def ok(cls, value: float, **info: Any) -> ComponentScore:
        return cls(float(value), Status.OK, info)

    @classmethod
    def not_applicable(cls, reason: str, **info: Any) -> ComponentScore:
        return cls(None, Status.NOT_APPLICABLE, {"reason": reason, **info})

    @classmethod
    def error(cls, message: str, status: Status = Status.ERROR) -> ComponentScore:
        return cls(None, status, {"error": message})


@dataclass(slots=True)
class ScoredRecord:
    """A scored rollout: the input record plus ``reward``, ``components``, ``status``, ``info``.

    ``reward`` is ``None`` exactly when ``status`` is not ``ok``. ``components`` has the
    same keys for every record scored by one spec. ``info`` holds each component's info
    under its name, and ``info["error"]`` for ``error``/``timeout``.
    """

    record: dict[str, Any]
    reward: float | None
    components: dict[str, float | None]
    status: Status
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.record)
        out["reward"] = self.reward
        out["components"] = self.components
        out["status"] = self.status.value
        out["info"] = self.info
        return out


@dataclass(frozen=True, slots=True)
class BadRecord:
    """An input that could not be read as a record (e.g. a malformed JSONL line).

    It is scored as ``error`` and written out with its line number and raw text, so
    nothing the user gave is lost.
    """

    line: int | None
    raw: str
    error: str

    def to_record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"raw": self.raw}
        if self.line is not None:
            out = {"line": self.line, **out}
        return out
