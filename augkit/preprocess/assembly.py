"""The end of a run: the shards' records merged into OUT's final files and its complete manifest.

Finishing reads only the shards' records and files, in plan order, so the result does not
depend on which process or machine ran which shard, or when. For the packed format the shard
arrays are copied into one array per split (under a temporary name, renamed when complete),
``stats.json`` is written from the shards' statistics, and the manifest is rewritten with
``"complete": true``; only then are the shard files removed.

File names that are not valid UTF-8 (which Python holds as lone surrogates) are written into
the manifest as ``\\udcXX`` escapes, which read back to the same names (``manifest_text``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from augkit.errors import AugkitError
from augkit.files import atomic_write
from augkit.io.packed import MANIFEST, TARGET_FILES, npy_header
from augkit.io.targets import BOX_FORMAT
from augkit.preprocess.plan import PreprocessConfig
from augkit.preprocess.shard import SHARDS_DIR, _file_sha256, packed_path, record_path
from augkit.stats import ChannelStats

STATS = "stats.json"


def finish(
    out: Path, header: dict[str, Any], config: PreprocessConfig, splits: dict, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Merge the shards' records (in plan order) into stats.json, the final arrays and the manifest."""
    _refuse_empty_splits(out, splits, records)
    stats = ChannelStats(mean_image=False)
    for record in records:
        if record["split"] == "train" and record["stats"] is not None:
            stats.merge(ChannelStats.from_dict(record["stats"]))
    files = []
    if config.format == "packed":
        for split in splits:
            files += _assemble(out, split, [r for r in records if r["split"] == split])
    else:
        files = [f for r in records for f in r["files"]]
    stats_sha256 = None
    if stats.count:
        # Its checksum, as the arrays have theirs: --overwrite deletes a stats.json only while it
        # is still this one (out_folder._clear).
        stats_sha256 = _file_sha256(stats.save(out / STATS))

    classes = header["classes"]
    counts = {}
    for split in splits:
        per_label: dict[str, int] = {}
        for record in (r for r in records if r["split"] == split):
            for label, n in record["labels"].items():
                per_label[label] = per_label.get(label, 0) + n
        counts[split] = {
            "images": sum(per_label.values()),
            "sources": len(splits[split]),
            "skipped": sum(len(r["skipped"]) for r in records if r["split"] == split),
            "per_class": {(classes[int(k)] if int(k) >= 0 else "(unlabelled)"): v for k, v in sorted(per_label.items(), key=lambda kv: int(kv[0]))},
        }
        dropped = [r["boxes_dropped"] for r in records if r["split"] == split and "boxes_dropped" in r]
        if dropped:  # a dataset with boxes: those packed, and those the resize cut away
            counts[split]["boxes"] = npy_header(out / f"{split}_boxes.npy")[0][0]
            counts[split]["boxes_dropped"] = sum(dropped)
    manifest = {
        **header,
        "complete": True,
        "output": output_section(out, config, list(splits), files),
        "counts": counts,
        "stats": STATS if stats.count else None,
        "stats_sha256": stats_sha256,
        "skipped": [{**s, "split": r["split"]} for r in records for s in r["skipped"]],
        "shards": [
            {"id": r["id"], "split": r["split"], "start": r["start"], "stop": r["stop"], "count": r["count"],
             "inputs": r["inputs"], "sha256": _combined(r["files"])}
            for r in records
        ],
        "files": files,
    }
    atomic_write(out / MANIFEST, manifest_text(manifest))
    shutil.rmtree(out / SHARDS_DIR, ignore_errors=True)  # the manifest now holds every checksum
    return manifest


def _refuse_empty_splits(out: Path, splits: dict, records: list[dict[str, Any]]) -> None:
    """Stop, OUT left unfinished, if every image of a split was skipped: a complete OUT without
    them would be one that nothing can train on or read back.

    The records of that split's shards are removed, so that the next run reads those files
    again (they may have been fixed by then) rather than report the same reasons.
    """
    for split, dataset in splits.items():
        mine = [r for r in records if r["split"] == split]
        if any(r["count"] for r in mine):
            continue
        for record in mine:
            record_path(out, record["id"]).unlink(missing_ok=True)
        # A split has sources (open_splits refuses one without), and each was skipped.
        first = next(s for r in mine for s in r["skipped"])
        raise AugkitError(
            f"every one of the {len(dataset)} images of the {split} split was skipped (the first: "
            f"{first['path']}: {first['reason']}); OUT ({out}) is left unfinished: fix the files, or the "
            "settings, that the reason names, and run again"
        )


def output_section(
    out: Path, config: PreprocessConfig, splits: list[str], files: list[dict[str, str]]
) -> dict[str, Any]:
    """The manifest's ``output`` for what OUT holds: per split, its arrays' names (its targets' too,
    where ``files`` lists them), row count and image shape (read from the images array's header),
    or its folder and number of files.

    Raises:
        DatasetError: a packed array that is missing or whose header does not fit the file.
    """
    entries: dict[str, Any] = {}
    names = {entry["path"] for entry in files}
    for split in splits:
        if config.format == "packed":
            shape, _ = npy_header(out / f"{split}_images.npy")
            entries[split] = {"images": f"{split}_images.npy", "labels": f"{split}_labels.npy",
                              "count": shape[0], "shape": list(shape[1:])}  # fmt: skip
            for kind, parts in TARGET_FILES.items():  # the targets packed beside them, if any
                if f"{split}_{parts[0]}.npy" in names:
                    entries[split].update({part: f"{split}_{part}.npy" for part in parts})
                    if kind == "boxes":
                        entries[split]["box_format"] = BOX_FORMAT
        else:
            entries[split] = {"folder": split, "count": sum(f["path"].startswith(f"{split}/") for f in files)}
    return {"format": config.format, "splits": entries, "layout": _layout_note(config)}


def _layout_note(config: PreprocessConfig) -> str:
    if config.format == "folder":
        return "<split>/<class>/<name>.<ext>; copies are <name>_aug<k>.<ext>"
    if config.copies:
        return f"sample-major: each training image, then its {config.copies} augmented copies"
    return "one row per image, in the source's order"


def _combined(files: list[dict[str, str]]) -> str:
    """One checksum for a shard: of its files' names and checksums, in order."""
    digest = hashlib.sha256()
    for entry in files:
        # surrogatepass: a name that is not valid UTF-8 has lone surrogates (os.fsdecode), and a
        # checksum needs bytes of every name.
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


class FinalArray(NamedTuple):
    """One of a split's final arrays, ``<split>_<what>.npy``, as its shards make it."""

    what: str  # "images", "labels", or a target part (augkit.io.packed.TARGET_FILES)
    dtype: np.dtype
    shape: tuple[int, ...]
    chunks: Callable[[], Iterator[np.ndarray]]  # its rows, shard by shard, in plan order


def final_arrays(out: Path, split: str, records: list[dict[str, Any]]) -> list[FinalArray]:
    """The final arrays of ``split``, from its shards' ``records`` (in plan order) and files:
    images and labels, then its targets: masks (uint16 if a shard's are, else uint8), or boxes,
    their labels, and the offsets of each image's boxes (made from the shards' box counts)."""
    shapes = {tuple(r["shape"]) for r in records if r["shape"] is not None}
    if len(shapes) > 1:
        raise AugkitError(
            f"{split}: shards hold images of different sizes ({' and '.join(map(str, sorted(shapes)))}); "
            "pass --size HxW so that every image has the same size"
        )
    shape = shapes.pop()  # _refuse_empty_splits: a shard of the split holds images
    full = [r for r in records if r["count"]]
    total = sum(r["count"] for r in full)

    def rows(what: str, dtype: type) -> Callable[[], Iterator[np.ndarray]]:
        return lambda: (np.ascontiguousarray(np.load(packed_path(out, r["id"], what)), dtype=dtype) for r in full)

    arrays = [
        FinalArray("images", np.dtype(np.uint8), (total, *shape), rows("images", np.uint8)),
        FinalArray("labels", np.dtype(np.int64), (total,), rows("labels", np.int64)),
    ]
    kind = full[0].get("targets") if full else None
    if kind == "masks":
        wide = any(npy_header(packed_path(out, r["id"], "masks"))[1] == np.uint16 for r in full)
        dtype = np.uint16 if wide else np.uint8
        arrays.append(FinalArray("masks", np.dtype(dtype), (total, *shape[:2]), rows("masks", dtype)))
    elif kind == "boxes":
        boxes = sum(npy_header(packed_path(out, r["id"], "boxes"))[0][0] for r in full)
        arrays += [
            FinalArray("boxes", np.dtype(np.float32), (boxes, 4), rows("boxes", np.float32)),
            FinalArray("box_labels", np.dtype(np.int64), (boxes,), rows("box_labels", np.int64)),
            FinalArray("box_offsets", np.dtype(np.int64), (total + 1,), lambda: _offsets(out, full)),
        ]
    return arrays


def _offsets(out: Path, records: list[dict[str, Any]]) -> Iterator[np.ndarray]:
    """The boxes' N + 1 offsets, from each shard's box counts: 0, then where each image's boxes end."""
    end = 0
    yield np.zeros(1, np.int64)
    for record in records:
        ends = end + np.cumsum(np.load(packed_path(out, record["id"], "box_counts")), dtype=np.int64)
        end = int(ends[-1]) if ends.size else end
        yield ends


def _assemble(out: Path, split: str, records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The split's final arrays, copied shard by shard (memory stays flat); returns their entries
    for the manifest's ``files`` ({"path", "sha256"})."""
    entries = []
    for array in final_arrays(out, split, records):
        final = out / f"{split}_{array.what}.npy"
        temporary = out / f".{final.name}.assemble.tmp"
        header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": array.shape}
        # Appended shard by shard, not through a memory map of the whole file: a map's written
        # pages count in the process's memory until it is closed, so peak memory would grow
        # with the dataset.
        digest = hashlib.sha256()  # of the bytes as written: no second read of a large file
        try:
            with open(temporary, "wb") as f:
                np.lib.format.write_array_header_1_0(f, header)
                f.flush()
                digest.update(temporary.read_bytes())  # the header, as numpy wrote it
                for chunk in array.chunks():
                    f.write(chunk.data)
                    digest.update(chunk.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, final)
        except BaseException:  # a full disk, a Ctrl-C: no half-written array is left behind
            temporary.unlink(missing_ok=True)
            raise
        entries.append({"path": final.name, "sha256": digest.hexdigest()})
    return entries


def manifest_text(data: dict[str, Any]) -> str:
    """``data`` as JSON text that is valid UTF-8 whatever names it holds.

    A file name that is not valid UTF-8 reaches Python as lone surrogates (os.fsdecode), which
    UTF-8 cannot encode: they are written as JSON's ``\\udcXX`` escapes, which ``json.loads``
    reads back to the same string, and so ``os.fsencode`` to the same bytes. (Lone surrogates
    can only be inside JSON strings, where an escape stands for the same character.)
    """
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
