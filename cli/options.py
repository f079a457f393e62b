"""Options shared by several commands, defined once."""

from __future__ import annotations

import os

import click

json_output = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout.")
quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
seed = click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: the pipeline's own, 0 if unset).")
workers = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    show_default="all cores",
    help="Processes that read images in parallel.",
)
pipeline = click.option(
    "-p",
    "--pipeline",
    "pipeline_spec",
    metavar="PIPELINE",
    help="A pipeline file (.yaml/.json) or an inline spec such as \"crop(size=24, padding=2); hflip\".",
)


def progress_bar(total: int, quiet: bool, unit: str = "img"):
    """A tqdm bar on stderr that appears only for runs longer than a second, and never when quiet."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=True if quiet else None, delay=1.0, dynamic_ncols=True, leave=False)
