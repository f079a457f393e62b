"""``augkit train``: a baseline trained with the chosen tricks, every option a ``TrainConfig`` field.

Resolution order: ``TrainConfig`` defaults, then ``--config FILE``, then the flags given on the
command line, then ``--set key=value``. Flags have no click defaults of their own (the help shows
``TrainConfig``'s), so a flag that was not typed never overrides the file.

Choices for names (activation, init, model, ...) come from augkit.train's registries, loaded
only when a value is checked or the command's help is shown: torch stays out of ``augkit --help``.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from pathlib import Path
from typing import Any

import click

from augkit.cli import options
from augkit.train.config import (
    AUGMENT_ON, INIT_ALIASES, LR_SCALINGS, SMALL_STEP_FLOPS, STANDARDIZE, TrainConfig, parse_assignment,
)  # fmt: skip

DEFAULTS = TrainConfig()


class RegistryChoice(click.Choice):
    """A choice among the names of an augkit.train registry, imported on first use.

    A registry with ``aliases`` (alias -> name; the inits) also offers those, and an alias
    converts to its canonical name.
    """

    def __init__(self, target: str) -> None:
        self._target = target  # "module:REGISTRY"
        super().__init__([], case_sensitive=True)

    @property
    def registry(self) -> Any:
        module, attribute = self._target.split(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def choices(self) -> list[str]:  # type: ignore[override]
        return [*self.registry.names(), *getattr(self.registry, "aliases", {})]

    @choices.setter
    def choices(self, value: Any) -> None:  # click.Choice.__init__ assigns it; the registry is the source
        pass

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return getattr(self.registry, "aliases", {}).get(value, value)
        self.fail(self.registry.unknown(value), param, ctx)


class LearningRate(click.ParamType):
    """``--lr``: a float, or ``auto`` (the range test's suggestion, ``augkit.train.lr_find``)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | str:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number or auto", param, ctx)


def _default(key: str) -> str:
    value = getattr(DEFAULTS, key)
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def option(*names: str, key: str, help: str, **kwargs: Any) -> Any:  # noqa: A002
    """A config flag: default None (not typed), the TrainConfig default shown in the help."""
    return click.option(*names, key, default=None, help=f"{help}  [default: {_default(key)}]", **kwargs)


def flag(name: str, key: str, help: str) -> Any:  # noqa: A002
    return click.option(f"--{name}/--no-{name}", key, default=None, help=f"{help}  [default: {_default(key)}]")


# Flags that may change when continuing a run (where and how fast it runs, not what it computes).
# augment_on too: both paths draw the same parameters for every sample, so a run keeps its
# augmentation distribution when it moves to the other.
RUNTIME_KEYS = ("device", "workers", "threads", "augment_on")

CONFIG_OPTIONS = [
    option("--model", key="model", type=RegistryChoice("augkit.train.models:MODELS"), help="Architecture."),
    option("--hidden", key="hidden", type=options.IntList(), metavar="W,W,...",
           help="mlp: hidden layer widths, separated by commas or spaces (512,512 or '512 512')."),
    option("--channels", key="channels", type=options.IntList(), metavar="C,C,...",
           help="cnn/resnet: channels per stage, separated by commas or spaces (32,64 or '32 64')."),
    option("--activation", key="activation", type=RegistryChoice("augkit.train.activations:ACTIVATIONS"), help="Activation function."),
    option("--init", key="init", type=RegistryChoice("augkit.train.inits:INITS"),
           help="Weight initialisation (biases start at 0). The lecture's names are aliases, saved in config.yaml "
                "as the name they stand for: " + ", ".join(f"{a} = {n}" for a, n in INIT_ALIASES.items()) + "."),
    option("--init-std", key="init_std", type=float, help="std for --init normal (the course's weight_scale) and uniform; value for constant. 0 to 10."),
    option("--dropout", key="dropout", type=float, help="Probability of DROPPING a unit, in [0, 1)."),
    flag("batchnorm", "batchnorm", "Batch normalisation after each linear/conv layer."),
    option("--weight-decay", key="weight_decay", type=float, help="L2 on weights only (decoupled for adamw). 0 to 1."),
    option("--l1", key="l1", type=float, help="L1 penalty strength on weights. 0 to 1."),
    option("--augment", key="augment", metavar="PIPELINE", help="augkit pipeline for training images (file or inline spec)."),
    option("--augment-on", key="augment_on", type=click.Choice(AUGMENT_ON),
           help="Where --augment runs: cpu (per image, in the --workers processes), device (whole batches on the "
                "training device, the same draws; crop, rotate, hflip, vflip, brightness and contrast only), or auto "
                "(the default: device when every step can, none is a random-resized crop and no --workers are given; "
                "else cpu)."),
    # MixUp / CutMix: timm's Mixup in batch mode (augkit.train.mix)
    option("--mixup", key="mixup", type=float, metavar="ALPHA",
           help="MixUp, timm's semantics: each batch blended with itself reversed, lam ~ Beta(ALPHA, ALPHA), on the "
                "device after standardisation; training loss soft cross-entropy on the mixed targets (no hinge "
                "losses). 0 off; 0.2-0.8 typical; at most 100."),
    option("--cutmix", key="cutmix", type=float, metavar="ALPHA",
           help="CutMix, timm's semantics: a box of area 1 - lam pasted from the partner, lam ~ Beta(ALPHA, ALPHA) "
                "corrected to the clipped box. 0 off; 1.0 typical; at most 100."),
    option("--mix-prob", key="mix_prob", type=float, help="Probability that a batch is mixed (timm's prob), in [0, 1]."),
    option("--switch-prob", key="switch_prob", type=float,
           help="With --mixup and --cutmix: probability that a mixed batch takes CutMix (timm's switch_prob), in [0, 1]."),
    option("--standardize", key="standardize", type=click.Choice(STANDARDIZE),
           help="Standardise with the training split's statistics: channel (per-channel mean/std), pixel (per-pixel "
                "mean and std images, the lecture's X -= X.mean(axis=0); X /= X.std(axis=0), for flattened inputs: a "
                "constant pixel is only centred, any other std floored at one gray level, 1/255, so no pixel is "
                "amplified more than 255-fold; augkit.stats.floored_std, after scikit-learn's StandardScaler), or none "
                "(scale to [0, 1]). Images must all be one size for pixel; --stats then needs `augkit stats --per-pixel`."),
    click.option("--no-standardize", "standardize", flag_value="none", default=None, help="Same as --standardize none."),
    flag("mean-image", "mean_image", "Subtract the training split's mean image (AlexNet) instead of per-channel means."),
    option("--stats", key="stats", metavar="FILE", help="stats.json to standardise with (default: computed on train)."),
    option("--optimizer", key="optimizer", type=RegistryChoice("augkit.train.optim:OPTIMIZERS"), help="Optimiser."),
    option("--lr", key="lr", type=LearningRate(), metavar="LR|auto",
           help="Peak learning rate, above 0 (at most 3.4e38, float32's largest); auto: run `augkit lr-find`'s "
                "range test first and train with its suggestion (recorded in config.yaml, the curve in RUN_DIR/lr_find.png)."),
    option("--lr-scaling", key="lr_scaling", type=click.Choice(LR_SCALINGS),
           help="linear: the optimiser's lr is --lr x --batch-size / 256 (the global batch under torchrun), "
                "the linear scaling rule of Goyal et al. 2017."),
    option("--momentum", key="momentum", type=float, help="SGD momentum (Adam/AdamW: beta1)."),
    option("--schedule", key="schedule", type=RegistryChoice("augkit.train.optim:SCHEDULES"), help="Learning-rate schedule."),
    option("--warmup-epochs", key="warmup_epochs", type=float, help="Linear warm-up length in epochs."),
    option("--label-smoothing", key="label_smoothing", type=float, help="Label smoothing (cross-entropy losses)."),
    option("--loss", key="loss", type=RegistryChoice("augkit.train.losses:LOSSES"),
           help="Loss: cross_entropy (softmax), hinge (the multiclass SVM loss, margin 1), squared_hinge, "
                "soft_cross_entropy (against label distributions)."),
    option("--clip-grad", key="clip_grad", type=float, help="Clip the gradients' global norm to this (above 0)."),
    option("--epochs", key="epochs", type=int, help="Epochs."),
    option("--batch-size", key="batch_size", type=int, help="Batch size."),
    option("--val-split", key="val_split", type=float, help="Fraction of train carved into val when DATA has no val split (default there: 0.2)."),
    option("--train-subset", key="train_subset", type=int, help="Train on this many images only (stratified, seeded): small-data runs."),
    option("--workers", key="workers", type=int, help="DataLoader worker processes for augmentation."),
    option("--device", key="device", help="auto | cpu | cuda | cuda:N | mps."),
    option("--threads", key="threads", type=int, metavar="N",
           help=f"torch's CPU threads; none chooses: 1 for a step under {SMALL_STEP_FLOPS / 1e9:g} GFLOP, else one "
                "per free core (the run's log says which)."),
    flag("amp", "amp", "bf16 autocast and channels-last on CUDA."),
    flag("compile", "compile", "torch.compile the model."),
    option("--seed", key="seed", type=int, help="Seed for init, data order, augmentation and dropout."),
    flag("tensorboard", "tensorboard", "Also log to RUN_DIR/tensorboard (needs the tensorboard package)."),
    option("--watch-activations", key="watch_activations", type=int, metavar="N",
           help="Every N steps, per-layer activation and gradient statistics to RUN_DIR/activations.jsonl."),
]


def config_options(command: Any) -> Any:
    for decorate in reversed(CONFIG_OPTIONS):
        command = decorate(command)
    return command


@click.command(context_settings={"show_default": False})
@click.argument("data", required=False)
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="YAML config file (e.g. an earlier RUN_DIR/config.yaml).")
@config_options
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help="Set any config key (e.g. --set leaky_slope=0.1); repeatable.")
@click.option("-o", "--out", type=options.OutputPath(folder=True), help="RUN_DIR to write (default: runs/<model>-<time>).")
@click.option("--resume", type=click.Path(file_okay=False, path_type=Path),
              help="Continue the run in this RUN_DIR from its last.pt (a run stopped before its first one starts afresh).")
@options.json_output
@options.quiet
def train(data: str | None, config_file: Path | None, assignments: tuple[str, ...], out: Path | None,
          resume: Path | None, as_json: bool, quiet: bool, **flags: Any) -> None:  # fmt: skip
    """Train a baseline on DATA (default: the sample digits) with the chosen tricks.

    DATA is any dataset augkit opens: an ImageFolder (with train/ and val/, or carved with
    --val-split), a packed `augkit preprocess` output (memory-mapped), CIFAR python batches.
    Every option is a config key; --set reaches the ones without a flag (leaky_slope in
    [-1, 1], maxout_pieces, prelu_per_channel, init_mode, zero_init_residual). Paths and
    names must be valid UTF-8 (config.yaml holds them). Ctrl-C keeps the last good
    checkpoint: --resume RUN_DIR continues. RUN_DIR gets
    config.yaml, last.pt/best.pt, metrics.csv, summary.json and curves.png (and lr_find.png
    with --lr auto).

    \b
    Examples:
      augkit train
      augkit train --model mlp --hidden 512,512 --activation tanh --init xavier_normal
      augkit train --model mlp --hidden 128,128,128,128,128,128,128 --init normal --init-std 0.01 --no-batchnorm --epochs 5   # 8 layers: stays at chance
      augkit train ~/data/flowers-64 --model resnet --augment "crop(size=56, padding=4); hflip" --amp
      augkit train --lr auto --augment trivialaugment --mixup 0.2 --cutmix 1.0 --loss cross_entropy
      augkit train --config runs/cnn-20261126-101500/config.yaml -o runs/again
      augkit train --resume runs/cnn-20261126-101500
      torchrun --nproc_per_node=4 -m augkit train ~/data/flowers-64 --model resnet --batch-size 512 --amp
    """
    from augkit.train.distributed import Distributed
    from augkit.train.loop import train as run
    from augkit.train.run_dir import check_run_dir_name

    for folder in (out, resume):  # before the config is printed with the name (train checks it again)
        if folder is not None:
            check_run_dir_name(folder, resume=folder is resume)
    distributed = Distributed.from_env(os.environ)  # set by torchrun; None for one process
    main = distributed is None or distributed.main
    given = {key: value for key, value in flags.items() if value is not None}
    lr_auto = False
    if data is not None:
        given["data"] = data
    if resume is not None:
        config = _resumed_config(resume, config_file, given, assignments, out)
        run_dir = resume
    else:
        if given.get("lr") == "auto":  # the range test runs once the rest of the config is known
            if distributed is not None:
                raise click.UsageError("--lr auto runs on one process: run `augkit lr-find` first and pass its --lr to torchrun")
            given.pop("lr")
            lr_auto = True
        config = resolve_config(config_file, given, assignments)
        run_dir = out if out is not None else _default_run_dir(config)

    if config.augment_on == "device" and not config.augment:
        raise click.UsageError("--augment-on device needs --augment (the pipeline to run on the device)")

    # The run prints its config once DATA, the device, --augment, --stats and RUN_DIR are checked.
    log = (lambda message: None) if as_json or quiet else (lambda message: click.echo(message, err=True))
    finding = None
    if lr_auto:
        from augkit.train.run_dir import check_outside_data, prepare_run_dir

        check_outside_data(run_dir, config)  # before the test: RUN_DIR must take the run that follows
        prepare_run_dir(run_dir, False, log)
        config, finding = choose_lr(config, log)
    try:
        summary = run(config, run_dir, resume=resume is not None, quiet=quiet or as_json, log=log, distributed=distributed)
    finally:
        if finding is not None and (run_dir / "config.yaml").is_file():  # the run's folder exists: the curve beside it
            from augkit.train.lr_find import plot_lr_find
            from augkit.train.run_dir import LR_FIND

            plot_lr_find(finding, run_dir / LR_FIND, title=f"lr range test for {run_dir.name} (optimiser's lr): --lr auto "
                                                           f"chose {config.lr:.3g}")  # fmt: skip
    if not main:
        return
    if as_json:
        click.echo(json.dumps({"run_dir": str(run_dir), **summary}, indent=2))
    else:
        click.echo(
            f"best val acc {summary['best_val_acc']:.4f} (epoch {summary['best_epoch']}), final "
            f"{summary['final_val_acc']:.4f}; {summary['epochs']} epochs in {summary['seconds']:.1f}s, "
            f"{summary['images_per_second']:.0f} img/s on {summary['device']} -> {run_dir}"
        )


def resolve_config(config_file: Path | None, given: dict[str, Any], assignments: tuple[str, ...]) -> TrainConfig:
    """TrainConfig's defaults, then ``--config``, then the flags typed, then ``--set``."""
    config = TrainConfig.load(config_file) if config_file else TrainConfig()
    return config.replace(given, source="command line").replace(dict(parse_assignment(a) for a in assignments), source="--set")


def choose_lr(config: TrainConfig, log: Any) -> tuple[TrainConfig, Any]:
    """``--lr auto``: ``config`` with the range test's suggestion as its lr, and the test's finding."""
    from augkit.errors import AugkitError
    from augkit.train.lr_find import lr_find

    finding = lr_find(config, log=log)
    if finding.suggestion is None:
        raise AugkitError(f"--lr auto: the training loss did not fall by 10% anywhere in the range test ({finding.stopped}); "
                          "look at `augkit lr-find` with a wider --min-lr/--max-lr, or give --lr")  # fmt: skip
    scale = finding.suggestion / finding.optimizer_lr  # batch / 256 with --lr-scaling linear, else 1
    log(f"--lr auto: the range test suggests lr {finding.suggestion:.3g} (a tenth of the lr at the loss's minimum; "
        f"steepest descent at {finding.steepest_lr * scale:.3g}); {finding.stopped}")  # fmt: skip
    if finding.warning:
        log(f"warning: {finding.warning}")
    return config.replace({"lr": float(f"{finding.suggestion:.3g}")}, source="--lr auto"), finding


def _resumed_config(run_dir: Path, config_file: Path | None, given: dict[str, Any], assignments: tuple[str, ...],
                    out: Path | None) -> TrainConfig:  # fmt: skip
    """The saved config of the run in ``run_dir``; only runtime flags may change."""
    if config_file is not None or assignments or out is not None:
        raise click.UsageError("--resume continues a run with its saved config: drop --config, --set and -o")
    changed = sorted(set(given) - set(RUNTIME_KEYS))
    if changed:
        flags = ", ".join("DATA" if k == "data" else f"--{k.replace('_', '-')}" for k in changed)
        raise click.UsageError(f"--resume continues a run with its saved config; drop {flags} "
                               f"(only {', '.join('--' + k.replace('_', '-') for k in RUNTIME_KEYS)} may change)")  # fmt: skip
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        from augkit.errors import AugkitError

        raise AugkitError(f"--resume {run_dir}: no config.yaml there; give the RUN_DIR of an earlier `augkit train`")
    return TrainConfig.load(saved).replace(given, source="command line")


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path("runs") / f"{config.model}-{stamp}"
    n = 1
    while run_dir.exists():
        n += 1
        run_dir = Path("runs") / f"{config.model}-{stamp}-{n}"
    return run_dir
