"""`torchrun -m augkit train`: two real CPU processes (gloo on loopback) against one process with
the same global batch; only rank 0 writes; a run stopped in one process resumes in two.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from augkit.train.distributed import Distributed

# No BatchNorm (on CPUs each process normalises its own share) and no dropout (each process
# draws its own masks): what is left must match one process up to float reduction order.
EQUIVALENT = ["--model", "mlp", "--hidden", "64", "--no-batchnorm", "--batch-size", "64", "-q"]


def torchrun(*args: object, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "augkit", "train", *map(str, args)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def single(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "augkit", "train", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=240, env=env)  # fmt: skip


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=True)["model"]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    two, one = tmp_path / "two", tmp_path / "one"
    done = torchrun(*EQUIVALENT, "--epochs", "2", "-o", two, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert single(*EQUIVALENT, "--epochs", "2", "-o", one, cwd=tmp_path).returncode == 0
    a, b = weights(two), weights(one)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    history_two = torch.load(two / "last.pt", weights_only=True)["history"]
    history_one = torch.load(one / "last.pt", weights_only=True)["history"]
    for r2, r1 in zip(history_two, history_one):  # metrics reduced over both processes' shares
        assert r2["train_loss"] == pytest.approx(r1["train_loss"], abs=1e-5)
        assert r2["val_acc"] == pytest.approx(r1["val_acc"], abs=1e-9)
        assert r2["val_loss"] == pytest.approx(r1["val_loss"], abs=1e-5)
    # Only rank 0 wrote: the same files as one process, and its summary says two took part.
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    assert '"processes": 2' in (two / "summary.json").read_text()


def test_a_global_batch_that_does_not_divide_among_the_processes_is_refused(tmp_path):
    done = torchrun(*EQUIVALENT, "--batch-size", "63", "--epochs", "1", "-o", tmp_path / "run", cwd=tmp_path)
    assert done.returncode != 0
    assert "--batch-size 63 is the global batch and must divide among 2 processes" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_killed_in_one_process_resumes_in_two_to_the_same_weights(tmp_path):
    slow = [*EQUIVALENT, "--hidden", "512,512", "--augment", "rotate(limit=10)", "--epochs", "4"]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    straight = subprocess.Popen([sys.executable, "-m", "augkit", "train", *slow, "-o", str(reference)],
                                cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    victim = subprocess.Popen([sys.executable, "-m", "augkit", "train", *slow, "-o", str(killed)], cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 180
    while not (killed / "metrics.csv").exists():
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before its first epoch"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    done = torch.load(killed / "last.pt", weights_only=True)["epoch"]
    assert 1 <= done < 4, done

    resumed = torchrun("--resume", killed, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert straight.wait(timeout=240) == 0
    a, b = weights(killed), weights(reference)
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5)
    with open(killed / "metrics.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"RANK": "0", "WORLD_SIZE": "1"}, None),
        ({"RANK": "1", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, Distributed(1, 4, 1)),
    ],
)
def test_the_environment_torchrun_sets_describes_the_run(environ, expected):
    assert Distributed.from_env(environ) == expected
