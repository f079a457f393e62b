"""torch's thread count per run (augkit.train.threads): chosen from the work of a step and the
free cores, overridden by --threads, and recorded in the run's log line and summary.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from augkit.train.config import SMALL_STEP_FLOPS, TrainConfig
from augkit.train.models import create_model
from augkit.train.threads import apply_threads, choose_threads, count_step_flops, free_cores

QUICK = ["--model", "mlp", "--hidden", "64", "--epochs", "1"]
TORCH_DEFAULT = torch.get_num_threads()  # before any test changed it: one per physical core


def augkit(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augkit", *map(str, args)], capture_output=True, text=True, timeout=300)


# ----------------------------------------------------------------------------- the work of a step


def test_a_step_counts_two_flops_per_multiply_add_and_three_passes_for_training():
    model = nn.Sequential(OrderedDict([
        ("conv", nn.Conv2d(1, 4, 3, padding=1)), ("act", nn.ReLU()), ("flatten", nn.Flatten()), ("fc", nn.Linear(256, 10)),
    ]))  # fmt: skip
    per_image = 2 * (8 * 8 * 4 * 9) + 2 * (256 * 10)  # every output pixel of each channel: 9 multiply-adds
    assert count_step_flops(model, (1, 8, 8), 32, backward=False) == 32 * per_image
    assert count_step_flops(model, (1, 8, 8), 32) == 3 * 32 * per_image


def test_counting_changes_nothing_the_model_learns_or_draws():
    config = TrainConfig(model="mlp", hidden=(64,), dropout=0.5)
    torch.manual_seed(0)
    model = create_model(config, (1, 8, 8), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    count_step_flops(model, (1, 8, 8), 64)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- the rule


def _flops(config: TrainConfig, shape: tuple[int, int, int]) -> float:
    return count_step_flops(create_model(config, shape, 10), shape, config.batch_size)


def test_a_tiny_model_gets_one_thread_even_with_every_core_free():
    flops = _flops(TrainConfig(model="mlp", hidden=(64,)), (1, 8, 8))
    assert flops < SMALL_STEP_FLOPS
    choice = choose_threads(flops, free=64)
    assert choice.threads == 1 and "under" in choice.reason


def test_a_large_model_gets_a_thread_per_free_core_up_to_torchs_own_count():
    flops = _flops(TrainConfig(model="resnet", channels=(64, 128, 256)), (3, 32, 32))
    assert flops > SMALL_STEP_FLOPS
    assert choose_threads(flops, free=2).threads == min(2, TORCH_DEFAULT)
    assert choose_threads(flops, free=10_000).threads == TORCH_DEFAULT
    if TORCH_DEFAULT > 1:  # a machine of one core has nothing to share
        assert choose_threads(flops, free=2).threads == 2


def test_a_large_model_on_busy_cores_gets_one_thread():
    choice = choose_threads(SMALL_STEP_FLOPS * 100, free=1)
    assert choice.threads == 1 and "1 core free" in choice.reason


def test_threads_given_are_used_as_given_and_out_of_range_is_refused():
    assert choose_threads(1.0, 3, free=1).threads == 3
    assert choose_threads(1e15, 1, free=64).reason == "--threads"
    with pytest.raises(Exception, match=r"threads must be in \[1, 1024\], got 0"):
        choose_threads(1.0, 0)


def test_applying_a_choice_sets_torchs_threads():
    try:
        apply_threads(choose_threads(1.0, 2))
        assert torch.get_num_threads() == 2
        apply_threads(choose_threads(1.0))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(TORCH_DEFAULT)


def test_cores_kept_busy_by_other_processes_are_not_free():
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    spin = "print('spinning', flush=True)\nwhile True: pass"
    burners = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE, text=True) for _ in range(cores)]
    try:
        for burner in burners:
            assert burner.stdout.readline() == "spinning\n"
        assert free_cores() == 1
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


# ----------------------------------------------------------------------------- commands


def test_train_logs_and_records_the_chosen_count_and_the_override(tmp_path):
    auto = augkit("train", *QUICK, "-o", tmp_path / "auto")
    assert auto.returncode == 0, auto.stderr
    assert "1 thread (auto: " in auto.stderr and "GFLOP a step, under" in auto.stderr, auto.stderr
    assert json.loads((tmp_path / "auto" / "summary.json").read_text())["threads"] == 1

    given = augkit("train", *QUICK, "--threads", "2", "-o", tmp_path / "given")
    assert given.returncode == 0, given.stderr
    assert "2 threads (--threads)" in given.stderr, given.stderr
    assert json.loads((tmp_path / "given" / "summary.json").read_text())["threads"] == 2
    assert "threads: 2" in (tmp_path / "given" / "config.yaml").read_text()  # --config runs it the same way

    # --threads says where and how fast a run goes, not what it computes: --resume may change it.
    resumed = augkit("train", "--resume", tmp_path / "given", "--threads", "1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["threads"] == 1


def test_evaluate_diagnose_and_ablate_take_threads_and_report_them(tmp_path):
    from click.testing import CliRunner

    from augkit.cli.main import cli

    run_dir = tmp_path / "run"
    assert augkit("train", *QUICK, "-q", "-o", run_dir).returncode == 0
    # In this process (train and ablate above and below run as real processes): each command
    # sets torch's threads, put back after each.
    for command in (["evaluate", run_dir], ["diagnose", run_dir], ["diagnose", "probe", "--width", "64", "-o", tmp_path / "p.png"]):
        for given, expected in (([], 1), (["--threads", "2"], 2)):
            try:
                result = CliRunner().invoke(cli, [*map(str, command), "--json", *given], catch_exceptions=False)
            finally:
                torch.set_num_threads(TORCH_DEFAULT)
            assert result.exit_code == 0, result.output
            assert json.loads(result.stdout)["threads"] == expected, command

    out = tmp_path / "ablation"
    result = augkit("ablate", "--grid", "dropout=0,0.5", "--set", "model=mlp", "--set", "hidden=64", "--seeds", "1",
                    "--epochs", "1", "--workers", "1", "--threads", "2", "-o", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 worker(s) x 2 thread(s) (--threads)" in result.stderr, result.stderr
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("runs/*/seed0/summary.json"))]
    assert [s["threads"] for s in summaries] == [2, 2]
    plan = json.loads((out / "plan.json").read_text())
    assert plan["studies"][0]["base"]["threads"] is None  # continuing with other --threads is the same ablation
