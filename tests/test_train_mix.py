"""MixUp and CutMix (augkit.train.mix, timm's ``Mixup`` in batch mode): the mix against timm's
formulas written out, on real photos; draws that depend on (seed, epoch, step) only; the loss
they train; and ``augkit train --mixup/--cutmix`` end to end: what the run saves and says, the
mistakes refused in one line, and ``--resume`` after a real kill -9 ending where an
uninterrupted run ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import augkit
from augkit.cli.main import cli
from augkit.train.config import TrainConfig
from augkit.train.losses import SoftCrossEntropy
from augkit.train.mix import MIX_STREAM, Mixup, mix_batch, mixup_target
from augkit.train.plots import describe_tricks

H, W = 24, 40  # not square: rows and columns cannot be confused


def _photos(count: int) -> torch.Tensor:
    """``count`` of the sample photos as a standardised float32 N x 3 x H x W batch, as the loop mixes it."""
    paths = sorted((augkit.sample_data_dir() / "photos").iterdir())[:count]
    images = np.stack([cv2.resize(augkit.read_image(p), (W, H), interpolation=cv2.INTER_AREA) for p in paths])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)


def _first(mix: Mixup, wanted, height: int = H, width: int = W) -> tuple[int, object]:
    """The first step of epoch 0 whose draw satisfies ``wanted``, and that draw."""
    return next((step, d) for step in range(1000) if wanted(d := mix.draw(0, step, height, width)))


def _timm_draw(seed: int, epoch: int, step: int, alpha: float, height: int, width: int) -> tuple[tuple[int, ...], float]:
    """timm's ``_params_per_batch`` (prob 1, CutMix only) then ``rand_bbox`` and ``correct_lam``, written out
    on the same stream: (yl, yh, xl, xh) and the corrected lam."""
    rng = np.random.default_rng([seed, MIX_STREAM, epoch, step])
    rng.random()  # the draw against prob
    lam = rng.beta(alpha, alpha)
    ratio = np.sqrt(1 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.integers(height), rng.integers(width)
    yl, yh = np.clip(cy - cut_h // 2, 0, height), np.clip(cy + cut_h // 2, 0, height)
    xl, xh = np.clip(cx - cut_w // 2, 0, width), np.clip(cx + cut_w // 2, 0, width)
    return (int(yl), int(yh), int(xl), int(xh)), 1.0 - (yh - yl) * (xh - xl) / float(height * width)


def _smoothed_rows(labels: torch.Tensor, partner: torch.Tensor, lam: float, smoothing: float, classes: int) -> torch.Tensor:
    """timm's mixup_target written out: s / C off the label, 1 - s + s / C on it, lam and 1 - lam of each."""
    off, on = smoothing / classes, 1 - smoothing + smoothing / classes
    rows = torch.full((len(labels), classes), 0.0)
    for i, (own, other) in enumerate(zip(labels.tolist(), partner.tolist())):
        for label, weight in ((own, lam), (other, 1 - lam)):
            row = torch.full((classes,), off)
            row[label] = on
            rows[i] += weight * row
    return rows


# ----------------------------------------------------------------------------- the mix


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_mixup_blends_sample_i_with_sample_n_minus_1_minus_i_and_their_targets_by_lam(smoothing):
    x, labels = _photos(6), torch.tensor([3, 1, 4, 1, 5, 9])
    mix = Mixup(0.4, num_classes=10, label_smoothing=smoothing, seed=7)
    step, draw = _first(mix, lambda d: 0.05 < d.lam < 0.45)  # the partner dominates
    before = x.clone()
    mixed, soft, dominant = mix(x, labels, 0, step)
    assert torch.equal(x, before)  # the batch it was given is left as it was
    for i in range(6):
        torch.testing.assert_close(mixed[i], draw.lam * x[i] + (1 - draw.lam) * x[5 - i])
    torch.testing.assert_close(soft, _smoothed_rows(labels, labels.flip(0), draw.lam, smoothing, 10))
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(6))
    assert dominant.tolist() == labels.flip(0).tolist()  # lam < 0.5: each sample counts as its partner's
    high, _ = _first(mix, lambda d: 0.55 < d.lam < 1)
    assert mix(x, labels, 0, high)[2].tolist() == labels.tolist()  # lam >= 0.5: its own label


def test_cutmix_pastes_the_partner_inside_one_box_whose_area_is_1_minus_the_corrected_lam():
    x, labels = _photos(6), torch.arange(6)
    mix = Mixup(cutmix_alpha=1.0, num_classes=6, seed=3)
    clipped = 0
    for step in range(40):
        draw = mix.draw(0, step, H, W)
        box, lam = _timm_draw(3, 0, step, 1.0, H, W)
        assert draw.cutmix and draw.box == box and draw.lam == lam  # timm's box, lam corrected by its area
        top, bottom, left, right = box
        assert (bottom - top) * (right - left) / (H * W) == pytest.approx(1 - draw.lam, abs=1e-12)
        mixed, soft, _ = mix(x, labels, 0, step)
        inside = torch.zeros(H, W, dtype=torch.bool)
        inside[top:bottom, left:right] = True
        assert torch.equal(mixed[:, :, inside], x.flip(0)[:, :, inside])
        assert torch.equal(mixed[:, :, ~inside], x[:, :, ~inside])
        torch.testing.assert_close(soft, _smoothed_rows(labels, labels.flip(0), draw.lam, 0.0, 6))
        # The uncorrected lam's box would be (H * sqrt(1 - lam)) x (W * sqrt(1 - lam)): clipped when smaller.
        raw = np.random.default_rng([3, MIX_STREAM, 0, step])
        raw.random()
        clipped += draw.lam > raw.beta(1.0, 1.0) + 0.05
    assert clipped >= 5  # the correction was tested on boxes cut by the border, not only on whole ones


def test_an_odd_batch_mixes_its_middle_sample_with_itself_and_leaves_it_unchanged():
    x, labels = _photos(5), torch.tensor([0, 1, 2, 3, 4])
    for mix in (Mixup(0.4, num_classes=5), Mixup(cutmix_alpha=1.0, num_classes=5)):
        step, _ = _first(mix, lambda d: d.lam < 0.9)
        mixed, soft, _ = mix(x, labels, 0, step)
        torch.testing.assert_close(mixed[2], x[2])
        torch.testing.assert_close(soft[2], torch.nn.functional.one_hot(labels[2], 5).float())
        assert not torch.allclose(mixed[0], x[0])


def test_mixed_batches_keep_channels_last_memory():
    x = _photos(6).contiguous(memory_format=torch.channels_last)
    for mix in (Mixup(0.4, num_classes=6), Mixup(cutmix_alpha=1.0, num_classes=6)):
        mixed, _, _ = mix(x, torch.arange(6), 0, _first(mix, lambda d: d.lam < 0.9)[0])
        assert mixed.is_contiguous(memory_format=torch.channels_last)


def test_prob_and_switch_prob_choose_as_often_as_asked_and_lam_follows_beta():
    mix = Mixup(0.4, 1.0, prob=0.6, switch_prob=0.25, num_classes=10, seed=11)
    draws = [mix.draw(epoch, step, H, W) for epoch in range(4) for step in range(1000)]
    n = len(draws)
    mixed = [d for d in draws if d.lam != 1.0]  # Beta(0.4, 0.4) and Beta(1, 1) give lam exactly 1 almost never
    blends = [d.lam for d in mixed if not d.cutmix]
    # Within 4 standard deviations of the binomial counts.
    assert abs(len(mixed) - 0.6 * n) < 4 * np.sqrt(n * 0.6 * 0.4)
    cut = sum(d.cutmix for d in mixed)
    assert abs(cut - 0.25 * len(mixed)) < 4 * np.sqrt(len(mixed) * 0.25 * 0.75)
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)); 0.139 for a = 0.4.
    assert np.mean(blends) == pytest.approx(0.5, abs=4 * np.sqrt(0.139 / len(blends)))
    assert np.var(blends) == pytest.approx(1 / (4 * (2 * 0.4 + 1)), rel=0.1)
    assert all(d.lam == 1.0 for d in (Mixup(0.4, prob=0.0, num_classes=2).draw(0, s, H, W) for s in range(200)))
    assert all(d.cutmix for d in (Mixup(0.4, 1.0, switch_prob=1.0, num_classes=2).draw(0, s, H, W) for s in range(200)))
    assert not any(d.cutmix for d in (Mixup(0.4, 1.0, switch_prob=0.0, num_classes=2).draw(0, s, H, W) for s in range(200)))


# ----------------------------------------------------------------------------- seeding


def test_draws_depend_on_seed_epoch_and_step_only_and_leave_the_global_generators_alone():
    x, labels = _photos(6), torch.arange(6)
    expected = Mixup(0.2, 1.0, num_classes=6, seed=5)(x, labels, 3, 7)
    mix = Mixup(0.2, 1.0, num_classes=6, seed=5)
    for epoch, step in [(0, 0), (3, 6), (3, 8), (9, 7)]:  # other batches first, in any order
        mix(x, labels, epoch, step)
    torch.manual_seed(123), np.random.seed(123), torch.rand(5), np.random.rand(5)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    again = mix(x, labels, 3, 7)
    assert torch.equal(torch.get_rng_state(), torch_state)  # dropout's generator does not move
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()
    for a, b in zip(again, expected):
        assert torch.equal(a, b)
    lams = [Mixup(0.2, num_classes=6, seed=5).draw(e, s, H, W).lam for e in range(3) for s in range(20)]
    assert len(set(lams)) == len(lams)  # every (epoch, step) draws anew
    assert Mixup(0.2, 1.0, num_classes=6, seed=6).draw(3, 7, H, W) != mix.draw(3, 7, H, W)


# ----------------------------------------------------------------------------- the loss


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_soft_cross_entropy_on_mixed_targets_is_the_lam_weighted_cross_entropy_of_both_labels(smoothing):
    # timm's folded smoothing is torch's label smoothing: the mixed loss is linear in the targets.
    logits = torch.randn(6, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    labels, lam = torch.tensor([3, 1, 4, 1, 5, 9]), 0.3
    soft = mixup_target(labels, 10, lam, smoothing).double()
    plain = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)
    expected = lam * plain(logits, labels) + (1 - lam) * plain(logits, labels.flip(0))
    torch.testing.assert_close(SoftCrossEntropy()(logits, soft), expected)


def test_an_unmixed_batch_is_returned_as_it_is_with_its_smoothed_one_hot_targets():
    x, labels = _photos(6), torch.arange(6)
    mixed, soft, dominant = Mixup(0.2, prob=0.0, label_smoothing=0.1, num_classes=6)(x, labels, 0, 0)
    assert mixed is x and torch.equal(dominant, labels)
    torch.testing.assert_close(soft, _smoothed_rows(labels, labels, 1.0, 0.1, 6))
    assert torch.equal(mix_batch(x, Mixup(0.2, prob=0.0, num_classes=6).draw(0, 0, H, W)), x)


def test_the_curves_title_names_the_mix():
    assert "mixup 0.2 / cutmix 1" in describe_tricks(TrainConfig(mixup=0.2, cutmix=1.0))
    assert "cutmix 1 p 0.5" in describe_tricks(TrainConfig(cutmix=1.0, mix_prob=0.5))
    assert "mix" not in describe_tricks(TrainConfig())


# ----------------------------------------------------------------------------- augkit train


def _augkit_train(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augkit", "train", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_mixed_run_saves_its_fields_says_how_it_mixes_and_validates_on_plain_labels(tmp_path):
    run_dir = tmp_path / "run"
    result = _augkit_train("--mixup", "0.2", "--cutmix", "1.0", "--epochs", "2", "--train-subset", "300",
                           "--model", "mlp", "-o", run_dir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert {k: saved[k] for k in ("mixup", "cutmix", "mix_prob", "switch_prob")} == {
        "mixup": 0.2, "cutmix": 1.0, "mix_prob": 1.0, "switch_prob": 0.5}  # fmt: skip
    assert ("mix: mixup alpha 0.2 / cutmix alpha 1.0, prob 1.0, switch 0.5 (timm's batch mode); loss soft "
            "cross-entropy on the mixed targets (validation: cross_entropy on the labels)") in result.stderr  # fmt: skip
    # Validation is untouched: the saved weights' plain cross-entropy on the unmixed val images is what was logged.
    from augkit.train.checkpoint import unwrapped
    from augkit.train.loop import build, evaluate_batches

    state = torch.load(run_dir / "last.pt", weights_only=True)
    (tmp_path / "scratch").mkdir()
    parts = build(TrainConfig.load(run_dir / "config.yaml"), tmp_path / "scratch")
    parts.train_batches.close()
    unwrapped(parts.model).load_state_dict(state["model"])
    val_loss, val_acc, _, _ = evaluate_batches(parts.model, parts, parts.val_batches, torch.nn.CrossEntropyLoss())
    assert val_loss == pytest.approx(state["history"][-1]["val_loss"], rel=1e-5)
    assert val_acc == state["history"][-1]["val_acc"] > 0.5


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--mixup", "-1"], "mixup must be in [0, 100], got -1"),
        (["--cutmix", "1e308"], "cutmix must be in [0, 100], got 1e+308"),
        (["--mixup", "0.2", "--mix-prob", "1.5"], "mix_prob must be in [0, 1], got 1.5"),
        (["--cutmix", "1", "--switch-prob", "nan"], "switch_prob must be in [0, 1], got nan"),
        (["--loss", "hinge", "--mixup", "0.2"], "which --loss hinge (one class per sample) cannot take"),
        (["--loss", "squared_hinge", "--cutmix", "1"], "which --loss squared_hinge (one class per sample) cannot take"),
    ],
)
def test_mix_mistakes_are_one_line_exit_2_before_anything_is_written(tmp_path, args, expected):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--model", "mlp", "--epochs", "1", "-q", "-o", str(run_dir), *args])
    assert result.exit_code == 2, result.output
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert line.startswith("Error: ") and expected in line, line
    assert not run_dir.exists()


def test_the_mix_alphas_take_their_bound():
    assert TrainConfig(mixup=100, cutmix=100, mix_prob=0, switch_prob=1).mixup == 100


# Dropout (torch's RNG), augmentation on the device (drawn per sample), then the mix (per step):
# each must draw the same after --resume. 37 steps an epoch, 8 epochs: a second, killed after 2.
RESUMABLE = ["--model", "mlp", "--hidden", "256,256", "--dropout", "0.1", "--mixup", "0.2", "--cutmix", "1.0",
             "--augment", "rotate(limit=10)", "--augment-on", "device", "--train-subset", "300", "--batch-size", "8",
             "--epochs", "8", "-q"]  # fmt: skip


def _train_process(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "augkit", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _epochs_done(run_dir: Path) -> int:
    if not (run_dir / "metrics.csv").exists():
        return 0
    with open(run_dir / "metrics.csv", newline="") as f:
        return len(list(csv.DictReader(f)))


def _timeless(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_second")} for row in history]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_mixed_run_killed_mid_way_resumes_to_the_uninterrupted_runs_weights_and_metrics(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    straight = _train_process(*RESUMABLE, "-o", reference)
    victim = _train_process(*RESUMABLE, "-o", killed)
    deadline = time.monotonic() + 120
    while _epochs_done(killed) < 2:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the run never finished two epochs"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 2 <= done < 8, done  # killed mid-run, after two checkpoints at least

    resumed = _augkit_train("--resume", killed, "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.communicate()
    a = torch.load(reference / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 8
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=1e-6)
    # Every epoch's numbers, the loss on mixed targets and the dominant-label accuracy included.
    assert _timeless(b["history"]) == _timeless(a["history"])
