"""OUT, the user's folder: checked before a run, cleared only of what augkit wrote, resumed.

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
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from augkit.documents import MAX_MANIFEST_BYTES, read_document, short_repr
from augkit.errors import AugkitError, DatasetError
from augkit.files import TEMPORARY_NAME
from augkit.io.packed import (
    DAMAGED,
    MANIFEST,
    MISSING,
    SPLITS,
    check_structure,
    is_relative_path,
    read_manifest,
)
from augkit.preprocess.assembly import STATS, output_section
from augkit.preprocess.plan import PreprocessConfig, Shard
from augkit.preprocess.shard import RECORD, SHARDS_DIR, first_changed_file
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
    "skipped": [{"path": str, "reason": str, "split": str}],
    "shards": [{"id": str, "split": str, "start": int, "stop": int, "count": int, "inputs": str, "sha256": str}],
    "files": [{"path": str, "sha256": str}],
}  # fmt: skip

# Files augkit writes in OUT by name, whatever its manifest says: its shards' files, the final
# arrays and statistics (there before the manifest that lists them), and atomic_write's and
# assembly's temporary files (augkit.files.TEMPORARY_NAME, in any of OUT's folders).
_SPLIT = "|".join(SPLITS)
_OURS_BY_NAME = re.compile(
    rf"{re.escape(SHARDS_DIR)}/({_SPLIT})-\d{{5,}}\.(json|started\.json|images\.npy|labels\.npy)"
    rf"|({_SPLIT})_(images|labels)\.npy|{re.escape(STATS)}"
)
_TEMPORARY = re.compile(rf"(.+/)?{TEMPORARY_NAME.pattern}|\.({_SPLIT})_(images|labels)\.npy\.assemble\.tmp")


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
    broken = first_changed_file(out, manifest["files"])
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


def remove_temporary_files(out: Path, classes: list[str]) -> None:
    """Leftovers of a killed run: atomic_write's temporary files, never a finished one."""
    for entry, is_file in _contents(out, classes):
        if is_file and _TEMPORARY.fullmatch(entry):
            (out / entry).unlink(missing_ok=True)
