"""One shard's work: read, convert, resize, augment, write; then the record that says it is done.

``run_shard`` is a pure function of its task (the same bytes on any machine, in any process),
so the engine can run shards in any order, on any number of workers, and redo any of them.
Its outputs are written atomically (temporary name, then rename); its record,
``.shards/<id>.json``, is written last, so a shard with a record is complete. The record
carries a checksum of every output, the skipped files with their reasons, and the shard's
``ChannelStats`` (with M2, so shards merge exactly).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from augkit.datasets import Dataset
from augkit.errors import AugkitError, ImageReadError
from augkit.files import atomic_write
from augkit.images import encode_image
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


def packed_path(out: str | Path, shard_id: str, what: str) -> Path:
    return Path(out) / SHARDS_DIR / f"{shard_id}.{what}.npy"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


_pipelines: dict[str, Any] = {}  # per process: built once, used for every shard


def _pipeline(spec: dict[str, Any]) -> Any:
    key = json.dumps(spec, sort_keys=True)
    if key not in _pipelines:
        from augkit.pipeline import load_pipeline

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
    draft = draft_size(config.size, config.resize_mode) if config.size is not None and config.jpeg_draft else None
    for j in range(len(dataset)):
        try:
            image = dataset.read(j, gray=config.gray, draft=draft)
        except ImageReadError as error:
            skipped.append({"path": error.path, "reason": error.reason})
            continue
        if config.size is not None:
            image = resize_to(image, config.size, config.resize_mode)
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
    if config.format == "packed":
        record["shape"], record["files"] = _write_packed(task, images, labels)
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


def _write_packed(task: ShardTask, images: list[np.ndarray], labels: list[int]) -> tuple[list[int] | None, list]:
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        first, second = sorted(shapes)[:2]
        raise AugkitError(
            f"images of different sizes ({first[1]}x{first[0]} and {second[1]}x{second[0]}) cannot be packed "
            "into one array; pass --size HxW (or use --format folder)"
        )
    shape = list(images[0].shape) if images else None
    array = np.stack(images) if images else np.zeros((0,), np.uint8)
    files = []
    for what, data in (("images", array), ("labels", np.asarray(labels, dtype=np.int64))):
        path = packed_path(task.out, task.shard.id, what)
        payload = _npy_bytes(data)
        atomic_write(path, payload, durable=False)
        files.append({"path": path.relative_to(task.out).as_posix(), "sha256": _sha256(payload)})
    return shape, files


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


def verify_shard(out: str | Path, shard: Shard) -> dict[str, Any] | None:
    """The shard's record if the shard is complete and its files match their checksums, else None."""
    path = record_path(out, shard.id)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("inputs") != shard.inputs or (record.get("start"), record.get("stop")) != (shard.start, shard.stop):
        return None
    return record if first_changed_file(out, record.get("files", [])) is None else None


def first_changed_file(out: str | Path, entries: list[dict[str, str]]) -> str | None:
    """The first of ``entries`` ({"path", "sha256"}) missing or changed under ``out``, or None."""
    for entry in entries:
        try:
            if _sha256((Path(out) / entry["path"]).read_bytes()) != entry["sha256"]:
                return entry["path"]
        except OSError:
            return entry["path"]
    return None
