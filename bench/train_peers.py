"""Accuracy and time of `augkit train`'s default against scikit-learn's classifiers, on one split, in one run.

Every contender learns from the same training images and is scored on the same validation images:
the sample digits split as augkit opens it (``open_splits(TrainConfig())``: 8x8 gray, its val
split carved from train, stratified and seeded). Contenders:

  augkit        ``train(TrainConfig(), RUN_DIR, quiet=True)`` in this process: the default run of
                ``augkit train`` (cnn (32, 64), 20 epochs, batch 64, SGD one-cycle); its accuracy is
                the final epoch's val accuracy from the summary, its time the wall time of the call
                (opening the data, training, validating every epoch, checkpoints, curves.png)
  augkit mlp    the same with ``model="mlp"`` (hidden (256, 256)): the fully-connected net, the
                like-for-like peer of MLPClassifier (information, not a target)
  MLPClassifier ``MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, early_stopping=False,
                random_state=0)``: one hidden layer of augkit's width; otherwise scikit-learn's
                defaults (adam, lr 1e-3, alpha 1e-4, batch 200, stops when the training loss
                improves by less than 1e-4 for 10 epochs)
  LogisticReg.  ``LogisticRegression(max_iter=2000)``: lbfgs, C=1, multinomial
  augkit CLI    ``augkit train -o RUN_DIR --json`` as a subprocess, once, after the repeats (warm
                file cache): what a user waits for, interpreter start-up and imports included

scikit-learn sees each image flattened to 64 pixels, scaled to [0, 1] and standardised with
``StandardScaler`` fitted on the training images (augkit standardises with the training split's
mean and std too); the scaler's fit is inside the timing. Every library keeps its default
threads (the machine's cores), as a user would run it; the thread counts are printed.

The issue's target: augkit's default is more accurate than both MLPClassifier and
LogisticRegression on this split, and the time of each is reported. Seeds are fixed, so the
accuracies repeat exactly; the times come from interleaved repeats, their order rotating, the
first repeat dropped; medians, with min and max.

    python bench/train_peers.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_info

import augkit
from augkit.train.config import TrainConfig
from augkit.train.data import open_splits
from augkit.train.loop import train
from _repeats import interleaved  # bench/, the folder of this script


def run_augkit(config: TrainConfig) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="augkit-bench-") as tmp:
        start = time.perf_counter()
        summary = train(config, Path(tmp) / "run", quiet=True, log=lambda message: None)
        return {"seconds": time.perf_counter() - start, "acc": summary["final_val_acc"], "device": summary["device"]}


def run_sklearn(make, x_train, y_train, x_val, y_val) -> dict[str, float]:
    model = make_pipeline(StandardScaler(), make())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model.fit(x_train, y_train)
        seconds = time.perf_counter() - start
    classifier = model[-1]
    iterations = int(np.max(classifier.n_iter_))
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {"seconds": seconds, "acc": model.score(x_val, y_val), "iterations": iterations, "converged": converged}


def run_cli() -> dict[str, float]:
    """``augkit train`` with its defaults, as a subprocess: interpreter start-up included."""
    command = shutil.which("augkit", path=str(Path(sys.executable).parent)) or shutil.which("augkit")
    if command is None:
        raise SystemExit("the augkit command is not installed next to this Python; pip install -e . first")
    with tempfile.TemporaryDirectory(prefix="augkit-bench-") as tmp:
        start = time.perf_counter()
        done = subprocess.run([command, "train", "-o", str(Path(tmp) / "run"), "--json"],
                              capture_output=True, text=True, check=True)  # fmt: skip
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "acc": json.loads(done.stdout)["final_val_acc"]}


def flat(images: np.ndarray) -> np.ndarray:
    """uint8 N x H x W x C -> float64 N x (H*W*C) in [0, 1]."""
    return images.reshape(len(images), -1) / 255.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-cli", action="store_true", help="skip the `augkit train` subprocess")
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (the first is dropped), got {args.repeats}")

    config = TrainConfig()
    splits = open_splits(config)
    data = (flat(splits.train_images), splits.train_labels, flat(splits.val_images), splits.val_labels)
    blas = ", ".join(sorted({f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info()}))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"augkit {augkit.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
          f"scikit-learn {sklearn.__version__}, numpy {np.__version__} (threads: {blas})")
    print(f"{splits.source}: {len(splits.train_labels)} train / {len(splits.val_labels)} val images "
          f"{'x'.join(map(str, splits.shape))}, {len(splits.classes)} classes; {args.repeats} repeats (first dropped)")  # fmt: skip

    runs = {
        "augkit": lambda: run_augkit(config),
        "augkit mlp": lambda: run_augkit(config.replace({"model": "mlp"})),
        "MLPClassifier": lambda: run_sklearn(
            lambda: MLPClassifier(hidden_layer_sizes=(256,), max_iter=300, early_stopping=False, random_state=0), *data
        ),
        "LogisticReg.": lambda: run_sklearn(lambda: LogisticRegression(max_iter=2000), *data),
    }
    kept = interleaved(runs, args.repeats)
    if not args.no_cli:
        kept["augkit CLI"] = [run_cli()]

    acc = {name: statistics.median(r["acc"] for r in rs) for name, rs in kept.items()}
    secs = {name: [r["seconds"] for r in rs] for name, rs in kept.items()}
    print(f"\n{'contender':<14} {'val acc':>8} {'vs augkit':>10} {'seconds':>8} {'min':>7} {'max':>7} {'s / augkit':>11}  notes")
    for name, rs in kept.items():
        last = rs[-1]
        notes = (f"{last['device']}" if "device" in last else
                 f"{last['iterations']} iterations{'' if last['converged'] else ', NOT converged'}" if "iterations" in last else
                 "once, subprocess" if name == "augkit CLI" else "")  # fmt: skip
        if len({r["acc"] for r in rs}) > 1:
            notes += f"; acc varied {min(r['acc'] for r in rs):.4f}-{max(r['acc'] for r in rs):.4f}"
        time_ratio = statistics.median(secs[name]) / statistics.median(secs["augkit"])
        print(f"{name:<14} {acc[name]:>8.4f} {100 * (acc[name] - acc['augkit']):>+9.2f}pp {statistics.median(secs[name]):>8.3f} "
              f"{min(secs[name]):>7.3f} {max(secs[name]):>7.3f} {time_ratio:>11.2f}  {notes}")  # fmt: skip

    peers = ("MLPClassifier", "LogisticReg.")
    beaten = all(acc["augkit"] > acc[name] for name in peers)
    print(f"\ntarget: augkit's default more accurate than {' and '.join(peers)}: {'met' if beaten else 'NOT met'} "
          f"({len(splits.val_labels)} val images: one image is {100 / len(splits.val_labels):.2f}pp)")


if __name__ == "__main__":
    main()
