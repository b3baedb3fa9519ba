"""The ``medreward`` command line (typer + rich)."""

from __future__ import annotations

import typer

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
    from . import baselines, demo, score, specs, tasks

    app.command("score")(score.score_command)
    app.add_typer(specs.specs_app, name="specs")
    app.add_typer(tasks.tasks_app, name="tasks")
    app.add_typer(baselines.baselines_app, name="baselines")
    app.command("demo")(demo.demo_command)


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
