"""Checkpoints that cannot be trusted, and runs that stop before or while saving one.

- A damaged checkpoint, or one that `torch.load(weights_only=True)` loads but that is not what
  `augkit train` writes, is one line with exit code 2 naming the file, through `augkit evaluate`,
  `augkit diagnose RUN_DIR` and `augkit train --resume` alike.
- Only a good epoch is saved: its losses and every weight, buffer and optimiser value finite.
  A run that diverges stops with exit code 1 and leaves the previous good last.pt/best.pt.
- A run that stops before its first checkpoint (diverged, killed, disk full) is started afresh
  by the same -o or by --resume; nothing augkit did not write is deleted.
- A full disk while saving ends the run with one line (exit 1), last.pt and metrics.csv at the
  previous epoch; --resume finishes once there is space (real tmpfs mounts).
"""

from __future__ import annotations

import copy
import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.train.checkpoint import count_nonfinite
from augkit.train.config import TrainConfig

QUICK = ["--model", "mlp", "--hidden", "16", "--epochs", "1", "-q"]


def invoke(*args: object) -> Any:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def succeeded(result: Any) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def metrics_epochs(run_dir: Path) -> list[str]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [row["epoch"] for row in csv.DictReader(f)]


def assert_good(path: Path, epoch: int) -> dict[str, Any]:
    """``path`` is a good checkpoint of ``epoch``: every tensor and every loss of its history finite."""
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == epoch
    optimizer = [v for entry in state["optimizer"]["state"].values() for v in entry.values() if torch.is_tensor(v)]
    assert count_nonfinite([*state["model"].values(), *optimizer]) == 0
    assert all(torch.isfinite(torch.tensor([r["train_loss"], r["val_loss"]])).all() for r in state["history"])
    return state


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "good"
    succeeded(invoke("train", *QUICK, "-o", run_dir))
    return run_dir


# ----------------------------------------------------------------------------- broken checkpoints


def _saved(state: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _changed(**changes: Callable[[Any], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A change to a copy of the state: key -> function of its old value (returning ... deletes it)."""

    def change(state: dict[str, Any]) -> dict[str, Any]:
        state = copy.deepcopy(state)
        for key, make in changes.items():
            value = make(state[key])
            if value is ...:
                del state[key]
            else:
                state[key] = value
        return state

    return change


def _model(**changes: Callable[[Any], Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return _changed(model=lambda model: _changed(**changes)(model))


def _nan_first(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = float("nan")
    return tensor


def _history_row(**values: Any) -> Callable[[list[dict[str, Any]]], list[dict[str, Any]]]:
    return lambda history: [{**history[0], **values}]


# case -> (the file's bytes, or a change to the good state; what the one line says)
BROKEN: dict[str, tuple[bytes | Callable[[dict[str, Any]], Any], str]] = {
    "empty file": (b"", "is empty (0 bytes;"),
    "not a checkpoint": (b"PK\x03\x04 truncated", "cannot be read"),
    "a list": (lambda state: [state["model"]], "holds a list, not the dictionary"),
    "no config": (_changed(config=lambda v: ...), "has no 'config'"),
    "no model": (_changed(model=lambda v: ...), "has no 'model'"),
    "no classes": (_changed(classes=lambda v: ...), "has no 'classes'"),
    "config not a mapping": (_changed(config=lambda v: "mlp"), "'config' that is not a mapping"),
    "config out of range": (_changed(config=lambda v: {**v, "dropout": 5.0}), "invalid config (dropout must be in [0, 1)"),
    "config unknown key": (_changed(config=lambda v: {**v, "dropuot": 0.5}), "unknown option 'dropuot'"),
    "config wrong type": (_changed(config=lambda v: {**v, "epochs": "many"}), "epochs must be int"),
    "model not tensors": (_changed(model=lambda v: {k: t.tolist() for k, t in v.items()}), "'model' a dict, expected a mapping"),
    "weight of the wrong shape": (_model(**{"fc1.weight": lambda t: t.t().contiguous()}), "fc1.weight is float32 [64, 16], expected float32 [16, 64]"),
    "weight of the wrong dtype": (_model(**{"head.bias": lambda t: t.double()}), "head.bias is float64 [10], expected float32 [10]"),
    "missing weight": (_model(**{"head.bias": lambda t: ...}), "its model lacks head.bias"),
    "unexpected weight": (_changed(model=lambda v: {**v, "fc2.weight": torch.zeros(3)}), "has unexpected fc2.weight"),
    "non-finite weight": (_model(**{"fc1.weight": _nan_first}), "1 values of its model are NaN or Inf"),
    "classes not names": (_changed(classes=lambda v: "0123456789"), "'classes' '0123456789', expected a list of class names"),
    "classes repeated": (_changed(classes=lambda v: ["0"] * 10), "same class name twice"),
    "shape of two numbers": (_changed(shape=lambda v: [8, 8]), "expected [height, width, channels]"),
    "epoch not a number": (_changed(epoch=lambda v: "1"), "'epoch' '1', expected the number of epochs done"),
    "epoch past the config": (_changed(epoch=lambda v: 7), "'epoch' 7, expected the number of epochs done (1 to its config's 1)"),
    "history too short": (_changed(history=lambda v: []), "expected a list of 1 rows"),
    "history row without losses": (_changed(history=_history_row(val_loss=None)), "history row 1 that is not"),
    "diverged epoch": (_changed(history=_history_row(val_loss=float("nan"))), "epoch 1's val_loss was nan"),
    "best not a record": (_changed(best=lambda v: 0.9), "'best' 0.9, expected"),
    # Tensors that pass a shape check and hold no usable values (a RuntimeError; a message that
    # read "head.weight is float32 [10, 64], expected float32 [10, 64]").
    "weights on the meta device": (_changed(model=lambda v: {k: t.to("meta") for k, t in v.items()}),
                                   "holds model['fc1.weight'] on the meta device, which keeps shapes but no values"),
    "a sparse weight": (_model(**{"head.weight": lambda t: t.to_sparse()}), "holds model['head.weight'] as a sparse_coo tensor"),
}


@pytest.mark.parametrize("command", ["evaluate", "diagnose", "resume"])
@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_checkpoint_is_one_line_naming_the_file(good_run, tmp_path, assert_fails, command, case):
    content, expected = BROKEN[case]
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    if not isinstance(content, bytes):
        content = _saved(content(torch.load(good_run / "last.pt", weights_only=True)))
    for name in ("last.pt", "best.pt"):
        (run_dir / name).write_bytes(content)
    args = {"evaluate": ["evaluate", run_dir], "diagnose": ["diagnose", run_dir], "resume": ["train", "--resume", run_dir, "-q"]}
    result = CliRunner().invoke(cli, [str(a) for a in args[command]], catch_exceptions=False)
    which = "last.pt" if command == "resume" else "best.pt"
    assert_fails(result, 2, f"checkpoint {run_dir / which} ", expected)
    assert (run_dir / "last.pt").read_bytes() == content  # --resume wrote nothing over it


def _optimizer_state(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A change made in place to (a copy of) the optimiser's state_dict."""

    def apply(optimizer: dict[str, Any]) -> dict[str, Any]:
        change(optimizer)
        return optimizer

    return _changed(optimizer=apply)


def _set(mapping: dict[Any, Any], key: Any, value: Any) -> None:
    mapping[key] = value


# What only --resume reads: the optimiser, the scheduler, the scaler and the random state.
BROKEN_FOR_RESUME: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "no optimizer": (_changed(optimizer=lambda v: ...), "has no 'optimizer'"),
    "rng not a dict": (_changed(rng=lambda v: [v["torch"]]), "'rng' a list, expected a dictionary"),
    "momentum of the wrong shape": (
        _optimizer_state(lambda sd: _set(sd["state"][0], "momentum_buffer", torch.zeros(3))),
        "optimizer 'momentum_buffer' of parameter 0 as float32 [3], expected a tensor of its shape [16, 64]",
    ),
    "non-finite momentum": (
        _optimizer_state(lambda sd: _set(sd["state"][0], "momentum_buffer", _nan_first(sd["state"][0]["momentum_buffer"]))),
        "1 values of its optimizer state are NaN or Inf",
    ),
    "one parameter group": (_optimizer_state(lambda sd: _set(sd, "param_groups", sd["param_groups"][:1])), "2 parameter group(s)"),
    "group of the wrong size": (
        _optimizer_state(lambda sd: _set(sd["param_groups"][1], "params", [2, 3])),
        "optimizer group 2 that is not 3 parameter ids",
    ),
    "state of an unknown parameter": (
        _optimizer_state(lambda sd: _set(sd["state"], 99, {"momentum_buffer": torch.zeros(1)})),
        "optimizer state for parameter 99",
    ),
    "option of the wrong type": (_optimizer_state(lambda sd: _set(sd["param_groups"][0], "lr", "fast")), "optimizer option 'lr' 'fast'"),
    "scheduler overwriting its optimiser": (
        _changed(scheduler=lambda sd: {**sd, "optimizer": None}),
        "unexpected scheduler entries optimizer",
    ),
    "scheduler at another step": (_changed(scheduler=lambda sd: {**sd, "last_epoch": 5}), "schedule at step 5, but epoch 1 ends at step 22"),
    "rng of the wrong size": (_changed(rng=lambda v: {"torch": v["torch"][:100]}), "random state of 100 bytes"),
    "rng not bytes": (_changed(rng=lambda v: {"torch": v["torch"].float()}), "random state torch that is float32 [5056]"),
    # Hyper-parameters and state that are not finite: a NaN learning rate resumed, diverged, and
    # the message blamed --lr 0.05.
    "nan learning rate": (
        _optimizer_state(lambda sd: [group.update(lr=float("nan")) for group in sd["param_groups"]]),
        "is not a good checkpoint: its optimizer['param_groups'][0]['lr'] is nan, where a finite number belongs",
    ),
    "infinite momentum": (
        _optimizer_state(lambda sd: _set(sd["param_groups"][1], "momentum", float("inf"))),
        "its optimizer['param_groups'][1]['momentum'] is inf",
    ),
    "nan base learning rate of the schedule": (
        _changed(scheduler=lambda sd: {**sd, "base_lrs": [0.05, float("nan")]}),
        "its scheduler['base_lrs'][1] is nan",
    ),
    "momentum on the meta device": (
        _optimizer_state(lambda sd: _set(sd["state"][0], "momentum_buffer", sd["state"][0]["momentum_buffer"].to("meta"))),
        "holds optimizer['state'][0]['momentum_buffer'] on the meta device",
    ),
    "random state on the meta device": (_changed(rng=lambda v: {"torch": v["torch"].to("meta")}), "holds rng['torch'] on the meta device"),
}


@pytest.mark.parametrize("case", BROKEN_FOR_RESUME)
def test_a_checkpoint_that_cannot_continue_the_run_is_one_line_from_resume(good_run, tmp_path, assert_fails, case):
    change, expected = BROKEN_FOR_RESUME[case]
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    content = _saved(change(torch.load(good_run / "last.pt", weights_only=True)))
    (run_dir / "last.pt").write_bytes(content)
    result = CliRunner().invoke(cli, ["train", "--resume", str(run_dir), "-q"], catch_exceptions=False)
    assert_fails(result, 2, f"checkpoint {run_dir / 'last.pt'} ", expected)
    assert (run_dir / "last.pt").read_bytes() == content


def test_a_good_checkpoint_still_loads_everywhere(good_run, tmp_path):
    """The checks accept what `augkit train` writes (the control for the cases above)."""
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    succeeded(invoke("evaluate", run_dir, "-o", tmp_path / "c.png"))
    succeeded(invoke("diagnose", run_dir, "-o", tmp_path / "d.png"))
    succeeded(invoke("train", "--resume", run_dir, "-q"))
    assert_good(run_dir / "last.pt", 1)


# ----------------------------------------------------------------------------- only good epochs are saved


def _pt_files(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.glob("*.pt"))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        # The two runs, shortened: epoch 1 ends with a train loss near 4e24 and a NaN
        # validation loss; the second leaves 67 non-finite weights after its one step.
        (["--model", "mlp", "--no-batchnorm", "--lr", "5", "--epochs", "3"], "loss became nan in epoch 1"),
        (["--model", "mlp", "--no-batchnorm", "--lr", "3e38", "--batch-size", "2000", "--schedule", "constant", "--epochs", "1"],
         "weights or optimiser values became NaN or Inf in epoch 1"),
        # Adam divides that rate by its bias correction: torch raises instead of returning Inf.
        (["--model", "mlp", "--optimizer", "adam", "--lr", "3e38", "--epochs", "1"],
         "the optimiser step overflowed at epoch 1, step 1"),
    ],
)  # fmt: skip
def test_a_run_that_diverges_in_its_first_epoch_saves_no_checkpoint_and_the_same_o_runs_again(tmp_path, assert_fails, args, reason):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", *args, "-q", "-o", str(run_dir)])
    assert_fails(result, 1, reason, "learning rate too high", "no checkpoint was saved", f"the same -o {run_dir} starts afresh")
    assert _pt_files(run_dir) == [] and not (run_dir / "metrics.csv").exists()
    # What the message suggests: a changed config, the same -o.
    output = succeeded(invoke("train", *QUICK[:-1], "-o", run_dir))
    assert "stopped before its first checkpoint (no last.pt): starting it afresh" in output
    assert_good(run_dir / "last.pt", 1)
    assert metrics_epochs(run_dir) == ["1"]


def test_an_epoch_that_leaves_a_non_finite_optimiser_value_is_not_saved(tmp_path, monkeypatch):
    """The weights check alone: after the last step of epoch 2 a momentum buffer turns NaN (the
    weights and losses of epoch 2 stay finite). last.pt and best.pt stay at epoch 1."""
    import augkit.train.loop as loop
    from augkit.train.divergence import NonFiniteLoss

    steps_per_epoch = 1437 // 64
    real_create = loop.create_optimizer

    def create_optimizer(*args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = real_create(*args, **kwargs)
        steps = {"n": 0}

        def poison(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            steps["n"] += 1
            if steps["n"] == 2 * steps_per_epoch:
                buffer = next(iter(optimizer.state.values()))["momentum_buffer"]
                buffer.view(-1)[0] = float("nan")

        optimizer.register_step_post_hook(poison)
        return optimizer

    monkeypatch.setattr(loop, "create_optimizer", create_optimizer)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLoss, match=r"^1 weights or optimiser values became NaN or Inf in epoch 2: .*\(epoch 1\) is kept"):
        loop.train(TrainConfig(model="mlp", hidden=(16,), epochs=3), run_dir, quiet=True, log=lambda m: None)
    assert_good(run_dir / "last.pt", 1)
    assert_good(run_dir / "best.pt", 1)
    assert metrics_epochs(run_dir) == ["1"]


# ----------------------------------------------------------------------------- stopped before the first checkpoint


def _train_process(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "augkit", "train", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _train(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augkit", "train", *map(str, args)], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_a_run_killed_before_its_first_checkpoint_starts_afresh_with_the_same_o_or_resume(tmp_path):
    # 359 steps of batch 4: a first epoch of seconds, long after stats.json is written.
    args = ["--model", "mlp", "--hidden", "128", "--batch-size", "4", "--epochs", "1"]
    killed = tmp_path / "killed"
    victim = _train_process(*args, "-o", killed)
    deadline = time.monotonic() + 120
    while not (killed / "stats.json").exists():
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the run never wrote stats.json"
        time.sleep(0.01)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (killed / "last.pt").exists() and (killed / "config.yaml").is_file()
    copied = tmp_path / "copied"
    shutil.copytree(killed, copied)

    again = _train(*args, "-o", killed)  # the same command
    assert again.returncode == 0, again.stderr
    resumed = _train("--resume", copied)
    assert resumed.returncode == 0, resumed.stderr
    for run, output in ((killed, again.stderr), (copied, resumed.stderr)):
        assert f"{run} holds a run that stopped before its first checkpoint (no last.pt): starting it afresh" in output
        assert_good(run / "last.pt", 1)
        assert metrics_epochs(run) == ["1"]


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_without_last_pt_holding_other_files_is_refused_and_left_alone(good_run, tmp_path, assert_fails, resume):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(good_run / "config.yaml", run_dir / "config.yaml")
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / "stats.json").write_text("{}")
    args = ["train", "--resume", str(run_dir), "-q"] if resume else ["train", *QUICK, "-o", str(run_dir)]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert_fails(result, 2, str(run_dir), "files augkit did not write (notes.txt)")
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.yaml", "notes.txt", "stats.json"]
    assert (run_dir / "stats.json").read_text() == "{}"


# ----------------------------------------------------------------------------- a full disk


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """``mount(size)``: a tmpfs of ``size`` bytes, mounted (again, at a new size) at one folder."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = False

    def mount(size: int) -> Path:
        nonlocal mounted
        options = f"remount,size={size}" if mounted else f"size={size}"
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True)
        if done.returncode != 0:
            if mounted:
                pytest.fail(f"cannot remount the tmpfs: {done.stderr.strip()}")
            pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {done.stderr.strip()}")
        mounted = True
        return where

    if shutil.which("mount") is None:
        pytest.skip("no mount command here")
    try:
        yield mount
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(where)], check=True)


# A checkpoint of about 2.4 MB (an MLP with two hidden layers of 512 and its momentum).
DISK = ["--model", "mlp", "--hidden", "512,512", "--epochs", "3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The same run, uninterrupted, on an ordinary disk."""
    run_dir = tmp_path_factory.mktemp("runs") / "reference"
    succeeded(invoke("train", *DISK, "-q", "-o", run_dir))
    return run_dir


def _same_weights(a: Path, b: Path) -> None:
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first["epoch"] == second["epoch"]
    for key in first["model"]:
        torch.testing.assert_close(second["model"][key], first["model"][key], rtol=0, atol=1e-6)


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one_and_resume_finishes(reference, tmpfs, assert_fails):
    size = (reference / "last.pt").stat().st_size
    disk = tmpfs(int(2.5 * size))  # epoch 1's best.pt and last.pt fit; epoch 2's temporary file does not
    run_dir = disk / "run"
    result = CliRunner().invoke(cli, ["train", *DISK, "-q", "-o", str(run_dir)])
    assert_fails(result, 1, f"could not save epoch 2 in {run_dir} (No space left on device)", "last.pt holds epoch 1",
                 f"free some space, then continue with: augkit train --resume {run_dir}")  # fmt: skip
    assert_good(run_dir / "last.pt", 1)
    assert_good(run_dir / "best.pt", 1)
    assert metrics_epochs(run_dir) == ["1"]
    assert not list(run_dir.glob(".*.tmp"))

    tmpfs(64 << 20)
    succeeded(invoke("train", "--resume", run_dir, "-q"))
    assert metrics_epochs(run_dir) == ["1", "2", "3"]
    _same_weights(reference / "last.pt", run_dir / "last.pt")


def test_a_full_disk_before_the_first_last_pt_is_continued_by_resume(reference, tmpfs, assert_fails):
    size = (reference / "last.pt").stat().st_size
    disk = tmpfs(int(1.5 * size))  # epoch 1's best.pt fits, its last.pt does not
    run_dir = disk / "run"
    result = CliRunner().invoke(cli, ["train", *DISK, "-q", "-o", str(run_dir)])
    assert_fails(result, 1, "could not save epoch 1", "no last.pt was saved yet", f"augkit train --resume {run_dir}")
    assert _pt_files(run_dir) == ["best.pt"]

    tmpfs(64 << 20)
    output = succeeded(invoke("train", "--resume", run_dir))
    assert "starting it afresh, removing best.pt, stats.json" in output
    assert metrics_epochs(run_dir) == ["1", "2", "3"]
    _same_weights(reference / "last.pt", run_dir / "last.pt")


def test_a_full_disk_at_the_end_of_a_run_is_finished_by_resume(tmp_path, tmpfs, assert_fails):
    one_epoch = [*DISK[:-1], "1", "-q"]
    measured = tmp_path / "measured"
    succeeded(invoke("train", *one_epoch, "-o", measured))
    page = os.sysconf("SC_PAGE_SIZE")  # what a tmpfs counts in
    pages = -(-(measured / "last.pt").stat().st_size // page)
    # Two checkpoints and a page each for config.yaml, stats.json, metrics.csv and summary.json:
    # the run trains and saves its epoch, then curves.png does not fit.
    disk = tmpfs((2 * pages + 4) * page)
    run_dir = disk / "run"
    result = CliRunner().invoke(cli, ["train", *one_epoch, "-o", str(run_dir)])
    assert_fails(result, 1, f"could not write summary.json and curves.png in {run_dir} (No space left on device)",
                 "last.pt holds all 1 epochs", f"augkit train --resume {run_dir}")  # fmt: skip
    assert_good(run_dir / "last.pt", 1)
    assert not (run_dir / "curves.png").exists()

    tmpfs(64 << 20)
    succeeded(invoke("train", "--resume", run_dir, "-q"))
    assert (run_dir / "curves.png").read_bytes()[:4] == b"\x89PNG" and (run_dir / "summary.json").is_file()


def _devices() -> list[str]:
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


@pytest.mark.parametrize("device", _devices())
def test_nonfinite_values_are_counted_across_devices_and_dtypes(device):
    # Adam keeps its step count on the CPU beside moments on the GPU: the check must neither
    # crash on the mix nor miss a NaN on either side. Mixed float dtypes too (bf16 weights).
    weights = torch.randn(5, 4, device=device)
    half = torch.randn(3, device=device, dtype=torch.bfloat16)
    step = torch.tensor(3.0)  # always on the CPU, as torch.optim.Adam keeps it
    labels = torch.arange(4, device=device)  # integers cannot hold NaN: skipped
    assert count_nonfinite([weights, half, step, labels]) == 0
    weights[1, 2], half[0] = float("nan"), float("inf")
    step.fill_(float("-inf"))
    assert count_nonfinite([weights, half, step, labels]) == 3
    huge = torch.full((4,), 3e38, device=device)  # finite, though its sum overflows
    assert count_nonfinite([huge, step.fill_(1.0)]) == 0


@pytest.mark.parametrize("resume", [False, True])
def test_a_finished_run_whose_last_pt_is_gone_is_refused_and_left_alone(good_run, tmp_path, assert_fails, tree_digest, resume):
    # It holds only files a run writes, like a run stopped before its first checkpoint, but
    # best.pt and summary.json say epochs were finished: starting afresh deleted them.
    run_dir = tmp_path / "run"
    shutil.copytree(good_run, run_dir)
    (run_dir / "last.pt").unlink()  # moved away to save space, say
    before = tree_digest(run_dir)
    args = ["train", "--resume", str(run_dir), "-q"] if resume else ["train", *QUICK, "-o", str(run_dir), "/no/such/data"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert_fails(result, 2, str(run_dir), "finished epochs", "nothing was deleted")
    assert tree_digest(run_dir) == before
