"""The learning-rate range test (``augkit lr-find``, ``augkit train --lr auto``): its rules on
curves of known shape, its suggestion against an lr sweep on the sample digits, the CLI."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.train.config import TrainConfig
from augkit.train.loop import train
from augkit.train.lr_find import SKIP_START, lr_find, suggest


def test_suggest_finds_the_minimum_and_the_steepest_descent_of_a_known_curve():
    lrs = list(np.logspace(-7, 1, 100))
    x = np.log10(lrs)
    # Falls fastest at lr 1e-3 (a tanh step there), lowest at 1e-1, rising after.
    curve = 2.0 - np.tanh(3 * (x + 3)) + np.where(x > -1, (x + 1) ** 2, 0.0)
    minimum, steepest = suggest(lrs, list(curve))
    assert minimum == lrs[int(np.argmin(curve))] and abs(math.log10(minimum) + 1) < 0.1
    assert abs(math.log10(steepest) + 3) < 0.1


@pytest.mark.parametrize("curve", [np.linspace(1, 3, 100), np.full(100, 2.0), np.linspace(3, 1, 8),
                                   np.linspace(1.09861, 1.09850, 100)])  # constant images: a fall of 1e-4 is noise
def test_no_suggestion_when_the_loss_never_falls_after_the_start(curve):
    lrs = list(np.logspace(-7, 1, len(curve)))
    assert suggest(lrs, list(curve)) == (None, None)


def test_the_suggestion_is_within_3x_of_the_best_lr_of_a_sweep_on_the_digits(tmp_path):
    """The evidence of issue 12: the lr an `augkit ablate --grid lr=...` sweep finds best (its
    runs are these `train` calls: the default CNN, one-cycle, 5 epochs, 2 seeds each) against
    the range test's suggestion for 3 seeds."""
    grid, seeds = (0.01, 0.03, 0.1, 0.3, 1.0), (0, 1)
    accuracy = {}
    for lr in grid:
        runs = [train(TrainConfig(lr=lr, epochs=5, seed=s), tmp_path / f"lr={lr}" / f"seed{s}", quiet=True, log=lambda m: None)
                for s in seeds]  # fmt: skip
        accuracy[lr] = np.mean([r["best_val_acc"] for r in runs])
    best = max(grid, key=lambda lr: (accuracy[lr], -abs(math.log10(lr / 0.1))))
    for seed in (0, 1, 2):
        finding = lr_find(TrainConfig(seed=seed), log=lambda m: None)
        assert finding.suggestion is not None
        assert best / 3 <= finding.suggestion <= best * 3, (seed, finding.suggestion, accuracy)


def test_linear_scaling_gives_the_lr_to_type(tmp_path):
    finding = lr_find(TrainConfig(lr_scaling="linear", batch_size=128, seed=0), steps=40, log=lambda m: None)
    assert finding.suggestion == pytest.approx(finding.optimizer_lr * 256 / 128)
    assert finding.optimizer_lr == pytest.approx(finding.minimum_lr / 10)
    assert len(finding.lrs) == len(finding.losses) == len(finding.smoothed) <= 40


def _augkit(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augkit", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_lr_find_cli_writes_the_picture_and_nothing_else(tmp_path):
    result = _augkit("lr-find", "--model", "mlp", "--json", "--steps", 60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lr_find.png"]
    assert (tmp_path / "lr_find.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert report["suggestion"] == pytest.approx(report["minimum_lr"] / 10)
    assert len(report["lrs"]) == len(report["losses"]) <= 60 and report["steps"] == 60


def test_train_lr_auto_records_the_chosen_lr(tmp_path):
    run = tmp_path / "run"
    result = _augkit("train", "--lr", "auto", "--model", "mlp", "--epochs", 1, "-o", run, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if line.startswith("--lr auto: "))
    chosen = float(line.split("suggests lr ")[1].split()[0])
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == chosen
    assert (run / "lr_find.png").is_file()
    assert not (tmp_path / "lr_find.png").exists()


@pytest.mark.parametrize("args, fragment", [
    (["lr-find", "--min-lr", "1", "--max-lr", "0.1"], "--max-lr (0.1) must be above --min-lr (1)"),
    (["lr-find", "--steps", "5"], "--steps must be in [20, 100000]"),
    (["lr-find", "--min-lr", "nan"], "--min-lr must be"),
    (["lr-find", "--lr", "auto"], "--lr auto is what lr-find finds"),
    (["lr-find", "--epochs", "3"], "--epochs: the range test runs --steps steps"),
    (["train", "--lr", "fast"], "'fast' is not a number or auto"),
    (["train", "--lr", "auto", "--resume", "."], "--resume continues a run with its saved config; drop --lr"),
])  # fmt: skip
def test_mistakes_are_one_line(args, fragment, assert_fails, tmp_path):
    result = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "x.png")] if args[0] == "lr-find" else args)
    assert_fails(result, 2, fragment)


def test_the_range_test_mixes_batches_as_the_run_will():
    plain = lr_find(TrainConfig(seed=0), steps=30, log=lambda m: None)
    mixed = lr_find(TrainConfig(seed=0, mixup=0.8, cutmix=1.0), steps=30, log=lambda m: None)
    # The same model, data and lr at step 0; the mixed batch is another input and a soft target.
    assert mixed.lrs == plain.lrs and mixed.losses[0] != plain.losses[0]
    assert all(math.isfinite(v) for v in mixed.losses)


def test_lr_find_writes_only_a_png(assert_fails, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("lr: 0.1\n")
    assert_fails(CliRunner().invoke(cli, ["lr-find", "-o", str(config)]), 2, "name it .png")
    assert config.read_text() == "lr: 0.1\n"


def test_a_loss_still_falling_at_max_lr_is_said():
    finding = lr_find(TrainConfig(seed=0), max_lr=0.01, steps=40, log=lambda m: None)
    assert finding.minimum_lr == finding.lrs[-1] and "larger --max-lr" in finding.warning
