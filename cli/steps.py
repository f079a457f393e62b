"""``augkit steps``: the names a pipeline spec may use, and the parameters of one."""

from __future__ import annotations

import click


@click.command()
@click.argument("name", required=False)
@click.option("--all", "show_all", is_flag=True, help="Also list every albumentations transform.")
def steps(name: str | None, show_all: bool) -> None:
    """List pipeline steps, or show the parameters of step NAME.

    \b
    Examples:
      augkit steps
      augkit steps crop
      augkit steps --all
    """
    import inspect

    from augkit.registry import get_step, list_steps, step_parameters

    if name is None:
        click.echo("augkit steps: " + ", ".join(list_steps("augkit")))
        if show_all:
            click.echo("albumentations transforms: " + ", ".join(list_steps("albumentations")))
        else:
            click.echo("and every albumentations transform by class name (--all lists them)")
        return
    cls = get_step(name)
    summary = (inspect.getdoc(cls) or "").split("\n\n")[0]
    click.echo(f"{name}: {summary}")
    for key, parameter in step_parameters(cls).items():
        default = "" if parameter.default is inspect.Parameter.empty else f" = {parameter.default!r}"
        click.echo(f"  {key}{default}")
