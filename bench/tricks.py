"""What the training tricks of issue 12 cost: MixUp/CutMix per training step, the augmentation
policies per image, the per-pixel statistics per image.

    python bench/tricks.py [--repeats 7] [--block 0.5]

Each figure against its reference in the same process, interleaved repeats (the first dropped),
one thread; ratios are medians of the per-repeat ratios.

- mix: one training step of the default CNN (forward, soft cross-entropy, backward, SGD step)
  on normalised batches, with ``Mixup(0.8, 1.0)`` drawn and applied first, against the same step
  on the unmixed batch with cross-entropy; on 1x8x8 digits at batch 64 and 3x32x32 at batch 128;
- policies: one call of each policy step on the sample photos resized to 32 and 224 px, against
  ``crop + hflip`` (the reference of a cheap pipeline), microseconds per call;
- per-pixel statistics: ``ChannelStats(std_image=True).update`` against ``mean_image=True``
  (what ``augkit stats --per-pixel`` adds to ``--mean-image``), microseconds per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _repeats import calls_for_block, interleaved, per_call_us  # noqa: E402

import augkit  # noqa: E402
from augkit.stats import ChannelStats  # noqa: E402
from augkit.train.config import TrainConfig  # noqa: E402
from augkit.train.losses import SoftCrossEntropy  # noqa: E402
from augkit.train.mix import Mixup  # noqa: E402
from augkit.train.models import create_model  # noqa: E402


def _ratio(results: dict[str, list[float]], name: str, reference: str) -> float:
    return statistics.median(a / b for a, b in zip(results[name], results[reference]))


def bench_mix(repeats: int, steps: int) -> None:
    print("## MixUp/CutMix: one training step of the default CNN, mixed against plain")
    print("| input | batch | plain ms | mixed ms | mixed / plain |\n|---|---:|---:|---:|---:|")
    for shape, batch in (((1, 8, 8), 64), ((3, 32, 32), 128)):
        torch.manual_seed(0)
        model = create_model(TrainConfig(), shape, 10).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,))
        mix = Mixup(0.8, 1.0, num_classes=10, seed=0)
        plain_loss, soft_loss = torch.nn.CrossEntropyLoss(), SoftCrossEntropy()

        def step(inputs: torch.Tensor, targets: torch.Tensor, loss_fn: torch.nn.Module) -> None:
            loss = loss_fn(model(inputs), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        def timed(mixed: bool) -> float:
            start = time.perf_counter()
            for i in range(steps):
                if mixed:
                    inputs, targets, _ = mix(x, y, 0, i)
                    step(inputs, targets, soft_loss)
                else:
                    step(x, y, plain_loss)
            return (time.perf_counter() - start) / steps * 1e3

        results = interleaved({"plain": lambda: timed(False), "mixed": lambda: timed(True)}, repeats)
        print(f"| {'x'.join(map(str, shape))} | {batch} | {statistics.median(results['plain']):.2f} | "
              f"{statistics.median(results['mixed']):.2f} | {_ratio(results, 'mixed', 'plain'):.3f} |")


def bench_policies(repeats: int, block: float) -> None:
    print("\n## Policies: microseconds per call on the sample photos (uint8 RGB), against crop + hflip")
    photos = sorted((augkit.sample_data_dir() / "photos").glob("*.jpg"))
    specs = {"crop + hflip": "crop(size=0.9); hflip", "randaugment": "randaugment", "rand-m9-n2-mstd0.5": "rand-m9-n2-mstd0.5",
             "trivialaugment": "trivialaugment", "autoaugment": "autoaugment", "augmix": "augmix"}  # fmt: skip
    print("| step | " + " | ".join(f"{side} px µs (x crop + hflip)" for side in (32, 224)) + " |\n|---|---:|---:|")
    rows: dict[str, list[str]] = {name: [] for name in specs}
    for side in (32, 224):
        images = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (side, side), interpolation=cv2.INTER_AREA)
                  for p in photos]  # fmt: skip
        pipelines = {name: augkit.load_pipeline(spec, seed=0) for name, spec in specs.items()}
        runs = {name: (lambda image, i, p=p: p(image, index=i)) for name, p in pipelines.items()}
        calls = calls_for_block(list(runs.values()), images, block)
        results = interleaved({name: per_call_us(run, images, calls) for name, run in runs.items()}, repeats)
        for name in specs:
            rows[name].append(f"{statistics.median(results[name]):.0f} ({_ratio(results, name, 'crop + hflip'):.1f})")
    for name, cells in rows.items():
        print(f"| {name} | " + " | ".join(cells) + " |")


def bench_pixel_stats(repeats: int, block: float) -> None:
    print("\n## Per-pixel statistics: microseconds per image, std image against mean image only")
    print("| image | mean image µs | + std image µs | ratio |\n|---|---:|---:|---:|")
    rng = np.random.default_rng(0)
    for side in (32, 224):
        batch = rng.integers(0, 256, (16, side, side, 3), dtype=np.uint8)

        def run(std_image: bool) -> float:
            stats = ChannelStats(3, mean_image=True, std_image=std_image)
            start, n = time.perf_counter(), 0
            while time.perf_counter() - start < block:
                stats.update(batch)
                n += len(batch)
            return (time.perf_counter() - start) / n * 1e6

        results = interleaved({"mean": lambda: run(False), "std": lambda: run(True)}, repeats)
        print(f"| {side}x{side}x3 | {statistics.median(results['mean']):.1f} | {statistics.median(results['std']):.1f} | "
              f"{_ratio(results, 'std', 'mean'):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--block", type=float, default=0.5, help="seconds per timed block")
    parser.add_argument("--steps", type=int, default=30, help="training steps per timed block (mix)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    bench_mix(args.repeats, args.steps)
    bench_policies(args.repeats, args.block)
    bench_pixel_stats(args.repeats, args.block)


if __name__ == "__main__":
    main()
