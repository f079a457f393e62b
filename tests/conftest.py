"""Shared fixtures: test data is built at test time, in tmp_path, never committed."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest


@pytest.fixture
def write_png() -> Callable[[Path, np.ndarray], Path]:
    """Write a uint8 RGB (H x W x 3) or gray (H x W) array as PNG with OpenCV (folders made)."""

    def write(path: Path, pixels: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
        assert ok
        path.write_bytes(buf.tobytes())
        return path

    return write


@dataclass
class FakeCifar:
    """A CIFAR folder written in the real format, and what was written into it."""

    root: Path
    names: list[str]  # class names in the meta file's order
    train_rows: np.ndarray  # N x 3072 uint8, train batches in order
    train_labels: np.ndarray  # meta-order indices
    val_rows: np.ndarray
    val_labels: np.ndarray


def _dump(path: Path, obj: object) -> None:
    # Protocol 2 with bytes keys: the shape of the official (Python 2) files.
    path.write_bytes(pickle.dumps(obj, protocol=2))


@pytest.fixture
def make_cifar(tmp_path: Path) -> Callable[..., FakeCifar]:
    """Build a small CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100") python folder.

    Random pixels and labels from a fixed seed; ``rows`` per batch file; ``names`` the class
    names in meta order; ``str_keys`` writes str keys instead of the official bytes keys.
    """

    def make(kind: str = "cifar10", rows: int = 4, names: list[str] | None = None,
             str_keys: bool = False) -> FakeCifar:  # fmt: skip
        rng = np.random.default_rng(0)
        names = names or [f"class{i}" for i in range(10)]
        key = (lambda k: k) if str_keys else (lambda k: k.encode())
        root = tmp_path / kind
        root.mkdir()
        if kind == "cifar10":
            train_files = [f"data_batch_{i}" for i in range(1, 6)]
            val_files, label_key = ["test_batch"], "labels"
            _dump(root / "batches.meta", {key("label_names"): [n.encode() for n in names]})
        else:
            train_files, val_files, label_key = ["train"], ["test"], "fine_labels"
            _dump(root / "meta", {key("fine_label_names"): [n.encode() for n in names],
                                  key("coarse_label_names"): [b"coarse0", b"coarse1"]})  # fmt: skip
        written = []
        for files in (train_files, val_files):
            data = rng.integers(0, 256, (rows * len(files), 3072), dtype=np.uint8)
            labels = rng.integers(0, len(names), rows * len(files))
            for i, name in enumerate(files):
                part = slice(i * rows, (i + 1) * rows)
                batch = {
                    key("batch_label"): name.encode(),
                    key(label_key): [int(v) for v in labels[part]],
                    key("data"): data[part],
                    key("filenames"): [f"{name}_{j}.png".encode() for j in range(rows)],
                }
                if kind == "cifar100":  # coarse labels differ from fine ones: using them is a bug
                    batch[key("coarse_labels")] = [1] * rows
                _dump(root / name, batch)
            written += [data, labels]
        return FakeCifar(root, names, *written)

    return make


@dataclass
class FakePacked:
    """An `augkit preprocess` packed output written in the real format, and what went into it."""

    root: Path
    manifest: dict
    images: dict[str, np.ndarray]  # split -> N x H x W x C uint8, as written
    labels: dict[str, np.ndarray]  # split -> N int64


@pytest.fixture
def make_packed(tmp_path: Path) -> Callable[..., FakePacked]:
    """Build a packed `augkit preprocess` output folder: manifest.json + .npy arrays per split.

    Random pixels and labels from a fixed seed; ``counts`` rows per split (a split left out is
    not written); ``shape`` of one image (H, W, C); ``classes`` [] writes unlabelled (-1)
    samples; ``complete`` False is an interrupted run.
    """

    def make(counts: dict[str, int] | None = None, shape: tuple[int, int, int] = (4, 6, 3),
             classes: tuple[str, ...] = ("cat", "dog", "owl"), complete: bool = True,
             name: str = "packed") -> FakePacked:  # fmt: skip
        rng = np.random.default_rng(1)
        counts = {"train": 5, "val": 3} if counts is None else counts
        root = tmp_path / name
        root.mkdir()
        images, labels, entries = {}, {}, {}
        for split, n in counts.items():
            images[split] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            labels[split] = rng.integers(0, len(classes), n) if classes else np.full(n, -1)
            labels[split] = labels[split].astype(np.int64)
            entries[split] = {"images": f"{split}_images.npy", "labels": f"{split}_labels.npy",
                              "count": n}  # fmt: skip
            np.save(root / entries[split]["images"], images[split])
            np.save(root / entries[split]["labels"], labels[split])
        manifest = {
            "format": "augkit.preprocess/1",
            "complete": complete,
            "output": {"format": "packed", "splits": entries},
            "classes": list(classes),
            # Keys the reader does not need, as preprocess writes them.
            "source": "somewhere/else",
            "stats": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "skipped": [{"path": "bad.png", "reason": "truncated"}],
        }
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return FakePacked(root, manifest, images, labels)

    return make
