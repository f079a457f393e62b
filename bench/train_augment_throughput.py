"""What `--augment "crop(size=8, padding=1); hflip"` costs `augkit train`'s training throughput, in one run.

Both contenders are the default ``augkit train`` (the small CNN on the sample digits, batch 64,
augkit's choice of device) as a subprocess, as a user runs it, with the same torch threads:

  plain      ``augkit train -o RUN_DIR -q --epochs E --threads T``
  cpu        the same with ``--augment "crop(size=8, padding=1); hflip"`` (and ``--workers W``
             when given: 0, the default, augments in the training process), per image
  device     the same with ``--augment-on device``: whole batches on the training device (here
             CPU tensors), the same draws

A run's throughput is read from RUN_DIR/metrics.csv (``images_per_second``: the training phase
of each epoch, without validation, checkpoints, interpreter start-up or imports): the median of
its epochs after the first (warm-up). The target (issue 11) is augmented / plain >= 0.9.
"extra us/step" is the difference of the median step times (batch / images/s): what the
augmentation adds to every step. Threads are fixed (``--threads``, default 1) rather than left to
augkit's rule, which reads the free cores at start-up: on a shared machine one run would get 2
and the next 1, and the ratio would measure that. More threads make the model step shorter and
so the augmentation's share larger: ``--threads 2`` is the harder case on 2 cores.

Method: repeats are interleaved, their order rotating, the first repeat dropped
(bench/_repeats.py); the ratio is the median of the per-repeat ratios (the two runs of a repeat
share the machine's mood), with its min and max.

    python bench/train_augment_throughput.py [--repeats 5] [--epochs 8] [--threads 1] [--workers 0]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import yaml

from _repeats import interleaved  # bench/, the folder of this script

AUGKIT = Path(sys.executable).with_name("augkit")
AUGMENT = "crop(size=8, padding=1); hflip"
TARGET = 0.9


def run(scratch: Path, epochs: int, *extra: str) -> dict[str, float]:
    """One ``augkit train``: images/s of its epochs after the first, its step size and threads."""
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        run_dir = Path(tmp) / "run"
        command = [str(AUGKIT), "train", "-o", str(run_dir), "-q", "--epochs", str(epochs), *extra]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"{shlex.join(command)} failed (exit {done.returncode}):\n{done.stderr.strip()}")
        with open(run_dir / "metrics.csv", newline="") as f:
            rates = [float(row["images_per_second"]) for row in csv.DictReader(f)]
        summary = json.loads((run_dir / "summary.json").read_text())
        batch = yaml.safe_load((run_dir / "config.yaml").read_text())["batch_size"]
    return {"img/s": statistics.median(rates[1:]), "batch": batch, "threads": summary["threads"],
            "device": summary["device"], "val acc": summary["final_val_acc"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="repeats of both runs (the first is dropped)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of every run (the first is dropped)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of both runs (augkit train --threads)")
    parser.add_argument("--workers", type=int, default=0, help="--workers of the augmented run")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (the first is dropped), got {args.repeats}")
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first epoch of every run is dropped), got {args.epochs}")

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"augkit {version('augkit')}, torch {version('torch')}")
    print(f"augkit train -q --epochs {args.epochs} (first dropped) --threads {args.threads} [--augment {AUGMENT!r} [--workers {args.workers} | --augment-on device]], "
          f"sample digits; {args.repeats} repeats (first dropped)", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="augkit-bench-") as scratch:
        threads = ("--threads", str(args.threads))
        on_cpu = ("--augment", AUGMENT, "--workers", str(args.workers))
        on_device = ("--augment", AUGMENT, "--augment-on", "device")
        kept = interleaved({
            "plain": lambda: run(Path(scratch), args.epochs, *threads),
            "cpu": lambda: run(Path(scratch), args.epochs, *threads, *on_cpu),
            "device": lambda: run(Path(scratch), args.epochs, *threads, *on_device),
        }, args.repeats)  # fmt: skip

    plain = kept["plain"]
    plain_rate = statistics.median(r["img/s"] for r in plain)
    batch = plain[0]["batch"]
    print(f"\n{'augment on':<10} {'plain img/s':>12} {'augmented img/s':>16} {'extra us/step':>14} {'aug/plain':>10} "
          f"{'min':>6} {'max':>6}  target")  # fmt: skip
    for name in ("cpu", "device"):
        aug = kept[name]
        ratios = [a["img/s"] / p["img/s"] for a, p in zip(aug, plain)]
        ratio = statistics.median(ratios)
        aug_rate = statistics.median(r["img/s"] for r in aug)
        print(f"{name:<10} {plain_rate:>12.0f} {aug_rate:>16.0f} {batch * 1e6 * (1 / aug_rate - 1 / plain_rate):>14.0f} "
              f"{ratio:>10.3f} {min(ratios):>6.3f} {max(ratios):>6.3f}  >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}")  # fmt: skip
    print(f"device {plain[0]['device']}, batch {batch}, threads {plain[0]['threads']}; final val acc: plain "
          f"{plain[0]['val acc']:.4f}, cpu {kept['cpu'][0]['val acc']:.4f}, device {kept['device'][0]['val acc']:.4f}")

if __name__ == "__main__":
    main()
