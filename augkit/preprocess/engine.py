"""Run a preprocessing plan: check OUT, resume what is done, run the rest, assemble, record.

The order of events is what makes a run safe to kill at any moment:

1. ``manifest.json`` is written first with ``"complete": false`` and the run's settings, so an
   OUT always says what it is, and a second run with other settings is refused.
2. Shards run (in this process, a pool, or on a Ray or Dask cluster: ``distributors``); each
   writes its files under temporary names, renames them, then writes its record. A rerun keeps
   the shards whose record and files check out (sha256) and redoes the others; a shard that a
   cluster's worker reports done is checked the same way before it counts.
3. For the packed format, the shard arrays are copied into one array per split (written under a
   temporary name, renamed when complete), ``stats.json`` is written from the shards'
   statistics merged in plan order, and the manifest is rewritten with ``"complete": true``.
   Only then are the shard files removed.

Nothing in OUT depends on timing or on the number of workers, so an interrupted and resumed
run ends with the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from augkit import __version__
from augkit.errors import AugkitError, RunError
from augkit.files import atomic_write
from augkit.preprocess.distributors import check_distributor, run_tasks
from augkit.preprocess.plan import PreprocessConfig, Shard, make_shards, open_splits, output_names
from augkit.preprocess.shard import SHARDS_DIR, ShardTask, first_changed_file, packed_path, run_shard, verify_shard
from augkit.stats import ChannelStats

FORMAT = "augkit.preprocess/1"
MANIFEST = "manifest.json"
STATS = "stats.json"


@dataclass
class PreprocessReport:
    """What a run did (the CLI prints it; ``--json`` prints it as JSON)."""

    out: str
    complete: bool
    counts: dict[str, dict[str, Any]]
    skipped: list[dict[str, str]]
    shards: int
    shards_resumed: int
    stats: ChannelStats | None = field(repr=False)
    already_complete: bool = False  # OUT held this exact run, complete: nothing was done


@dataclass
class Progress:
    """Callbacks the caller may give: ``advance(images, skipped)`` after each shard."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[int, int], None] = lambda images, skipped: None


def preprocess(
    source: str | Path | None,
    out: str | Path,
    config: PreprocessConfig,
    *,
    workers: int = 1,
    overwrite: bool = False,
    progress: Progress | None = None,
    distributor: str = "local",
    address: str | None = None,
) -> PreprocessReport:
    """Preprocess the dataset at ``source`` into ``out`` (see the module docstring).

    Args:
        distributor: where the shards run: "local" (``workers`` processes), "ray" or "dask"
            (see augkit.preprocess.distributors). It is not part of the output: any of them
            gives the same bytes and resumes a run another began.
        address: the Ray or Dask cluster's address; None starts a local one of ``workers``.

    Raises:
        AugkitError: bad input (a missing source, OUT in use by another run, ...).
        RunError: the run could not finish (disk full, interrupted); rerunning resumes.
    """
    progress = progress or Progress()
    if workers < 1:
        raise AugkitError(f"--workers must be at least 1, got {workers}")
    check_distributor(distributor, address)
    out = Path(out)
    if source is not None and Path(source).exists():
        # One spelling of the source (relative or absolute, symlinked or not) for the shards'
        # input digests and the manifest: the same data is the same run however it was named.
        source = Path(source).resolve()
    splits = open_splits(source, config)
    any_split = next(iter(splits.values()))
    _check_paths(any_split.root, out)
    header = {
        "format": FORMAT,
        "augkit_version": __version__,
        "source": {"path": str(any_split.root.resolve()) if any_split.root else any_split.kind, "kind": any_split.kind},
        "config": config.to_dict(),
        "classes": list(any_split.classes),
    }
    previous = _prepare_out(out, header, overwrite)
    if previous is not None:  # already complete with these settings, and its files check out
        return _report(out, previous, resumed=len(previous["shards"]), already_complete=True)

    atomic_write(out / MANIFEST, _json({**header, "complete": False}))
    (out / SHARDS_DIR).mkdir(exist_ok=True)
    _remove_temporary_files(out)

    shards = make_shards(splits, config.shard_size)
    copies = {split: config.copies if split == "train" else 0 for split in splits}  # copies of training images only
    names = {split: output_names(ds, copies[split]) for split, ds in splits.items()} if config.format == "folder" else {}
    records = {shard.id: verify_shard(out, shard) for shard in shards}
    pending = [shard for shard in shards if records[shard.id] is None]
    progress.start(sum(s.stop - s.start for s in shards))
    for shard in shards:
        if records[shard.id] is not None:
            progress.advance(shard.stop - shard.start, len(records[shard.id]["skipped"]))

    tasks = [
        ShardTask(
            shard,
            splits[shard.split].subset(range(shard.start, shard.stop)),
            names[shard.split][shard.start : shard.stop] if names else None,
            config,
            str(out.resolve()),  # workers of a cluster do not share this process's working directory
        )
        for shard in pending
    ]
    by_id = {shard.id: shard for shard in pending}
    done = len(shards) - len(pending)
    try:
        # closing: a failure here stops the cluster's other tasks now, not when the generator is collected.
        with closing(run_tasks(run_shard, tasks, distributor=distributor, workers=workers, address=address)) as results:
            for record in results:
                if distributor != "local":
                    record = _written_where_this_machine_sees_it(out, by_id[record["id"]])
                records[record["id"]] = record
                done += 1
                progress.advance(record["stop"] - record["start"], len(record["skipped"]))
        # Inside the try: assembling writes the largest files, so it is where a disk fills up.
        manifest = _finish(out, header, config, splits, [records[shard.id] for shard in shards])
    except KeyboardInterrupt:
        raise RunError(f"interrupted with {done} of {len(shards)} shards done; run the same command again to resume") from None
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise RunError(
                f"no space left writing {error.filename or out} ({done} of {len(shards)} shards done); "
                "free some space and run the same command again to resume"
            ) from None
        raise
    return _report(out, manifest, resumed=len(shards) - len(pending))


# ----------------------------------------------------------------------------- OUT


def _check_paths(root: Path | None, out: Path) -> None:
    """Refuse an OUT inside the source or a source inside OUT: one would read the other."""
    if root is None:
        return
    src, dst = root.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise AugkitError(f"OUT ({out}) is inside the source ({root}); write somewhere else, the source is never changed")
    if dst in src.parents:
        raise AugkitError(f"the source ({root}) is inside OUT ({out}); choose an OUT outside the source")


def _prepare_out(out: Path, header: dict[str, Any], overwrite: bool) -> dict[str, Any] | None:
    """Make OUT ready; return its manifest if it already holds this exact run, complete and intact."""
    if out.exists() and not out.is_dir():
        raise AugkitError(f"OUT ({out}) is a file; give a folder")
    if not out.exists() or not any(out.iterdir()):
        out.mkdir(parents=True, exist_ok=True)
        return None
    manifest = _read_manifest(out)
    if manifest is None:
        raise AugkitError(
            f"OUT ({out}) is not empty and holds no augkit manifest; give a new or empty folder "
            "(augkit never deletes what it did not write, --overwrite included)"
        )
    same = {k: manifest.get(k) for k in header} == header
    if same and manifest.get("complete"):
        broken = first_changed_file(out, manifest.get("files", []))
        if broken is None:
            return manifest
        if not overwrite:
            raise AugkitError(f"OUT ({out}) is complete but {broken} changed since; rerun with --overwrite to rebuild it")
    elif same:
        return None  # an unfinished run of the same command: resume it
    elif not overwrite:
        old_config = manifest.get("config") or {}
        changed = [f"--{k.replace('_', '-')}" for k in header["config"] if old_config.get(k) != header["config"][k]]
        changed += [k for k in ("source", "classes", "augkit_version") if manifest.get(k) != header[k]]
        what = ", ".join(changed)
        raise AugkitError(
            f"OUT ({out}) holds a run with other settings ({what} differ); use another folder, "
            "or --overwrite to replace it"
        )
    shutil.rmtree(out)
    out.mkdir(parents=True)
    return None


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def _remove_temporary_files(out: Path) -> None:
    """Leftovers of a killed run: atomic_write's temporary files, never a finished one."""
    for path in out.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- running


def _written_where_this_machine_sees_it(out: Path, shard: Shard) -> dict[str, Any]:
    """The record of a shard that a cluster's worker did, checked here exactly as a resume would."""
    record = verify_shard(out, shard)
    if record is None:
        raise AugkitError(
            f"a worker reported shard {shard.id} done, but its files are missing or differ in OUT ({out}) as this "
            "machine sees it: every worker must write OUT on a filesystem shared with this machine, at the same "
            "path (docs/scale-out.md)"
        )
    return record


# ----------------------------------------------------------------------------- finishing


def _finish(
    out: Path, header: dict[str, Any], config: PreprocessConfig, splits: dict, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Merge the shards' records (in plan order) into stats.json, the final arrays and the manifest."""
    stats = ChannelStats(mean_image=False)
    for record in records:
        if record["split"] == "train" and record["stats"] is not None:
            stats.merge(ChannelStats.from_dict(record["stats"]))
    files = []
    outputs: dict[str, Any] = {}
    if config.format == "packed":
        for split in splits:
            outputs[split] = _assemble(out, split, [r for r in records if r["split"] == split])
            files += [outputs[split].pop("images_file"), outputs[split].pop("labels_file")]
    else:
        for split in splits:
            outputs[split] = {"folder": split, "count": sum(r["count"] for r in records if r["split"] == split)}
        files = [f for r in records for f in r["files"]]
    if stats.count:
        stats.save(out / STATS)

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
    manifest = {
        **header,
        "complete": True,
        "output": {"format": config.format, "splits": outputs, "layout": _layout_note(config)},
        "counts": counts,
        "stats": STATS if stats.count else None,
        "skipped": [{**s, "split": r["split"]} for r in records for s in r["skipped"]],
        "shards": [
            {"id": r["id"], "split": r["split"], "start": r["start"], "stop": r["stop"], "count": r["count"],
             "inputs": r["inputs"], "sha256": _combined(r["files"])}
            for r in records
        ],
        "files": files,
    }
    atomic_write(out / MANIFEST, _json(manifest))
    shutil.rmtree(out / SHARDS_DIR, ignore_errors=True)  # the manifest now holds every checksum
    return manifest


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
        digest.update(f"{entry['path']}\0{entry['sha256']}\n".encode())
    return digest.hexdigest()


def _assemble(out: Path, split: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """One images and one labels array for the split, copied shard by shard (memory stays flat)."""
    shapes = {tuple(r["shape"]) for r in records if r["shape"] is not None}
    if len(shapes) > 1:
        raise AugkitError(
            f"{split}: shards hold images of different sizes ({' and '.join(map(str, sorted(shapes)))}); "
            "pass --size HxW so that every image has the same size"
        )
    shape = shapes.pop() if shapes else (0, 0, 3)
    total = sum(r["count"] for r in records)
    entries = {}
    for what, dtype, row_shape in (("images", np.uint8, shape), ("labels", np.int64, ())):
        final = out / f"{split}_{what}.npy"
        temporary = out / f".{final.name}.assemble.tmp"
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (total, *row_shape)}
        # Appended shard by shard, not through a memory map of the whole file: a map's written
        # pages count in the process's memory until it is closed, so peak memory would grow
        # with the dataset.
        digest = hashlib.sha256()  # of the bytes as written: no second read of a large file
        with open(temporary, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            f.flush()
            digest.update(temporary.read_bytes())  # the header, as numpy wrote it
            for record in records:
                if record["count"]:
                    chunk = np.ascontiguousarray(np.load(packed_path(out, record["id"], what)), dtype=dtype)
                    f.write(chunk.data)
                    digest.update(chunk.data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, final)
        entries[what] = {"path": final.name, "sha256": digest.hexdigest()}
    return {
        "images": entries["images"]["path"],
        "labels": entries["labels"]["path"],
        "count": total,
        "shape": list(shape),
        "images_file": entries["images"],
        "labels_file": entries["labels"],
    }


def _report(out: Path, manifest: dict[str, Any], resumed: int, already_complete: bool = False) -> PreprocessReport:
    stats_path = out / STATS
    return PreprocessReport(
        out=str(out),
        complete=bool(manifest.get("complete")),
        counts=manifest.get("counts", {}),
        skipped=manifest.get("skipped", []),
        shards=len(manifest.get("shards", [])),
        shards_resumed=resumed,
        stats=ChannelStats.load(stats_path) if stats_path.exists() else None,
        already_complete=already_complete,
    )


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"
