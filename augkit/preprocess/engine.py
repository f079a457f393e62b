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
   Only then are the shard files removed. A split whose every image was skipped is never
   marked complete: the run stops there, one line, exit code 2.

Nothing in OUT depends on timing or on the number of workers, so an interrupted and resumed
run ends with the same bytes as an uninterrupted one.

OUT is the user's folder, and what it holds is read back, never trusted:

- Its manifest is checked entry by entry (``HEADER``, ``COMPLETE``) before anything uses it,
  and each shard's record likewise (``augkit.preprocess.shard.verify_shard``): damage is one
  line (a damaged manifest), or a shard done again (a damaged record). A complete OUT of the
  same settings is "already complete" only if its files match their checksums and its
  manifest says of them what this run would (``_damage``); else it is one line, and
  ``--overwrite`` rebuilds it.
- ``--overwrite`` deletes only what augkit wrote: the files its manifest and its shards'
  records list, and its own shard and temporary files by their exact names. Anything else in
  OUT (a user's notes, or files beside a stray manifest that claims to be augkit's) and nothing
  is deleted: the run is refused in one line.
- A full disk, at any write (the first manifest included), stops the run with one line
  (``RunError``); running the same command again resumes.
- File names that are not valid UTF-8 (which Python holds as lone surrogates) are written into
  the manifest as ``\\udcXX`` escapes, which read back to the same names.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from augkit import __version__
from augkit.documents import MAX_MANIFEST_BYTES, read_document, short_repr
from augkit.errors import DISK_FULL, AugkitError, DatasetError, RunError
from augkit.files import TEMPORARY_NAME, atomic_write
from augkit.io.packed import (
    DAMAGED,
    FORMAT,
    MANIFEST,
    MISSING,
    SPLITS,
    check_structure,
    is_relative_path,
    npy_header,
    read_manifest,
)
from augkit.preprocess.distributors import check_distributor, run_tasks
from augkit.preprocess.plan import PreprocessConfig, Shard, make_shards, open_splits, output_names
from augkit.preprocess.shard import (
    RECORD,
    SHARDS_DIR,
    ShardTask,
    first_changed_file,
    packed_path,
    record_path,
    run_shard,
    verify_shard,
)
from augkit.stats import ChannelStats

STATS = "stats.json"
# The manifest, as the engine writes it and checks it when it reads it back
# (augkit.io.packed.check_structure): the header says which run OUT holds; a complete one adds
# what the run wrote.
HEADER = {
    "format": str, "augkit_version": str, "source": {"path": str, "kind": str},
    "config": {str: object}, "classes": [str], "complete": bool,
}  # fmt: skip
COMPLETE = {
    **HEADER,
    "output": {"format": str, "splits": {str: dict}, "layout": str},
    "counts": {str: {"images": int, "sources": int, "skipped": int, "per_class": {str: int}}},
    "stats": (str, None),
    "skipped": [{"path": str, "reason": str, "split": str}],
    "shards": [{"id": str, "split": str, "start": int, "stop": int, "count": int, "inputs": str, "sha256": str}],
    "files": [{"path": str, "sha256": str}],
}  # fmt: skip

# Files augkit writes in OUT by name, whatever its manifest says: its shards' files, the final
# arrays and statistics (there before the manifest that lists them), and atomic_write's and
# _assemble's temporary files (augkit.files.TEMPORARY_NAME, in any of OUT's folders).
_SPLIT = "|".join(SPLITS)
_OURS_BY_NAME = re.compile(
    rf"{re.escape(SHARDS_DIR)}/({_SPLIT})-\d{{5,}}\.(json|started\.json|images\.npy|labels\.npy)"
    rf"|({_SPLIT})_(images|labels)\.npy|{re.escape(STATS)}"
)
_TEMPORARY = re.compile(rf"(.+/)?{TEMPORARY_NAME.pattern}|\.({_SPLIT})_(images|labels)\.npy\.assemble\.tmp")


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
    connect_timeout: float | None = None,
) -> PreprocessReport:
    """Preprocess the dataset at ``source`` into ``out`` (see the module docstring).

    Args:
        overwrite: replace a run with other settings in ``out``, deleting only what augkit wrote.
        distributor: where the shards run: "local" (``workers`` processes), "ray" or "dask"
            (see augkit.preprocess.distributors). It is not part of the output: any of them
            gives the same bytes and resumes a run another began.
        address: the Ray or Dask cluster's address; None starts a local one of ``workers``.
        connect_timeout: seconds to wait for the cluster at ``address`` to answer (None: 30).

    Raises:
        AugkitError: bad input (a missing source, OUT in use by another run or holding files
            augkit did not write, a damaged manifest in OUT, a cluster that does not answer,
            every image of a split skipped, ...).
        RunError: the run could not finish (disk full, interrupted); rerunning resumes.
    """
    progress = progress or Progress()
    if workers < 1:
        raise AugkitError(f"--workers must be at least 1, got {workers}")
    check_distributor(distributor, address, connect_timeout)
    out = Path(out)
    if source is not None and Path(source).exists():
        # One spelling of the source (relative or absolute, symlinked or not) for the shards'
        # input digests and the manifest: the same data is the same run however it was named.
        source = Path(source).resolve()
    splits = open_splits(source, config)
    any_split = next(iter(splits.values()))
    if not config.gray and any_split.channels == 1:  # augkit.io.datasets' gray rule: a gray source is written gray
        config = replace(config, gray=True)
    _check_paths(any_split.root, out)
    header = {
        "format": FORMAT,
        "augkit_version": __version__,
        "source": {"path": str(any_split.root.resolve()) if any_split.root else any_split.kind, "kind": any_split.kind},
        "config": config.to_dict(),
        "classes": list(any_split.classes),
    }
    shards = make_shards(splits, config)
    copies = {split: config.copies if split == "train" else 0 for split in splits}  # copies of training images only
    names = {split: output_names(ds, copies[split]) for split, ds in splits.items()} if config.format == "folder" else {}
    classes = len(header["classes"])
    done = 0
    try:  # from the first write to the last: a full disk or a Ctrl-C anywhere is one line
        previous = _prepare_out(out, header, config, overwrite, shards)
        if previous is not None:  # already complete with these settings, and it checks out
            return _report(out, previous, resumed=len(previous["shards"]), already_complete=True)
        atomic_write(out / MANIFEST, _json({**header, "complete": False}))
        (out / SHARDS_DIR).mkdir(exist_ok=True)
        _remove_temporary_files(out, header["classes"])

        records = {shard.id: verify_shard(out, shard, config, classes) for shard in shards}
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
        # closing: a failure here stops the cluster's other tasks now, not when the generator is collected.
        with closing(run_tasks(run_shard, tasks, distributor=distributor, workers=workers, address=address,
                               connect_timeout=connect_timeout)) as results:  # fmt: skip
            for record in results:
                if distributor != "local":
                    record = _written_where_this_machine_sees_it(out, by_id[record["id"]], config, classes)
                records[record["id"]] = record
                done += 1
                progress.advance(record["stop"] - record["start"], len(record["skipped"]))
        # Inside the try: assembling writes the largest files, so it is where a disk fills up.
        manifest = _finish(out, header, config, splits, [records[shard.id] for shard in shards])
    except KeyboardInterrupt:
        raise RunError(f"interrupted with {done} of {len(shards)} shards done; run the same command again to resume") from None
    except OSError as error:
        if error.errno in DISK_FULL:
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


def _prepare_out(
    out: Path, header: dict[str, Any], config: PreprocessConfig, overwrite: bool, shards: list[Shard]
) -> dict[str, Any] | None:
    """Make OUT ready; return its manifest if it already holds this exact run, complete and intact.

    "This exact run" includes the source's content as the shards see it (their ``inputs``:
    the files and labels of each): a source that gained, lost or changed images since is the
    same command with work left to do, resumed (shards whose inputs changed are redone).
    """
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
    same = {k: manifest[k] for k in header} == header
    planned = [(shard.id, shard.inputs) for shard in shards]
    if same and manifest["complete"] and [(s["id"], s["inputs"]) for s in manifest["shards"]] != planned:
        # The source changed since: resume, redoing the shards it changed. A folder OUT's file
        # names follow the source's order, so images there may now be named for others or for
        # none: it is cleared first (augkit's files only, as --overwrite would) and rebuilt.
        if config.format == "folder":
            _clear(out, manifest)
        return None
    if same and manifest["complete"]:
        damage = _damage(out, manifest, config)
        if damage is None:
            return manifest
        if not overwrite:
            raise AugkitError(f"OUT ({out}) is complete but {damage}; rerun with --overwrite to rebuild it")
    elif same:
        return None  # an unfinished run of the same command: resume it
    elif not overwrite:
        old_config = manifest["config"]
        changed = [f"--{k.replace('_', '-')}" for k in header["config"] if old_config.get(k) != header["config"][k]]
        changed += [k for k in ("source", "classes", "augkit_version") if manifest[k] != header[k]]
        what = ", ".join(changed)
        raise AugkitError(
            f"OUT ({out}) holds a run with other settings ({what} differ); use another folder, "
            "or --overwrite to replace it"
        )
    _clear(out, manifest)
    return None


def _damage(out: Path, manifest: dict[str, Any], config: PreprocessConfig) -> str | None:
    """What does not hold in OUT, complete with this run's settings (``manifest``), or None.

    Its files must match their checksums; what its manifest says of them (``output``, and the
    image count of each split in ``counts``) must be what ``_finish`` writes for them, which is
    what ``open_dataset`` reads; every split must hold images, and its statistics must load. A
    rerun that said "already complete" of anything less would leave an OUT that ``open_dataset``
    and ``augkit train`` call damaged, with no command to repair it.
    """
    broken = first_changed_file(out, manifest["files"])
    if broken is not None:
        return f"{broken} changed since"
    splits = list(manifest["counts"])
    try:
        output = _output_section(out, config, splits, manifest["files"])
    except DatasetError as error:  # an array whose header is not one _assemble writes
        return f"its files do not read back ({error})"
    counts = manifest["counts"]
    says = {"output": manifest["output"], "counts": {s: {"images": counts[s]["images"]} for s in splits}}
    found = {"output": output, "counts": {s: {"images": output["splits"][s]["count"]} for s in splits}}
    difference = _first_difference(says, found)
    if difference is not None:
        where, value, files_say = difference
        return f"its manifest's {where!r} is {short_repr(value)} where its files say {short_repr(files_say)}"
    empty = [split for split in splits if not output["splits"][split]["count"]]
    if empty:
        return f"its {empty[0]} split holds no image"
    if manifest["stats"] is not None:
        try:
            ChannelStats.load(out / STATS)
        except AugkitError as error:
            return f"its statistics do not load ({error})"
    return None


def _first_difference(found: Any, expected: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """(entry, as "output.splits.train.count", found value, expected value) of the first entry of
    ``found`` (as JSON gives it) that is not ``expected``'s; None if none is."""
    if isinstance(found, dict) and isinstance(expected, dict):
        for key in sorted(found.keys() | expected.keys()):
            name = f"{where}.{key}".lstrip(".")
            difference = _first_difference(found.get(key, MISSING), expected.get(key, MISSING), name)
            if difference is not None:
                return difference
        return None
    if MISSING in (found, expected):
        return None if found is expected else (where, found, expected)
    same = json.dumps(found, sort_keys=True) == json.dumps(expected, sort_keys=True)  # 7.0 is not 7, nor true 1
    return None if same else (where, found, expected)


def _read_manifest(out: Path) -> dict[str, Any] | None:
    """OUT's manifest, every entry checked (``HEADER``; ``COMPLETE`` once complete); None if OUT
    holds no augkit manifest.

    Raises:
        DatasetError: a manifest that claims to be augkit's but is damaged, naming the entry.
    """
    manifest = read_manifest(out)
    if manifest is None:
        return None
    path = out / MANIFEST
    check_structure(manifest, COMPLETE if manifest.get("complete") is True else HEADER, source=path, where="", fix=DAMAGED)
    for i, entry in enumerate(manifest.get("files", [])):
        if not is_relative_path(entry["path"]):
            raise DatasetError(f"{path}: 'files[{i}].path' is {entry['path']!r}, which is not a file in {out}; {DAMAGED}")
    if manifest.get("stats") not in (None, STATS):
        raise DatasetError(f"{path}: 'stats' is {manifest['stats']!r}, expected {STATS!r} or null; {DAMAGED}")
    return manifest


def _clear(out: Path, manifest: dict[str, Any]) -> None:
    """Delete what augkit wrote in OUT for the run ``manifest`` describes, then the folders that
    leaves empty; refuse, deleting nothing, if OUT holds anything else."""
    listed = {MANIFEST, *(entry["path"] for entry in manifest.get("files", []))}
    if manifest.get("stats"):
        listed.add(manifest["stats"])
    listed |= _recorded_files(out)
    ours, foreign = [], []
    for entry, is_file in sorted(_contents(out, manifest["classes"])):
        (ours if is_file and (entry in listed or _OURS_BY_NAME.fullmatch(entry) or _TEMPORARY.fullmatch(entry)) else foreign).append(entry)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise AugkitError(
            f"OUT ({out}) holds what augkit did not write ({shown}); --overwrite deletes only augkit's own files, "
            "so nothing was deleted: move those elsewhere, or choose another OUT"
        )
    for entry in ours:
        (out / entry).unlink(missing_ok=True)
    for folder in sorted(_folders(manifest["classes"]), key=lambda f: -f.count("/")):  # deepest first
        try:
            (out / folder).rmdir()
        except OSError:  # not there, or a file appeared since: left as it is
            pass


def _recorded_files(out: Path) -> set[str]:
    """The files that the readable shard records and shard starts in OUT list (an unfinished
    folder-format run's images, those of a shard killed halfway included)."""
    files = set()
    for path in (out / SHARDS_DIR).glob("*.started.json"):  # what a shard was about to write
        try:
            started = read_document(path, what="shard start", format="json", max_bytes=MAX_MANIFEST_BYTES)
            check_structure(started, {"id": str, "files": [str]}, source=path, where="")
        except (OSError, AugkitError):
            continue
        files.update(entry for entry in started["files"] if is_relative_path(entry))
    for path in (out / SHARDS_DIR).glob("*.json"):
        if path.name.endswith(".started.json"):
            continue
        try:
            record = read_document(path, what="shard record", format="json", max_bytes=MAX_MANIFEST_BYTES)
            check_structure(record, RECORD, source=path, where="")
        except (OSError, AugkitError):
            continue  # not one of augkit's: its files, if any, are not known to be either
        files.update(entry["path"] for entry in record["files"] if is_relative_path(entry["path"]))
    return files


def _folders(classes: list[str]) -> set[str]:
    """The folders augkit makes in OUT: the shards', and the folder format's split and class folders."""
    return {SHARDS_DIR, *SPLITS, *(f"{split}/{name}" for split in SPLITS for name in classes)}


def _contents(out: Path, classes: list[str]) -> list[tuple[str, bool]]:
    """(path relative to OUT, is a file) of what OUT holds: every file (or link, FIFO, ...) in the
    folders augkit makes, and, not looked into, any other folder."""
    folders, found = _folders(classes), []
    for folder, subfolders, names in os.walk(out):
        where = Path(folder).relative_to(out)
        for name in list(subfolders):
            entry = (where / name).as_posix()
            if entry not in folders or (Path(folder) / name).is_symlink():
                found.append((entry, False))
                subfolders.remove(name)  # not augkit's: not looked into
        found += [((where / name).as_posix(), True) for name in names]
    return found


def _remove_temporary_files(out: Path, classes: list[str]) -> None:
    """Leftovers of a killed run: atomic_write's temporary files, never a finished one."""
    for entry, is_file in _contents(out, classes):
        if is_file and _TEMPORARY.fullmatch(entry):
            (out / entry).unlink(missing_ok=True)


# ----------------------------------------------------------------------------- running


def _written_where_this_machine_sees_it(out: Path, shard: Shard, config: PreprocessConfig, classes: int) -> dict[str, Any]:
    """The record of a shard that a cluster's worker did, checked here exactly as a resume would."""
    record = verify_shard(out, shard, config, classes)
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
        "output": _output_section(out, config, list(splits), files),
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


def _output_section(
    out: Path, config: PreprocessConfig, splits: list[str], files: list[dict[str, str]]
) -> dict[str, Any]:
    """The manifest's ``output`` for what OUT holds: per split, its arrays' names, row count and
    image shape (read from the images array's header), or its folder and number of files.

    Raises:
        DatasetError: a packed array that is missing or whose header does not fit the file.
    """
    entries: dict[str, Any] = {}
    for split in splits:
        if config.format == "packed":
            shape, _ = npy_header(out / f"{split}_images.npy")
            entries[split] = {"images": f"{split}_images.npy", "labels": f"{split}_labels.npy",
                              "count": shape[0], "shape": list(shape[1:])}  # fmt: skip
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


def _assemble(out: Path, split: str, records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One images and one labels array for the split, copied shard by shard (memory stays flat);
    returns their entries for the manifest's ``files`` ({"path", "sha256"})."""
    shapes = {tuple(r["shape"]) for r in records if r["shape"] is not None}
    if len(shapes) > 1:
        raise AugkitError(
            f"{split}: shards hold images of different sizes ({' and '.join(map(str, sorted(shapes)))}); "
            "pass --size HxW so that every image has the same size"
        )
    shape = shapes.pop()  # _refuse_empty_splits: a shard of the split holds images
    total = sum(r["count"] for r in records)
    entries = []
    for what, dtype, row_shape in (("images", np.uint8, shape), ("labels", np.int64, ())):
        final = out / f"{split}_{what}.npy"
        temporary = out / f".{final.name}.assemble.tmp"
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
                  "shape": (total, *row_shape)}
        # Appended shard by shard, not through a memory map of the whole file: a map's written
        # pages count in the process's memory until it is closed, so peak memory would grow
        # with the dataset.
        digest = hashlib.sha256()  # of the bytes as written: no second read of a large file
        try:
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
        except BaseException:  # a full disk, a Ctrl-C: no half-written array is left behind
            temporary.unlink(missing_ok=True)
            raise
        entries.append({"path": final.name, "sha256": digest.hexdigest()})
    return entries


def _report(out: Path, manifest: dict[str, Any], resumed: int, already_complete: bool = False) -> PreprocessReport:
    stats_path = out / STATS
    return PreprocessReport(
        out=str(out),
        complete=bool(manifest.get("complete")),
        counts=manifest.get("counts", {}),
        skipped=manifest.get("skipped", []),
        shards=len(manifest.get("shards", [])),
        shards_resumed=resumed,
        stats=ChannelStats.load(stats_path) if manifest.get("stats") else None,
        already_complete=already_complete,
    )


def _json(data: dict[str, Any]) -> str:
    """``data`` as JSON text that is valid UTF-8 whatever names it holds.

    A file name that is not valid UTF-8 reaches Python as lone surrogates (os.fsdecode), which
    UTF-8 cannot encode: they are written as JSON's ``\\udcXX`` escapes, which ``json.loads``
    reads back to the same string, and so ``os.fsencode`` to the same bytes. (Lone surrogates
    can only be inside JSON strings, where an escape stands for the same character.)
    """
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
