"""One shard's work: read, convert, resize, augment, write; then the record that says it is done.

``run_shard`` is a pure function of its task (the same bytes on any machine, in any process),
so the engine can run shards in any order, on any number of workers, and redo any of them.
Its outputs are written atomically (temporary name, then rename); its record,
``.shards/<id>.json``, is written last, so a shard with a record is complete. The record
carries a checksum of every output, the skipped files with their reasons, and the shard's
``ChannelStats`` (with M2, so shards merge exactly).

A dataset with targets (``Dataset.target_kind``) packs them beside its images, resized with them
(``Targets.resized``): its masks as ``<id>.masks.npy`` (N x H x W, uint8, or uint16 where a label
passes 255), or its boxes as ``<id>.boxes.npy`` (M x 4 float32), ``<id>.box_labels.npy`` (M int64)
and ``<id>.box_counts.npy`` (N int64, boxes per image). A sample whose targets are broken is
skipped and listed as an unreadable image is.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augkit.documents import MAX_MANIFEST_BYTES, open_regular, read_document
from augkit.errors import AugkitError, ImageReadError
from augkit.files import atomic_write
from augkit.io.datasets import Dataset
from augkit.io.packed import check_structure, is_relative_path, npy_header
from augkit.io.targets import Targets
from augkit.io.writer import encode_image
from augkit.preprocess.plan import PreprocessConfig, Shard
from augkit.resize import draft_size, resize_to
from augkit.stats import ChannelStats

SHARDS_DIR = ".shards"  # inside OUT: shard files and records until the run completes


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs for one shard (small to pickle: an index, not pixels)."""

    shard: Shard
    dataset: Dataset  # the shard's samples only
    names: list[str] | None  # folder format: output file stems
    config: PreprocessConfig
    out: str


def record_path(out: str | Path, shard_id: str) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard_id}.json"


def started_path(out: str | Path, shard_id: str) -> Path:
    """Where a folder-format shard lists the files it is about to write, before writing them."""
    return Path(out) / SHARDS_DIR / f"{shard_id}.started.json"


def planned_files(task: ShardTask) -> list[str]:
    """The files (relative to OUT) a folder-format shard may write: each image and its copies."""
    ext, classes = task.config.image_format, task.dataset.classes
    copies = task.config.copies if task.shard.split == "train" else 0
    paths = []
    for j, stem in enumerate(task.names or []):
        label = int(task.dataset.labels[j])
        folder = Path(task.shard.split) / (classes[label] if label >= 0 else "")
        paths += [(folder / f"{name}.{ext}").as_posix() for name in [stem, *(f"{stem}_aug{k}" for k in range(1, copies + 1))]]
    return paths


def packed_path(out: str | Path, shard_id: str, what: str) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard_id}.{what}.npy"


# What a packed shard writes beside its images and labels, by Shard.targets.
TARGET_PARTS = {None: (), "masks": ("masks",), "boxes": ("boxes", "box_labels", "box_counts")}


def packed_parts(targets: str | None) -> tuple[str, ...]:
    """The arrays a packed shard writes, in order (``packed_path``'s ``what``)."""
    return ("images", "labels", *TARGET_PARTS[targets])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(rows: Sequence[Any], dtype: type, row_shape: tuple[int, ...]) -> bytearray:
    """The bytes of a .npy file (format 1.0, as ``np.save`` writes it) of ``rows`` stacked: an
    N x ``row_shape`` array of ``dtype``.

    Each row is copied once, straight into the file's bytes: ``np.stack`` and then ``np.save``
    into a ``BytesIO`` would hold a shard's images three times over (four while the buffer grows).
    """
    header = io.BytesIO()
    shape = (len(rows), *row_shape)
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    start = len(header.getvalue())
    payload = bytearray(start + math.prod(shape) * np.dtype(dtype).itemsize)
    payload[:start] = header.getvalue()
    array = np.frombuffer(payload, dtype, offset=start).reshape(shape)
    for i, row in enumerate(rows):
        array[i] = row
    return payload


_pipelines: dict[str, Any] = {}  # per process: built once, used for every shard


def _pipeline(spec: dict[str, Any]) -> Any:
    key = json.dumps(spec, sort_keys=True)
    if key not in _pipelines:
        from augkit.pipeline.core import load_pipeline

        _pipelines[key] = load_pipeline(spec)
    return _pipelines[key]


def _augmented(image: np.ndarray, config: PreprocessConfig, index: int, source: str) -> list[np.ndarray]:
    """The copies of one training image: copy k is what epoch k - 1 of training would draw."""
    pipeline = _pipeline(config.pipeline)
    copies = []
    for k in range(1, config.copies + 1):
        copy = pipeline(image, index=index, epoch=k - 1)
        if copy.dtype != np.uint8 or copy.shape != image.shape:
            raise AugkitError(
                f"{source}: the copies' pipeline turned a {image.shape} uint8 image into {copy.shape} "
                f"{copy.dtype}; offline copies must keep size and type (crop to --size, or drop the crop)"
            )
        copies.append(copy)
    return copies


def run_shard(task: ShardTask) -> dict[str, Any]:
    """Process one shard, write its outputs and its record; returns the record."""
    shard, dataset, config = task.shard, task.dataset, task.config
    images: list[np.ndarray] = []
    labels: list[int] = []
    files: list[dict[str, str]] = []
    skipped: list[dict[str, str]] = []
    originals: list[np.ndarray] = []  # training images as written, for the statistics
    targets: list[Targets] = []  # per image written, for a dataset with targets
    dropped = 0  # boxes the resize cut away
    draft = draft_size(config.size, config.resize_mode) if config.size is not None and config.jpeg_draft else None
    if config.format == "folder":
        # Listed before the first is written: a run killed mid-shard leaves files no record
        # names, and --overwrite must still know them for augkit's own (out_folder._clear).
        started = {"id": shard.id, "files": planned_files(task)}
        atomic_write(started_path(task.out, shard.id), json.dumps(started) + "\n", durable=False)
    for j in range(len(dataset)):
        try:
            image = dataset.read(
                j, gray=config.gray, draft=draft, exif_orientation=config.exif_orientation, background=config.background
            )
            # A TargetReadError is an ImageReadError: broken targets skip their sample the same way.
            target = dataset.read_targets(j, image.shape) if shard.targets else None
        except ImageReadError as error:
            skipped.append({"path": error.path, "reason": error.reason})
            continue
        if config.size is not None:
            try:
                image = resize_to(image, config.size, config.resize_mode)
            except AugkitError as error:  # this image's output would pass the pixel limit
                skipped.append({"path": dataset.sources[j], "reason": str(error)})
                continue
            if target is not None:
                resized = target.resized(config.size, config.resize_mode)
                dropped += 0 if target.bboxes is None else len(target.bboxes) - len(resized.bboxes)
                target = resized
        if target is not None:
            targets.append(target)
        label = int(dataset.labels[j])
        variants = [image]
        if shard.split == "train":
            originals.append(image)
            if config.copies:
                variants += _augmented(image, config, shard.start + j, dataset.sources[j])
        if config.format == "packed":
            images += variants
            labels += [label] * len(variants)
        else:
            files += _write_files(task, j, label, variants)

    stats = ChannelStats().update_many(originals)  # measured in batches: ~15x faster for 64x64
    record: dict[str, Any] = {
        "id": shard.id,
        "split": shard.split,
        "start": shard.start,
        "stop": shard.stop,
        "inputs": shard.inputs,
        "count": len(images) if config.format == "packed" else len(files),
        "labels": _label_counts(labels if config.format == "packed" else [f["label"] for f in files]),
        "skipped": skipped,
        "stats": stats.to_dict() if stats.count else None,
    }
    if shard.targets:  # only then: an image-only record stays as it always was
        record["targets"] = shard.targets
    if shard.targets == "boxes":
        record["boxes_dropped"] = dropped
    if config.format == "packed":
        record["shape"], record["files"] = _write_packed(task, images, labels, targets)
    else:
        record["shape"] = None
        record["files"] = [{"path": f["path"], "sha256": f["sha256"]} for f in files]
    # Not fsynced, like the shard's files: a resume checks every file against the record's
    # checksums, so a power cut costs a redo of the shard, never a corrupt output.
    atomic_write(record_path(task.out, shard.id), json.dumps(record, indent=1) + "\n", durable=False)
    return record


def _label_counts(labels: list[int]) -> dict[str, int]:
    values, counts = np.unique(np.asarray(labels, dtype=np.int64), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def _write_packed(
    task: ShardTask, images: list[np.ndarray], labels: list[int], targets: list[Targets]
) -> tuple[list[int] | None, list]:
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        first, second = sorted(shapes)[:2]
        raise AugkitError(
            f"images of different sizes ({first[1]}x{first[0]} and {second[1]}x{second[0]}) cannot be packed "
            "into one array; pass --size HxW (or use --format folder)"
        )
    shape = list(images[0].shape) if images else None
    files = []
    parts = [("images", images, np.uint8, tuple(shape or ())), ("labels", labels, np.int64, ())]
    parts += _target_parts(task.shard.targets, targets, tuple(shape or ())[:2])
    for what, rows, dtype, row_shape in parts:
        path = packed_path(task.out, task.shard.id, what)
        payload = _npy_bytes(rows, dtype, row_shape)
        atomic_write(path, payload, durable=False)
        files.append({"path": path.relative_to(task.out).as_posix(), "sha256": _sha256(payload)})
    return shape, files


def _target_parts(kind: str | None, targets: list[Targets], size: tuple[int, ...]) -> list[tuple[str, Any, type, tuple]]:
    """(what, rows, dtype, row shape) of the arrays that pack ``targets`` (TARGET_PARTS[kind])."""
    if kind == "masks":
        wide = any(int(t.mask.max(initial=0)) > 0xFF for t in targets)  # uint8 unless a label needs more
        return [("masks", [t.mask for t in targets], np.uint16 if wide else np.uint8, size)]
    if kind == "boxes":
        boxes = np.concatenate([t.bboxes for t in targets]) if targets else np.zeros((0, 4), np.float32)
        labels = np.concatenate([t.labels for t in targets]) if targets else np.zeros(0, np.int64)
        counts = [len(t.bboxes) for t in targets]
        return [("boxes", boxes, np.float32, (4,)), ("box_labels", labels, np.int64, ()), ("box_counts", counts, np.int64, ())]
    return []


def _write_files(task: ShardTask, j: int, label: int, variants: list[np.ndarray]) -> list[dict[str, Any]]:
    classes = task.dataset.classes
    folder = Path(task.shard.split) / (classes[label] if label >= 0 else "")
    ext = task.config.image_format
    written = []
    for k, image in enumerate(variants):
        stem = task.names[j] if k == 0 else f"{task.names[j]}_aug{k}"
        relative = (folder / f"{stem}.{ext}").as_posix()
        payload = encode_image(image, ext, quality=task.config.jpeg_quality)
        target = Path(task.out) / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, payload, durable=False)
        written.append({"path": relative, "sha256": _sha256(payload), "label": label})
    return written


# What ``run_shard`` records; a record read back must have this structure (augkit.io.packed.check_structure).
RECORD = {
    "id": str, "split": str, "start": int, "stop": int, "inputs": str, "count": int,
    "labels": {str: int},  # label ("-1" unlabelled, "0", "1", ...) -> images written with it
    "skipped": [{"path": str, "reason": str}],
    "stats": (dict, None),  # ChannelStats.to_dict
    "shape": ([int], None),  # H, W, C of the packed images; None for the folder format or no image
    "files": [{"path": str, "sha256": str}],
    "targets?": str,  # Shard.targets, for a dataset with targets
    "boxes_dropped?": int,  # boxes the resize cut away (center-crop), for a dataset with boxes
}  # fmt: skip


def verify_shard(out: str | Path, shard: Shard, config: PreprocessConfig, classes: int) -> dict[str, Any] | None:
    """The shard's record if the shard is complete, else None (it is done again).

    Complete: its record is one that ``run_shard`` writes for this shard with ``config`` and
    ``classes`` class names, its files match their checksums, and its packed arrays' headers
    match the record. A record that is not (damaged, forged, of another version) costs a redo
    of its shard, as a missing one does, never a traceback later.
    """
    path = record_path(out, shard.id)
    try:
        record = read_document(path, what="shard record", format="json", max_bytes=MAX_MANIFEST_BYTES)
        check_structure(record, RECORD, source=path, where="record")
        _check_record(record, shard, config, classes)
        if first_changed_file(out, record["files"]) is not None:
            return None
        if config.format == "packed" and record["count"]:
            if not _arrays_fit(out, shard, (record["count"], *record["shape"])):
                return None
    except (FileNotFoundError, AugkitError):
        return None
    return record


def _arrays_fit(out: str | Path, shard: Shard, shape: tuple[int, ...]) -> bool:
    """Whether a packed shard's arrays have the headers ``run_shard`` writes for ``shape`` (N, H, W, C)."""
    found = {what: npy_header(packed_path(out, shard.id, what)) for what in packed_parts(shard.targets)}
    expected = {"images": (shape, np.dtype(np.uint8)), "labels": (shape[:1], np.dtype(np.int64))}
    if shard.targets == "masks":  # uint8, or uint16 where a label passes 255
        expected["masks"] = (shape[:3], np.dtype(np.uint16 if found["masks"][1] == np.uint16 else np.uint8))
    elif shard.targets == "boxes":
        boxes = found["boxes"][0][0]
        expected.update(boxes=((boxes, 4), np.dtype(np.float32)), box_labels=((boxes,), np.dtype(np.int64)),
                        box_counts=(shape[:1], np.dtype(np.int64)))  # fmt: skip
    return found == expected


def _check_record(record: dict[str, Any], shard: Shard, config: PreprocessConfig, classes: int) -> None:
    """Raise AugkitError unless ``record`` (of the structure RECORD) is what ``run_shard`` writes
    for ``shard`` with ``config``, its labels among ``classes`` class indices."""
    files, shape, count = [entry["path"] for entry in record["files"]], record["shape"], record["count"]
    if config.format == "packed":
        channels = 1 if config.gray else 3
        shape_ok = shape is None if count == 0 else (
            len(shape) == 3 and min(shape) >= 1 and shape[2] == channels
            and (config.size is None or tuple(shape[:2]) == config.size)
        )  # fmt: skip
        files_ok = files == [packed_path("", shard.id, what).as_posix() for what in packed_parts(shard.targets)]
    else:
        shape_ok = shape is None
        files_ok = len(files) == count and all(is_relative_path(f) and f.startswith(f"{shard.split}/") for f in files)
    mine = {"id": shard.id, "split": shard.split, "start": shard.start, "stop": shard.stop, "inputs": shard.inputs}
    labels = record["labels"]
    problems = {
        "another shard's record": any(record[key] != value for key, value in mine.items()),
        "labels outside the classes": not all(
            _LABEL.fullmatch(key) and int(key) < classes and n >= 0 for key, n in labels.items()
        ),
        "labels of another count of images": sum(labels.values()) != count,
        "images of another shape": not shape_ok,
        "other files": not files_ok,
        "targets of another kind": record.get("targets") != shard.targets,
    }
    wrong = [problem for problem, found in problems.items() if found]
    if wrong:
        raise AugkitError(", ".join(wrong))
    if record["stats"] is not None:
        ChannelStats.from_dict(record["stats"])  # AugkitError unless statistics


_LABEL = re.compile(r"-1|0|[1-9][0-9]{0,18}")  # how _label_counts writes a label: -1 (unlabelled) or an index


def first_changed_file(out: str | Path, entries: list[dict[str, str]]) -> str | None:
    """The first of ``entries`` ({"path", "sha256"}) missing, changed, or not a regular file under ``out``, or None."""
    for entry in entries:
        if _file_sha256(Path(out) / entry["path"]) != entry["sha256"]:
            return entry["path"]
    return None


def _file_sha256(path: Path) -> str | None:
    """sha256 of the regular file at ``path``, read in chunks; None if it cannot be read as one
    (a FIFO would block, a device never end)."""
    digest = hashlib.sha256()
    try:
        with open_regular(path, "file") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except (OSError, AugkitError):
        return None
    return digest.hexdigest()
