"""OpenRLHF adapter: the Python ``reward_func`` hook and the ``/get_reward`` HTTP schema.

OpenRLHF (0.11.2) loads ``reward_func`` from the ``.py`` file given as
``--reward.remote_url /path/to/file.py`` and calls it once per rollout, from a thread, as
``reward_func(queries, prompts, labels)`` with lists of length 1:

* ``queries`` — prompt + response, decoded with ``skip_special_tokens=False`` (chat-template
  tokens included);
* ``prompts`` — the formatted prompt string;
* ``labels`` — the dataset's ``--data.label_key`` value: here the reference, as JSON text
  (``'{"substances": ["opioids"]}'``) or plain text (``"opioids,ethanol"``, ``"C"``).

It expects ``{"rewards": Tensor[B], "scores": Tensor[B], "extra_logs": {name: Tensor[B]}}``;
``scores`` drive dynamic filtering. Lists come back instead of tensors where torch is not
installed. A sample without a reward (not applicable, error, timeout) gets the sentinel
``failed_reward`` (default 0.0) in ``rewards`` and ``scores`` and ``status_ok = 0`` in
``extra_logs``, which also holds every component's value (0.0 when it has none) and the
other status flags — the key set is fixed by the spec (see :mod:`medreward.integrations.verl`).

Splitting the response off a query (:func:`split_response`): the suffix after the prompt
when ``query.startswith(prompt)``; else after ``separator=`` (the text ending every prompt,
e.g. ``"Assistant:"`` of a plain ``--data.input_template``); else after the prompt found with
whitespace ignored (decoding may add a BOS token, collapse or merge spaces); else after the
last assistant marker of a known chat template (ChatML ``<|im_start|>assistant``, Llama-3
``<|start_header_id|>assistant<|end_header_id|>``, and Gemma, Mistral, Phi-3, DeepSeek
markers). A query that cannot be split is an ``error`` sample (``status_error``), never the
whole query scored — that would score the prompt's own example tags. Trailing end-of-turn /
EOS / padding tokens (``<|im_end|>``, ``<|eot_id|>``, ``</s>``, ``<|endoftext|>``…) are stripped.

Multi-task runs: ``make_reward_func(tasks=["toxicology", "mcq"])``; each label is a JSON
object naming its task, ``{"task": "mcq", "answer": "C"}`` or ``{"task": "toxicology",
"reference": "opioids,ethanol"}``. ``extra_logs`` then hold the sorted union of the tasks'
components (fixed for every batch, as in verl).

A spec with model backends (judges, reward models) adds ``backend/<name>/calls``,
``cache_hits``, ``failures``, ``prompt_tokens`` and ``completion_tokens`` to ``extra_logs``: the
batch's counts divided by its size, so the step mean OpenRLHF logs is the cost per sample.

Which spec: ``spec=`` (keyword), else ``$MEDREWARD_SPEC``, else :data:`DEFAULT_SPEC`. A file
for ``--reward.remote_url`` can be as small as::

    from medreward.integrations.openrlhf import make_reward_func
    reward_func = make_reward_func("toxicology")

>>> fn = make_reward_func("toxicology")
>>> out = fn(["<|im_start|>user\\nPupils?<|im_end|>\\n<|im_start|>assistant\\n<think>miosis</think><answer>opioids</answer><|im_end|>"],
...          ["<|im_start|>user\\nPupils?<|im_end|>\\n<|im_start|>assistant\\n"], ['{"substances": ["opioids"]}'])
>>> [float(x) for x in out["rewards"]], float(out["extra_logs"]["substances"][0])
([1.0], 1.0)
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import re2

from medreward.errors import RecordError
from medreward.integrations.references import bad_input, coerce_reference, split_task, to_builtin
from medreward.integrations.registry import SpecLike, UnknownDataSourceError, resolve_spec, task_specs
from medreward.integrations.results import (
    STATUS_KEYS,
    backend_keys,
    backend_shares,
    check_component_keys,
    flat_scores,
    warn_failures,
)
from medreward.integrations.scorers import SharedScorer, get_scorer
from medreward.records import ScoredRecord
from medreward.runner.stats import RunStats
from medreward.text import clean_surrogates

__all__ = [
    "ASSISTANT_MARKERS",
    "DEFAULT_SPEC",
    "END_TOKENS",
    "OpenRLHFReward",
    "PayloadError",
    "ResponseSplitError",
    "RewardPlan",
    "handle_get_reward",
    "make_reward_func",
    "reward_func",
    "split_response",
]

log = logging.getLogger(__name__)

_WARN_EVERY = 30.0  # seconds between failure warnings: called once per sample

#: The spec of :func:`reward_func` when neither ``spec=`` nor ``$MEDREWARD_SPEC`` is given.
DEFAULT_SPEC: SpecLike | None = None

#: Where the assistant turn starts, for common chat templates (the last occurrence wins).
ASSISTANT_MARKERS: tuple[str, ...] = (
    "<|im_start|>assistant",  # ChatML (Qwen, many fine-tunes)
    "<|start_header_id|>assistant<|end_header_id|>",  # Llama 3
    "<start_of_turn>model",  # Gemma
    "<|assistant|>",  # Phi-3, Zephyr
    "<｜Assistant｜>",  # DeepSeek-R1
    "[/INST]",  # Mistral / Llama 2
)

#: End-of-turn, EOS and padding tokens stripped from the end of a response.
END_TOKENS: tuple[str, ...] = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "</s>",
    "<end_of_turn>",
    "<eos>",
    "<|end|>",
    "<｜end▁of▁sentence｜>",
    "<pad>",
    "<|pad|>",
)


class PayloadError(ValueError):
    """A ``/get_reward`` request body that does not follow OpenRLHF's schema (HTTP 400/422)."""


class RewardPlan(NamedTuple):
    """A batch of :meth:`OpenRLHFReward.plan`: ``size`` samples, grouped by scorer as
    ``(scorer, positions, items)`` (an item is a record, or the error a malformed sample is).
    A NamedTuple, not a dataclass: OpenRLHF executes this file without registering it as a
    module, where a dataclass cannot resolve its annotations."""

    size: int
    groups: list[tuple[SharedScorer, list[int], list[Any]]]


class ResponseSplitError(ValueError):
    """The response cannot be told apart from the prompt in a query: scoring the whole query
    would score the prompt too (its system prompt's example tags, its wording)."""


def split_response(
    query: str, prompt: str | None, *, separator: str | None = None, end_tokens: Sequence[str] = END_TOKENS
) -> str:
    """The response part of an OpenRLHF ``query`` (prompt + response, special tokens kept).

    Tried in order: the query starts with ``prompt``; ``separator`` (the text that ends every
    prompt, e.g. ``"Assistant:"`` of a plain input template: the response follows its
    occurrence that ends the prompt); the prompt found again with whitespace ignored (decoding
    may add a BOS token, merge or drop spaces); the last assistant marker of a known chat
    template. With no prompt the whole query is the response. Otherwise
    :class:`ResponseSplitError` — the prompt is never scored.

    >>> split_response("<s>[INST] Q [/INST] <answer>C</answer></s>", "other prompt")
    '<answer>C</answer>'
    >>> split_response("Q: x\\nA: <answer>C</answer><|im_end|>\\n<|endoftext|>", "Q: x\\nA: ")
    '<answer>C</answer>'
    >>> split_response("<s>Use <answer>X</answer>.  Q: x A:<answer>C</answer>", "Use <answer>X</answer>. Q: x A: ")
    '<answer>C</answer>'
    """
    # lone surrogates (invalid UTF-8) would break RE2 below; the Scorer replaces them the same way
    query = clean_surrogates(query)
    prompt = clean_surrogates(prompt) if prompt else prompt
    response: str | None = None
    if prompt and query.startswith(prompt):
        response = query[len(prompt):]
    if response is None and separator:
        response = _after_separator(query, prompt, separator)
    if response is None and prompt:
        response = _after_loose_prompt(query, prompt)
    if response is None:
        best = -1
        for marker in ASSISTANT_MARKERS:
            at = query.rfind(marker)
            if at >= 0 and at + len(marker) > best:
                best = at + len(marker)
        if best >= 0:
            response = query[best:].lstrip()  # the template's newline(s) / space after the marker
    if response is None:
        if prompt and prompt.strip():
            raise ResponseSplitError(
                "the query does not contain the prompt (not even with whitespace ignored) and has no known "
                "chat-template marker; pass separator= (the text that ends every prompt, e.g. 'Assistant:')"
            )
        response = query  # no prompt: the query is the response
    return _strip_end_tokens(response, end_tokens)


def _after_separator(query: str, prompt: str | None, separator: str) -> str | None:
    """The text after the separator that ends the prompt: its k-th occurrence when the prompt
    holds it k times (a system prompt may quote it), else its last occurrence."""
    k = prompt.count(separator) if prompt else 0
    at = -1
    if k:
        for _ in range(k):
            at = query.find(separator, at + 1)
            if at < 0:
                break
    if at < 0:
        at = query.rfind(separator)
    return None if at < 0 else query[at + len(separator):].lstrip()


def _after_loose_prompt(query: str, prompt: str) -> str | None:
    """The text after the prompt's first occurrence in the query, whitespace ignored on both
    sides (decoding may prepend a BOS token, collapse, add or drop spaces)."""
    bare_prompt = "".join(prompt.split())
    if not bare_prompt:
        return None
    at = "".join(query.split()).find(bare_prompt)
    if at < 0:
        return None
    need = at + len(bare_prompt)  # non-whitespace characters up to the prompt's end
    seen = 0
    for word in re2.finditer(r"\S+", query):
        if seen + len(word.group()) >= need:
            return query[word.start() + need - seen:].lstrip()
        seen += len(word.group())
    return None


@functools.lru_cache(maxsize=16)
def _end_pattern(end_tokens: tuple[str, ...]) -> Any:
    # Matched against the *reversed* text, anchored at its start: a run of end tokens with
    # whitespace between them. RE2 keeps it linear however long the run (padding can be long).
    alternatives = "|".join(re2.escape(t[::-1]) for t in sorted(set(end_tokens), key=len, reverse=True) if t)
    return re2.compile(f"(?:\\s*(?:{alternatives}))*") if alternatives else None


def _strip_end_tokens(text: str, end_tokens: Sequence[str]) -> str:
    """``text`` without trailing end tokens and the whitespace around them
    (e.g. ``"…<|im_end|>\\n<|endoftext|><pad><pad>"`` → ``"…"``)."""
    pattern = _end_pattern(tuple(end_tokens))
    if pattern is None:
        return text
    run = pattern.match(text[::-1])
    if run is None or run.end() == 0:
        return text
    return text[: len(text) - run.end()].rstrip()


class OpenRLHFReward:
    """A picklable OpenRLHF ``reward_func`` for one spec, or for several tasks routed by label.

    Args:
        spec: preset / registered data source name, TOML path, dict or Spec; with ``tasks``,
            the spec of labels that name no task (``None``: such a label is an error).
        tasks: multi-task runs: ``{task: spec}`` or task names (registered data sources). A
            label that is a JSON object with a ``"task"`` key is scored by that task's spec
            (:func:`~medreward.integrations.split_task`); a task not listed is an ``error``.
        separator: the text that ends every prompt (e.g. ``"Assistant:"`` of a plain input
            template), for queries that do not start with the prompt; see :func:`split_response`.
        failed_reward: ``rewards``/``scores`` value of samples without a reward.
        time_limit: seconds one component may spend on one sample.
        as_tensors: return torch tensors (``None``: when torch imports).
    """

    def __init__(
        self,
        spec: SpecLike | None = None,
        *,
        tasks: Mapping[str, SpecLike] | Sequence[str] | None = None,
        separator: str | None = None,
        failed_reward: float = 0.0,
        time_limit: float | None = 10.0,
        as_tensors: bool | None = None,
    ) -> None:
        self.tasks = task_specs(tasks)
        self.spec_source = resolve_spec(spec) if spec is not None or tasks is None else None
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise ValueError(f"separator must be a non-empty string, got {separator!r}")
        self.separator = separator
        self.failed_reward = float(failed_reward)
        self.time_limit = time_limit
        self.as_tensors = as_tensors
        names: dict[str, None] = {}
        backends: set[str] = set()
        for source in self._sources():  # builds now: a bad spec fails at load time
            spec = get_scorer(source, time_limit=time_limit).spec
            names.update(dict.fromkeys(spec.component_names))
            backends.update(spec.backends)
        # one spec: its components in spec order; several: the sorted union (verl's rule)
        self.component_keys = tuple(names) if self.tasks is None else tuple(sorted(names))
        check_component_keys(self.component_keys)
        #: ``backend/<name>/<field>`` extra logs: the batch's model calls, cache hits, failures and tokens per sample
        self.backend_keys = backend_keys(sorted(backends))

    def _sources(self) -> list[SpecLike]:
        sources = list((self.tasks or {}).values())
        return sources if self.spec_source is None else [self.spec_source, *sources]

    def _scorer(self, task: str | None) -> SharedScorer:
        if task is None:
            if self.spec_source is None:
                raise RecordError(f"label names no task (give it as {{\"task\": ..., ...}}); tasks: {sorted(self.tasks or {})}")
            return get_scorer(self.spec_source, time_limit=self.time_limit)
        if self.tasks is None:
            raise RecordError("label names a task, but this reward function has no tasks= to route by")
        if task not in self.tasks:
            raise RecordError(str(UnknownDataSourceError(task, sorted(self.tasks))))
        return get_scorer(self.tasks[task], time_limit=self.time_limit)

    def __call__(self, queries: Sequence[str], prompts: Sequence[str] | None = None,
                 labels: Sequence[Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """``{"rewards", "scores", "extra_logs"}`` for a batch (tensors when torch imports)."""
        result = self.score_lists(queries, prompts, labels)
        return _tensorize(result) if _want_tensors(self.as_tensors) else result

    def score_lists(self, queries: Sequence[str], prompts: Sequence[str] | None = None,
                    labels: Sequence[Any] | None = None) -> dict[str, Any]:
        """The result as plain lists of floats (the HTTP response body)."""
        plan = self.plan(queries, prompts, labels)
        return self.result(plan, [(*scorer.score(items), len(items)) for scorer, _, items in plan.groups])

    def plan(self, queries: Sequence[str], prompts: Sequence[str] | None = None,
             labels: Sequence[Any] | None = None) -> RewardPlan:
        """What a batch asks to score: its samples grouped by the scorer of each (a malformed
        sample is an error record in its group). Raises :class:`PayloadError` for lists that do
        not line up."""
        queries = to_builtin(queries)
        if isinstance(queries, str) or not isinstance(queries, list):
            raise PayloadError(f"queries must be a list of strings, got {type(queries).__name__}")
        n = len(queries)
        prompts = [None] * n if prompts is None else to_builtin(prompts)
        labels = [None] * n if labels is None else to_builtin(labels)
        if not isinstance(prompts, list) or not isinstance(labels, list) or len(prompts) != n or len(labels) != n:
            raise PayloadError(
                f"queries, prompts and labels must be lists of the same length, got "
                f"{n}, {_length(prompts)} and {_length(labels)}"
            )
        default = None if self.spec_source is None else get_scorer(self.spec_source, time_limit=self.time_limit)
        groups: dict[int, tuple[SharedScorer, list[int], list[Any]]] = {}
        for i, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
            scorer, item = self._item(query, prompt, label, default)
            _, where, items = groups.setdefault(id(scorer), (scorer, [], []))
            where.append(i)
            items.append(item)
        return RewardPlan(n, list(groups.values()))

    def result(self, plan: RewardPlan, scored: Sequence[tuple[list[ScoredRecord], RunStats, int]]) -> dict[str, Any]:
        """The result of ``plan`` from each group's ``(records, stats, size)``: its scored records
        in order, and the statistics of the scorer call they came from, which scored ``size``
        samples (more than the group's when a server scored several requests in one call: the
        ``backend/*`` logs are then that call's cost per sample)."""
        flats: list[dict[str, float]] = [{}] * plan.size
        for (scorer, where, _), (records, stats, size) in zip(plan.groups, scored, strict=True):
            warn_failures(f"openrlhf/{scorer.spec.name}", records, every=_WARN_EVERY)
            shares = backend_shares(stats, size)
            cost = {k: shares.get(k, 0.0) for k in self.backend_keys}
            for i, record in zip(where, records, strict=True):
                flats[i] = {**flat_scores(record, self.component_keys, failed_score=self.failed_reward), **cost}
        rewards = [f["score"] for f in flats]
        keys = (*STATUS_KEYS, *self.component_keys, *self.backend_keys)
        return {
            "rewards": rewards,
            "scores": list(rewards),
            "extra_logs": {key: [f[key] for f in flats] for key in keys},
        }

    def _item(self, query: Any, prompt: Any, label: Any, default: SharedScorer | None) -> tuple[SharedScorer, Any]:
        """The scorer of one sample and what it scores (a record, or the error it is)."""
        fallback = default or get_scorer(next(iter(self._sources())), time_limit=self.time_limit)
        if not isinstance(query, str):
            return fallback, bad_input(f"query must be text, got {type(query).__name__}", {"query": query})
        prompt = prompt if isinstance(prompt, str) else None
        try:
            response = split_response(query, prompt, separator=self.separator)
        except ResponseSplitError as exc:
            return fallback, bad_input(f"query: {exc}", {"query": query[:500]})
        try:
            task, ground_truth = split_task(label) if self.tasks is not None else (None, label)
            scorer = self._scorer(task)
        except RecordError as exc:
            return fallback, bad_input(f"label: {exc}", {"completion": response})
        try:
            reference = coerce_reference(ground_truth, scorer.reference_keys)
        except RecordError as exc:
            return scorer, bad_input(f"label: {exc}", {"completion": response})
        return scorer, {"prompt": prompt or "", "completion": response, "reference": reference}

    def __repr__(self) -> str:
        if self.tasks is None:
            return f"{type(self).__name__}(spec={self.spec_source!r})"
        return f"{type(self).__name__}(spec={self.spec_source!r}, tasks={sorted(self.tasks)!r})"


def _length(value: Any) -> Any:
    return len(value) if isinstance(value, list) else type(value).__name__


def _want_tensors(flag: bool | None) -> bool:
    if flag is not None:
        return flag
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _tensorize(result: dict[str, Any]) -> dict[str, Any]:
    import torch

    return {
        "rewards": torch.tensor(result["rewards"], dtype=torch.float32),
        "scores": torch.tensor(result["scores"], dtype=torch.float32),
        "extra_logs": {k: torch.tensor(v, dtype=torch.float32) for k, v in result["extra_logs"].items()},
    }


def make_reward_func(spec: SpecLike | None = None, **options: Any) -> OpenRLHFReward:
    """An OpenRLHF ``reward_func`` bound to ``spec`` (default: ``$MEDREWARD_SPEC`` / :data:`DEFAULT_SPEC`),
    or with ``tasks=`` routing each label to its task's spec; options as in :class:`OpenRLHFReward`.

    >>> fn = make_reward_func(tasks=["toxicology", "mcq"], as_tensors=False)
    >>> fn(["<answer>opioids</answer>", "<answer>B</answer>"], ["", ""],
    ...    ['{"task": "toxicology", "substances": ["opioids"]}', '{"task": "mcq", "answer": "B"}'])["rewards"]
    [0.9, 0.9]
    """
    if options.get("tasks") is not None and spec is None:
        return OpenRLHFReward(None, **options)
    return OpenRLHFReward(resolve_spec(spec, default=DEFAULT_SPEC), **options)


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's hook, usable as is: ``--reward.remote_url <path of this file>``.

    The spec is ``kwargs["spec"]``, else ``$MEDREWARD_SPEC``, else :data:`DEFAULT_SPEC`.
    OpenRLHF only logs an exception from here at INFO level and then fails later with an
    unrelated message, so configuration errors are also logged at ERROR level.
    """
    options = {k: kwargs[k] for k in ("failed_reward", "time_limit", "as_tensors", "separator", "tasks") if k in kwargs}
    try:
        fn = make_reward_func(kwargs.get("spec"), **options)
    except Exception:
        log.exception("medreward: cannot set up the OpenRLHF reward function")
        raise
    return fn(queries, prompts, labels)


def handle_get_reward(payload: Mapping[str, Any], *, spec: SpecLike | None = None,
                      failed_reward: float = 0.0, **options: Any) -> dict[str, Any]:
    """The ``POST /get_reward`` handler of OpenRLHF's HTTP reward protocol, minus the server.

    Request ``{"query": [str], "prompts": [str], "labels": [str]}`` (``prompts`` and
    ``labels`` may be omitted); response ``{"rewards": [float], "scores": [float],
    "extra_logs": {name: [float]}}`` — JSON-ready lists. A malformed body raises
    :class:`PayloadError` (a ``ValueError``: answer 400/422).

    >>> handle_get_reward({"query": ["<answer>C</answer>"], "prompts": [""], "labels": ["C"]}, spec="mcq")["rewards"]
    [0.9]
    """
    if not isinstance(payload, Mapping):
        raise PayloadError(f"the request body must be a JSON object, got {type(payload).__name__}")
    if "query" not in payload:
        raise PayloadError(f"the request body has no 'query' (keys: {sorted(payload)})")
    options.update(failed_reward=failed_reward, as_tensors=False)
    fn = make_reward_func(spec, **options)
    return fn.score_lists(payload["query"], payload.get("prompts"), payload.get("labels"))
