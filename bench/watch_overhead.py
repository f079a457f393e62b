"""What `augkit train --watch-activations N` costs: training time with the watcher against without, in one run.

Both contenders are the same ``train(config, RUN_DIR, quiet=True)`` call in this process, on the
same data, model and seed; only ``watch_activations`` differs:

  off     ``config`` the default ``TrainConfig`` (what ``augkit train`` runs with no arguments) or
          its ``--model mlp`` variant, on ``--device`` (cpu by default);
  on      the same with ``watch_activations=N`` (50 by default): every N steps, forward hooks on
          every activation and tensor hooks on their outputs gather that step's statistics on the
          device, one copy to the CPU reads them, and a line goes to RUN_DIR/activations.jsonl.

The figure is the training phase only: each epoch's training time is read from RUN_DIR/metrics.csv
(``images_per_second``, measured by the loop around its steps, without validation or
checkpoints), summed over every epoch but the first (warm-up). Watched steps fall on global step
numbers, so summing the epochs (not taking the median epoch) counts each one. "us per watched
step" is the difference of the two sums divided by the watched steps in them. The target
(issue) is a ratio on/off of at most 1.10 at N=50.

Method: repeats are interleaved, their order alternating; the first repeat is dropped. Figures are
medians over repeats; the ratio is the median of the per-repeat ratios, with its min and max.
The script stops if the "on" run writes no activations.jsonl (the loop does not call the watcher).

    python bench/watch_overhead.py [--repeats 7] [--epochs 20] [--every 50] [--model cnn mlp] [--device cpu] [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch

import augkit
from augkit.train.config import TrainConfig
from augkit.train.hooks import ACTIVATIONS_FILE
from augkit.train.loop import train
from augkit.train.run_dir import METRICS
from _repeats import interleaved  # bench/, the folder of this script

TARGET = 1.10


def run(config: TrainConfig) -> dict[str, float]:
    """One ``train`` call: seconds of training (epochs after the first) and watched steps in them."""
    with tempfile.TemporaryDirectory(prefix="augkit-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        summary = train(config, run_dir, quiet=True, log=lambda message: None)
        with open(run_dir / METRICS, newline="") as f:
            rows = list(csv.DictReader(f))
        watched = run_dir / ACTIVATIONS_FILE
        lines = watched.read_text().splitlines() if watched.is_file() else []
    if config.watch_activations and not lines:
        sys.exit("the `on` run wrote no activations.jsonl: train/loop.py does not call ActivationWatcher yet")
    images = (summary["train_images"] // config.batch_size) * config.batch_size  # drop-last
    steps = images // config.batch_size
    seconds = sum(images / float(row["images_per_second"]) for row in rows[1:])
    every = config.watch_activations
    watched = len(range(0, steps * config.epochs, every)) - len(range(0, steps, every)) if every else 0  # epochs 2..
    return {"seconds": seconds, "watched": watched, "lines": len(lines)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="epochs of every run (the first is dropped)")
    parser.add_argument("--every", type=int, default=50, help="--watch-activations N of the `on` runs")
    parser.add_argument("--model", nargs="+", choices=["cnn", "mlp"], default=["cnn", "mlp"],
                        help="cnn: the default TrainConfig; mlp: the same with model=mlp")  # fmt: skip
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    if args.repeats < 2 or args.epochs < 2 or args.every < 1:
        parser.error("--repeats and --epochs must be at least 2 (the first is dropped), --every at least 1")
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"augkit {augkit.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, device {args.device}")
    print(f"{args.epochs} epochs per run (first dropped), --watch-activations {args.every} against off; "
          f"{args.repeats} repeats (first dropped)")  # fmt: skip

    print(f"\n{'model':<5} {'off s':>8} {'on s':>8} {'on/off':>7} {'min':>6} {'max':>6} {'us per watched step':>20} {'lines':>6}  target")
    for name in args.model:
        off = TrainConfig(model=name, epochs=args.epochs, device=args.device, threads=args.threads)
        on = off.replace({"watch_activations": args.every})
        kept = interleaved({"on": lambda: run(on), "off": lambda: run(off)}, args.repeats)
        ratios = [a["seconds"] / b["seconds"] for a, b in zip(kept["on"], kept["off"])]
        ratio = statistics.median(ratios)
        off_s, on_s = (statistics.median(r["seconds"] for r in kept[label]) for label in ("off", "on"))
        watched = kept["on"][0]["watched"]
        per_step = (on_s - off_s) / watched * 1e6 if watched else float("nan")
        print(f"{name:<5} {off_s:>8.3f} {on_s:>8.3f} {ratio:>7.3f} {min(ratios):>6.3f} {max(ratios):>6.3f} {per_step:>20.0f} "
              f"{kept['on'][0]['lines']:>6}  <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}")  # fmt: skip


if __name__ == "__main__":
    main()
