"""Output folders of ``augkit preprocess``: found by their manifest; packed arrays memory-mapped.

The folder holds ``manifest.json`` (``"format": "augkit.preprocess/1"``) and, when its
``output.format`` is "packed", per split an N x H x W x C uint8 ``.npy`` of images (C = 1 or 3)
and an N int64 ``.npy`` of labels (class index into the manifest's sorted ``classes``, or -1).
A dataset with targets has them beside (``TARGET_FILES``; read by ``augkit.io.packed_targets``).
The labels are loaded whole (8 bytes a sample); the images are memory-mapped, each file on its
first read in each process, so a dataset larger than memory opens instantly and DataLoader
workers share the operating system's page cache instead of holding copies.

Nothing read back is trusted: the manifest is read within ``augkit.documents``' limits and its
entries are checked before use (``check_structure`` is the one checker of what augkit reads
back from an output folder, here and in ``augkit.preprocess``), and each array's header is
checked against the manifest and the file's size before numpy allocates or maps anything
(``npy_header``): a damaged output is one line naming the file and the entry, never a
traceback, nor an allocation of whatever a header claims.
"""

from __future__ import annotations

import collections.abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from augkit.documents import (
    MAX_MANIFEST_BYTES,
    DocumentError,
    DocumentSyntaxError,
    open_regular,
    read_document,
    short_repr,
)
from augkit.errors import DatasetError
from augkit.files import read_npy_header
from augkit.io.targets import BOX_FORMAT

MANIFEST = "manifest.json"
FORMAT = "augkit.preprocess/1"
_FORMAT_FAMILY = "augkit.preprocess/"
SPLITS = ("train", "val")  # the splits a packed output can have, in the order they are opened


class _SplitFiles(NamedTuple):
    images: Path
    labels: Path
    count: int
    shape: tuple[int, ...] | None  # H, W, C of one image, when the manifest says
    targets: dict[str, Path]  # TARGET_FILES[kind] -> its file, for a dataset with targets; else empty


# The files beside a split's images that hold its targets, by kind (the manifest's keys): masks as
# N x H x W uint8 or uint16; boxes as a ragged table (M x 4 float32 in ``targets.BOX_FORMAT``, M int64
# labels, N + 1 int64 offsets: sample i's boxes are rows offsets[i]:offsets[i + 1]).
TARGET_FILES = {"masks": ("masks",), "boxes": ("boxes", "box_labels", "box_offsets")}


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
    classes, entries = split_entries(root, splits)
    images = PackedImages([e.images for e in entries], [e.count for e in entries], [e.shape for e in entries])
    labels, where = [], []
    for part, entry in enumerate(entries):
        images.array(part)  # checks the file now, not at the first read in some worker
        labels.append(_load_labels(entry, len(classes)))
        where.append(np.stack([np.full(entry.count, part), np.arange(entry.count)], 1))
    where_all = np.concatenate(where).astype(np.int64)
    sources = RowSources(tuple(str(e.images) for e in entries), where_all)
    return classes, sources, np.concatenate(labels), images, where_all


def split_entries(root: Path, splits: Sequence[str]) -> tuple[tuple[str, ...], list[_SplitFiles]]:
    """(class names, the manifest's entry of each of ``splits``) of the packed output at ``root``."""
    packed = _read_manifest(root)
    if packed is None:  # packed_splits said otherwise a moment ago: the folder changed under us
        raise DatasetError(f"{root}: no packed `augkit preprocess` output here any more")
    return packed.classes, [packed.splits[s] for s in splits]


class PackedImages:
    """The images files of a packed output, each memory-mapped on first use in this process.

    Pickles as the file paths and row counts, never the arrays: sending a packed dataset to
    worker processes costs a few hundred bytes, and each worker maps the files itself.
    """

    def __init__(
        self, files: Sequence[Path], counts: Sequence[int], shapes: Sequence[tuple[int, ...] | None] | None = None
    ) -> None:
        self.files = tuple(files)
        self.counts = tuple(counts)
        self.shapes = tuple(shapes) if shapes is not None else (None,) * len(self.files)
        self._maps: dict[int, np.ndarray] = {}

    def image(self, part: int, row: int) -> np.ndarray:
        """Row ``row`` of file ``part``, copied: callers can write to it and never pin the map."""
        return np.array(self.array(part)[row])

    @property
    def channels(self) -> int:
        """C of the stored N x H x W x C images (every split of one output has the same)."""
        return int(self.array(0).shape[3])

    def array(self, part: int) -> np.ndarray:
        """File ``part`` as a read-only N x H x W x C memory map, checked on first use."""
        if part not in self._maps:
            self._maps[part] = _map_images(self.files[part], self.counts[part], self.shapes[part])
        return self._maps[part]

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files, "counts": self.counts, "shapes": self.shapes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"], state["counts"], state["shapes"])


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


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of the ``augkit preprocess`` output at ``root``, as JSON gives it; None if
    ``root`` holds no manifest.json, or one of another tool (no augkit ``format``).

    Only its format is checked here: each reader checks the entries it uses (``check_structure``).

    Raises:
        DatasetError: a manifest that cannot be read, is not JSON within augkit.documents' limits,
            or was written by another version of augkit.
    """
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_document(path, what="manifest", format="json", max_bytes=MAX_MANIFEST_BYTES)
    except FileNotFoundError:  # removed since the check above
        return None
    except DocumentSyntaxError as e:
        raise DatasetError(f"{path}: not valid JSON ({e.reason}); {DAMAGED}") from None
    except DocumentError as e:  # unreadable, not UTF-8, or over a limit of augkit.documents
        raise DatasetError(f"{e}; {DAMAGED}") from None
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(_FORMAT_FAMILY):
        return None  # some other tool's manifest.json: not ours to judge
    if fmt != FORMAT:
        raise DatasetError(
            f"{path}: format {short_repr(fmt)} was written by another version of augkit; this one reads "
            f"{FORMAT!r}: upgrade augkit, or write the output again with this version"
        )
    return manifest


# What an error says to do about an output folder that does not hold what its manifest says.
DAMAGED = "the output is damaged: write it again with `augkit preprocess` (into a new or empty folder)"


def _read_manifest(root: Path) -> _Packed | None:
    manifest = read_manifest(root)
    if manifest is None:
        return None
    path = root / MANIFEST
    complete = manifest.get("complete")
    if complete is False:
        raise DatasetError(
            f"{root}: an unfinished `augkit preprocess` run; "
            f"run the same command again to finish it"
        )
    if complete is not True:
        raise DatasetError(f"{path}: 'complete' is {short_repr(complete)}, expected true or false")
    output = _field(manifest, "output", dict, path)
    output_format = _field(output, "format", str, path, "output.format")
    if output_format == "folder":
        return None
    if output_format != "packed":
        raise DatasetError(
            f"{path}: 'output.format' is {short_repr(output_format)}, expected 'packed' or 'folder'"
        )
    return _Packed(_classes(manifest, path), _split_files(root, output, path))


def _classes(manifest: dict[str, Any], path: Path) -> tuple[str, ...]:
    classes = _field(manifest, "classes", list, path)
    if not all(isinstance(c, str) for c in classes) or classes != sorted(set(classes)):
        raise DatasetError(
            f"{path}: 'classes' must be unique class names in sorted order, got {short_repr(classes)}"
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
            if not is_relative_path(name):
                raise DatasetError(f"{path}: {key!r} names {short_repr(name)}, which is not a file in {root}")
        count = _field(entry, "count", int, path, f"{key}.count")
        if count < 0:
            raise DatasetError(f"{path}: '{key}.count' is {count!r}, expected a row count; {DAMAGED}")
        shape = entry.get("shape")  # written by augkit preprocess; optional for this reader
        if shape is not None:
            check_structure(shape, [int], source=path, where=f"{key}.shape")
            if len(shape) != 3 or min(shape) < 1 or shape[2] not in (1, 3):
                raise DatasetError(
                    f"{path}: '{key}.shape' is {short_repr(shape)}, expected [H, W, C] with C = 1 or 3; {DAMAGED}"
                )
        found[split] = _SplitFiles(
            root / names[0], root / names[1], count, tuple(shape) if shape else None, _target_files(root, entry, path, key)
        )
    kinds = {split: sorted(entry.targets) for split, entry in found.items()}
    if len({tuple(k) for k in kinds.values()}) > 1:
        raise DatasetError(f"{path}: the splits hold different targets ({short_repr(kinds)}); {DAMAGED}")
    return found


def _target_files(root: Path, entry: dict[str, Any], path: Path, key: str) -> dict[str, Path]:
    """The target files a split's manifest entry names (none, masks, or the three of boxes)."""
    for kind, parts in TARGET_FILES.items():
        if kind not in entry:
            continue
        found = {}
        for part in parts:
            name = _field(entry, part, str, path, f"{key}.{part}")
            if not is_relative_path(name):
                raise DatasetError(f"{path}: {key}.{part!r} names {short_repr(name)}, which is not a file in {root}")
            found[part] = root / name
        if kind == "boxes" and entry.get("box_format") != BOX_FORMAT:
            raise DatasetError(
                f"{path}: '{key}.box_format' is {short_repr(entry.get('box_format'))}, expected {BOX_FORMAT!r}; {DAMAGED}"
            )
        return found
    return {}


def is_relative_path(name: str) -> bool:
    """Whether ``name`` (an entry of a manifest or a shard record) names a file inside the output
    folder: relative, not empty, without "..", a drive or NUL."""
    path = Path(name)
    return bool(name) and "\0" not in name and not path.is_absolute() and not path.drive and ".." not in path.parts


# ----------------------------------------------------------------------------- checking


class _Missing:
    def __repr__(self) -> str:
        return "missing"


MISSING: Any = _Missing()  # what ``check_structure`` is given for a key that is not there


def check_structure(value: Any, expected: Any, *, source: str | Path, where: str, fix: str = "") -> None:
    """Refuse ``value`` (as JSON gives it) unless it has the structure ``expected`` describes.

    ``expected`` is one of: a type (``str``; ``bool``; ``int``, never a bool, within int64;
    ``float``, any finite number; ``dict`` or ``list`` of anything; ``object``, anything); None (null); a tuple of alternatives;
    ``[item]``, a list of items; ``{key: expected}``, an object with at least these keys (one
    ending in "?" may be missing); ``{str: expected}``, an object with any keys.

    Raises:
        DatasetError: ``"<source>: '<where>' is <value>, expected <what>[; <fix>]"`` for the first
            entry that differs, ``where`` naming it as ``shards[3].count`` does.
    """
    if not _matches(value, expected):
        message = f"{source}: {where or 'the document'!r} is {short_repr(value)}, expected {_describe(expected)}"
        raise DatasetError(f"{message}; {fix}" if fix else message)
    if isinstance(expected, tuple):  # the first alternative of value's type decides
        expected = next(option for option in expected if _matches(value, option))
    if isinstance(expected, list):
        for i, item in enumerate(value):
            check_structure(item, expected[0], source=source, where=f"{where}[{i}]", fix=fix)
    elif isinstance(expected, dict):
        for key, wanted in expected.items():
            if key is str:  # any keys
                for name, item in value.items():
                    check_structure(item, wanted, source=source, where=f"{where}.{name}".lstrip("."), fix=fix)
            elif key.endswith("?") and key[:-1] not in value:
                continue
            else:
                name = key.removesuffix("?")
                where_name = f"{where}.{name}".lstrip(".")
                check_structure(value.get(name, MISSING), wanted, source=source, where=where_name, fix=fix)


def _matches(value: Any, expected: Any) -> bool:
    """Whether ``value`` is of ``expected``'s outer type (its items are checked by the caller)."""
    if isinstance(expected, tuple):
        return any(_matches(value, option) for option in expected)
    if value is MISSING:
        return False
    if expected is None or expected is object:
        return expected is object or value is None
    if isinstance(expected, (list, dict)):
        return type(value) is type(expected)
    if expected is int:
        return type(value) is int and -(1 << 63) <= value < 1 << 63
    if expected is float:
        return type(value) in (int, float) and bool(np.isfinite(value))
    return type(value) is expected


def _describe(expected: Any) -> str:
    if isinstance(expected, tuple):
        return " or ".join(_describe(option) for option in expected)
    if isinstance(expected, list):
        return f"a list of {_describe(expected[0]).split(' ', 1)[-1]}s"
    if isinstance(expected, dict):
        return "an object"
    return {None: "null", str: "a string", int: "an integer", bool: "true or false", float: "a number",
            dict: "an object", list: "a list", object: "a value"}[expected]  # fmt: skip


def _field(mapping: dict[str, Any], key: str, kind: type, path: Path, name: str = "") -> Any:
    value = mapping.get(key, MISSING)
    check_structure(value, kind, source=path, where=name or key)
    return value


# ----------------------------------------------------------------------------- arrays


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the ``.npy`` file at ``path``, read from its header alone, which must
    describe a C-ordered array of plain numbers filling exactly the bytes after it.

    Checked before numpy reads or maps anything: a header may claim any shape (100000 x 100000
    x 3 would have numpy allocate 28 GiB for a file of a few bytes).

    Raises:
        DatasetError: missing, not a regular file, not a .npy file, or a header that does not
            fit the file.
    """
    try:
        with open_regular(path, ".npy array") as f:
            try:
                shape, dtype, fortran_order, data_bytes = read_npy_header(f)
            except (OSError, ValueError) as e:
                raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing, so the packed output is incomplete; {DAMAGED}") from None
    except DocumentError as e:
        raise DatasetError(f"{e}; {DAMAGED}") from None
    if dtype.hasobject or fortran_order:
        what = "an array of Python objects" if dtype.hasobject else "in Fortran order"
        raise DatasetError(f"{path}: not a readable .npy array ({what})")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: no overflow
    if claimed != data_bytes:
        raise DatasetError(
            f"{path}: its header says {dtype} of shape {shape}, {claimed:,} bytes, but {data_bytes:,} bytes "
            f"follow it; {DAMAGED}"
        )
    return shape, dtype


def _map_images(path: Path, count: int, shape: tuple[int, ...] | None) -> np.ndarray:
    found, dtype = npy_header(path)
    if dtype != np.uint8 or len(found) != 4 or found[3] not in (1, 3):
        raise DatasetError(
            f"{path}: expected uint8 images of shape N x H x W x C with C = 1 or 3, "
            f"found {dtype} of shape {found}; {DAMAGED}"
        )
    if found[0] != count:
        raise DatasetError(f"{path}: {found[0]} images, but the manifest says {count}; {DAMAGED}")
    if shape is not None and found[1:] != shape:
        raise DatasetError(f"{path}: images of shape {found[1:]}, but the manifest says {shape}; {DAMAGED}")
    return _load_npy(path, mmap_mode="r")


def _load_labels(entry: _SplitFiles, n_classes: int) -> np.ndarray:
    shape, dtype = npy_header(entry.labels)
    if len(shape) != 1 or dtype.kind not in "iu":
        raise DatasetError(
            f"{entry.labels}: expected a 1-D integer array of labels, found {dtype} "
            f"of shape {shape}; {DAMAGED}"
        )
    if shape[0] != entry.count:
        raise DatasetError(
            f"{entry.labels}: {shape[0]} labels for {entry.count} images in {entry.images.name}; {DAMAGED}"
        )
    labels = _load_npy(entry.labels)
    if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
        raise DatasetError(
            f"{entry.labels}: labels from {labels.min()} to {labels.max()}, expected -1 "
            f"(unlabelled) or a class index below {n_classes}; {DAMAGED}"
        )
    return labels.astype(np.int64)


def _load_npy(path: Path, **kwargs: Any) -> np.ndarray:
    """The array at ``path``, whose header ``npy_header`` has checked."""
    try:
        return np.load(path, allow_pickle=False, **kwargs)
    except (OSError, ValueError) as e:  # changed since its header was read
        raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
