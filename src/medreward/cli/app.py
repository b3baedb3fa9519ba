"""The ``medreward`` command line (typer + rich)."""

from __future__ import annotations

import os
import sys
import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from .console import setup_logging

app = typer.Typer(
    name="medreward",
    help="Clinical reward engine for RL post-training: score rollouts, inspect specs, generate tasks, run baselines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    setup_logging(verbose)


def _register() -> None:
    from . import baselines, cache, demo, rerank, reward_model, score, specs, tasks

    app.command("score")(score.score_command)
    app.command("rerank")(rerank.rerank_command)
    app.command("filter")(rerank.filter_command)
    app.add_typer(specs.specs_app, name="specs")
    app.add_typer(tasks.tasks_app, name="tasks")
    app.add_typer(baselines.baselines_app, name="baselines")
    app.add_typer(cache.cache_app, name="cache")
    app.add_typer(reward_model.reward_model_app, name="reward-model")
    from . import train; app.add_typer(train.train_app, name="train")  # noqa: E702
    app.command("demo")(demo.demo_command)
    from . import audit; app.command("audit")(audit.audit_command)  # noqa: E702
    from . import benchmark; app.command("benchmark")(benchmark.benchmark_command)  # noqa: E702
    from . import compare; app.command("compare")(compare.compare_command)  # noqa: E702
    from . import eval as eval_cli; app.command("eval")(eval_cli.eval_command)  # noqa: E702
    from . import pairs; app.command("pairs")(pairs.pairs_command)  # noqa: E702
    from . import semantic

    app.command("semantic-check")(semantic.semantic_check_command)
    from . import serve

    app.command("serve")(serve.serve_command)


_register()


def main() -> None:
    """The ``medreward`` console script."""
    cwd_importable()
    command = typer.main.get_command(app)
    hide_flag_types(command)
    command()


def cwd_importable() -> None:
    """Put the working directory first on ``sys.path``, as ``uvicorn`` does (its ``--app-dir``
    defaults to ``.``), so that a spec naming ``mycomp:MyComponent`` finds ``./mycomp.py``
    without ``PYTHONPATH=.`` (a console script's ``sys.path`` starts with its own folder, not
    the working directory). Worker processes inherit the path."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def hide_flag_types(command: TyperCommand | TyperGroup) -> None:
    """Show on/off options (``--quiet``, ``--help``) as flags in ``--help``, without the
    ``<bool>`` type column that typer prints for them (they take no value)."""
    context = command.context_class(command)
    for param in command.get_params(context):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        hide_flag_types(sub)


if __name__ == "__main__":
    main()
