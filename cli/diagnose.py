"""``augkit diagnose``: per-layer activation and gradient statistics, for the lecture's probe
experiment (``augkit diagnose probe``) or for a trained run (``augkit diagnose RUN_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from augkit.cli import options
from augkit.cli.train import RegistryChoice


class RunDirByDefault(click.Group):
    """A first argument that names no subcommand is a RUN_DIR: ``augkit diagnose runs/x`` is
    ``augkit diagnose run runs/x`` (a folder called ``probe`` or ``run`` needs ``./probe``)."""

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


@click.group(cls=RunDirByDefault, subcommand_metavar="RUN_DIR [DATA] | probe [OPTIONS]")
def diagnose() -> None:
    """Per-layer activation statistics: mean, std, saturated and dead units, gradient norms.

    `augkit diagnose RUN_DIR [DATA]` looks inside a trained run; `augkit diagnose probe`
    runs the lecture's experiment on a deep MLP. See each command's --help.

    \b
    Examples:
      augkit diagnose probe --compare -o probe.png   # the lecture's five cases, side by side
      augkit diagnose runs/cnn-20261126-101500       # a table, warnings and RUN_DIR/diagnose.png
    """


@diagnose.command()
@click.option("--activation", type=RegistryChoice("augkit.train.activations:ACTIVATIONS"), default=None,
              help="Activation function.  [default: tanh]")
@click.option("--init", type=RegistryChoice("augkit.train.inits:INITS"), default=None,
              help="Weight initialisation.  [default: normal]")
@click.option("--init-std", type=float, default=None, help="std for --init normal (and uniform), 0 to 10.  [default: 0.01]")
@click.option("--depth", type=int, default=6, show_default=True, help="Layers, 1 to 1000.")
@click.option("--width", type=int, default=4096, show_default=True, help="Units per layer, 1 to 65536.")
@click.option("--batch", type=int, default=16, show_default=True, help="Unit-Gaussian inputs in the batch, 1 to 1048576.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the weights and the inputs, 0 to 2**32 - 1.")
@click.option("--compare", is_flag=True, help="Run the lecture's five cases side by side (tanh with normal 0.01, "
              "normal 0.05 and Xavier; relu with Xavier and Kaiming).")  # fmt: skip
@click.option("--device", default="cpu", show_default=True, help="auto | cpu | cuda | cuda:N | mps.")
@click.option("-o", "--out", type=options.OutputPath(), default=Path("probe.png"),
              show_default=True, help="Where to draw the histograms.")  # fmt: skip
@options.threads
@options.json_output
def probe(activation: str | None, init: str | None, init_std: float | None, depth: int, width: int, batch: int,
          seed: int, compare: bool, device: str, out: Path, threads: int | None, as_json: bool) -> None:  # fmt: skip
    """The lecture's experiment: a deep MLP without biases on unit-Gaussian inputs.

    For each layer: mean and std of the activations, the fraction saturated (|x| > 0.99 for
    tanh; x < 0.01 or x > 0.99 for sigmoid), the fraction of dead units (ReLU family: never
    positive on the batch), and the norm of the gradient at that layer's output from one
    backward pass of a random unit-norm gradient at the top. Draws a histogram per layer and
    the std per layer. The weights and activations may take 4 GiB at most.

    \b
    Examples:
      augkit diagnose probe                                   # tanh, normal 0.01: activations vanish
      augkit diagnose probe --activation relu --init kaiming_normal
      augkit diagnose probe --compare -o probe.png --json
    """
    from augkit.train.diagnostics import LECTURE_CASES, ProbeCase, check_probe, run_probe
    from augkit.train.evaluate import check_plot_name
    from augkit.train.plots import plot_probe

    if compare:
        given = [f"--{n}" for n, v in (("activation", activation), ("init", init), ("init-std", init_std)) if v is not None]
        if given:
            raise click.UsageError(f"--compare runs the lecture's five cases; drop {', '.join(given)}")
        cases = list(LECTURE_CASES)
    else:
        cases = [ProbeCase(activation or "tanh", init or "normal", 0.01 if init_std is None else init_std)]
    for case in cases:  # every case checked before the first runs
        check_probe(case, depth=depth, width=width, batch=batch, seed=seed)
    check_plot_name(out)
    results = [run_probe(case, depth=depth, width=width, batch=batch, seed=seed, device=device, threads=threads)
               for case in cases]  # fmt: skip
    title = f"MLP without biases, depth {depth}, width {width}, batch {batch} of unit-Gaussian inputs, seed {seed}"
    plot_probe([(r.case.label, [s.to_dict(hist=True) for s in r.layers]) for r in results], out, title=title)

    reports = [r.to_dict() for r in results]
    if as_json:
        click.echo(json.dumps({"cases": reports, "plot": str(out)} if compare else {**reports[0], "plot": str(out)}, indent=2))
        return
    for report in reports:
        click.echo(f"{report['label']}: depth {depth}, width {width}, batch {batch}, seed {seed}")
        _print_layers(report)
        click.echo()
    click.echo(f"-> {out}")


@diagnose.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("data", required=False)
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of the run to look at.")
@click.option("--batches", type=int, default=None, help="Look at this many validation batches at most (default: all).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (default: the run's).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps.")
@click.option("-o", "--out", type=options.OutputPath(), help="Where to draw (default: RUN_DIR/diagnose.png).")
@options.threads
@options.json_output
def run(run_dir: Path, data: str | None, checkpoint: str, batches: int | None, batch_size: int | None, device: str,
        out: Path | None, threads: int | None, as_json: bool) -> None:  # fmt: skip
    """Statistics of the run in RUN_DIR on DATA's validation batches (default: the run's own).

    Per activation layer, in eval mode: mean, std, saturated fraction, dead units (never
    positive on any validation image), and the gradient norm at its output from one backward
    pass of the loss on the first batch; warnings in plain words; histograms drawn to
    RUN_DIR/diagnose.png, with their course during training when the run was trained with
    --watch-activations. `augkit diagnose RUN_DIR` is short for `augkit diagnose run RUN_DIR`.

    \b
    Examples:
      augkit diagnose runs/cnn-20261126-101500
      augkit diagnose run runs/cnn-20261126-101500 ~/data/digits-test --batches 4 --json
    """
    from augkit.train.diagnostics import diagnose_run

    report = diagnose_run(run_dir, data, checkpoint=checkpoint, device=device, batch_size=batch_size,
                          max_batches=batches, plot=out, threads=threads)  # fmt: skip
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"{report['checkpoint']} on {report['data']}: {report['images']} validation images, {report['activation']}")
    _print_layers(report)
    if report["history_steps"]:
        click.echo(f"recorded during training: {report['history_steps']} steps (activations.jsonl)")
    click.echo(f"-> {report['plot']}")


def _print_layers(report: dict[str, Any]) -> None:
    """The table of layers, then the warnings."""
    rows = report["layers"]
    width = max(5, *(len(r["layer"]) for r in rows)) if rows else 5
    click.echo(f"  {'layer':<{width}} {'mean':>9} {'std':>9} {'saturated':>9} {'dead':>6} {'grad_norm':>10}")
    for r in rows:
        cell = {key: _cell(r[key], spec) for key, spec in _FORMATS.items()}
        click.echo(f"  {r['layer']:<{width}} {cell['mean']:>9} {cell['std']:>9} {cell['saturated']:>9} {cell['dead']:>6} "
                   f"{cell['grad_norm']:>10}")  # fmt: skip
    for message in report["warnings"]:
        click.echo(f"warning: {message}")


_FORMATS = {"mean": ".4f", "std": ".4f", "saturated": ".1%", "dead": ".1%", "grad_norm": ".3g"}


def _cell(value: float | None, spec: str) -> str:
    """A number of the table; None (not finite: the activations overflowed, or no backward pass) as "-"."""
    return "-" if value is None else format(value, spec)
