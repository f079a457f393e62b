#!/usr/bin/env bash
# GPU check of `augkit train`: a synthetic CIFAR-sized dataset, packed by `augkit preprocess`,
# trained for a few hundred steps on CUDA with --amp (bf16 autocast, channels-last), with
# augmentation in DataLoader workers and without, and once in float32 for comparison. Checks
# that the loss falls; prints images/s and peak GPU memory.
# Finishes in a few minutes on one GPU; exits non-zero if any check fails.
#
#   bash bench/gpu_check.sh [WORK_DIR]        (PYTHON=python3 IMAGES=25000 EPOCHS=3 by default)
#
# The data: 32x32 RGB images in 10 classes, each class a colour and a stripe orientation under
# strong noise, so a ResNet learns it within an epoch but not in a few steps. Written as CIFAR-10
# python batches (5 x IMAGES/5 train, IMAGES/5 val), then packed, as a user would with the real one.
set -euo pipefail
PYTHON=${PYTHON:-python3}
IMAGES=${IMAGES:-25000}
EPOCHS=${EPOCHS:-3}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu IMAGES=1000 EPOCHS=1 dry-runs the script without a GPU
WORK=${1:-$(mktemp -d -t augkit-gpu-XXXXXX)}
mkdir -p "$WORK"
augkit() { "$PYTHON" -m augkit "$@"; }

"$PYTHON" - "$WORK/cifar" "$IMAGES" <<'EOF'
import pickle, sys
from pathlib import Path
import numpy as np

root, images = Path(sys.argv[1]), int(sys.argv[2])
root.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
colours = rng.integers(40, 216, (10, 3))
yy, xx = np.mgrid[0:32, 0:32]

def batch(n):
    labels = rng.integers(0, 10, n)
    angle = labels[:, None, None] * np.pi / 10
    stripes = 40 * np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 0.8)
    pixels = colours[labels][:, None, None, :] + stripes[..., None] + rng.normal(0, 60, (n, 32, 32, 3))
    data = np.clip(pixels, 0, 255).astype(np.uint8).transpose(0, 3, 1, 2).reshape(n, 3072)  # CIFAR: planes
    return {b"data": data, b"labels": [int(v) for v in labels]}

per_file = images // 5
for i in range(1, 6):
    (root / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_file), protocol=2))
(root / "test_batch").write_bytes(pickle.dumps(batch(per_file), protocol=2))
(root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}, protocol=2))
EOF

augkit preprocess "$WORK/cifar" "$WORK/packed" --overwrite -q --json > "$WORK/preprocess.json"
common=("$WORK/packed" --model resnet --channels 64,128,256 --batch-size 256 --epochs "$EPOCHS" --lr 0.2
        --device "$DEVICE" -q --json)
# The realistic run (augmentation in 4 DataLoader workers, bf16), then the GPU alone (batches
# sliced from the memory-mapped array in the training process) with and without bf16.
augkit train "${common[@]}" --amp --augment "hflip" --workers 4 -o "$WORK/run-amp-augment" > "$WORK/amp-augment.json"
augkit train "${common[@]}" --amp -o "$WORK/run-amp" > "$WORK/amp.json"
augkit train "${common[@]}" --no-amp -o "$WORK/run-fp32" > "$WORK/fp32.json"

"$PYTHON" - "$WORK" <<'EOF'
import csv, json, math, sys
from pathlib import Path
import torch

work = Path(sys.argv[1])
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print(f"{device}, torch {torch.__version__}, CUDA {torch.version.cuda}")
failed = False
for name in ("amp-augment", "amp", "fp32"):
    summary = json.loads((work / f"{name}.json").read_text())
    rows = list(csv.DictReader(open(work / f"run-{name}" / "metrics.csv")))
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["train_loss"])
    falls = last < 0.5 * math.log(10) and float(rows[-1]["val_acc"]) > 0.5
    failed |= not falls
    print(f"{name:>11}: {summary['epochs']} epochs, first {float(rows[0]['seconds']):.1f}s, train loss {first:.3f} -> {last:.3f} (chance {math.log(10):.3f}), "
          f"val acc {float(rows[-1]['val_acc']):.4f}; {summary['images_per_second']:.0f} img/s (median epoch), "
          f"peak GPU memory {summary['peak_gpu_memory_mb']} MiB; loss falls: {'yes' if falls else 'NO'}")
amp, fp32 = (json.loads((work / f"{n}.json").read_text())["images_per_second"] for n in ("amp", "fp32"))
print(f"amp / fp32 throughput: {amp / fp32:.2f}")
sys.exit(1 if failed else 0)
EOF
