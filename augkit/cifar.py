"""CIFAR-10 and CIFAR-100 "python version" folders, read without unpickling arbitrary objects.

The batches are pickles, and unpickling runs whatever callables the file names: a "CIFAR batch"
from an untrusted download could run any command. They are loaded through ``_BatchUnpickler``,
which resolves only the few names real batches contain (numpy's array reconstruction) and
refuses everything else before it can be called.
"""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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

# (module, name) -> the object it stands for. Real batches hold a dict of an ndarray, lists, ints
# and bytes; Python 3 pickles of bytes at protocol 2 go through _codecs.encode.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
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
    to_sorted = np.array([classes.index(name) for name in names], dtype=np.int64)

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
    """(N x 32 x 32 x 3 uint8 RGB images, N int64 labels) of one batch file."""
    batch = load_pickle(path)
    data = _field(batch, "data", path)
    label_key = next((k for k in _LABEL_KEYS if _has(batch, k)), _LABEL_KEYS[-1])
    labels = np.asarray(_field(batch, label_key, path))
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32):  # fmt: skip
        raise DatasetError(f"{path}: 'data' is not an N x 3072 uint8 array; not a CIFAR batch")
    if labels.shape != (len(data),) or (labels.size and labels.dtype.kind not in "iu"):
        raise DatasetError(
            f"{path}: {len(data)} images but labels of shape {labels.shape}; not a CIFAR batch"
        )
    # Each row is the red plane, then green, then blue, each 32 x 32 row-major: a view in HWC
    # order, so the ~180 MB of a full dataset exist once.
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


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
