"""``augkit preview``: a contact sheet of what a pipeline does to real images."""

from __future__ import annotations

from pathlib import Path

import click

from augkit.cli import options


@click.command()
@options.sheet_inputs
@options.pipeline
@options.variants
@options.rows
@options.seed
@click.option("--epoch", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="The first epoch drawn: variants are epochs EPOCH..EPOCH+N-1.")
@click.option("--sample-seed", type=click.IntRange(0, 2**63 - 1), default=None, help="Which images are sampled from each dataset  [default: the pipeline's seed].")
@click.option("--stages", is_flag=True, help="Show the image after each step instead of N variants; steps that did not apply say so.")
@click.option("--no-targets", is_flag=True, help="Draw a dataset's images without its masks or boxes.")
@click.option("-o", "--out", type=options.OutputPath(), default=Path("preview.png"), show_default=True, help="The PNG to write (missing folders are created).")
@click.option("--open", "open_after", is_flag=True, help="Open the PNG in the default viewer.")
def preview(
    inputs: tuple[Path, ...],
    pipeline_spec: str | None,
    n: int,
    rows: int,
    seed: int | None,
    epoch: int,
    sample_seed: int | None,
    stages: bool,
    no_targets: bool,
    out: Path,
    open_after: bool,
) -> None:
    """Preview a pipeline on IMAGES or images sampled from a DATASET (default: the sample photos).

    One row per image: the original, then N variants (the draws epochs 0..N-1 would give
    that sample in training), captioned with the parameters applied. Every tile is drawn at a
    readable size (small ones enlarged with whole pixels) and captioned with its true size,
    height x width, and the factor it is drawn at ("24x24 px ×7"). The same seed gives a
    byte-identical PNG.

    A dataset with targets (images/ + masks/ folders, COCO annotations) shows them on every
    tile, moved by the same draws: masks as translucent colours per label, boxes with their
    class, keypoints as dots. The spec need not declare the box format (its other settings,
    such as min_visibility, apply).

    \b
    Examples:
      augkit preview
      augkit preview -p "crop(size=24, padding=4); rotate(limit=15); hflip" cat.jpg dog.png
      augkit preview ~/data/flowers --rows 6 -n 8 -p aug.yaml --seed 3
      augkit preview -p aug.yaml --stages photo.jpg
      augkit preview ~/data/coco -p aug.yaml   (its boxes drawn; --no-targets hides them)
      augkit preview -p aug.yaml --epoch 10 --sample-seed 2   (what `augkit studio` shows)
    """
    from augkit.files import atomic_write
    from augkit.io.datasets import sample_data_dir
    from augkit.pipeline import load_pipeline
    from augkit.preview import DEFAULT_PIPELINE, collect_sources, contact_sheet

    if out.suffix.lower() != ".png":
        from augkit.errors import AugkitError

        raise AugkitError(f"-o {out}: the contact sheet is a PNG; name it .png")
    pipeline = load_pipeline(pipeline_spec if pipeline_spec is not None else DEFAULT_PIPELINE, seed=seed)
    sample = pipeline.seed if sample_seed is None else sample_seed
    sources = collect_sources(inputs or [sample_data_dir() / "photos"], rows=rows, seed=sample, targets=not no_targets)
    atomic_write(out, contact_sheet(pipeline, sources, n=n, epoch=epoch, stages=stages))
    images = f"{len(sources)} image{'s' if len(sources) != 1 else ''}"
    click.echo(f"wrote {out} ({images} x {'stages' if stages else f'{n} variant' + ('s' if n != 1 else '')})")
    if open_after:
        click.launch(str(out))
