"""augkit's thread rule (``augkit.train.threads``) against torch's default thread count, in one run.

Two measurements:

  run     the README's default ``augkit train -o RUN_DIR -q`` (the small CNN on the sample
          digits) as a subprocess, wall time from start to exit: with augkit's rule (no
          --threads) against ``--threads N``, N torch's default (one per physical core, what a
          run got before the rule). With ``--busy``, one CPU burner (a shell busy loop) per core
          runs beside both for the whole measurement: a machine other work keeps busy.
  steps   training steps (forward, cross-entropy, backward, SGD step) of augkit models of
          growing size, in this process, at 1 thread against N: where a second thread starts
          to pay, the evidence for ``SMALL_STEP_FLOPS``. Meaningful on idle cores only (the
          load is printed beside each row).

Repeats are interleaved, their order rotating (bench/_repeats.py), the first dropped; figures
are medians, a ratio the median of the per-repeat ratios with its min and max.

    python bench/threads.py run [--repeats 4] [--busy]
    python bench/threads.py steps [--repeats 4] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from augkit.train.config import TrainConfig
from augkit.train.models import create_model
from augkit.train.threads import SMALL_STEP_FLOPS, count_step_flops
from _repeats import interleaved  # bench/, the folder of this script

AUGKIT = Path(sys.executable).with_name("augkit")


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def summary(name: str, seconds: list[float]) -> str:
    return f"{name:<28} median {statistics.median(seconds):6.2f} s  (min {min(seconds):.2f}, max {max(seconds):.2f})"


def ratio_line(a: list[float], b: list[float], what: str) -> str:
    ratios = [x / y for x, y in zip(a, b)]
    return f"{what}: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})"


# ----------------------------------------------------------------------------- run


def run(repeats: int, busy: bool, threads: int) -> None:
    burners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(os.cpu_count() or 1)] if busy else []
    scratch = Path(tempfile.mkdtemp(prefix="augkit-bench-threads-"))
    try:
        def timed(*extra: str) -> tuple[float, int]:
            """(wall seconds, the threads the run took: summary.json)"""
            run_dir = scratch / "run"
            shutil.rmtree(run_dir, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run([str(AUGKIT), "train", "-o", str(run_dir), "-q", *extra], check=True, stdout=subprocess.DEVNULL)
            seconds = time.perf_counter() - started
            return seconds, json.loads((run_dir / "summary.json").read_text())["threads"]

        print(f"augkit train -o RUN_DIR -q, {repeats} repeats (first dropped), {len(burners)} burner(s), "
              f"load at start {load()}", flush=True)  # fmt: skip
        results = interleaved({"rule": timed, "torch": lambda: timed("--threads", str(threads))}, repeats)
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    rule, default = [s for s, _ in results["rule"]], [s for s, _ in results["torch"]]
    print(summary("augkit's rule", rule) + f"  threads chosen: {[t for _, t in results['rule']]}")
    print(summary(f"--threads {threads} (torch's)", default))
    print(ratio_line(default, rule, "torch's / the rule's wall time"))
    print("each repeat, seconds (rule, torch's):", ", ".join(f"({a:.1f}, {b:.1f})" for a, b in zip(rule, default)))
    print(f"load at end {load()}")


# ----------------------------------------------------------------------------- steps

# (config changes, input C x H x W): from the default CNN on the digits to a resnet on 32 x 32 colour.
LADDER = [
    ({"model": "mlp"}, (1, 8, 8)),
    ({"channels": (8, 16)}, (1, 8, 8)),
    ({"model": "mlp", "hidden": (512, 512)}, (1, 8, 8)),
    ({"channels": (16, 32)}, (1, 8, 8)),
    ({"model": "mlp", "hidden": (256, 256)}, (3, 32, 32)),
    ({"channels": (24, 48)}, (1, 8, 8)),
    ({}, (1, 8, 8)),  # the default run
    ({"channels": (64, 128)}, (1, 8, 8)),
    ({"model": "mlp", "hidden": (1024, 1024)}, (3, 32, 32)),
    ({}, (3, 32, 32)),
    ({"model": "mlp", "hidden": (4096, 4096)}, (3, 32, 32)),
    ({"channels": (64, 128)}, (3, 32, 32)),
    ({"model": "resnet", "channels": (64, 128, 256)}, (3, 32, 32)),
]


def steps(repeats: int, threads: int) -> None:
    print(f"training steps, 1 thread against {threads}; rule: 1 thread below {SMALL_STEP_FLOPS / 1e9:g} GFLOP a step")
    print(f"| model | input | GFLOP/step | 1 thread ms | {threads} threads ms | {threads} / 1 | load |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for changes, shape in LADDER:
        config = TrainConfig(**changes)
        torch.manual_seed(0)
        model = create_model(config, shape, 10)
        flops = count_step_flops(model, shape, config.batch_size)
        convolutional = config.model != "mlp"
        if convolutional:  # as augkit runs them on the CPU
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        inputs = torch.randn(config.batch_size, *shape)
        if convolutional:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        targets = torch.randint(0, 10, (config.batch_size,))
        count = max(3, min(200, int(2e9 / max(flops, 1.0))))  # about 2 GFLOP of work per timing

        def step() -> None:
            loss = nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def timed(n: int) -> float:
            torch.set_num_threads(n)
            for _ in range(2):
                step()
            started = time.perf_counter()
            for _ in range(count):
                step()
            return (time.perf_counter() - started) / count

        results = interleaved({"one": lambda: timed(1), "many": lambda: timed(threads)}, repeats)
        one, many = statistics.median(results["one"]), statistics.median(results["many"])
        ratio = statistics.median(m / o for m, o in zip(results["many"], results["one"]))
        name = config.model + ("" if config.model == "mlp" and not changes.get("hidden") else
                               f" {','.join(map(str, config.hidden if config.model == 'mlp' else config.channels))}")  # fmt: skip
        print(f"| {name} | {'x'.join(map(str, shape))} | {flops / 1e9:.2f} | {one * 1e3:.1f} | {many * 1e3:.1f} | "
              f"{ratio:.2f} | {load()} |", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["run", "steps"], nargs="?", default="run")
    parser.add_argument("--repeats", type=int, default=4, help="repeats of each configuration, the first dropped")
    parser.add_argument("--busy", action="store_true", help="run: one CPU burner per core beside the runs")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="the count to compare with (default: torch's own, %(default)s here)")  # fmt: skip
    args = parser.parse_args()
    if args.what == "run":
        run(args.repeats, args.busy, args.threads)
    else:
        steps(args.repeats, args.threads)


if __name__ == "__main__":
    main()
