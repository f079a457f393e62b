"""Output folders of ``augkit preprocess``: found by their manifest; packed arrays memory-mapped.

The folder holds ``manifest.json`` (``"format": "augkit.preprocess/1"``) and, when its
``output.format`` is "packed", per split an N x H x W x C uint8 ``.npy`` of images (C = 1 or 3)
and an N int64 ``.npy`` of labels (class index into the manifest's sorted ``classes``, or -1).
The labels are loaded whole (8 bytes a sample); the images are memory-mapped, each file on its
first read in each process, so a dataset larger than memory opens instantly and DataLoader
workers share the operating system's page cache instead of holding copies.
"""

from __future__ import annotations

import collections.abc
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from augkit.errors import DatasetError

MANIFEST = "manifest.json"
FORMAT = "augkit.preprocess/1"
_FORMAT_FAMILY = "augkit.preprocess/"
SPLITS = ("train", "val")  # the splits a packed output can have, in the order they are opened


class _SplitFiles(NamedTuple):
    images: Path
    labels: Path
    count: int


class _Packed(NamedTuple):
    """What a packed manifest says: the sorted class names and each split's files."""

    classes: tuple[str, ...]
    splits: dict[str, _SplitFiles]


def packed_splits(root: Path) -> tuple[str, ...] | None:
    """The splits of the packed ``augkit preprocess`` output at ``root``; None if it is not one.

    A "folder" output (an ImageFolder beside its manifest) is None too: it opens as the
    ImageFolder it is. Raises DatasetError for an unfinished run or a damaged manifest.
    """
    packed = _read_manifest(root)
    return None if packed is None else tuple(packed.splits)


def open_packed(
    root: Path, splits: Sequence[str]
) -> tuple[tuple[str, ...], RowSources, np.ndarray, PackedImages, np.ndarray]:
    """Index the packed ``splits`` (in that order) of the output at ``root``.

    Returns (classes, sources, labels, images, where) in the shape ``cifar.open_cifar`` returns
    them: sorted class names, one "<images file>[<row>]" per sample, int64 labels, the image
    reader, and an N x 2 array of (split number, row) per sample.
    """
    packed = _read_manifest(root)
    if packed is None:  # packed_splits said otherwise a moment ago: the folder changed under us
        raise DatasetError(f"{root}: no packed `augkit preprocess` output here any more")
    entries = [packed.splits[s] for s in splits]
    images = PackedImages([e.images for e in entries], [e.count for e in entries])
    labels, where = [], []
    for part, entry in enumerate(entries):
        images.array(part)  # checks the file now, not at the first read in some worker
        labels.append(_load_labels(entry, len(packed.classes)))
        where.append(np.stack([np.full(entry.count, part), np.arange(entry.count)], 1))
    where_all = np.concatenate(where).astype(np.int64)
    sources = RowSources(tuple(str(e.images) for e in entries), where_all)
    return packed.classes, sources, np.concatenate(labels), images, where_all


class PackedImages:
    """The images files of a packed output, each memory-mapped on first use in this process.

    Pickles as the file paths and row counts, never the arrays: sending a packed dataset to
    worker processes costs a few hundred bytes, and each worker maps the files itself.
    """

    def __init__(self, files: Sequence[Path], counts: Sequence[int]) -> None:
        self.files = tuple(files)
        self.counts = tuple(counts)
        self._maps: dict[int, np.ndarray] = {}

    def image(self, part: int, row: int) -> np.ndarray:
        """Row ``row`` of file ``part``, copied: callers can write to it and never pin the map."""
        return np.array(self.array(part)[row])

    def array(self, part: int) -> np.ndarray:
        """File ``part`` as a read-only N x H x W x C memory map, checked on first use."""
        if part not in self._maps:
            self._maps[part] = _map_images(self.files[part], self.counts[part])
        return self._maps[part]

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "counts": self.counts}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["counts"])


class RowSources(collections.abc.Sequence):
    """The sources "<file>[<row>]" of samples stored as array rows, made when asked for.

    A packed dataset of millions of small images would otherwise carry millions of strings,
    larger than the pixels, into every worker process.
    """

    def __init__(self, files: tuple[str, ...], where: np.ndarray) -> None:
        self.files = files
        self.where = where  # N x 2: (file number, row) per sample

    def take(self, where: np.ndarray) -> RowSources:
        """The sources of the samples whose (file number, row) pairs are ``where``."""
        return RowSources(self.files, where)

    def __len__(self) -> int:
        return len(self.where)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        part, row = self.where[i]
        return f"{self.files[part]}[{row}]"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    def __repr__(self) -> str:
        return f"RowSources({len(self)} rows of {', '.join(self.files)})"


def _read_manifest(root: Path) -> _Packed | None:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(
            f"{path}: not valid JSON ({e}); the manifest of an `augkit preprocess` output is "
            f"damaged: write the output again with `augkit preprocess`"
        ) from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_FORMAT_FAMILY):
        return None  # some other tool's manifest.json: not ours to judge
    if fmt != FORMAT:
        raise DatasetError(
            f"{path}: format {fmt!r} was written by another version of augkit; this one reads "
            f"{FORMAT!r}: upgrade augkit, or write the output again with this version"
        )
    complete = manifest.get("complete")
    if complete is False:
        raise DatasetError(
            f"{root}: an unfinished `augkit preprocess` run; "
            f"run the same command again to finish it"
        )
    if complete is not True:
        raise DatasetError(f"{path}: 'complete' is {complete!r}, expected true or false")
    output = _field(manifest, "output", dict, path)
    output_format = _field(output, "format", str, path, "output.format")
    if output_format == "folder":
        return None
    if output_format != "packed":
        raise DatasetError(
            f"{path}: 'output.format' is {output_format!r}, expected 'packed' or 'folder'"
        )
    return _Packed(_classes(manifest, path), _split_files(root, output, path))


def _classes(manifest: dict[str, Any], path: Path) -> tuple[str, ...]:
    classes = _field(manifest, "classes", list, path)
    if not all(isinstance(c, str) for c in classes) or classes != sorted(set(classes)):
        raise DatasetError(
            f"{path}: 'classes' must be unique class names in sorted order, got {classes!r}"
        )
    return tuple(classes)


def _split_files(root: Path, output: dict[str, Any], path: Path) -> dict[str, _SplitFiles]:
    splits = _field(output, "splits", dict, path, "output.splits")
    if "train" not in splits:
        raise DatasetError(
            f"{path}: 'output.splits' has no 'train' entry (found: {', '.join(splits) or 'none'})"
        )
    found = {}
    for split in (s for s in SPLITS if s in splits):
        key = f"output.splits.{split}"
        entry = _field(splits, split, dict, path, key)
        names = [_field(entry, k, str, path, f"{key}.{k}") for k in ("images", "labels")]
        for name in names:
            # The manifest names files in the output folder; one pointing elsewhere is refused.
            if Path(name).is_absolute() or ".." in Path(name).parts or not name:
                raise DatasetError(f"{path}: {key!r} names {name!r}, which is not a file in {root}")
        count = _field(entry, "count", int, path, f"{key}.count")
        if isinstance(count, bool) or count < 0:
            raise DatasetError(f"{path}: '{key}.count' is {count!r}, expected a row count")
        found[split] = _SplitFiles(root / names[0], root / names[1], count)
    return found


def _field(mapping: dict[str, Any], key: str, kind: type, path: Path, name: str = "") -> Any:
    value = mapping.get(key)
    if not isinstance(value, kind):
        expected = {dict: "an object", list: "a list", str: "a string", int: "an integer"}[kind]
        found = repr(value) if key in mapping else "missing"
        raise DatasetError(f"{path}: {name or key!r} is {found}, expected {expected}")
    return value


def _load_npy(path: Path, **kwargs: Any) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(
            f"{path}: missing, so the packed output is incomplete; write it again with "
            f"`augkit preprocess`"
        )
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable .npy array ({e})") from None


def _map_images(path: Path, count: int) -> np.ndarray:
    images = _load_npy(path, mmap_mode="r")
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise DatasetError(
            f"{path}: expected uint8 images of shape N x H x W x C with C = 1 or 3, "
            f"found {images.dtype} of shape {images.shape}"
        )
    if len(images) != count:
        raise DatasetError(f"{path}: {len(images)} images, but the manifest says {count}")
    return images


def _load_labels(entry: _SplitFiles, n_classes: int) -> np.ndarray:
    labels = _load_npy(entry.labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(
            f"{entry.labels}: expected a 1-D integer array of labels, found {labels.dtype} "
            f"of shape {labels.shape}"
        )
    if len(labels) != entry.count:
        raise DatasetError(
            f"{entry.labels}: {len(labels)} labels for {entry.count} images in {entry.images.name}"
        )
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise DatasetError(
            f"{entry.labels}: labels from {labels.min()} to {labels.max()}, expected -1 "
            f"(unlabelled) or a class index below {n_classes}"
        )
    return labels.astype(np.int64)
