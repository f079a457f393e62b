"""Losses by name (``--loss``): each against its formula, and through ``augkit train``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.errors import AugkitError
from augkit.train.config import TrainConfig
from augkit.train.losses import LOSSES, create_loss

SCORES = torch.randn(16, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
LABELS = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))


def _cs231n_svm(scores: torch.Tensor, labels: torch.Tensor, power: int) -> torch.Tensor:
    """CS231n's multiclass SVM loss, written out: sum over j != y of max(0, s_j - s_y + 1)**power."""
    total = 0.0
    for s, y in zip(scores, labels):
        total += sum(max(0.0, float(s[j] - s[y] + 1)) ** power for j in range(len(s)) if j != y)
    return torch.tensor(total / len(scores), dtype=torch.float64)


@pytest.mark.parametrize("name, power", [("hinge", 1), ("squared_hinge", 2)])
def test_hinge_losses_are_the_multiclass_svm_loss_over_the_number_of_classes(name, power):
    loss = create_loss(TrainConfig(loss=name))(SCORES, LABELS)
    torch.testing.assert_close(loss, _cs231n_svm(SCORES, LABELS, power) / SCORES.shape[1])


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_cross_entropy_of_class_indices_is_cross_entropy_and_takes_distributions(smoothing):
    config = TrainConfig(loss="soft_cross_entropy", label_smoothing=smoothing)
    soft, hard = create_loss(config), create_loss(TrainConfig(label_smoothing=smoothing))
    torch.testing.assert_close(soft(SCORES, LABELS), hard(SCORES, LABELS))
    mixed = torch.softmax(torch.randn(16, 10, generator=torch.Generator().manual_seed(2), dtype=torch.float64), 1)
    expected = -(mixed * (1 - smoothing) + smoothing / 10).mul(torch.log_softmax(SCORES, 1)).sum(1).mean()
    torch.testing.assert_close(soft(SCORES, mixed), expected)


def test_label_smoothing_with_a_hinge_loss_and_unknown_names_are_one_line():
    with pytest.raises(AugkitError, match="--label-smoothing 0.1 applies to cross_entropy and soft_cross_entropy"):
        create_loss(TrainConfig(loss="hinge", label_smoothing=0.1))
    with pytest.raises(AugkitError, match="hinge"):
        create_loss(TrainConfig(loss="hinj"))
    assert sorted(LOSSES) == ["cross_entropy", "hinge", "soft_cross_entropy", "squared_hinge"]


def test_train_with_the_svm_loss_records_it_and_learns(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--loss", "hinge", "--model", "mlp", "--hidden", "64", "--epochs", "2",
                                      "-q", "--json", "-o", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["loss"] == "hinge"
    assert (run_dir / "last.pt").exists()
    assert json.loads((run_dir / "summary.json").read_text())["final_val_acc"] > 0.5  # 10 classes: chance is 0.1


@pytest.mark.parametrize("args, fragment", [
    (["--loss", "nope"], "--loss"),
    (["--loss", "hinge", "--label-smoothing", "0.1"], "--label-smoothing 0.1 applies to cross_entropy"),
])
def test_loss_mistakes_are_one_line_exit_2(tmp_path: Path, args, fragment):
    result = CliRunner().invoke(cli, ["train", *args, "--epochs", "1", "-o", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.output


def test_help_lists_the_losses():
    help_text = CliRunner().invoke(cli, ["train", "--help"]).output
    assert "hinge" in help_text and "soft_cross_entropy" in help_text


def test_summary_states_the_peak_lr_after_linear_scaling(tmp_path: Path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--lr-scaling", "linear", "--batch-size", "128", "--lr", "0.1",
                                      "--model", "mlp", "--hidden", "16", "--epochs", "1", "-q", "-o", str(run_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "summary.json").read_text())["peak_lr"] == pytest.approx(0.05)
