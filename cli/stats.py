"""``augkit stats``: per-channel mean and std of a dataset's training split."""

from __future__ import annotations

import json
from pathlib import Path

import click

from augkit.cli import options


@click.command()
@click.argument("data", required=False, type=click.Path(path_type=Path))
@click.option("-o", "--out", type=options.OutputPath(), help="Write the statistics to this JSON file (missing folders are created).")
@click.option(
    "--split",
    type=click.Choice(["train", "val", "all"]),
    default="train",
    show_default=True,
    help="Which split to measure; statistics for preprocessing come from training data only.",
)
@options.workers
@click.option("--mean-image", is_flag=True, help="Also compute the mean image (AlexNet-style; needs equal-sized images).")
@click.option(
    "--gray",
    is_flag=True,
    help="Convert colour images to one gray channel (a dataset whose images are all gray is measured as one channel without it).",
)
@options.json_output
@options.quiet
def stats(
    data: Path | None,
    out: Path | None,
    split: str,
    workers: int,
    mean_image: bool,
    gray: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Per-channel mean and std of DATA (default: the sample digits), on the [0, 1] scale.

    Every pixel counts once, whatever its image's size. Unreadable files are skipped and
    listed with their reason. A dataset whose images are all gray has one channel, any other
    three (RGB), as in every augkit command, so the output file feeds `augkit train --stats
    FILE` on the same data, and `standardize: {stats: FILE}`.

    \b
    Examples:
      augkit stats
      augkit stats ~/data/flowers -o flowers-stats.json --workers 8
      augkit stats cifar-10-batches-py --json
    """
    from augkit.io.datasets import open_dataset
    from augkit.stats import compute_stats

    dataset = open_dataset(data, split=split)
    with options.progress_bar(len(dataset), quiet or as_json) as bar:
        result = compute_stats(dataset, workers=workers, mean_image=mean_image, gray=gray, progress=bar.update)
    measured = result.stats
    if out is not None:
        measured.save(out)

    skipped = [{"path": s.path, "reason": s.reason} for s in result.skipped]
    if as_json:
        report = {
            "images": measured.images,
            "count": measured.count,  # pixels per channel, as in the file -o writes
            "channels": measured.channels,
            "mean": measured.mean.tolist(),
            "std": measured.std.tolist(),
            "skipped": skipped,
            "dataset": str(dataset.root) if dataset.root else dataset.kind,
            "split": split,
            "out": str(out) if out else None,
        }
        click.echo(json.dumps(report, indent=2))
        return

    where = dataset.root if dataset.root is not None else dataset.kind
    click.echo(f"{where} ({dataset.kind}, split {split}): {measured.images} images, {measured.count} pixels per channel")
    names = ["gray"] if measured.channels == 1 else ["R", "G", "B", "A"][: measured.channels]
    click.echo("        " + "".join(f"{n:>9}" for n in names))
    click.echo("mean    " + "".join(f"{v:9.4f}" for v in measured.mean))
    click.echo("std     " + "".join(f"{v:9.4f}" for v in measured.std))
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s):")
        for item in skipped:
            click.echo(f"  {item['path']}: {item['reason']}")
    if out is not None:
        click.echo(f"wrote {out}")
