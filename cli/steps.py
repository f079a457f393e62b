"""``augkit steps``: the names a pipeline spec may use, and the parameters of one."""

from __future__ import annotations

import json
import shutil

import click

from augkit.cli import options


@click.command()
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also list every albumentations transform.")
@options.json_output
def steps(name: str | None, show_all: bool, as_json: bool) -> None:
    """List pipeline steps, or show the parameters of step NAME.

    For each parameter of NAME: its type, the values it allows (choices or bounds), its
    default, and what it means, all read from the step itself (its schema and docstring),
    for augkit's steps and albumentations' transforms alike.

    \b
    Examples:
      augkit steps
      augkit steps crop
      augkit steps RandomGamma --json
      augkit steps --all
    """
    from augkit.pipeline.parameters import describe_step, format_value
    from augkit.pipeline.registry import list_steps

    if name is None:
        listing = {"augkit": list_steps("augkit"), "albumentations": list_steps("albumentations")}
        if as_json:
            click.echo(json.dumps(listing, indent=2))
            return
        click.echo("augkit steps: " + ", ".join(listing["augkit"]))
        if show_all:
            click.echo("albumentations transforms: " + ", ".join(listing["albumentations"]))
        else:
            click.echo("and every albumentations transform by class name (--all lists them)")
        click.echo("`augkit steps NAME` shows the parameters of one.")
        return
    summary, parameters = describe_step(name)
    if as_json:
        click.echo(json.dumps({"name": name, "summary": summary, "parameters": [p.to_dict() for p in parameters]}, indent=2))
        return
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    click.echo(click.wrap_text(f"{name}: {summary}", width))
    click.echo()  # the summary, however many lines it wraps to, then the parameters
    if not parameters:
        click.echo("  (no parameters)")
        return
    column = max(len(p.name) for p in parameters) + 4
    for parameter in parameters:
        allowed = [parameter.type] if parameter.type else []
        if parameter.choices:
            allowed.append("one of " + ", ".join(format_value(c, parameter.name) for c in parameter.choices))
        if parameter.bounds:
            allowed.append(parameter.bounds)
        default = "required" if parameter.required else f"default {format_value(parameter.default, parameter.name)}"
        head = f"  {parameter.name:<{column - 2}}{'; '.join(allowed + [default])}"
        click.echo(click.wrap_text(head, width, subsequent_indent=" " * (column + 2)))
        if parameter.meaning:
            indent = " " * column
            click.echo(click.wrap_text(parameter.meaning, width, initial_indent=indent, subsequent_indent=indent))
