"""``augkit evaluate``: accuracy, per-class accuracy and confusion matrix of a trained run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augkit.cli import options


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("data", required=False)
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True,
              help="Which checkpoint of the run to evaluate.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N | mps.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Batch size (default: the run's).")
@click.option("-o", "--out", type=options.OutputPath(), help="Where to draw the confusion matrix (default: RUN_DIR/confusion.png).")
@options.threads
@options.json_output
def evaluate(run_dir: Path, data: str | None, checkpoint: str, device: str, batch_size: int | None,
             out: Path | None, threads: int | None, as_json: bool) -> None:  # fmt: skip
    """Evaluate the run in RUN_DIR on DATA (default: the run's own validation split).

    DATA must have the run's classes and image size; its val split is used (or the fraction
    the run carved with --val-split, drawn with the run's seed).

    \b
    Examples:
      augkit evaluate runs/cnn-20261126-101500
      augkit evaluate runs/cnn-20261126-101500 ~/data/digits-test --checkpoint last --json
    """
    from augkit.train.config import printable
    from augkit.train.evaluate import evaluate_run

    report = evaluate_run(run_dir, data, checkpoint=checkpoint, device=device, batch_size=batch_size, plot=out,
                          threads=threads)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    # Class names are folder names: their bytes that are not UTF-8 are shown escaped, as on the plot.
    classes, confusion = [printable(c) for c in report["classes"]], report["confusion"]
    click.echo(f"{report['checkpoint']} on {report['data']}: {report['images']} images, "
               f"accuracy {report['accuracy']:.4f}, loss {report['loss']:.4f}")  # fmt: skip
    width = max(5, *(len(c) for c in classes))
    click.echo("\nper class:")
    for name, accuracy in zip(classes, report["per_class"].values()):
        click.echo(f"  {name:<{width}}  {'-' if accuracy is None else f'{accuracy:.4f}'}")
    cell = max(4, len(str(max(max(row) for row in confusion))) + 1)
    click.echo(f"\nconfusion (rows: true, columns: predicted):\n  {'':<{width}} " + "".join(f"{c[:cell - 1]:>{cell}}" for c in classes))
    for name, row in zip(classes, confusion):
        click.echo(f"  {name:<{width}} " + "".join(f"{v:>{cell}}" for v in row))
    click.echo(f"\n-> {report['plot']}")
