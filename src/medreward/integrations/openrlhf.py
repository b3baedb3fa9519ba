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
when ``query.startswith(prompt)`` (else after the prompt's last occurrence); otherwise the
text after the last assistant marker of a known chat template (ChatML
``<|im_start|>assistant``, Llama-3 ``<|start_header_id|>assistant<|end_header_id|>``, and
Gemma, Mistral, Phi-3, DeepSeek markers); otherwise the whole query. Trailing end-of-turn
/ EOS / padding tokens (``<|im_end|>``, ``<|eot_id|>``, ``</s>``, ``<|endoftext|>``…) are
stripped.

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
from typing import Any

import re2

from medreward.errors import RecordError
from medreward.integrations._common import (
    STATUS_KEYS,
    SpecLike,
    bad_input,
    check_component_keys,
    coerce_reference,
    flat_scores,
    get_scorer,
    resolve_spec,
    to_builtin,
    warn_failures,
)
from medreward.parse.text import clean_surrogates

__all__ = [
    "ASSISTANT_MARKERS",
    "DEFAULT_SPEC",
    "END_TOKENS",
    "OpenRLHFReward",
    "PayloadError",
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


def split_response(query: str, prompt: str | None, *, end_tokens: Sequence[str] = END_TOKENS) -> str:
    """The response part of an OpenRLHF ``query`` (prompt + response, special tokens kept).

    >>> split_response("<s>[INST] Q [/INST] <answer>C</answer></s>", "other prompt")
    '<answer>C</answer>'
    >>> split_response("Q: x\\nA: <answer>C</answer><|im_end|>\\n<|endoftext|>", "Q: x\\nA: ")
    '<answer>C</answer>'
    """
    # lone surrogates (invalid UTF-8) would break RE2 below; the Scorer replaces them the same way
    query = clean_surrogates(query)
    prompt = clean_surrogates(prompt) if prompt else prompt
    response: str | None = None
    if prompt:
        if query.startswith(prompt):
            response = query[len(prompt):]
        else:
            at = query.rfind(prompt)
            if at >= 0:
                response = query[at + len(prompt):]
    if response is None:
        best = -1
        for marker in ASSISTANT_MARKERS:
            at = query.rfind(marker)
            if at >= 0 and at + len(marker) > best:
                best = at + len(marker)
        if best >= 0:
            response = query[best:].lstrip()  # the template's newline(s) / space after the marker
    if response is None:
        response = query
    return _strip_end_tokens(response, end_tokens)


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
    """A picklable OpenRLHF ``reward_func`` for one spec.

    Args:
        spec: preset / registered data source name, TOML path, dict or Spec.
        failed_reward: ``rewards``/``scores`` value of samples without a reward.
        time_limit: seconds one component may spend on one sample.
        as_tensors: return torch tensors (``None``: when torch imports).
    """

    def __init__(
        self,
        spec: SpecLike,
        *,
        failed_reward: float = 0.0,
        time_limit: float | None = 10.0,
        as_tensors: bool | None = None,
    ) -> None:
        self.spec_source = resolve_spec(spec)
        self.failed_reward = float(failed_reward)
        self.time_limit = time_limit
        self.as_tensors = as_tensors
        names = self._scorer().spec.component_names  # builds now: a bad spec fails at load time
        check_component_keys(names)

    def _scorer(self):
        return get_scorer(self.spec_source, time_limit=self.time_limit)

    def __call__(self, queries: Sequence[str], prompts: Sequence[str] | None = None,
                 labels: Sequence[Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """``{"rewards", "scores", "extra_logs"}`` for a batch (tensors when torch imports)."""
        result = self.score_lists(queries, prompts, labels)
        return _tensorize(result) if _want_tensors(self.as_tensors) else result

    def score_lists(self, queries: Sequence[str], prompts: Sequence[str] | None = None,
                    labels: Sequence[Any] | None = None) -> dict[str, Any]:
        """The result as plain lists of floats (the HTTP response body)."""
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
        scorer = self._scorer()
        items: list[Any] = []
        for query, prompt, label in zip(queries, prompts, labels, strict=True):
            if not isinstance(query, str):
                items.append(bad_input(f"query must be text, got {type(query).__name__}", {"query": query}))
                continue
            response = split_response(query, prompt if isinstance(prompt, str) else None)
            try:
                reference = coerce_reference(label, scorer.spec)
            except RecordError as exc:
                items.append(bad_input(f"label: {exc}", {"completion": response}))
                continue
            items.append({"prompt": prompt if isinstance(prompt, str) else "", "completion": response,
                          "reference": reference})
        records, _ = scorer.score(items)
        warn_failures(f"openrlhf/{scorer.spec.name}", records, every=_WARN_EVERY)
        flats = [flat_scores(r, scorer.spec.component_names, failed_score=self.failed_reward) for r in records]
        rewards = [f["score"] for f in flats]
        log_keys = [*STATUS_KEYS, *scorer.spec.component_names]
        return {
            "rewards": rewards,
            "scores": list(rewards),
            "extra_logs": {key: [f[key] for f in flats] for key in log_keys},
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(spec={self.spec_source!r})"


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
    """An OpenRLHF ``reward_func`` bound to ``spec`` (default: ``$MEDREWARD_SPEC`` / :data:`DEFAULT_SPEC`)."""
    return OpenRLHFReward(resolve_spec(spec, default=DEFAULT_SPEC), **options)


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any) -> dict[str, Any]:
    """OpenRLHF's hook, usable as is: ``--reward.remote_url <path of this file>``.

    The spec is ``kwargs["spec"]``, else ``$MEDREWARD_SPEC``, else :data:`DEFAULT_SPEC`.
    OpenRLHF only logs an exception from here at INFO level and then fails later with an
    unrelated message, so configuration errors are also logged at ERROR level.
    """
    options = {k: kwargs[k] for k in ("failed_reward", "time_limit", "as_tensors") if k in kwargs}
    try:
        fn = make_reward_func(kwargs.get("spec"), **options)
    except Exception:
        log.exception("medreward: cannot set up the OpenRLHF reward function")
        raise
    return fn(queries, prompts, labels)


def handle_get_reward(payload: Mapping[str, Any], *, spec: SpecLike | None = None,
                      failed_reward: float = 0.0) -> dict[str, Any]:
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
    fn = OpenRLHFReward(resolve_spec(spec, default=DEFAULT_SPEC), failed_reward=failed_reward, as_tensors=False)
    return fn.score_lists(payload["query"], payload.get("prompts"), payload.get("labels"))
