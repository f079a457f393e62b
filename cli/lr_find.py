"""``augkit lr-find``: the learning-rate range test on the run ``augkit train`` would start.

It takes every option of ``augkit train`` (the same flags, ``--config`` and ``--set``), runs
``augkit.train.lr_find.lr_find`` on that configuration and writes only the picture: no run
folder, no checkpoint, no cached statistics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from augkit.cli import options
from augkit.cli.train import config_options, resolve_config
from augkit.errors import AugkitError
from augkit.train.lr_find import MAX_LR, MIN_LR, STEPS

# train's options that the range test has no use for: refused rather than ignored.
IGNORED = ("epochs", "schedule", "warmup_epochs", "watch_activations", "tensorboard")


@click.command("lr-find", context_settings={"show_default": False})
@click.argument("data", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="YAML config file (e.g. an earlier RUN_DIR/config.yaml).")
@config_options
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set any config key (e.g. --set leaky_slope=0.1); repeatable.")
@click.option("--min-lr", type=float, default=MIN_LR, show_default=True, help="The optimiser's lr at the first step.")
@click.option("--max-lr", type=float, default=MAX_LR, show_default=True, help="The optimiser's lr at the last step (exponential between).")
@click.option("--steps", type=int, default=STEPS, show_default=True, help="Optimisation steps of the test (cycling through the training split).")
@click.option("-o", "--out", type=options.OutputPath(), default="lr_find.png", show_default=True, help="Where to draw the loss against the lr (PNG).")
@options.json_output
@options.quiet
def lr_find(data: str | None, config_file: Path | None, assignments: tuple[str, ...], min_lr: float, max_lr: float,
            steps: int, out: Path, as_json: bool, quiet: bool, **flags: Any) -> None:  # fmt: skip
    """Find a learning rate for DATA (default: the sample digits): Smith's range test.

    The run `augkit train` would start with the same options trains for --steps steps while
    the lr rises exponentially from --min-lr to --max-lr; the smoothed training loss against
    the lr is drawn to -o. It stops early when the loss passes 4x its lowest. The suggestion is
    a tenth of the lr at the lowest smoothed loss (fastai's rule for one-cycle training, the
    default schedule; the steepest descent, the pick for a constant lr, is printed too).
    Nothing else is written. `augkit train --lr auto` runs the same test first.

    \b
    Examples:
      augkit lr-find
      augkit lr-find --model mlp --hidden 512,512 --optimizer adam -o mlp_lr.png
      augkit lr-find ~/data/flowers-64 --model resnet --augment "crop(size=56, padding=4); hflip" --steps 200
    """
    from augkit.train.lr_find import lr_find as find
    from augkit.train.lr_find import plot_lr_find

    if out.suffix.lower() != ".png":  # never a PNG written over a config.yaml or a stats file
        raise AugkitError(f"-o {out}: the range test's picture is a PNG; name it .png")
    ignored = sorted(key for key in IGNORED if flags.get(key) is not None)
    if ignored:
        raise click.UsageError(f"{', '.join('--' + k.replace('_', '-') for k in ignored)}: the range test runs "
                               f"--steps steps at a rising lr, without epochs or a schedule; drop it")  # fmt: skip
    given = {key: value for key, value in flags.items() if value is not None}
    if given.get("lr") == "auto":
        raise click.UsageError("--lr auto is what lr-find finds; drop --lr (the test does not use it)")
    given.pop("lr", None)
    if data is not None:
        given["data"] = data
    config = resolve_config(config_file, given, assignments)
    log = (lambda message: None) if as_json or quiet else (lambda message: click.echo(message, err=True))
    finding = find(config, min_lr=min_lr, max_lr=max_lr, steps=steps, log=log)
    data_name = config.data or "the sample digits"
    plot_lr_find(finding, out, title=f"lr range test: {config.model} on {data_name}, {config.optimizer}, batch "
                                     f"{config.batch_size} ({finding.stopped})")  # fmt: skip
    if as_json:
        click.echo(json.dumps({"plot": str(out), **finding.to_dict()}, indent=2))
        return
    if finding.suggestion is None:
        click.echo(f"no suggestion: the smoothed loss did not fall by 10% after the first steps ({finding.stopped}); look at "
                   f"{out} and widen --min-lr/--max-lr or change the run  -> {out}")  # fmt: skip
        return
    scale = finding.suggestion / finding.optimizer_lr  # batch / 256 with --lr-scaling linear, else 1
    scaled = f" (the optimiser's lr {finding.optimizer_lr:.3g} with --lr-scaling linear)" if config.lr_scaling == "linear" else ""
    click.echo(f"suggested --lr {finding.suggestion:.3g}{scaled}: a tenth of the lr at the lowest smoothed loss "
               f"(--lr {finding.minimum_lr * scale:.3g}); steepest descent at --lr {finding.steepest_lr * scale:.3g}; "
               f"{finding.stopped}  -> {out}")  # fmt: skip
    if finding.warning:
        click.echo(f"warning: {finding.warning}", err=True)
