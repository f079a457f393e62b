"""`augkit train` and `augkit evaluate` end to end on the sample digits and on datasets built at
test time: what a run writes, how its config resolves, resume after a real kill, the NaN stop,
and every user mistake as one line with exit code 2 before any training.

The lecture's claims as experiments: test_train_evidence.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.train.config import TrainConfig

# A small, quick run: an MLP on the 8x8 sample digits, a few hundred ms per epoch.
QUICK = ["--model", "mlp", "--hidden", "64", "--epochs", "2", "-q"]


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def read_metrics(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "quick"
    succeeded(invoke("train", *QUICK, "--dropout", "0.1", "-o", run_dir))
    return run_dir


# ----------------------------------------------------------------------------- what a run writes


def test_a_run_writes_config_checkpoints_metrics_summary_and_curves(quick_run):
    names = {p.name for p in quick_run.iterdir()}
    assert {"config.yaml", "stats.json", "last.pt", "best.pt", "metrics.csv", "summary.json", "curves.png"} <= names
    rows = read_metrics(quick_run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert list(rows[0])[:7] == ["epoch", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]
    summary = json.loads((quick_run / "summary.json").read_text())
    for key in ("best_val_acc", "best_epoch", "final_val_acc", "epochs", "seconds", "images_per_second", "device"):
        assert key in summary, key
    assert summary["epochs"] == 2 and summary["device"] == "cpu"
    assert summary["final_val_acc"] == pytest.approx(float(rows[-1]["val_acc"]), abs=1e-6)
    assert summary["best_val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows), abs=1e-6)
    assert summary["best_val_acc"] > 0.5  # an MLP learns the digits within two epochs
    assert (quick_run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_load_with_weights_only_and_hold_the_whole_state(quick_run):
    state = torch.load(quick_run / "last.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "scaler", "epoch", "rng", "config", "history", "best"} <= set(state)
    assert state["epoch"] == 2 and TrainConfig.from_dict(state["config"]).hidden == (64,)


def test_saved_config_reproduces_the_run(quick_run, tmp_path):
    again = tmp_path / "again"
    succeeded(invoke("train", "--config", quick_run / "config.yaml", "-o", again, "-q"))
    assert (again / "config.yaml").read_text() == (quick_run / "config.yaml").read_text()
    first = torch.load(quick_run / "last.pt", weights_only=True)["model"]
    second = torch.load(again / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)  # same seed, same data order: same weights


def test_config_file_then_flags_then_set(tmp_path):
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({"model": "mlp", "hidden": [32], "dropout": 0.3, "lr": 0.02, "epochs": 1}))
    run_dir = tmp_path / "run"
    succeeded(invoke("train", "--config", config, "--dropout", "0.2", "--set", "lr=0.01", "--set", "leaky_slope=0.2",
                     "--activation", "leaky_relu", "-o", run_dir, "-q"))  # fmt: skip
    saved = TrainConfig.load(run_dir / "config.yaml")
    assert (saved.hidden, saved.dropout, saved.lr, saved.leaky_slope, saved.epochs) == ((32,), 0.2, 0.01, 0.2, 1)


def test_json_prints_the_summary(tmp_path):
    report = json.loads(succeeded(invoke("train", *QUICK, "--epochs", "1", "--json", "-o", tmp_path / "r")))
    assert report["run_dir"] == str(tmp_path / "r") and report["epochs"] == 1


def test_train_help_lists_the_registries_choices():
    out = subprocess.run([sys.executable, "-m", "augkit", "train", "--help"], capture_output=True, text=True, check=True).stdout
    from augkit.train.activations import ACTIVATIONS
    from augkit.train.inits import INITS

    for name in [*ACTIVATIONS.names(), *INITS.names()]:
        assert name in out, name
    assert "|xavier|kaiming|he]" in out and "xavier = xavier_normal, kaiming = kaiming_normal, he = kaiming_normal" in " ".join(out.split())
    assert "--lr-scaling [none|linear]" in out and "Goyal et al. 2017" in " ".join(out.split())


def test_linear_lr_scaling_trains_at_lr_times_batch_over_256_and_saves_what_was_typed(tmp_path):
    from augkit.train.loop import build

    run_dir = tmp_path / "r"
    succeeded(invoke("train", *QUICK, "--epochs", "1", "--schedule", "constant", "--lr-scaling", "linear",
                     "--batch-size", "128", "--lr", "0.1", "--init", "he", "-o", run_dir))  # fmt: skip
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (saved["lr"], saved["lr_scaling"], saved["batch_size"], saved["init"]) == (0.1, "linear", 128, "kaiming_normal")
    assert [float(row["lr"]) for row in read_metrics(run_dir)] == [pytest.approx(0.05)]
    config = TrainConfig.load(run_dir / "config.yaml")
    assert [g["lr"] for g in build(config, tmp_path / "b").optimizer.param_groups] == pytest.approx([0.05, 0.05])
    unscaled = build(config.replace({"lr_scaling": "none"}), tmp_path / "c").optimizer
    assert [g["lr"] for g in unscaled.param_groups] == [0.1, 0.1]


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_prints_accuracy_per_class_and_confusion_and_draws_it(quick_run, tmp_path):
    plot = tmp_path / "confusion.png"
    report = json.loads(succeeded(invoke("evaluate", quick_run, "--json", "-o", plot)))
    summary = json.loads((quick_run / "summary.json").read_text())
    assert report["accuracy"] == pytest.approx(summary["best_val_acc"], abs=1e-6)
    confusion = np.array(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == report["images"] == 360
    assert np.trace(confusion) / confusion.sum() == pytest.approx(report["accuracy"], abs=1e-6)
    assert set(report["per_class"]) == {str(d) for d in range(10)}
    assert plot.read_bytes()[:4] == b"\x89PNG"
    text = succeeded(invoke("evaluate", quick_run, "--checkpoint", "last", "-o", tmp_path / "c2.png"))
    assert "accuracy" in text and "confusion" in text


def test_evaluate_on_data_with_other_classes_is_refused(quick_run, make_image_folder):
    other = make_image_folder({"cat": 3, "dog": 3}, sizes=((8, 8),))
    result = invoke("evaluate", quick_run, other)
    assert result.exit_code == 2 and "classes" in result.output and "Traceback" not in result.output


# ----------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--activation", "relux"], "did you mean relu"),
        (["--activation", "Relu"], "unknown activation 'Relu' (did you mean relu?)"),
        (["--init", "kaiming_norml"], "kaiming_normal"),
        (["--model", "vgg"], "choose one of"),
        (["--dropout", "1"], "dropout must be in [0, 1)"),
        (["--dropout", "-0.1"], "dropout must be in [0, 1)"),
        (["--set", "dropuot=0.5"], "did you mean dropout"),
        (["--set", "epochs=many"], "epochs must be int"),
        (["--hidden", "64,x"], "--hidden '64,x': not a list of integers; write them separated by commas or spaces"),
        (["--device", "cuda:7" if torch.cuda.is_available() else "cuda"], "cuda"),
        (["--model", "cnn", "--channels", "8,8,8,8,8"], "8x8"),
        (["--lr", "0"], "lr must be in (0, 3.40282e+38], got 0"),
        (["--lr", "nan"], "lr must be in (0, 3.40282e+38], got nan"),
        (["--lr", "inf"], "lr must be in (0, 3.40282e+38], got inf"),
        (["--init-std", "nan"], "init_std must be in [0, 10], got nan"),
        (["--momentum", "nan"], "momentum must be in [0, 1), got nan"),
        (["--clip-grad", "inf"], "clip_grad must be in (0, 3.40282e+38], got inf"),
        (["--set", "weight_decay=.nan"], "weight_decay must be in [0, 1], got nan"),
        (["--seed", "4294967296"], "seed must be in [0, 4294967296), got 4294967296"),
        (["--model", "mlp", "--hidden", "1000000000"], "hidden must be 1 to 1000 widths, each in [1, 65536]"),
        (["--channels", "1000000"], "channels (1000000,) gives the cnn at least 9e+12 parameters"),
        (["--set", "hidden=" + "[" * 1000], "--set hidden: nested more than 64 levels deep"),
        (["--augment", "rotat(limit=10)"], "rotate"),
        (["--stats", "missing-stats.json"], "missing-stats.json"),
        # Finite numbers that used to overflow later (an OverflowError in the leaky gain, a
        # RuntimeError drawing the init), or to blame the learning rate for a penalty.
        (["--set", "leaky_slope=-1e308", "--activation", "leaky_relu"], "leaky_slope must be in [-1, 1], got -1e+308"),
        (["--init", "uniform", "--init-std", "3e38"], "init_std must be in [0, 10], got 3e+38"),
        (["--init", "constant", "--init-std", "1e308"], "init_std must be in [0, 10], got 1e+308"),
        (["--weight-decay", "1e308"], "weight_decay must be in [0, 1], got 1e+308"),
        (["--l1", "3e38"], "l1 must be in [0, 1], got 3e+38"),
        (["--lr", "1e308"], "lr must be in (0, 3.40282e+38], got 1e+308"),
        (["--set", "lr_scaling=sqrt"], "lr_scaling must be none or linear, got 'sqrt'"),
        (["--lr-scaling", "linear", "--lr", "3e38", "--batch-size", "512"], "lr * batch_size / 256 must be in (0, 3.40282e+38]"),
    ],
)
def test_user_mistakes_are_one_line_exit_2_before_training(tmp_path, args, expected):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "-o", str(run_dir), "-q", "--epochs", "1", *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output, result.output
    assert "Traceback" not in result.output
    assert not run_dir.exists()  # nothing left behind: the same -o works once the mistake is fixed


# Every bounded float field at its bound: the run trains, or stops as a diverged run (exit 1,
# one line), never with a traceback (CliRunner re-raises anything that is not a click exit).
AT_THE_BOUNDS = [
    ["--activation", "leaky_relu", "--set", "leaky_slope=-1"],
    ["--activation", "leaky_relu", "--set", "leaky_slope=1"],
    ["--init", "normal", "--init-std", "10"],
    ["--init", "uniform", "--init-std", "10"],
    ["--init", "constant", "--init-std", "10"],
    ["--weight-decay", "1", "--l1", "1"],
    ["--lr", "3.4028234663852886e38", "--optimizer", "adamw"],
    ["--clip-grad", "3.4028234663852886e38"],
]


@pytest.mark.parametrize("args", AT_THE_BOUNDS, ids=[" ".join(a) for a in AT_THE_BOUNDS])
def test_every_float_at_its_bound_trains_or_stops_as_a_diverged_run(tmp_path, args):
    result = CliRunner().invoke(cli, ["train", *QUICK, "--epochs", "1", *args, "-o", str(tmp_path / "run")],
                                catch_exceptions=False)  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    if result.exit_code == 1:
        [line] = [line for line in result.stderr.splitlines() if line.strip()]
        assert line.startswith("Error: ") and ("became" in line or "overflowed" in line), line


def _stats_file(tmp_path: Path, **changes: object) -> Path:
    """A statistics file of the sample digits' shape (1 channel, 8x8), with ``changes`` made to it."""
    count = 8 * 8 * 10
    data = {"format": "augkit.stats/1", "count": count, "images": 10, "channels": 1,
            "mean": [0.3], "std": [0.2], "m2": [0.04 * count], **changes}  # fmt: skip
    path = tmp_path / "stats.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"count": 0, "images": 0, "mean": [0.0], "std": [0.0], "m2": [0.0]}, "holds the statistics of no pixels (count 0)"),
        ({"mean": [float("nan")]}, "'mean' must be a list of 1 finite numbers"),
        ({"mean": [76.5], "std": [51.0], "m2": [2601.0 * 640]}, "are not on the [0, 1] pixel scale"),
        ({"mean_image": "huge.npy"}, "its mean image huge.npy is 100000 x 100000 x 1"),
    ],
)
def test_a_stats_file_that_loads_but_is_wrong_is_one_line_exit_2(tmp_path, changes, expected):
    path = _stats_file(tmp_path, **changes)
    with open(tmp_path / "huge.npy", "wb") as f:  # a header alone, claiming 80 GB
        np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (100_000, 100_000, 1)})
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--stats", str(path), "--mean-image", "-o", str(run_dir), "-q", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output, result.output
    assert not (run_dir / "last.pt").exists()


def test_dataset_problems_are_one_line_exit_2(tmp_path, make_image_folder, write_png):
    one_class = make_image_folder({"cat": 4}, sizes=((8, 8),), name="one")
    empty = tmp_path / "empty"
    empty.mkdir()
    gray = make_image_folder({"a": 4, "b": 4}, sizes=((8, 8),), name="rgb")
    stats = tmp_path / "gray-stats.json"
    succeeded(invoke("stats", "--gray", "-o", stats, "--workers", "1", "-q"))  # the digits, one channel
    cases = [
        ([str(one_class)], "class"),
        ([str(empty)], str(empty)),
        ([str(tmp_path / "missing")], "missing"),
        ([str(gray), "--stats", str(stats)], "channel"),
    ]
    for args, expected in cases:
        result = CliRunner().invoke(cli, ["train", *QUICK, "-o", str(tmp_path / "run"), *args])
        assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output, (args, result.output)
        assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- checked, then printed

NOT_HERE = "cuda:7" if torch.cuda.is_available() else "cuda"  # a device this machine does not have


def only_line(output: str) -> str:
    """The one line a user's mistake prints (no config before it, no usage text, no traceback)."""
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in output, output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["/nope"], "/nope"),
        (["--device", NOT_HERE], "cuda"),
        (["--augment", "missing-pipeline.yaml"], "missing-pipeline.yaml"),
        (["--augment", "rotat(limit=10)"], "rotate"),
        (["--stats", "missing-stats.json"], "missing-stats.json"),
        (["--hidden", "64x64", "--model", "mlp"], "--hidden '64x64': not a list of integers"),
        (["--channels", "8,,16"], "--channels '8,,16': not a list of integers"),
        (["--threads", "0"], "threads must be in [1, 1024], got 0"),
        (["--set", "hidden=64,,64"], "--set: hidden must be a list of integers"),
    ],
)
def test_train_checks_its_input_before_it_prints_the_config(tmp_path, args, expected):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "-o", str(run_dir), "--epochs", "1", *args])  # not quiet: the config would show
    assert result.exit_code == 2
    assert expected in only_line(result.output)
    assert not run_dir.exists()


def test_a_wrong_data_path_exits_2_from_a_real_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "augkit", "train", str(tmp_path / "nope"), "-o", str(tmp_path / "run")],
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 2 and str(tmp_path / "nope") in only_line(result.stdout + result.stderr)


@pytest.mark.parametrize(
    "command",
    [
        ["evaluate", "{missing}"],
        ["evaluate", "{run}", "/nope"],
        ["evaluate", "{run}", "--device", NOT_HERE],
        ["evaluate", "{run}", "--threads", "0"],
        ["diagnose", "{missing}"],
        ["diagnose", "{run}", "--device", NOT_HERE],
        ["diagnose", "{run}", "--threads", "2000"],
        ["diagnose", "probe", "--threads", "0", "-o", "{tmp}/probe.png"],
        ["ablate", "/nope", "--grid", "dropout=0,0.5", "-o", "{tmp}/ablation"],
        ["ablate", "--grid", "hidden=64x64", "--set", "model=mlp", "-o", "{tmp}/ablation"],
        ["ablate", "--grid", "dropout=0,0.5", "--set", "hidden=64 x", "-o", "{tmp}/ablation"],
        ["ablate", "--grid", "dropout=0,0.5", "--set", f"device={NOT_HERE}", "-o", "{tmp}/ablation"],
        ["ablate", "--grid", "dropout=0,0.5", "--threads", "0", "-o", "{tmp}/ablation"],
    ],
    ids=" ".join,
)
def test_evaluate_diagnose_and_ablate_mistakes_are_one_line_exit_2(quick_run, tmp_path, command):
    names = {"run": quick_run, "missing": tmp_path / "missing", "tmp": tmp_path}
    result = CliRunner().invoke(cli, [part.format(**names) for part in command])
    assert result.exit_code == 2
    only_line(result.output)
    assert not (tmp_path / "ablation").exists()


def test_list_flags_read_commas_or_spaces_everywhere(tmp_path):
    from augkit.train.grid import parse_grid

    succeeded(invoke("train", "--model", "mlp", "--hidden", "32 16", "--epochs", "1", "-q", "-o", tmp_path / "a"))
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["hidden"] == [32, 16]
    base = TrainConfig(model="mlp")
    assert parse_grid(["hidden=32 16,8"], base) == {"hidden": ((32, 16), (8,))}
    assert parse_grid(["channels=[8, 16]|8 16 32"], base) == {"channels": ((8, 16), (8, 16, 32))}


def test_packed_datasets_train_evaluate_and_ablate_without_third_party_warnings(tmp_path):
    """The packed images are memory-mapped read-only; torch warns about wrapping such an array."""
    data, run_dir = tmp_path / "d16", tmp_path / "run"
    env = {**os.environ, "PYTHONWARNINGS": "always"}  # every warning shown, each time it happens

    def run(*args: object) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "augkit", *map(str, args)], capture_output=True, text=True,
                                env=env, timeout=300)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "Warning" not in result.stderr and "warning" not in result.stderr, result.stderr
        return result

    run("preprocess", Path(__file__).parents[1] / "sample_data" / "digits", data, "--size", "16", "-q")
    mlp = ["--set", "model=mlp", "--set", "hidden=16"]  # the warning came from reading the data, whatever the model
    run("train", data, "--epochs", "1", "--model", "mlp", "--hidden", "16", "-o", run_dir)
    run("evaluate", run_dir, data, "--checkpoint", "last")
    run("ablate", data, "--grid", "dropout=0,0.5", *mlp, "--seeds", "1", "--epochs", "1", "--workers", "1", "-o", tmp_path / "ablation")


def test_an_existing_run_dir_is_never_overwritten(quick_run):
    before = (quick_run / "last.pt").read_bytes()
    result = invoke("train", *QUICK, "-o", quick_run)
    assert result.exit_code == 2 and "--resume" in result.output
    assert (quick_run / "last.pt").read_bytes() == before


def test_resume_of_a_missing_run_dir_is_one_line_exit_2(tmp_path):
    result = invoke("train", "--resume", tmp_path / "no-such-run")
    assert result.exit_code == 2 and "no-such-run" in result.output and "Traceback" not in result.output


def test_resume_refuses_changes_to_what_the_run_computes(quick_run):
    result = invoke("train", "--resume", quick_run, "--lr", "0.5")
    assert result.exit_code == 2 and "--lr" in result.output


# ----------------------------------------------------------------------------- resume after kill -9

# Dropout (torch's RNG) and augmentation (seeded per sample) both matter for an exact resume.
RESUMABLE = ["--model", "mlp", "--hidden", "512,512", "--dropout", "0.2", "--epochs", "6", "--augment", "rotate(limit=10)",
             "--augment-on", "cpu", "--workers", "1", "--batch-size", "32", "-q"]  # fmt: skip


def _train_process(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "augkit", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_run_killed_mid_way_resumes_to_the_same_weights(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    straight = _train_process(*RESUMABLE, "-o", reference)
    victim = _train_process(*RESUMABLE, "-o", killed)
    deadline = time.monotonic() + 120
    while not (killed / "metrics.csv").exists() or len(read_metrics(killed)) < 2:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the run never finished two epochs"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 2 <= done < 6, done  # killed mid-run, after at least one checkpoint

    resumed = subprocess.run([sys.executable, "-m", "augkit", "train", "--resume", str(killed), "-q"],
                             capture_output=True, text=True, timeout=180)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait(timeout=180) == 0, straight.communicate()
    a = torch.load(reference / "last.pt", weights_only=True)
    b = torch.load(killed / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 6
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=1e-6)
    assert [r["epoch"] for r in read_metrics(killed)] == [str(e) for e in range(1, 7)]
    assert b["history"][-1]["val_acc"] == pytest.approx(a["history"][-1]["val_acc"], abs=1e-9)


# ----------------------------------------------------------------------------- NaN / Inf


def test_a_diverging_run_stops_at_once_with_exit_1_naming_epoch_and_step(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *QUICK, "--lr", "1e6", "--schedule", "constant", "--no-batchnorm", "-o", str(run_dir)])
    assert result.exit_code == 1, result.output
    assert "epoch 1, step" in result.output and "learning rate" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (run_dir / "last.pt").exists()


def test_a_loss_that_turns_nan_later_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """The guard itself: the model's output turns NaN at a chosen step of epoch 2."""
    import augkit.train.loop as loop
    from augkit.train.divergence import NonFiniteLoss

    real_create = loop.create_model
    calls = {"n": 0}

    class NaNAfter(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module, step: int) -> None:
            super().__init__()
            self.inner, self.step = inner, step

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            if self.training:
                calls["n"] += 1
                if calls["n"] >= self.step:
                    return out * float("nan")
            return out

    steps_per_epoch = 1437 // 64
    monkeypatch.setattr(loop, "create_model", lambda *a, **k: NaNAfter(real_create(*a, **k), steps_per_epoch + 5))
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step 5: .*learning rate.*epoch 1\) is kept"):
        loop.train(TrainConfig(model="mlp", hidden=(32,), epochs=3), run_dir, quiet=True, log=lambda m: None)
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 1
    assert len(read_metrics(run_dir)) == 1


def test_tensorboard_without_its_package_says_how_to_install_it(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    result = invoke("train", *QUICK, "--tensorboard", "-o", tmp_path / "run")
    assert result.exit_code == 2 and "pip install tensorboard" in result.output


def test_watch_activations_writes_a_line_every_n_steps_and_diagnose_draws_them(tmp_path):
    run_dir = tmp_path / "run"
    succeeded(invoke("train", "--model", "mlp", "--hidden", "64", "--epochs", "2", "-q", "--watch-activations", "5",
                     "-o", run_dir))  # fmt: skip
    records = [json.loads(line) for line in (run_dir / "activations.jsonl").read_text().splitlines()]
    steps_per_epoch = 1437 // 64
    assert [(r["step"], r["epoch"]) for r in records] == [(s, 1 + s // steps_per_epoch) for s in range(0, 44, 5)]
    assert [row["layer"] for row in records[0]["layers"]] == ["act1"]
    assert all(row["grad_norm"] > 0 and len(row["hist"]) == 40 for r in records for row in r["layers"])
    report = json.loads(succeeded(invoke("diagnose", run_dir, "--json")))
    assert report["history_steps"] == 9 and Path(report["plot"]).is_file()


# ----------------------------------------------------------------------------- names that are not UTF-8

ODD = os.fsdecode(b"\xff")  # a byte that is not UTF-8, as Python holds it in a file name
STRICT = {**os.environ, "PYTHONIOENCODING": "utf-8"}  # stdout refuses what UTF-8 cannot encode, as in most locales


def augkit(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``augkit ARGS`` in a real process: its argv carries the undecodable bytes as typed."""
    return subprocess.run([sys.executable, "-m", "augkit", *map(str, args)], capture_output=True, timeout=300,
                          env=STRICT, cwd=cwd)  # fmt: skip


def one_error_line(result: subprocess.CompletedProcess, code: int) -> str:
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == code, stderr
    [line] = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith("Error: ") and "Traceback" not in stderr, stderr
    return line


@pytest.fixture(scope="module")
def odd(quick_run, tmp_path_factory) -> Path:
    """Real files whose names hold the byte 0xff: a run, a dataset, a stats file, a pipeline file."""
    import augkit

    root = tmp_path_factory.mktemp("odd")
    shutil.copytree(quick_run, root / f"r{ODD}un")
    shutil.copytree(augkit.sample_data_dir() / "digits", root / f"p{ODD}p")
    shutil.copy(quick_run / "stats.json", root / f"s{ODD}.json")
    (root / f"a{ODD}.yaml").write_text("crop(size=8, padding=1)\n")
    return root


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["train", f"p{ODD}p", "--epochs", "1", "-o", "new", "-q"], "data 'p\\xffp' is not valid UTF-8 (byte 0xff)"),
        (["train", "--epochs", "1", "-o", f"o{ODD}ut"], "RUN_DIR 'o\\xffut' is not valid UTF-8 (byte 0xff)"),
        (["train", "--stats", f"s{ODD}.json", "--epochs", "1", "-o", "new", "-q"], "stats 's\\xff.json' is not valid UTF-8"),
        (["train", "--augment", f"a{ODD}.yaml", "--epochs", "1", "-o", "new", "-q"], "augment 'a\\xff.yaml' is not valid UTF-8"),
        (["train", "--resume", f"r{ODD}un"], "RUN_DIR 'r\\xffun' is not valid UTF-8 (byte 0xff)"),
        (["evaluate", f"r{ODD}un"], "rename the folder to a UTF-8 name"),
        (["diagnose", f"r{ODD}un"], "rename the folder to a UTF-8 name"),
        (["evaluate", "{quick_run}", f"p{ODD}p"], "data 'p\\xffp' is not valid UTF-8"),
        (["evaluate", "{quick_run}", "-o", f"c{ODD}.png"], "-o 'c\\xff.png' is not valid UTF-8"),
        (["diagnose", "{quick_run}", "-o", f"d{ODD}.png"], "-o 'd\\xff.png' is not valid UTF-8"),
        (["diagnose", "probe", "--width", "8", "-o", f"p{ODD}.png"], "-o 'p\\xff.png' is not valid UTF-8"),
        (["ablate", "--grid", "lr=0.01,0.1", "-o", f"a{ODD}b", "-q"], "OUT 'a\\xffb' is not valid UTF-8"),
    ],
)
def test_a_name_that_is_not_utf8_is_one_line_naming_it_escaped_before_any_work(odd, quick_run, tmp_path, args, expected):
    """Such a name used to train, then crash drawing curves.png, and leave a config.yaml that
    augkit's own reader refuses. The files here are real; only their names are wrong."""
    before = {p.name for p in odd.iterdir()}
    line = one_error_line(augkit(*(a.format(quick_run=quick_run) for a in args), cwd=odd), 2)
    assert expected in line and ("rename" in line or "choose a UTF-8 name" in line), line
    assert {p.name for p in odd.iterdir()} == before  # nothing written, nothing removed
    assert (odd / f"r{ODD}un" / "last.pt").read_bytes() == (quick_run / "last.pt").read_bytes()


def test_class_folders_whose_names_are_not_utf8_train_evaluate_and_diagnose_with_the_bytes_escaped(
    tmp_path, write_image_folder
):
    """Class names come from folder names: kept as they are in the checkpoint, drawn and printed
    with the bytes escaped (the confusion matrix's ticks used to crash matplotlib)."""
    data = write_image_folder(tmp_path / "data", {"cat": 10, f"d{ODD}g": 10}, sizes=((8, 8),))
    assert augkit("train", data, "--model", "mlp", "--hidden", "16", "--epochs", "1", "-q", "-o", tmp_path / "run").returncode == 0
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["classes"] == ["cat", f"d{ODD}g"]
    evaluated = augkit("evaluate", tmp_path / "run")
    assert evaluated.returncode == 0, evaluated.stderr
    assert b"  d\\xffg  " in evaluated.stdout  # per class, as typed into a terminal: d\xffg
    diagnosed = augkit("diagnose", tmp_path / "run")
    assert diagnosed.returncode == 0, diagnosed.stderr
    for name in ("curves.png", "confusion.png", "diagnose.png"):
        assert (tmp_path / "run" / name).read_bytes()[:4] == b"\x89PNG", name


def test_every_figure_draws_text_that_is_not_utf8(tmp_path):
    from augkit.train.plots import plot_ablation, plot_confusion, plot_curves

    row = {"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "train_acc": 0.8, "val_acc": 0.7}
    plot_curves([row], tmp_path / "curves.png", title=f"r{ODD}un: mlp, relu, kaiming_normal")
    plot_confusion(np.eye(2, dtype=int), ["cat", f"d{ODD}g"], tmp_path / "confusion.png", title=f"r{ODD}un")
    bar = {"label": f"data=p{ODD}p", "acc": 0.9, "acc_std": 0.0, "gap": 0.1, "gap_std": 0.0, "curve": [0.8, 0.9]}
    plot_ablation([{"title": f"study {ODD}", "chance": 0.5, "bars": [bar]}], tmp_path / "report.png")
    for name in ("curves.png", "confusion.png", "report.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG", name


# ----------------------------------------------------------------------------- unlabelled images


@pytest.mark.parametrize("command", ["train", "evaluate"])
@pytest.mark.parametrize("split", ["train", "val"])
def test_a_packed_dataset_with_unlabelled_images_is_refused_before_any_training(quick_run, make_packed, tmp_path,
                                                                               assert_fails, command, split):  # fmt: skip
    """The packed reader accepts label -1 (unlabelled); training used to reach the loss and
    raise "IndexError: Target -1 is out of bounds"."""
    packed = make_packed({"train": 20, "val": 10}, shape=(8, 8, 1), classes=tuple("0123456789"))
    labels = packed.labels[split].copy()
    labels[3] = -1
    np.save(packed.root / f"{split}_labels.npy", labels)
    run_dir = tmp_path / "run"
    args = ["train", packed.root, "-q", "-o", run_dir] if command == "train" else ["evaluate", quick_run, packed.root]
    assert_fails(invoke(*args), 2, f"{packed.root}: its {split} split holds 1 unlabelled image(s) (label -1) among "
                                   f"{len(labels)}; training and evaluation need a class for every image")  # fmt: skip
    assert not run_dir.exists()


@pytest.mark.parametrize("inside", ["train/0/run", "."])
def test_a_run_dir_inside_the_dataset_is_refused_before_anything_is_written(tmp_path, inside):
    # A newcomer's -o inside the data: the run's PNGs then were read as images of class 0 by the
    # next run ("images differ in size ... curves.png"), with advice to resize the digits.
    data = tmp_path / "digits"
    shutil.copytree(Path(__file__).resolve().parent.parent / "sample_data" / "digits", data)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    run_dir = data / inside
    done = subprocess.run([sys.executable, "-m", "augkit", "train", str(data), "--epochs", "1", "-o", str(run_dir)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"Error: RUN_DIR {run_dir} and the dataset {data} overlap: the run's files would be read as images "
        f"by the next run; choose an -o outside the dataset"
    ]
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "--model", "cnnn"], "unknown model 'cnnn' (did you mean cnn?)"),
        (["train", "--epochs", "abc"], "'abc' is not a valid integer"),
        (["preprocess", "sample_data/digits", "out", "--format", "zip"], "'zip' is not one of"),
        (["diagnose", "probe", "--init", "kaiming_norml"], "did you mean kaiming_normal"),
        (["train", "--init", "xavir"], "did you mean xavier?"),
        (["train", "--lr-scaling", "sqrt"], "'sqrt' is not one of 'none', 'linear'"),
        (["trian"], "No such command 'trian'"),
    ],
)
def test_a_bad_option_value_is_one_line_naming_the_help_to_read(tmp_path, args, fragment):
    done = subprocess.run([sys.executable, "-m", "augkit", *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: ") and fragment in line and "--help`)" in line, line


@pytest.mark.parametrize("args", [["--batch-size", "1"], ["--train-subset", "1"]])
def test_a_training_batch_of_one_image_with_batchnorm_is_one_line(args, tmp_path, assert_fails):
    result = CliRunner().invoke(cli, ["train", "--model", "mlp", "--epochs", "1", *args, "-o", str(tmp_path / "run")])
    assert_fails(result, 2, "BatchNorm needs at least 2 images in every training batch", "--no-batchnorm")
    assert not (tmp_path / "run").exists()
