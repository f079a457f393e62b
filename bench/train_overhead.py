"""What `augkit train`'s loop costs per step against a minimal hand-written PyTorch loop, in one run.

Both contenders train the same model on the same data with the same batch size, optimiser and
torch threads, so only the loop differs:

  augkit  ``train(config, RUN_DIR, quiet=True, log=...)`` in this process, ``config`` the default
          ``TrainConfig`` (what ``augkit train`` runs with no arguments) or its ``--model mlp``
          variant, on the CPU (``device="cpu"``: the hand loop runs there too). Its training
          throughput is read from RUN_DIR/metrics.csv (``images_per_second``: the training phase
          of each epoch, without validation or checkpoints); batches are full (drop-last), so
          steps/s = images/s / batch size.
  hand    what a competent user writes: the training split converted ONCE to a standardised
          float32 N x C x H x W tensor (the same per-channel mean and std as augkit's), then per
          epoch ``torch.randperm``, batches sliced from it, forward, cross-entropy, zero_grad,
          backward, step. The model comes from augkit's ``create_model(config, ...)`` after the
          same ``torch.manual_seed``; ``torch.optim.SGD`` with the same lr, momentum 0.9, Nesterov
          and weight decay (on every parameter; augkit decays the weights only, a second parameter
          group), at a CONSTANT lr (the one-cycle schedule changes values, not the work of a step).
          Convolutional models run channels-last in both, as augkit runs them on the CPU.
          Each epoch's training phase is timed, as augkit times its own.

The ratio is augkit / hand in steps/s; the target (issue) is at least 0.95. "extra us/step" is
the difference of the median step times: what augkit's loop adds to every step. Also printed,
as information: augkit's whole call divided by its epochs (opening and decoding the data, the
statistics, validation every epoch, checkpoints and metrics.csv every epoch, curves.png at the
end) and the validation accuracy each contender reaches (the hand loop's measured after its
timings), which shows both did the same job.

Method: the first epoch of every run is dropped (warm-up: allocator, lazy kernels) and a run's
figure is the median of its other epochs. Repeats are interleaved, their order rotating so that
no contender always follows the same one; the first repeat is dropped. Figures are medians over
repeats; a ratio is the median of the per-repeat ratios (the two runs of a repeat share the
machine's mood), with its min and max.

    python bench/train_overhead.py [--repeats 7] [--epochs 20] [--model cnn mlp] [--threads N]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import augkit
from augkit.train.config import TrainConfig
from augkit.train.data import open_splits
from augkit.train.loop import train, uses_channels_last
from augkit.train.models import create_model
from augkit.train.run_dir import METRICS
from _repeats import interleaved  # bench/, the folder of this script

TARGET = 0.95


def run_augkit(config: TrainConfig) -> dict[str, float]:
    """One ``train`` call: steps/s of its epochs after the first, its wall time per epoch, its val acc."""
    with tempfile.TemporaryDirectory(prefix="augkit-bench-") as tmp:
        start = time.perf_counter()
        summary = train(config, Path(tmp) / "run", quiet=True, log=lambda message: None)
        wall = time.perf_counter() - start
        with open(Path(tmp) / "run" / METRICS, newline="") as f:
            rows = list(csv.DictReader(f))
    steps = [float(row["images_per_second"]) / config.batch_size for row in rows]
    return {
        "steps/s": statistics.median(steps[1:]),
        "call s/epoch": wall / config.epochs,
        "epoch s": statistics.median(float(row["seconds"]) for row in rows[1:]),  # train + val
        "val acc": summary["final_val_acc"],
    }


def standardised(images, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
    """uint8 N x H x W x C -> float32 N x C x H x W, standardised per channel (train's mean and std)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()
    if mean is None:
        mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / std, mean, std


def run_hand(config: TrainConfig, splits) -> dict[str, float]:
    """The minimal loop for ``config``'s model, data, batch size and optimiser: steps/s, val acc."""
    x, mean, std = standardised(splits.train_images)
    y = torch.from_numpy(splits.train_labels)
    torch.manual_seed(config.seed)
    model = create_model(config, tuple(x.shape[1:]), len(splits.classes))
    if uses_channels_last(config, torch.device("cpu")):  # the same memory layout as augkit's run
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
                                weight_decay=config.weight_decay)  # fmt: skip
    batch, steps = config.batch_size, len(x) // config.batch_size  # drop-last, as augkit
    rates = []
    for _ in range(config.epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(x))
        for step in range(steps):
            idx = order[step * batch : (step + 1) * batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(steps / (time.perf_counter() - start))

    model.eval()  # outside the timings: only to show the loop trained the model
    with torch.no_grad():
        val_x, _, _ = standardised(splits.val_images, mean, std)
        acc = (model(val_x).argmax(dim=1) == torch.from_numpy(splits.val_labels)).float().mean().item()
    return {"steps/s": statistics.median(rates[1:]), "val acc": acc}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs, help="epochs of every run (the first is dropped)")
    parser.add_argument("--model", nargs="+", choices=["cnn", "mlp"], default=["cnn", "mlp"],
                        help="cnn: the default TrainConfig; mlp: the same with model=mlp")  # fmt: skip
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads, both contenders")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (the first is dropped), got {args.repeats}")
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (the first epoch of every run is dropped), got {args.epochs}")
    torch.set_num_threads(args.threads)

    configs = {name: TrainConfig(model=name, epochs=args.epochs, device="cpu", threads=args.threads) for name in args.model}
    splits = open_splits(configs[args.model[0]])  # the data and split are the same for every model
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"augkit {augkit.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}")
    print(f"{splits.source}: {len(splits.train_labels)} train / {len(splits.val_labels)} val images "
          f"{'x'.join(map(str, splits.shape))}, batch {TrainConfig.batch_size} ({len(splits.train_labels) // TrainConfig.batch_size} "
          f"steps/epoch), {args.epochs} epochs per run (first dropped); {args.repeats} repeats (first dropped)")  # fmt: skip

    runs = {}
    for name, config in configs.items():
        runs[f"augkit {name}"] = lambda config=config: run_augkit(config)
        runs[f"hand {name}"] = lambda config=config: run_hand(config, splits)
    kept = interleaved(runs, args.repeats)

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in kept[name])

    print(f"\n{'model':<5} {'augkit steps/s':>15} {'hand steps/s':>13} {'extra us/step':>14} {'augkit/hand':>12} {'min':>6} {'max':>6}  target")
    for name in configs:
        ratios = [a["steps/s"] / h["steps/s"] for a, h in zip(kept[f"augkit {name}"], kept[f"hand {name}"])]
        ratio = statistics.median(ratios)
        augkit_rate, hand_rate = median(f"augkit {name}", "steps/s"), median(f"hand {name}", "steps/s")
        print(f"{name:<5} {augkit_rate:>15.1f} {hand_rate:>13.1f} {1e6 / augkit_rate - 1e6 / hand_rate:>14.0f} "
              f"{ratio:>12.3f} {min(ratios):>6.3f} {max(ratios):>6.3f}  >= {TARGET}: {'met' if ratio >= TARGET else 'NOT met'}")  # fmt: skip

    print(f"\n{'model':<5} {'augkit call s/epoch':>20} {'train+val s/epoch':>18} {'augkit val acc':>15} {'hand val acc':>13}")
    for name in configs:
        print(f"{name:<5} {median(f'augkit {name}', 'call s/epoch'):>20.3f} {median(f'augkit {name}', 'epoch s'):>18.3f} "
              f"{median(f'augkit {name}', 'val acc'):>15.4f} {median(f'hand {name}', 'val acc'):>13.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
