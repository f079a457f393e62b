"""``augkit steps``: the names a pipeline spec may use, and the parameters of one."""

from __future__ import annotations

import json
import shutil

import click

from augkit.cli import options


@click.command()
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also list every albumentations transform.")
@click.option(
    "--plan",
    "plan_spec",
    metavar="SPEC",
    help="Show how pipeline SPEC (a file or inline spec) runs compiled: which steps merge into one warp, "
    "one lookup table, one normalisation.",
)
@options.json_output
def steps(name: str | None, show_all: bool, plan_spec: str | None, as_json: bool) -> None:
    """List pipeline steps, or show the parameters of step NAME, or the plan of a pipeline.

    For each parameter of NAME: its type, the values it allows (choices or bounds), its
    default, and what it means, all read from the step itself (its schema and docstring),
    for augkit's steps and albumentations' transforms alike.

    \b
    Examples:
      augkit steps
      augkit steps crop
      augkit steps randaugment
      augkit steps RandomGamma --json
      augkit steps --all
      augkit steps --plan "crop(size=32, padding=4); rotate; brightness; contrast; hflip"
      augkit steps --plan "rand-m9-n2-mstd0.5; hflip"   (timm's strings name the policies too)
    """
    from augkit.pipeline.parameters import describe_step, format_value
    from augkit.pipeline.registry import list_steps

    if plan_spec is not None:
        if name is not None:
            raise click.UsageError("give a step NAME or --plan SPEC, not both")
        _show_plan(plan_spec, as_json)
        return
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


# What each pass of a plan does, as `augkit steps --plan` says it.
_GROUPS = {
    "warp": "one warp into the output size (a copy where only whole pixels move); at run time a second border, "
    "a second resampling or a shrinking resize starts another",
    "flip": "flips, run before the table that follows (a flip commutes with it)",
    "table": "one 256-level lookup table on uint8 images (other dtypes: the steps one by one)",
    "normalise": "one pass, uint8 to float32 through a 256-level table (the intensity steps listed with it "
    "folded in)",
    "as is": "runs as its own step",
}


def _show_plan(spec: str, as_json: bool) -> None:
    from augkit import load_pipeline
    from augkit.pipeline.plan import Plan

    pipeline = load_pipeline(spec)
    plan = pipeline.plan or Plan(pipeline.steps, pipeline.compose.transforms)
    groups = plan.describe()
    if as_json:
        listing = [{"runs": label, "steps": names} for label, names in groups]
        click.echo(json.dumps({"compiled": pipeline.plan is not None, "groups": listing}, indent=2))
        return
    width = min(shutil.get_terminal_size((100, 24)).columns, 120)
    count = f"{len(pipeline)} step{'s' if len(pipeline) != 1 else ''}"
    if pipeline.plan is None:
        head = f"compile: false: this pipeline runs its {count} one by one; compiled, its passes would be:"
    else:
        head = f"compiled plan of {count}, in the order its passes run (`compile: false` in a spec file turns it off):"
    click.echo(click.wrap_text(head, width))
    if not groups:
        click.echo("  (no steps: the image comes back as it is)")
        return
    names_width = max(len(", ".join(names)) for _, names in groups)
    for number, (label, names) in enumerate(groups, 1):
        head = f"  {number}. {label:<10} {', '.join(names):<{names_width}}  "
        click.echo(click.wrap_text(head + _GROUPS[label], width, subsequent_indent=" " * len(head)))
