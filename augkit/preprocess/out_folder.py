"""OUT, the user's folder: checked before a run, cleared only of what augkit wrote, resumed.

OUT is the user's folder, and what it holds is read back, never trusted:

- Its manifest is checked entry by entry (``HEADER``, ``COMPLETE``) before anything uses it,
  and each shard's record likewise (``augkit.preprocess.shard.verify_shard``): damage is one
  line (a damaged manifest), or a shard done again (a damaged record). A complete OUT of the
  same settings is "already complete" only if its files match their checksums and its
  manifest says of them what this run would (``_damage``); else it is one line, and
  ``--overwrite`` rebuilds it (once a file that changed since, no longer known as augkit's, is
  moved away).
- ``--overwrite`` deletes only what augkit wrote: the files its manifest and its shards'
  records list, each only while its content is the one recorded (its sha256), the final
  arrays and statistics of a run stopped before its manifest listed them only if they are
  what its shards' records make, and its own shard and temporary files by their exact names.
  Anything else in OUT (a user's notes, a user's file named like one a stray manifest lists,
  or augkit's file changed since) and nothing is deleted: the run is refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from augkit.documents import MAX_MANIFEST_BYTES, open_regular, read_document, short_repr
from augkit.errors import AugkitError, DatasetError
from augkit.files import TEMPORARY_NAME
from augkit.io.packed import (
    DAMAGED,
    MANIFEST,
    MISSING,
    SPLITS,
    TARGET_FILES,
    check_structure,
    is_relative_path,
    npy_header,
    read_manifest,
)
from augkit.preprocess.assembly import STATS, final_arrays, output_section
from augkit.preprocess.plan import PreprocessConfig, Shard
from augkit.preprocess.shard import RECORD, SHARDS_DIR, TARGET_PARTS, first_changed_file, packed_parts
from augkit.stats import ChannelStats

# The manifest, as the engine (its header) and assembly (complete) write it, and as it is checked
# when read back (augkit.io.packed.check_structure): the header says which run OUT holds; a
# complete one adds what the run wrote.
HEADER = {
    "format": str, "augkit_version": str, "source": {"path": str, "kind": str},
    "config": {str: object}, "classes": [str], "complete": bool,
}  # fmt: skip
COMPLETE = {
    **HEADER,
    "output": {"format": str, "splits": {str: dict}, "layout": str},
    "counts": {str: {"images": int, "sources": int, "skipped": int, "per_class": {str: int}}},
    "stats": (str, None),
    "stats_sha256?": (str, None),  # missing from manifests written before it was recorded
    "skipped": [{"path": str, "reason": str, "split": str}],
    "shards": [{"id": str, "split": str, "start": int, "stop": int, "count": int, "inputs": str, "sha256": str}],
    "files": [{"path": str, "sha256": str}],
}  # fmt: skip

# Files augkit writes in OUT by name, whatever its manifest says: its shards' files (in its own
# folder), and atomic_write's and assembly's temporary files (augkit.files.TEMPORARY_NAME, in
# any of OUT's folders).
_SPLIT = "|".join(SPLITS)
_SHARD_PARTS = "|".join(sorted({part for kind in TARGET_PARTS for part in packed_parts(kind)}))
_FINAL_PARTS = "|".join(sorted({"images", "labels", *(part for parts in TARGET_FILES.values() for part in parts)}))
_SHARD_FILE = re.compile(rf"{re.escape(SHARDS_DIR)}/({_SPLIT})-\d{{5,}}\.(json|started\.json|({_SHARD_PARTS})\.npy)")
_TEMPORARY = re.compile(rf"(.+/)?{TEMPORARY_NAME.pattern}|\.({_SPLIT})_({_FINAL_PARTS})\.npy\.assemble\.tmp")
# The final arrays: augkit's while their manifest's checksums hold or, before a manifest lists
# them (a run stopped while finishing), while they are what the shards' records make.
_FINAL_ARRAY = re.compile(rf"({_SPLIT})_({_FINAL_PARTS})\.npy")


def check_paths(root: Path | None, out: Path) -> None:
    """Refuse an OUT inside the source or a source inside OUT: one would read the other."""
    if root is None:
        return
    src, dst = root.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise AugkitError(f"OUT ({out}) is inside the source ({root}); write somewhere else, the source is never changed")
    if dst in src.parents:
        raise AugkitError(f"the source ({root}) is inside OUT ({out}); choose an OUT outside the source")


def prepare_out(
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
    image count of each split in ``counts``) must be what ``assembly.finish`` writes for them,
    which is what ``open_dataset`` reads; every split must hold images, and its statistics must
    load. A rerun that said "already complete" of anything less would leave an OUT that
    ``open_dataset`` and ``augkit train`` call damaged, with no command to repair it.
    """
    broken = first_changed_file(out, _checksums(manifest))
    if broken is not None and os.path.lexists(out / broken):  # --overwrite will not delete it (_clear)
        return f"{broken} changed since, so it is no longer known as augkit's: move it elsewhere first"
    if broken is not None:
        return f"{broken} changed since"
    splits = list(manifest["counts"])
    try:
        output = output_section(out, config, splits, manifest["files"])
    except DatasetError as error:  # an array whose header is not one assembly writes
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
            return f"its statistics do not load ({error}), so {STATS} is not known as augkit's: move it elsewhere first"
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
    leaves empty; refuse, deleting nothing, if OUT holds anything else (``_is_augkits``)."""
    records, started = _shard_records(out)
    checksums: dict[str, set[str]] = {}
    for entry in [*_checksums(manifest), *(f for record in records for f in record["files"])]:
        checksums.setdefault(entry["path"], set()).add(entry["sha256"])
    ours, foreign = [], []
    for entry, is_file in sorted(_contents(out, manifest["classes"])):
        augkits = is_file and _is_augkits(out, entry, manifest, checksums, records, started)
        (ours if augkits else foreign).append(entry)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise AugkitError(
            f"OUT ({out}) holds what augkit did not write, or changed since ({shown}); --overwrite deletes only "
            "augkit's own files, so nothing was deleted: move those elsewhere, or choose another OUT"
        )
    for entry in ours:
        (out / entry).unlink(missing_ok=True)
    for folder in sorted(_folders(manifest["classes"]), key=lambda f: -f.count("/")):  # deepest first
        try:
            (out / folder).rmdir()
        except OSError:  # not there, or a file appeared since: left as it is
            pass


def _is_augkits(
    out: Path,
    entry: str,
    manifest: dict[str, Any],
    checksums: dict[str, set[str]],
    records: list[dict[str, Any]],
    started: set[str],
) -> bool:
    """Whether the file ``entry`` (relative to OUT) is one augkit wrote, as it wrote it.

    By its exact name and place: the manifest, a shard's files, a temporary file, and a file a
    folder-format shard listed before writing it (one killed halfway has no record of it). Any
    other by its content: a file the manifest or a shard's record lists (``checksums``: path ->
    sha256s) if it matches one of its checksums; an unlisted final array or stats.json if it is
    what the shards' records make (``_is_assembled``, ``_stats_are_augkits``). A name alone
    proves nothing: a user's ``train_images.npy`` beside a copied manifest is the user's.
    """
    if entry == MANIFEST or entry in started or _SHARD_FILE.fullmatch(entry) or _TEMPORARY.fullmatch(entry):
        return True
    if entry in checksums:
        return any(first_changed_file(out, [{"path": entry, "sha256": sha256}]) is None for sha256 in checksums[entry])
    if _FINAL_ARRAY.fullmatch(entry):
        return _is_assembled(out, entry, records)
    return entry == STATS and _stats_are_augkits(out, manifest, records)


def _checksums(manifest: dict[str, Any]) -> list[dict[str, str]]:
    """The files ({"path", "sha256"}) the manifest gives checksums of: its ``files`` and, where
    it records one (``stats_sha256``), its statistics."""
    entries = list(manifest.get("files", []))
    if manifest.get("stats") and manifest.get("stats_sha256"):
        entries.append({"path": manifest["stats"], "sha256": manifest["stats_sha256"]})
    return entries


def _is_assembled(out: Path, entry: str, records: list[dict[str, Any]]) -> bool:
    """Whether the final array ``entry`` (``<split>_<images|labels|target part>.npy``), which no
    manifest lists, is the one ``assembly.finish`` makes of its split's shards (a run stopped after
    assembling it): its dtype and shape theirs, its rows theirs in plan order, each shard's file as
    its record lists it. Reads the shards' files twice and the array once, in chunks."""
    split, what = _FINAL_ARRAY.fullmatch(entry).groups()[:2]
    shards = sorted((r for r in records if r["split"] == split and r["count"]), key=lambda r: r["start"])
    if not shards or any(first_changed_file(out, record["files"]) is not None for record in shards):
        return False
    try:
        array = next((a for a in final_arrays(out, split, shards) if a.what == what), None)
        if array is None or npy_header(out / entry) != (array.shape, array.dtype):
            return False
        digest = hashlib.sha256()
        for chunk in array.chunks():
            digest.update(chunk.data)
        return _data_sha256([out / entry]) == digest.hexdigest()
    except (OSError, ValueError, AugkitError):  # missing, not a regular file, not a .npy array
        return False


def _data_sha256(paths: list[Path]) -> str:
    """sha256 of the data of these .npy files, one after another (the bytes after each header,
    which npy_header has checked fill the file's end), read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        shape, dtype = npy_header(path)
        with open_regular(path, ".npy array") as f:
            f.seek(-math.prod(shape) * dtype.itemsize, os.SEEK_END)
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _stats_are_augkits(out: Path, manifest: dict[str, Any], records: list[dict[str, Any]]) -> bool:
    """Whether OUT's stats.json, of which no checksum is recorded, holds the statistics augkit wrote.

    With train shards' records (a run stopped between writing it and its manifest): the
    statistics they merge to, in plan order, as ``assembly.finish`` merges them. Without, beside
    a complete manifest written before manifests recorded its checksum: statistics of as many
    training images as that manifest counts originals (its train images over 1 + copies). A
    user's own statistics of the same images would pass that second test; statistics of any
    other count, or a file that does not load as statistics, do not.
    """
    try:
        found = ChannelStats.load(out / STATS)
        train = sorted((r for r in records if r["split"] == "train" and r["stats"]), key=lambda r: r["start"])
        if train:
            merged = ChannelStats(mean_image=False)
            for record in train:
                merged.merge(ChannelStats.from_dict(record["stats"]))
            return found.to_dict() == merged.to_dict()
    except (OSError, AugkitError):
        return False
    if not manifest["complete"] or manifest["stats"] != STATS or "stats_sha256" in manifest:
        return False
    copies, images = manifest["config"].get("copies", 0), manifest["counts"].get("train", {}).get("images")
    return type(copies) is int and copies >= 0 and found.images * (1 + copies) == images


def _shard_records(out: Path) -> tuple[list[dict[str, Any]], set[str]]:
    """The readable shard records in OUT (of the structure RECORD), and the files its readable
    shard starts list (an unfinished folder-format run's images, those of a shard killed
    halfway included)."""
    started = set()
    for path in (out / SHARDS_DIR).glob("*.started.json"):  # what a shard was about to write
        try:
            start = read_document(path, what="shard start", format="json", max_bytes=MAX_MANIFEST_BYTES)
            check_structure(start, {"id": str, "files": [str]}, source=path, where="")
        except (OSError, AugkitError):
            continue
        started.update(entry for entry in start["files"] if is_relative_path(entry))
    records = []
    for path in (out / SHARDS_DIR).glob("*.json"):
        if path.name.endswith(".started.json"):
            continue
        try:
            record = read_document(path, what="shard record", format="json", max_bytes=MAX_MANIFEST_BYTES)
            check_structure(record, RECORD, source=path, where="")
        except (OSError, AugkitError):
            continue  # not one of augkit's: its files, if any, are not known to be either
        record["files"] = [entry for entry in record["files"] if is_relative_path(entry["path"])]
        records.append(record)
    return records, started


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


def remove_temporary_files(out: Path, classes: list[str]) -> None:
    """Leftovers of a killed run: atomic_write's temporary files, never a finished one."""
    for entry, is_file in _contents(out, classes):
        if is_file and _TEMPORARY.fullmatch(entry):
            (out / entry).unlink(missing_ok=True)
