"""``medreward specs``: list the shipped presets, show one."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from ..compose.spec import list_presets, load_spec, preset_path, unavailable_presets
from .console import out, user_errors

specs_app = typer.Typer(help="List the shipped reward specs (presets) or show one.", invoke_without_command=True)


@specs_app.callback()
@user_errors
def specs_list(ctx: typer.Context) -> None:
    """List the presets."""
    if ctx.invoked_subcommand is not None:
        return
    table = Table(title="medreward presets", show_lines=False)
    table.add_column("name", style="bold")
    table.add_column("task")
    table.add_column("components (weight)")
    table.add_column("aggregate")
    table.add_column("description", overflow="fold", max_width=60)
    for name, spec in list_presets().items():
        parts = ", ".join(
            f"{c.name}:{c.kind} ({c.weight:g}{', gate' if c.gate else ''})" for c in spec.components
        )
        table.add_row(name, spec.task or "", parts, spec.aggregate, spec.description)
    for name, reason in unavailable_presets().items():
        table.add_row(name, "", "[dim]not available here[/dim]", "", reason)
    out.print(table)


@specs_app.command("show")
@user_errors
def specs_show(name: str = typer.Argument(..., help="Preset name or path to a spec TOML.")) -> None:
    """Print a spec as TOML (presets print their shipped file, comments included).

    The text is written as it is, never wrapped or coloured, so `medreward specs show NAME > my.toml`
    gives a file that loads as the same spec."""
    spec = load_spec(name)  # validate first; an unknown name fails with the list of presets
    path = preset_path(name)
    text = path.read_text("utf-8") if path.is_file() else spec.to_toml()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
