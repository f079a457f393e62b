"""One process against `torchrun --nproc_per_node=N` with the same global batch: how far apart the
weights and metrics end, and what each costs, in one run.

Both train the same config on the sample digits (an MLP without BatchNorm or dropout, so that
what is left to differ is the order of floating-point reductions: each process has its own
share of every batch, and DistributedDataParallel averages their gradients), each as a real
subprocess with OMP_NUM_THREADS=1 per process. Printed: the largest absolute difference of any
weight after the last epoch, the final losses and accuracies, wall time (interpreter start-up,
process group set-up included) and the training throughput of the median epoch.

    python bench/ddp_equivalence.py [--processes 2] [--epochs 5] [--model mlp] [--hidden 256,256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def run(command: list[str], cwd: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        sys.exit(done.stderr[-2000:])
    return json.loads(done.stdout[done.stdout.index("{") :]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    config = ["--model", args.model, "--hidden", args.hidden, "--no-batchnorm", "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "-q", "--json"]  # fmt: skip
    print(f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="augkit-ddp-") as tmp:
        tmp = Path(tmp)
        one, one_s = run([sys.executable, "-m", "augkit", "train", *config, "-o", str(tmp / "one")], tmp)
        many, many_s = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            f"--nproc_per_node={args.processes}", "-m", "augkit", "train", *config,
                            "-o", str(tmp / "many")], tmp)  # fmt: skip
        a = torch.load(tmp / "one" / "last.pt", weights_only=True)
        b = torch.load(tmp / "many" / "last.pt", weights_only=True)
    diff = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"])
    scale = max(float(v.abs().max()) for v in a["model"].values())
    print(f"{args.model} {args.hidden}, global batch {args.batch_size}, {args.epochs} epochs\n")
    print(f"{'':<24} {'1 process':>12} {f'{args.processes} processes':>12}")
    for key in ("train_loss", "val_loss", "val_acc"):
        print(f"final {key:<18} {a['history'][-1][key]:>12.6f} {b['history'][-1][key]:>12.6f}")
    print(f"{'wall seconds':<24} {one_s:>12.1f} {many_s:>12.1f}")
    print(f"{'images/s (median epoch)':<24} {one['images_per_second']:>12.0f} {many['images_per_second']:>12.0f}")
    print(f"\nlargest weight difference {diff:.2e} (largest weight {scale:.2f})")


if __name__ == "__main__":
    main()
