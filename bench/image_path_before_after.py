"""The image-only path of ``Pipeline.__call__`` now against an earlier commit, in one run.

For a change that must not slow down what users already run (targets, issue 14: the call
grew keyword arguments), the peer is augkit itself at ``--before`` (a git revision), checked
out into a temporary worktree. Each repeat runs both trees in fresh subprocesses, one after the
other, in alternating order (the machine's noise hits both alike); each subprocess times
``pipeline(image, index=i, epoch=0)`` for a few recipes and sizes, one thread. The first repeat
is dropped; medians of the per-call times and of the per-repeat ratios (now / before).

    python bench/image_path_before_after.py --before d4a59b7 [--repeats 7] [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {
    "crop+rotate+flip (compiled)": "crop(size=0.875, padding=4); rotate(limit=15, p=1); hflip(p=1)",
    "lecture recipe (compiled)": "crop(size=0.875, padding=4); rotate(limit=15, p=1); brightness(p=1); hflip(p=1); "
    "standardize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])",
    "with albumentations steps": "crop(size=0.875, padding=4); GaussNoise(p=1); RandomGamma(p=1); hflip(p=1)",
}
SIZES = (32, 224)

# Run in each tree's own interpreter state: import that tree's augkit, time every case.
TIMER = r"""
import json, os, sys, time
os.environ["OMP_NUM_THREADS"] = "1"
import cv2, numpy as np
cv2.setNumThreads(1)
sys.path.insert(0, sys.argv[1])
import augkit
recipes, sizes, calls = json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
assert augkit.__file__.startswith(sys.argv[1]), augkit.__file__
rng = np.random.default_rng(0)
out = {}
for name, spec in recipes.items():
    pipeline = augkit.load_pipeline(spec)
    for side in sizes:
        image = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        n = calls if side <= 64 else max(calls // 8, 50)
        for i in range(20):
            pipeline(image, index=i)
        start = time.perf_counter()
        for i in range(n):
            pipeline(image, index=i, epoch=0)
        out[f"{name} @ {side}"] = (time.perf_counter() - start) / n * 1e6
print(json.dumps(out))
"""


def time_tree(tree: Path, calls: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", TIMER, str(tree), json.dumps(RECIPES), json.dumps(SIZES), str(calls)],
        capture_output=True, text=True, check=True, env=env, cwd=tree,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the git revision to compare against")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000, help="calls per case at 32 px (an eighth at 224 px)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        before = Path(scratch) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), args.before],
                       check=True, capture_output=True)  # fmt: skip
        try:
            runs: dict[str, list[dict[str, float]]] = {"now": [], "before": []}
            for repeat in range(args.repeats):
                order = [("now", ROOT), ("before", before)]
                for label, tree in order if repeat % 2 == 0 else reversed(order):
                    runs[label].append(time_tree(tree, args.calls))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], check=False)
    print(f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; now = working tree, "
          f"before = {args.before}; {args.repeats} repeats, the first dropped; one thread")  # fmt: skip
    print(f"{'case':<42} {'now µs':>9} {'before µs':>10} {'now/before':>11}")
    for case in runs["now"][0]:
        now = [r[case] for r in runs["now"][1:]]
        was = [r[case] for r in runs["before"][1:]]
        ratio = statistics.median(n / b for n, b in zip(now, was))
        print(f"{case:<42} {statistics.median(now):>9.1f} {statistics.median(was):>10.1f} {ratio:>11.3f}")


if __name__ == "__main__":
    main()
