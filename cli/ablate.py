"""``augkit ablate``: a grid over config fields, several seeds each, ending in a table and a chart."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from augkit.cli import options
from augkit.errors import AugkitError
from augkit.train.config import TrainConfig, parse_assignment


@click.command()
@click.argument("data", required=False)
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2,...",
              help="A config field and its values; repeat for the cartesian product. Values are YAML, split on commas "
                   "outside brackets and parentheses, or on | when the list has one.")  # fmt: skip
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds per configuration: the base config's seed (0) and the next ones.")  # fmt: skip
@click.option("--base-config", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML config the grid varies (e.g. an earlier RUN_DIR/config.yaml).")  # fmt: skip
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set a base config field; repeatable.")
@click.option("--study", type=click.Choice(["lecture", "augment"]), default=None,
              help="With no --grid, which comparison on the sample digits: lecture (the default: initialisation, "
                   "dropout, augmentation) or augment (none / crop / crop+flip / TrivialAugment / MixUp / CutMix on 300 "
                   "digits, clean and mislabelled).")  # fmt: skip
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs of every run.")
@click.option("--workers", type=click.IntRange(min=1), default=lambda: os.cpu_count() or 1, show_default="all cores",
              help="Runs at once, each in its own process with a share of the free cores; 1 on a shared GPU.")  # fmt: skip
@options.threads
@click.option("-o", "--out", type=options.OutputPath(folder=True),
              help="Folder for the runs and the report; the same command again continues it "
                   "[default: ablations/lecture, or ablations/KEY-KEY for a grid; KEY-KEY-2, -3, ... "
                   "where that holds another ablation].")  # fmt: skip
@options.json_output
@options.quiet
def ablate(data: str | None, grids: tuple[str, ...], seeds: int, base_config: Path | None, assignments: tuple[str, ...],
           study: str | None, epochs: int | None, workers: int, threads: int | None, out: Path | None, as_json: bool, quiet: bool) -> None:  # fmt: skip
    """Train every configuration of a grid over config fields, SEEDS seeds each, and compare them.

    Writes OUT/runs/KEY=V,.../seedK/ (ordinary run folders), OUT/results.csv (a row per run),
    OUT/report.md (per configuration: mean ± std of the best validation accuracy, the final
    train/val gap, the epochs to 90%, the time; best first) and OUT/report.png. Killed or
    interrupted, the same command continues: finished runs are kept, the others resume.

    With no --grid, the lecture's comparison on the sample digits (36 runs, about a minute on
    two cores): activation × initialisation of an 8-layer MLP, and dropout ×
    augmentation of an MLP that memorises mislabelled digits; the report says whether each of
    the lecture's claims held.

    --study augment compares the field's augmentation tricks instead (36 runs): none, a crop,
    crop+flip, TrivialAugment, MixUp and CutMix for the default CNN on 300 digits, clean and
    with a fifth of them mislabelled.

    \b
    Examples:
      augkit ablate
      augkit ablate --study augment
      augkit ablate --grid dropout=0,0.3,0.5 --grid weight-decay=0,5e-4 --set model=mlp
      augkit ablate ~/data/flowers-64 --grid "augment=null,crop(size=64, padding=4); hflip" --workers 1
      augkit ablate --grid "hidden=[256],[256,256],[512,512]" --set model=mlp --epochs 10 -o ablations/width
      augkit ablate --grid lr=0.01,0.1,10 --base-config runs/cnn-20261126-101500/config.yaml
    """
    from augkit.train.ablate import default_out, run_ablation
    from augkit.train.grid import Study, parse_grid

    started = time.perf_counter()
    if grids and study is not None:
        raise AugkitError(f"--study {study} is a comparison of its own; drop --grid, or drop --study to run the grid")
    if grids:
        base = TrainConfig.load(base_config) if base_config else TrainConfig()
        given = {k: v for k, v in (("data", data), ("epochs", epochs)) if v is not None}
        base = base.replace(given, source="command line").replace(dict(map(parse_assignment, assignments)), source="--set")
        grid = parse_grid(grids, base)
        note = f"Base config: {base_config}." if base_config else ""
        studies = [Study(base=base, grid=grid, seeds=seeds, note=note)]
        if out is None:
            out, studies = default_out(Path("ablations") / "-".join(grid), lambda _: studies)
    else:
        from augkit.train.studies import STUDIES

        study = study or "lecture"
        extra = [name for name, given in (("DATA", data), ("--base-config", base_config), ("--set", assignments)) if given]
        if extra:
            raise AugkitError(f"{', '.join(extra)} needs --grid KEY=V1,V2,...; with no --grid, augkit ablate runs "
                              f"the {study} comparison on the sample digits")  # fmt: skip

        def make(where: Path) -> list[Study]:
            return STUDIES[study](where / "data", seeds=seeds, epochs=epochs)

        out, studies = default_out(Path("ablations") / study, make) if out is None else (out, make(out))

    log = (lambda message: None) if as_json or quiet else (lambda message: click.echo(message, err=True))
    summary = run_ablation(studies, out, workers=workers, threads=threads, log=log)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(_text(summary))


def _text(summary: dict[str, Any]) -> str:
    lines = []
    for best in summary["best"]:
        where = f"{best['study']}: " if best["study"] else ""
        seeds = f"mean of {best['seeds']} seeds" if best["seeds"] > 1 else "1 seed"
        tied = f"; tied with {'; '.join(best['tied_with'])}" if best.get("tied_with") else ""
        lines.append(f"{where}best {best['configuration']}: best val acc {best['best_val_acc']:.4f} ({seeds}){tied}")
    for claim in summary["claims"]:
        lines.append(f"  {'✓' if claim['holds'] else '✗ not seen:'} {claim['claim']}")
    failed = f", {summary['failed']} failed" if summary["failed"] else ""
    lines.append(f"{summary['runs']} runs{failed}, {summary['ran']} trained now, in {summary['wall_seconds']:.0f} s "
                 f"-> {summary['report']} (results.csv and report.png beside it)")  # fmt: skip
    return "\n".join(lines)
