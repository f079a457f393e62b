"""``augkit preprocess``: a dataset decoded, resized, optionally augmented, and written out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from augkit.cli import options

RESIZE_MODES = ("center-crop", "exact", "pad", "shorter")  # augkit.resize.RESIZE_MODES, without importing cv2
DISTRIBUTORS = ("local", "ray", "dask")  # augkit.preprocess.distributors.DISTRIBUTORS, without importing numpy


@click.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("out", type=options.OutputPath(folder=True))
@click.option("--size", metavar="HxW", help="Output size, e.g. 32 or 224x160 (default: keep each image's size).")
@click.option("--resize-mode", type=click.Choice(RESIZE_MODES), default="center-crop", show_default=True,
              help="center-crop: cover then cut the centre; pad: fit then pad; exact: stretch; shorter: shorter side = H.")
@click.option("--jpeg-draft/--no-jpeg-draft", default=True, show_default=True,
              help="Decode a JPEG at 1/2-1/8 scale when --size shrinks it by at least 2x more (as Pillow's "
                   "thumbnail does: much faster, within about half a gray level of a full decode).")
@click.option("--gray", is_flag=True, help="Write one gray channel instead of RGB.")
@click.option("--exif-orientation/--no-exif-orientation", default=True, show_default=True,
              help="Turn photos as their EXIF orientation says, as viewers show them; --no-exif-orientation "
                   "keeps the pixels as stored.")
@click.option("--background", default="white", show_default=True, metavar="COLOR",
              help="What transparent pixels are composited onto: white, black or R,G,B (0-255 each).")
@click.option("--format", "out_format", type=click.Choice(["packed", "folder"]), default="packed", show_default=True,
              help="packed: one uint8 N x H x W x C .npy per split; folder: the class tree as image files.")
@click.option("--image-format", type=click.Choice(["png", "jpg"]), default="png", show_default=True,
              help="Folder format: PNG (lossless) or JPEG.")
@click.option("--copies", type=click.IntRange(min=0), default=0,
              help="Augmented copies per training image, written in addition to the image itself (needs -p), at most 1000.")
@options.pipeline
@click.option("--split-val", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=None,
              help="Carve this fraction of train into val (stratified, seeded) when the source has no val split.")
@options.workers
@click.option("--distributor", type=click.Choice(DISTRIBUTORS), default="local", show_default=True,
              help="Where shards run: local processes, or a Ray or Dask cluster (pip install 'augkit[ray]' / "
                   "'augkit[dask]'). Any of them gives the same bytes, and resumes a run another began.")
@click.option("--address", metavar="ADDR",
              help="The Ray or Dask cluster (e.g. 10.0.0.5:6379, tcp://10.0.0.5:8786). Default: $RAY_ADDRESS or "
                   "$DASK_SCHEDULER_ADDRESS, else a local cluster of --workers processes. OUT and SRC must be at "
                   "the same paths on every worker (a shared filesystem).")
@click.option("--connect-timeout", type=float, metavar="SECONDS",
              help="How long to wait for the cluster at --address to accept a connection and answer its "
                   "client's first message, before giving up with an error (default: 30).")
@click.option("--shard-size", type=click.IntRange(min=1), default=256, show_default=True, help="Images per shard (unit of work and of resume), at most: fewer where --size makes a shard's "
                   "images (copies included) larger than 64 MiB.")
@click.option("--strict", is_flag=True, help="Exit 1 if any file was skipped (after writing everything else).")
@click.option("--overwrite", is_flag=True,
              help="Replace an OUT written by a run with other settings: deletes only the files augkit wrote there, "
                   "and refuses (deleting nothing) if OUT holds anything else.")
@options.json_output
@options.quiet
def preprocess(
    src: Path,
    out: Path,
    size: str | None,
    resize_mode: str,
    jpeg_draft: bool,
    gray: bool,
    exif_orientation: bool,
    background: str,
    out_format: str,
    image_format: str,
    copies: int,
    pipeline_spec: str | None,
    split_val: float | None,
    workers: int,
    distributor: str,
    address: str | None,
    connect_timeout: float | None,
    shard_size: int,
    strict: bool,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Preprocess the dataset SRC into OUT: decode, convert, resize, and (optionally) augment.

    SRC is any layout augkit opens (ImageFolder with or without train/ val/, a flat folder,
    CIFAR batches, "digits", images/ + masks/ folders, COCO annotations). Unreadable files
    are skipped and listed. OUT gets the images, stats.json (per-channel mean/std of the
    training split) and manifest.json; masks or boxes, resized with their images, are packed
    beside them (broken ones skipped and listed too). Interrupted runs resume: run the same
    command again. SRC is never modified.

    \b
    Examples:
      augkit preprocess ~/data/flowers flowers-64 --size 64 --workers 8
      augkit preprocess cifar-10-batches-py cifar-packed
      augkit preprocess ~/data/coco coco-320 --size 320 --resize-mode pad
      augkit preprocess sample_data/digits digits-aug --copies 4 -p "rotate(limit=10, p=1)"
      augkit preprocess ~/data/pets pets-folder --size 224 --format folder --image-format jpg --split-val 0.1
      augkit preprocess /nfs/data/flowers /nfs/out/flowers-64 --size 64 --distributor dask --address tcp://head:8786
    """
    from augkit.pipeline import load_pipeline
    from augkit.preprocess import PreprocessConfig, Progress
    from augkit.preprocess import preprocess as run
    from augkit.resize import parse_size

    if copies and pipeline_spec is None:
        raise click.UsageError("--copies needs a pipeline: -p PIPELINE")
    if pipeline_spec is not None and not copies:
        raise click.UsageError("-p makes the augmented copies: give --copies K as well")
    if address is None and distributor != "local":
        from augkit.preprocess.distributors import ADDRESS_ENV

        address = os.environ.get(ADDRESS_ENV[distributor]) or None  # the engine's own tools read it too
    config = PreprocessConfig(
        size=parse_size(size) if size else None,
        resize_mode=resize_mode,
        jpeg_draft=jpeg_draft,
        gray=gray,
        exif_orientation=exif_orientation,
        background=background,
        format=out_format,
        image_format=image_format,
        copies=copies,
        pipeline=load_pipeline(pipeline_spec).to_spec() if pipeline_spec else None,
        split_val=split_val,
        shard_size=shard_size,
    )
    bar = options.progress_bar(0, quiet or as_json)
    skipped = 0

    def advance(images: int, newly_skipped: int) -> None:
        nonlocal skipped
        skipped += newly_skipped
        bar.update(images)
        bar.set_postfix(skipped=skipped, refresh=False)

    with bar:
        progress = Progress(start=lambda total: bar.reset(total=total), advance=advance)
        report = run(src, out, config, workers=workers, overwrite=overwrite, progress=progress,
                     distributor=distributor, address=address, connect_timeout=connect_timeout)

    if as_json:
        click.echo(json.dumps({
            "out": report.out,
            "counts": report.counts,
            "skipped": report.skipped,
            "shards": report.shards,
            "shards_resumed": report.shards_resumed,
            "mean": report.stats.mean.tolist() if report.stats else None,
            "std": report.stats.std.tolist() if report.stats else None,
        }, indent=2))
    else:
        for split, counts in report.counts.items():
            boxes = f", {counts['boxes']} boxes ({counts['boxes_dropped']} cut away)" if "boxes" in counts else ""
            click.echo(f"{split}: {counts['images']} images from {counts['sources']} sources, {counts['skipped']} skipped{boxes}")
        if report.already_complete:
            click.echo("already complete with these settings: nothing to do")
        elif report.shards_resumed:
            click.echo(f"resumed: {report.shards_resumed} of {report.shards} shards were already done")
        for item in report.skipped[:20]:
            click.echo(f"  skipped {item['path']}: {item['reason']}")
        if len(report.skipped) > 20:
            click.echo(f"  ... and {len(report.skipped) - 20} more (all listed in {out / 'manifest.json'})")
        if report.stats is not None:
            click.echo(f"train mean {[round(float(v), 4) for v in report.stats.mean]} std {[round(float(v), 4) for v in report.stats.std]}")
        click.echo(f"wrote {out}")
    if strict and report.skipped:
        raise click.ClickException(f"--strict: {len(report.skipped)} file(s) were skipped (listed above and in the manifest)")
