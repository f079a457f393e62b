"""``augkit stats``: per-channel mean and std of a dataset's training split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from augkit.cli import options

if TYPE_CHECKING:
    from augkit.stats import ChannelStats


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
    "--per-pixel",
    is_flag=True,
    help="Also compute the mean image and the per-pixel std image, X.mean(axis=0) and X.std(axis=0) over the images "
    "(needs equal-sized images), for `--standardize pixel` and `standardize(stats=FILE, mode=pixel)`; -o writes them "
    "beside FILE as STEM.mean_image.npy and STEM.std_image.npy (float64 H x W x C, [0, 1] scale). Standardising "
    "divides by the std floored: a constant pixel is only centred (scikit-learn's StandardScaler), any other std is "
    "at least one gray level, 1/255, so no pixel is amplified more than 255-fold (augkit.stats.floored_std).",
)
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
    per_pixel: bool,
    gray: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Per-channel mean and std of DATA (default: the sample digits), on the [0, 1] scale.

    Every pixel counts once, whatever its image's size. Unreadable files are skipped and
    listed with their reason. A dataset whose images are all gray has one channel, any other
    three (RGB), as in every augkit command, so the output file feeds `augkit train --stats
    FILE` on the same data, and `standardize: {stats: FILE}`. With --per-pixel also the mean
    and std images (per pixel, over the images), and how many pixels are constant or vary by
    less than one gray level.

    \b
    Examples:
      augkit stats
      augkit stats ~/data/flowers -o flowers-stats.json --workers 8
      augkit stats cifar-10-batches-py --json
      augkit stats --per-pixel -o digits-stats.json
    """
    from augkit.io.datasets import open_dataset
    from augkit.stats import compute_stats

    if out is not None and out.suffix.lower() != ".json":  # never JSON over an image array (stats.mean_image.npy) or a PNG
        from augkit.errors import AugkitError

        raise AugkitError(f"-o {out}: the statistics are a JSON file (their images go beside it); name it .json")
    dataset = open_dataset(data, split=split)
    with options.progress_bar(len(dataset), quiet or as_json) as bar:
        result = compute_stats(
            dataset, workers=workers, mean_image=mean_image, std_image=per_pixel, gray=gray, progress=bar.update
        )
    measured = result.stats
    if out is not None:
        measured.save(out)
    images = {key: measured.image_path(out, key) if out else None for key in ("mean_image", "std_image")
              if getattr(measured, key) is not None}  # fmt: skip

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
            **{key: str(path) if path else None for key, path in images.items()},
        }
        if per_pixel:
            report["per_pixel"] = _per_pixel_summary(measured)
        click.echo(json.dumps(report, indent=2))
        return

    where = dataset.root if dataset.root is not None else dataset.kind
    click.echo(f"{where} ({dataset.kind}, split {split}): {measured.images} images, {measured.count} pixels per channel")
    names = ["gray"] if measured.channels == 1 else ["R", "G", "B", "A"][: measured.channels]
    click.echo("        " + "".join(f"{n:>9}" for n in names))
    click.echo("mean    " + "".join(f"{v:9.4f}" for v in measured.mean))
    click.echo("std     " + "".join(f"{v:9.4f}" for v in measured.std))
    if per_pixel:
        summary = _per_pixel_summary(measured)
        click.echo(
            f"per pixel ({summary['shape']}): std {summary['std_min']:.4f} to {summary['std_max']:.4f}; "
            f"{summary['constant']} constant (only centred), {summary['floored']} below one gray level "
            f"(std floored at 1/255) by augkit.stats.floored_std"
        )
    if skipped:
        click.echo(f"skipped {len(skipped)} unreadable file(s):")
        for item in skipped:
            click.echo(f"  {item['path']}: {item['reason']}")
    if out is not None:
        click.echo(f"wrote {', '.join(str(path) for path in (out, *images.values()))}")


def _per_pixel_summary(measured: ChannelStats) -> dict:
    """The std image in numbers: its shape, range, and the pixels ``floored_std`` treats apart."""
    from augkit.stats import MIN_STD, PIXEL_STD_FLOOR

    std = measured.std_image
    return {
        "shape": " x ".join(map(str, std.shape)),
        "std_min": float(std.min()),
        "std_max": float(std.max()),
        "constant": int((std < MIN_STD).sum()),  # divided by 1
        "floored": int(((std >= MIN_STD) & (std < PIXEL_STD_FLOOR)).sum()),  # divided by 1/255
    }
