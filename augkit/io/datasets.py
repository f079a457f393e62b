"""Open the datasets people have, as a light index of (source, label); pixels are read on demand.

Layouts, detected in this order:

- **augkit preprocess output**: a folder whose ``manifest.json`` says ``"format":
  "augkit.preprocess/1"`` (see ``augkit.io.packed``). A "packed" output is N x H x W x C uint8
  arrays, memory-mapped, with train and, if written, val; a "folder" output is an ImageFolder
  with splits beside its manifest and opens as one. An unfinished run is refused.
- **COCO detection**: a folder with ``annotations/instances_<name>.json`` (COCO's own layout,
  ``coco/train2017/`` beside ``coco/annotations/instances_train2017.json``), or the path of such
  a file (see ``augkit.io.coco``): the images its file names, each with boxes (``read_targets``),
  class names from its categories; labels -1 (the classes name the boxes). Its channels (the
  gray rule below) are found when it is opened: the first colour image's header ends the scan.
- **Segmentation folders**: ``root/images/`` and ``root/masks/`` (or ``root/train/images`` and
  ``root/train/masks``, with val as for an ImageFolder): the images directly in ``images/``, each
  with the mask of its stem, ``masks/<stem>.png`` (``read_targets``; see ``augkit.io.targets``);
  no classes, labels -1 (the mask's values are the labels). Other folders beside them are ignored.
- **CIFAR-10 / CIFAR-100** python folders (``batches.meta`` + ``data_batch_1..5`` + ``test_batch``;
  ``meta`` + ``train`` + ``test``): train and val (= the test batch). CIFAR-100 uses the 100
  fine labels. The pickles are read through a restricted unpickler (``augkit.io.cifar``).
- **ImageFolder with splits**: ``root/train/<class>/...``, and for val the first of ``val/``,
  ``valid/``, ``validation/``, ``test/`` that exists (other folders beside them are ignored).
  The classes are the class folders of both splits together, so a class missing from one split
  keeps the same index in the other.
- **ImageFolder**: ``root/<class>/...`` (images anywhere below each class folder); one split, train.
- **Flat folder**: images directly in ``root`` (sub-folders not scanned), unlabelled (no classes,
  labels -1); one split, train. A folder with both images and sub-folders is refused as
  ambiguous rather than guessed.
- **digits**: the name ``digits`` (when no such path exists): scikit-learn's 8 x 8 digits, 1797
  images, one split, train.

Rules common to all: only entries with an image extension count, names starting with "." are
ignored, everything is sorted by code point (class names, then files by their path inside the
class folder), so the order and the class indices are the same on every machine. Whatever has
an image's name and is not a folder is a sample: a symbolic link that loops or dangles, or a
FIFO, named ``x.png`` is listed, and reading it says why it cannot be read (commands skip and
report it) rather than vanish or break the listing. An empty class folder is still a class: a
class whose images are missing keeps its index, and so do the others. Class names that could
escape an output folder ("..", "a\\b", ...) are refused.

**Channels: one rule for every command and the Python API.** A dataset is gray when every image
in it, in all its splits, is stored gray, and then every sample reads as uint8 H x W x 1; any
other dataset (a colour image among gray ones included) reads as RGB, H x W x 3, its gray images
with R = G = B. ``Dataset.channels`` says which (1 or 3), and ``read``, ``dataset[i]``,
``augkit stats``, ``augkit preprocess``, ``augkit preview``, ``augkit train`` and
``augkit evaluate`` all follow it, so statistics computed on a dataset always fit training on it.
"Stored gray" is what the file's header says, as Pillow names the mode: 1, L, LA, I, I;16 or F
(a gray PNG, 8 or 16 bits, with or without alpha; a one-component JPEG; a gray TIFF, PGM or BMP).
Palette images (GIF, palette PNG) and WebP count as colour, whatever their colours. An array
dataset has the channels it stores: digits 1, CIFAR 3, a packed output what ``augkit preprocess``
wrote (1 for a gray source). A file whose header cannot be read does not count (reading it
fails, and commands skip it).

Why this rule: reading gray images as RGB triples their bytes, memory and compute for three
identical channels, so gray data should stay one channel; but a batch needs one shape, so one
colour image makes the dataset RGB. The headers, not the pixel values (R = G = B everywhere),
decide, because a header is read without decoding a pixel: the answer is known before any image
is decoded, the same to a preview of two images as to a training run over all of them (measured
on a 2-core VM: 8.6 us a file for the 1,797 sample digits, against 38 us to decode one; 53 us
for a JPEG photo header, against 1.4 ms to decode it; a colour dataset stops at its first file).
What a file stores, not what it shows, decides: an RGB file of gray pixels is colour. All splits
decide together, so train and val, and a model and the data it is evaluated on, have the same
channels. ``read(i, gray=True)`` (``augkit stats --gray``, ``augkit preprocess --gray``)
converts a colour dataset to one channel of luma instead.

**Targets.** A COCO, segmentation or packed dataset written from one carries targets:
``dataset.target_kind`` is "boxes" or "masks" (None for the others, which pay nothing for it),
and ``dataset.read_targets(i)`` gives sample i's (``augkit.io.targets.Targets``), ready for
``pipeline(image, **targets.as_kwargs())``. Broken targets (a mask missing, not a label image, or
of another size than its image; a box outside its image or without area; an annotation of a
category the file does not list) raise ``TargetReadError`` (an ``ImageReadError``), and commands
skip and list the sample as they do an unreadable image.
"""

from __future__ import annotations

import collections.abc
import importlib.util
import itertools
import operator
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path, PureWindowsPath
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from augkit.documents import short_repr
from augkit.errors import PROCESS_ERRORS, DatasetError
from augkit.files import open_regular
from augkit.io import cifar, coco, packed
from augkit.io.images import _FORMATS as _HEADER_FORMATS  # the formats read_image reads, by Pillow's names
from augkit.io.images import IMAGE_EXTENSIONS, WHITE, DraftSize, convert_channels, is_image_file, read_image
from augkit.io.targets import MASKS_FOLDER, BoxTable, MaskFiles, Targets

# Pillow's modes of images stored with one gray channel (alpha aside): the gray rule's "stored gray".
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY_TYPES = (0, 4)  # IHDR colour types: gray, gray + alpha (2 RGB, 3 palette, 6 RGBA)

# Names under which people store the validation split, in the order they are looked for.
VAL_FOLDER_NAMES = ("val", "valid", "validation", "test")


@dataclass(eq=False, repr=False)
class Dataset(collections.abc.Sequence):
    """One split of a dataset as a light index of (source, label); nothing is decoded until read."""

    kind: str  # "imagefolder" | "folder" | "segmentation" | "coco" | "packed" | "cifar10" | "cifar100" | "digits"
    root: Path | None  # the path opened (None for digits)
    split: str  # "train" | "val" | "all"
    classes: tuple[str, ...]  # sorted class names; () for an unlabelled flat folder
    # Per sample: its file, or "<array file>[<row>]" / "digits[<row>]"; a list, or for packed
    # outputs a packed.RowSources that makes each string when asked (millions of rows).
    sources: collections.abc.Sequence[str]
    labels: np.ndarray  # int64 index into classes; -1 when unlabelled
    # Array kinds (in memory or memory-mapped): where the pixels are (an object with
    # .image(part, row) and .channels) and, per sample, (part, row). None for kinds whose sources are files.
    _store: Any = None
    _where: np.ndarray | None = None
    # File kinds: the channel count, found on first use and shared by every subset (see channels).
    _scan: _ChannelScan = field(default_factory=lambda: _ChannelScan(None))
    # Datasets with targets: where they are (an object with .kind, .read(key, source) -> Targets
    # and .take(indices), key being the sample's (part, row) for array kinds, else its index).
    _targets: Any = None

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def channels(self) -> int:
        """1 if the dataset is gray, 3 if not: the channels every sample reads with (module docstring).

        For array kinds it is the stored channel count. For files it is found the first time it
        is asked, from the header of every image of every split (no pixel decoded; the first
        colour image ends the scan), and then kept, also by subsets and by copies sent to
        worker processes.
        """
        if self._store is not None:
            return int(self._store.channels)
        scan = self._scan
        if scan.value is None:
            files = self.sources if scan.layout is None else _list_files(scan.layout, tuple(scan.layout.splits))[1]
            scan.value = files_channels(files)
        return scan.value

    def read(
        self,
        i: int,
        *,
        gray: bool | None = None,
        draft: DraftSize | None = None,
        exif_orientation: bool = True,
        background: str | collections.abc.Sequence[int] = WHITE,
    ) -> np.ndarray:
        """Sample ``i``'s pixels, uint8: H x W x ``channels`` (1 for a gray dataset, else 3 RGB).

        Args:
            gray: None: the dataset's channels (the gray rule, module docstring); True: one
                channel (colour converted to ITU-R 601 luma); False: RGB H x W x 3.
            draft, exif_orientation, background: ``read_image``'s, for samples that are files
                (JPEG reduced-scale decoding, the EXIF orientation, the colour alpha is
                composited onto); in-memory and packed samples come as stored.

        Raises ImageReadError for a file that cannot be read as an image.
        """
        i = self._position(i)
        if gray is None:
            gray = self.channels == 1
        if self._store is None:
            return read_image(
                self.sources[i], gray=gray, draft=draft, exif_orientation=exif_orientation, background=background
            )
        part, row = self._where[i]
        return convert_channels(self._store.image(int(part), int(row)), gray=gray)

    @property
    def target_kind(self) -> str | None:
        """"masks" or "boxes" for a dataset with targets (``read_targets``), else None."""
        return None if self._targets is None else self._targets.kind

    def read_targets(self, i: int, image_shape: tuple[int, ...] | None = None) -> Targets:
        """Sample ``i``'s targets: its mask (H x W uint8 or uint16 labels), or its boxes (N x 4
        float32 in ``targets.BOX_FORMAT``, pixels) and their labels (N int64 class indices).

        Args:
            image_shape: the shape of the sample's pixels as read (``read(i).shape``): when given,
                targets of another size raise TargetReadError rather than misalign.

        Raises:
            TargetReadError: broken targets, or not of ``image_shape`` (the reason says which).
            DatasetError: a dataset without targets (``target_kind`` None).
        """
        i = self._position(i)
        if self._targets is None:
            raise DatasetError(
                f"{self.root or self.kind}: a {self.kind} dataset has no targets; masks come from "
                f"images/ + masks/ folders, boxes from COCO annotations (augkit.io.datasets)"
            )
        key = (int(self._where[i][0]), int(self._where[i][1])) if self._where is not None else i
        targets = self._targets.read(key, self.sources[i])
        if image_shape is not None:
            targets.check_fits(image_shape, self.sources[i])
        return targets

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:  # type: ignore[override]
        """(pixels, label) of sample ``i``, like a torchvision dataset: pixels as ``read(i)``."""
        i = self._position(i)
        return self.read(i), int(self.labels[i])

    def subset(self, indices: collections.abc.Iterable[int]) -> Dataset:
        """The samples at ``indices`` (in that order), with the same kind, split, classes and channels."""
        idx = np.asarray(indices if isinstance(indices, np.ndarray) else list(indices))
        if idx.size == 0:
            idx = idx.astype(np.int64)
        if idx.ndim != 1 or idx.dtype.kind not in "iu":
            raise TypeError(f"subset takes integer indices, got {idx.dtype} of shape {idx.shape}")
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"subset indices must be in [{-n}, {n}) for {n} samples")
        idx = idx.astype(np.int64) % max(n, 1)
        where = None if self._where is None else self._where[idx]
        if isinstance(self.sources, packed.RowSources):
            sources = self.sources.take(where)
        else:
            sources = [self.sources[j] for j in idx]
        targets = None if self._targets is None else self._targets.take(idx)
        return replace(self, sources=sources, labels=self.labels[idx], _where=where, _targets=targets)

    def __repr__(self) -> str:
        where = f"{str(self.root)!r}" if self.root is not None else "None"
        return (
            f"Dataset(kind={self.kind!r}, root={where}, split={self.split!r}, "
            f"samples={len(self)}, classes={len(self.classes)})"
        )

    def _position(self, i: int) -> int:
        try:
            i = operator.index(i)
        except TypeError:
            raise TypeError(
                f"Dataset indices are integers, got {type(i).__name__}; "
                f"use subset(indices) to select several samples"
            ) from None
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range for {n} samples")
        return i % n


class _Layout(NamedTuple):
    """What was found at a path: its kind, and the folder of each split (folder kinds)."""

    kind: str
    root: Path | None
    splits: dict[str, Path | None]


@dataclass(eq=False)
class _ChannelScan:
    """A file dataset's channel count: None until found; one object shared by a dataset's subsets."""

    layout: _Layout | None  # whose files decide (every split); None: the dataset's own sources
    value: int | None = None


def open_dataset(path: str | Path | None = None, split: str = "train") -> Dataset:
    """Open one split ("train", "val", or "all" = train then val) of the dataset at ``path``.

    Args:
        path: a dataset folder (see the module docstring for the layouts), or "digits".
            None: the sample data's digits (scikit-learn's digits if it is not there).
        split: "train", "val" (where the layout has one), or "all".
    """
    layout = _find_layout(path)
    if split == "all":
        wanted = tuple(layout.splits)
    elif split in layout.splits:
        wanted = (split,)
    else:
        raise DatasetError(_unknown_split_message(layout, split))

    if layout.kind == "packed" or layout.kind in cifar.SPLIT_FILES:
        # Both index (classes, sources, labels, pixel store, (part, row) of each sample).
        if layout.kind == "packed":
            index = packed.open_packed(layout.root, wanted)
        else:
            index = cifar.open_cifar(layout.root, layout.kind, wanted)
        _check_class_names(index[0], layout.root)
        dataset = Dataset(layout.kind, layout.root, split, *index)
        if layout.kind == "packed":
            from augkit.io.packed_targets import open_packed_targets

            dataset._targets = open_packed_targets(layout.root, wanted)
        return dataset
    if layout.kind == "digits":
        return _open_digits(split)
    if layout.kind == "coco":
        return _open_coco(layout, split, wanted)

    classes, files, labels = _list_files(layout, wanted)
    if not files:
        where = ", ".join(str(layout.splits[s]) for s in wanted)
        if layout.kind == "segmentation":
            needs = "a segmentation folder needs <split>/images/<image> files"
        else:
            needs = "an ImageFolder needs <root>/<class>/<image> files"
        raise DatasetError(f"{where}: no images found ({_extensions()}); {needs}")
    targets = MaskFiles() if layout.kind == "segmentation" else None
    return Dataset(layout.kind, layout.root, split, classes, files, labels, _scan=_ChannelScan(layout), _targets=targets)


def files_channels(paths: collections.abc.Iterable[str | Path]) -> int:
    """1 if every image file of ``paths`` whose header can be read is stored gray, else 3.

    The gray rule (module docstring) for a set of files; the first colour one ends the scan.
    No readable header at all gives 3, RGB, the default of ``read_image``.
    """
    found = False
    for path in paths:
        channels = stored_channels(path)
        if channels == 3:
            return 3
        found = found or channels == 1
    return 1 if found else 3


def stored_channels(path: str | Path) -> int | None:
    """1 if the image file at ``path`` is stored gray (Pillow mode in ``GRAY_MODES``), 3 if in
    colour (RGB, RGBA, palette, CMYK, ...), None if its header cannot be read.

    Reads the header only: 26 bytes of a PNG, the markers before the pixels of other formats.
    Anything that is not a regular file (a FIFO named x.png) is None without being read.
    """
    try:
        with open_regular(path) as file:
            head = file.read(26)
            if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR" and len(head) == 26:
                return 1 if head[25] in _PNG_GRAY_TYPES else 3
            file.seek(0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # DecompressionBombWarning: nothing is decoded here
                with Image.open(file, formats=_HEADER_FORMATS) as header:
                    return 1 if header.mode in GRAY_MODES else 3
    except OSError as error:
        if error.errno in PROCESS_ERRORS:  # out of descriptors or memory: about this process, not the file
            raise
        return None
    except Exception:  # noqa: BLE001 (Pillow fails on damaged headers in many ways: reading the file will say why)
        return None


def list_splits(path: str | Path | None = None) -> tuple[str, ...]:
    """The splits the dataset at ``path`` has: ("train", "val") or ("train",)."""
    return tuple(_find_layout(path).splits)


def sample_data_dir() -> Path:
    """The folder of the sample data shipped with augkit, the default input of every command."""
    # Installed, the folder is the package augkit.sample_data (mapped from sample_data/ by
    # pyproject.toml); in a source checkout that was not installed, it sits beside augkit/.
    spec = importlib.util.find_spec("augkit.sample_data")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "sample_data"


def _find_layout(path: str | Path | None) -> _Layout:
    if path is None:
        root = sample_data_dir() / "digits"
        if not root.exists():
            return _Layout("digits", None, {"train": None})
    else:
        root = Path(path)
    if not root.exists():
        if str(path) == "digits":
            return _Layout("digits", None, {"train": None})
        raise DatasetError(f"{root}: no such file or directory")
    if not root.is_dir():
        splits = coco.coco_splits(root)
        if splits is not None:
            return _Layout("coco", root, splits)
        if is_image_file(root):
            raise DatasetError(
                f"{root}: is a single image; pass its folder ({root.parent}) to open a dataset"
            )
        raise DatasetError(f"{root}: is a file, not a dataset folder")

    # First: a preprocess output may hold anything beside its manifest (a train/ folder too).
    packed_splits = packed.packed_splits(root)
    if packed_splits is not None:
        return _Layout("packed", root, dict.fromkeys(packed_splits, root))
    kind = cifar.cifar_kind(root)
    if kind is not None:
        return _Layout(kind, root, dict.fromkeys(cifar.SPLIT_FILES[kind], root))
    # Before ImageFolders, which they would look like (class folders "annotations", "train2017";
    # "images", "masks").
    annotations = coco.coco_splits(root)
    if annotations is not None:
        return _Layout("coco", root, annotations)
    if _is_segmentation(root / "train"):
        val = next((root / n for n in VAL_FOLDER_NAMES if _is_segmentation(root / n)), None)
        return _Layout("segmentation", root, {"train": root / "train", **({"val": val} if val else {})})
    if _is_segmentation(root):
        return _Layout("segmentation", root, {"train": root})
    if (root / "train").is_dir():
        splits: dict[str, Path | None] = {"train": root / "train"}
        val = next((root / n for n in VAL_FOLDER_NAMES if (root / n).is_dir()), None)
        if val is not None:
            splits["val"] = val
        # Split folders holding images directly (no class folders) are unlabelled splits, as
        # `augkit preprocess --format folder` writes an unlabelled source.
        flat = not _subfolders(root / "train") and bool(_flat_images(root / "train"))
        return _Layout("folder" if flat else "imagefolder", root, splits)

    folders, images = _subfolders(root), _flat_images(root)
    if folders and images:
        raise DatasetError(
            f"{root}: holds both images ({len(images)}) and folders ({', '.join(folders[:3])}"
            f"{', ...' if len(folders) > 3 else ''}); for an ImageFolder move the images into "
            f"class folders, for a flat folder of images move the folders out"
        )
    if folders:
        return _Layout("imagefolder", root, {"train": root})
    if images:
        return _Layout("folder", root, {"train": root})
    raise DatasetError(
        f"{root}: no dataset found; looked for an `augkit preprocess` output (manifest.json), "
        f"CIFAR python batches (batches.meta or meta), COCO annotations (annotations/instances_*.json), "
        f"images/ and masks/ folders, "
        f"train/ and val/ split folders, class folders (<root>/<class>/<image>), and images "
        f"directly in the folder ({_extensions()})"
    )


def _unknown_split_message(layout: _Layout, split: str) -> str:
    where = layout.root if layout.root is not None else "digits"
    valid = ", ".join((*layout.splits, "all"))
    message = f"{where}: no split {split!r}; choose one of: {valid}"
    if split == "val" and layout.kind == "imagefolder":
        plain = layout.splits["train"] == layout.root  # root/<class>/..., not root/train/...
        move = f"move the class folders into {where}/train/ and " if plain else ""
        message += (
            f". This dataset has no val split; to get one, {move}put held-out images "
            f"in {where}/val/<class>/"
        )
    return message


def _list_files(layout: _Layout, wanted: tuple[str, ...]) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """(classes, files, labels) of the ``wanted`` splits of a file layout ("folder", "imagefolder",
    "segmentation")."""
    folders = [layout.splits[s] for s in wanted]
    if layout.kind in ("folder", "segmentation"):
        files = [p for folder in folders for p in _flat_images(_images_folder(layout, folder))]
        return (), [str(f) for f in files], np.full(len(files), -1, dtype=np.int64)
    # Classes of every split, not only those opened: indices agree between train and val.
    classes = tuple(sorted({c for d in layout.splits.values() for c in _subfolders(d)}))
    _check_class_names(classes, layout.root)
    files, label_list = [], []
    for folder in folders:
        for index, name in enumerate(classes):
            found = _images_below(folder / name) if (folder / name).is_dir() else []
            files += found
            label_list += [index] * len(found)
    return classes, [str(f) for f in files], np.array(label_list, dtype=np.int64)


def _is_segmentation(folder: Path) -> bool:
    return (folder / "images").is_dir() and (folder / MASKS_FOLDER).is_dir()


def _images_folder(layout: _Layout, folder: Path) -> Path:
    """Where a split's images are: its folder, or its ``images/`` for a segmentation dataset."""
    return folder / "images" if layout.kind == "segmentation" else folder


def _open_coco(layout: _Layout, split: str, wanted: tuple[str, ...]) -> Dataset:
    parts = [coco.read_coco(layout.splits[s]) for s in wanted]
    classes = parts[0].classes
    for name, part in zip(wanted[1:], parts[1:]):
        if part.classes != classes:
            raise DatasetError(
                f"{layout.splits[name]}: its categories ({short_repr(part.classes)}) are not those of "
                f"{layout.splits[wanted[0]]} ({short_repr(classes)}); the splits of a dataset share their classes"
            )
    _check_class_names(classes, layout.root)
    sources = [source for part in parts for source in part.sources]
    if not sources:
        raise DatasetError(f"{', '.join(str(layout.splits[s]) for s in wanted)}: no images listed")
    # The gray rule, decided now: the images of the splits opened first, then (only if all are
    # gray) the others', whose annotation files are read only then. A subset sent to a worker
    # carries the answer, not the file list.
    others = (path for s in layout.splits if s not in wanted for path in coco.read_coco(layout.splits[s]).sources)
    scan = _ChannelScan(None, files_channels(itertools.chain(sources, others)))
    labels = np.full(len(sources), -1, dtype=np.int64)
    boxes = BoxTable.joined([part.boxes for part in parts])
    return Dataset("coco", layout.root, split, classes, sources, labels, _scan=scan, _targets=boxes)


def _open_digits(split: str) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError(
            "the digits dataset needs scikit-learn: install scikit-learn "
            "(pip install 'augkit[digits]')"
        ) from None
    digits = load_digits()
    # Pixel values are 0..16; scale to 0..255, rounded, in exact integer arithmetic.
    values = digits.images.astype(np.int64)
    images = ((values * 255 + 8) // 16).astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    classes = tuple(str(c) for c in digits.target_names)  # "0".."9": string order is numeric order
    sources = [f"digits[{i}]" for i in range(len(images))]
    where = np.stack([np.zeros(len(images), np.int64), np.arange(len(images))], 1)
    return Dataset("digits", None, split, classes, sources, labels, _ArrayImages(images), where)


class _ArrayImages:
    """Pixels held in memory, as one N x H x W x C array (part is always 0)."""

    def __init__(self, images: np.ndarray) -> None:
        self.images = images

    @property
    def channels(self) -> int:
        return self.images.shape[3]

    def image(self, part: int, row: int) -> np.ndarray:
        return self.images[row]


def _check_class_names(classes: tuple[str, ...], root: Path | None) -> None:
    # Class names become folder names under an output directory: refuse any that could escape it.
    for name in classes:
        if (
            name in ("", ".", "..")
            or "/" in name
            or "\\" in name
            or "\0" in name
            or Path(name).is_absolute()
            or PureWindowsPath(name).drive
        ):
            raise DatasetError(
                f"{root}: refusing class name {name!r}: class names become folder names and this "
                f"one could escape the output folder (it is empty, '.', '..', absolute, or "
                f"contains a path separator)"
            )


def _subfolders(folder: Path) -> list[str]:
    """Sorted names of the non-hidden folders in ``folder``."""
    return sorted(e.name for e in _scan(folder) if not e.name.startswith(".") and _is_dir(e))


def _flat_images(folder: Path) -> list[Path]:
    """Sorted image names directly in ``folder``: every entry but folders, whatever it is.

    A dangling or looping symbolic link, a FIFO or a device with an image's name is listed
    like a file, so that reading it reports why it cannot be read (``read_image`` never opens
    them) instead of the sample vanishing, or the listing failing, without a word.
    """
    names = sorted(
        e.name for e in _scan(folder)
        if not e.name.startswith(".") and is_image_file(e.name) and not _is_dir(e)
    )  # fmt: skip
    return [folder / name for name in names]


def _is_dir(entry: os.DirEntry[str]) -> bool:
    """Whether ``entry`` is a folder, or a link to one; False for a link that loops or dangles."""
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop: DirEntry raises ELOOP where os.walk says "not a folder"
        return False


def _images_below(folder: Path) -> list[Path]:
    """Image files anywhere below ``folder``, sorted by their path inside it (part by part).

    As in ``_flat_images``, everything with an image's name that is not a folder is listed:
    ``os.walk`` files links that loop or dangle, FIFOs and devices under ``filenames``.
    """

    def fail(error: OSError) -> None:
        raise DatasetError(f"{error.filename}: cannot list folder ({error.strerror})")

    found: list[tuple[str, ...]] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=fail):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # prunes the walk
        inside = Path(dirpath).relative_to(folder).parts
        found += [(*inside, f) for f in filenames if not f.startswith(".") and is_image_file(f)]
    return [folder.joinpath(*parts) for parts in sorted(found)]


def _scan(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as e:
        raise DatasetError(f"{folder}: cannot list folder ({e.strerror or e})") from None


def _extensions() -> str:
    return " ".join(sorted(IMAGE_EXTENSIONS))
