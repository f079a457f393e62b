"""CIFAR-10 and CIFAR-100 "python version" folders, read without unpickling arbitrary objects.

The batches are pickles, and unpickling runs whatever callables the file names: a "CIFAR batch"
from an untrusted download could run any command. They are loaded through ``_BatchUnpickler``,
which resolves only the few names real batches contain (numpy's array reconstruction, and
bytes written as latin-1 text), in the only forms real batches use them, and refuses
everything else before it can be called.

What it returns is checked before anything is converted: a pickle can stand for far more than
its size, because it may refer to one object many times. A 92 KB file whose labels are a list
of references to one list of references to one list of 700 zeros is 2.9 GiB once numpy turns
it into an array. So the data must be a uint8 N x 3072 array (or N x 3072 bytes), the labels a
flat list of N integers (or a 1-D integer array of N), each checked, before either is touched.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from augkit.documents import short_repr
from augkit.errors import DatasetError

try:  # numpy >= 2 moved numpy.core to numpy._core; pickles name either, depending on who wrote them
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

# split -> batch files, per kind: the file names of the official archives.
SPLIT_FILES = {
    "cifar10": {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "val": ("test_batch",)},
    "cifar100": {"train": ("train",), "val": ("test",)},
}
_META = {"cifar10": ("batches.meta", "label_names"), "cifar100": ("meta", "fine_label_names")}
_ARCHIVES = {
    "cifar10": ("CIFAR-10", "cifar-10-python.tar.gz"),
    "cifar100": ("CIFAR-100", "cifar-100-python.tar.gz"),
}
# CIFAR-100 has 20 coarse and 100 fine labels; augkit trains on the fine ones.
_LABEL_KEYS = ("fine_labels", "labels")
_ROW_BYTES = 3 * 32 * 32  # one image: the red plane, then green, then blue, each 32 x 32
_MAX_LABEL = 1 << 31  # labels are class indices; the class count is checked in open_cifar


def _empty_array(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as its pickles call it: an empty array that ``__setstate__``
    then fills with the pickled bytes (numpy checks that they match the shape). Any other
    shape here would allocate whatever the file claims."""
    if subtype is not np.ndarray or shape != (0,):
        raise pickle.UnpicklingError(f"numpy arrays are pickled as empty (0,) arrays, not {short_repr(shape)}")
    return _reconstruct(subtype, shape, dtype)


def _latin1(text: Any, encoding: Any) -> bytes:
    """``_codecs.encode`` as pickles of bytes at protocol 2 call it (bytes as latin-1 text), and
    in no other way: other codecs make data grow ("hex" doubles it at each call)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is allowed only for bytes pickled as latin-1 text")
    return text.encode("latin-1")


# (module, name) -> the object it stands for. Real batches hold a dict of an ndarray, lists, ints
# and bytes; Python 3 pickles of bytes at protocol 2 go through _codecs.encode.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _empty_array,
    ("numpy._core.multiarray", "_reconstruct"): _empty_array,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: any global outside ``_ALLOWED`` is refused, never imported."""

    def __init__(self, file: Any, path: Path) -> None:
        # The official files are Python 2 pickles of byte strings: "bytes" keeps them as bytes
        # (numpy needs the array data raw) instead of guessing a text encoding.
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise DatasetError(
                f"{self._path}: refused to unpickle {module}.{name}: CIFAR batches contain only "
                f"arrays and lists; this file is not a CIFAR batch"
            )
        return allowed


def load_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only what CIFAR batches contain; DatasetError otherwise."""
    try:
        with open(path, "rb") as f:
            return _BatchUnpickler(f, path).load()
    except DatasetError:
        raise
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror or e})") from None
    except Exception as e:  # a damaged pickle can fail in many ways; all mean the same here
        raise DatasetError(f"{path}: not a CIFAR batch ({type(e).__name__}: {e})") from None


def cifar_kind(root: Path) -> str | None:
    """"cifar10" or "cifar100" if ``root`` is an extracted CIFAR python folder, else None.

    Recognised by the meta file; a folder that has it but misses a batch is an incomplete
    download, reported as such rather than opened as something smaller.
    """
    for kind, (meta, _) in _META.items():
        if (root / meta).is_file():
            files = [name for files in SPLIT_FILES[kind].values() for name in files]
            missing = [name for name in files if not (root / name).is_file()]
            if kind == "cifar100" and len(missing) == len(files):
                continue  # a file called "meta" alone does not make a CIFAR-100 folder
            if missing:
                title, archive = _ARCHIVES[kind]
                raise DatasetError(
                    f"{root}: incomplete {title} folder, missing {', '.join(missing)}; "
                    f"extract {archive} again"
                )
            return kind
    return None


def open_cifar(
    root: Path, kind: str, splits: Sequence[str]
) -> tuple[tuple[str, ...], list[str], np.ndarray, CifarBatches, np.ndarray]:
    """Index the batches of ``splits`` (in that order).

    Returns (classes, sources, labels, batches, where): sorted class names, one
    "<file>[<row>]" per sample, int64 labels re-indexed to the sorted classes, the batch reader,
    and an N x 2 array of (batch number, row) per sample.
    """
    meta_file, names_key = _META[kind]
    meta = root / meta_file
    names = _decode_names(_field(load_pickle(meta), names_key, meta), meta)
    if len(set(names)) != len(names):
        raise DatasetError(f"{meta}: class names are not unique: {names}")
    classes = tuple(sorted(names))
    # The official names are already sorted, so this is the identity for real CIFAR; it keeps
    # augkit's rule (class index = position in sorted names) for any other file in the format.
    position = {name: i for i, name in enumerate(classes)}
    to_sorted = np.array([position[name] for name in names], dtype=np.int64)

    files = tuple(root / name for split in splits for name in SPLIT_FILES[kind][split])
    batches = CifarBatches(files)
    sources: list[str] = []
    labels, where = [], []
    for part, file in enumerate(files):
        batch_labels = batches.labels(part)
        if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= len(names)):
            raise DatasetError(f"{file}: labels outside 0..{len(names) - 1}; not a CIFAR batch")
        sources += [f"{file}[{row}]" for row in range(len(batch_labels))]
        labels.append(to_sorted[batch_labels])
        where.append(np.stack([np.full(len(batch_labels), part), np.arange(len(batch_labels))], 1))
    return classes, sources, np.concatenate(labels), batches, np.concatenate(where).astype(np.int64)


class CifarBatches:
    """The pixels and labels of some CIFAR batch files, each file loaded once, on first use.

    Labels and pixels share one pickle, so opening a dataset (which needs the labels) loads
    the pixels too and keeps them: one copy per process. Pickles as just the file paths, so
    sending a CIFAR dataset to worker processes is cheap; each worker loads the batches it reads.
    """

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = tuple(files)
        self._loaded: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    channels = 3  # CIFAR rows are RGB

    def labels(self, part: int) -> np.ndarray:
        return self._load(part)[1]

    def image(self, part: int, row: int) -> np.ndarray:
        """Row ``row`` of batch ``part`` as a 32 x 32 x 3 RGB view."""
        return self._load(part)[0][row]

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"])

    def _load(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        if part not in self._loaded:
            self._loaded[part] = _read_batch(self.files[part])
        return self._loaded[part]


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N x 32 x 32 x 3 uint8 RGB images, N int64 labels) of one batch file.

    Raises:
        DatasetError: the file is not a CIFAR batch (see the module docstring for what one holds).
    """
    batch = load_pickle(path)
    images = _images(_field(batch, "data", path), path)
    label_key = next((k for k in _LABEL_KEYS if _has(batch, k)), _LABEL_KEYS[-1])
    return images, _labels(_field(batch, label_key, path), len(images), path)


def _images(data: Any, path: Path) -> np.ndarray:
    """A batch's ``data`` (uint8 N x 3072, or N x 3072 bytes) as an N x 32 x 32 x 3 RGB view."""
    if isinstance(data, bytes) and len(data) % _ROW_BYTES == 0:
        data = np.frombuffer(data, np.uint8).reshape(-1, _ROW_BYTES)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == _ROW_BYTES):  # fmt: skip
        raise DatasetError(f"{path}: 'data' is not an N x 3072 uint8 array; not a CIFAR batch")
    # Each row is the red plane, then green, then blue, each 32 x 32 row-major: a view in HWC
    # order, so the ~180 MB of a full dataset exist once.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(labels: Any, count: int, path: Path) -> np.ndarray:
    """A batch's labels, ``count`` class indices, as int64: checked item by item before numpy
    converts anything (a nested list would be converted whole, however large it stands for)."""
    if isinstance(labels, np.ndarray):
        if labels.ndim == 1 and labels.dtype.kind in "iu" and len(labels) == count:
            return labels.astype(np.int64)
        found = f"a {labels.dtype} array of shape {labels.shape}"
    elif isinstance(labels, list):
        bad = next((i for i, v in enumerate(labels) if not (type(v) is int and 0 <= v < _MAX_LABEL)), None)
        if bad is None and len(labels) == count:
            return np.array(labels, dtype=np.int64)
        found = f"a list of {len(labels)}"
        if bad is not None:  # never the repr of the item itself: it may stand for gigabytes
            item = labels[bad]
            found += f" whose item {bad} is " + (short_repr(item) if type(item) is int else f"a {type(item).__name__}")
    else:
        found = f"a {type(labels).__name__}"
    raise DatasetError(
        f"{path}: expected the labels of its {count} images, a list of {count} class indices (0 or more), "
        f"found {found}; not a CIFAR batch"
    )


def _has(mapping: Any, key: str) -> bool:
    return isinstance(mapping, dict) and (key.encode() in mapping or key in mapping)


def _field(mapping: Any, key: str, path: Path) -> Any:
    """mapping[key], whether the pickle stored its keys as bytes (Python 2) or str."""
    if not _has(mapping, key):
        raise DatasetError(f"{path}: no {key!r} entry; not a CIFAR file")
    return mapping[key.encode()] if key.encode() in mapping else mapping[key]


def _decode_names(names: Any, path: Path) -> list[str]:
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise DatasetError(f"{path}: class names are not a list of strings; not a CIFAR meta file")
    return [n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n for n in names]
