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

OUT is checked before anything is written there (``out_folder``: a manifest of other settings,
or files augkit did not write, refuse the run in one line), and its final files are assembled
from the shards' records (``assembly``). A full disk, at any write (the first manifest
included), stops the run with one line (``RunError``); running the same command again resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from augkit import __version__
from augkit.errors import DISK_FULL, AugkitError, RunError
from augkit.files import atomic_write
from augkit.io.packed import FORMAT, MANIFEST
from augkit.preprocess.assembly import STATS, finish, manifest_text
from augkit.preprocess.distributors import check_distributor, run_tasks
from augkit.preprocess.out_folder import check_paths, prepare_out, remove_temporary_files
from augkit.preprocess.plan import PreprocessConfig, Shard, make_shards, open_splits, output_names
from augkit.preprocess.shard import SHARDS_DIR, ShardTask, run_shard, verify_shard
from augkit.stats import ChannelStats


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
    if any_split.target_kind is not None:
        config = _with_targets(config, any_split.target_kind)
    check_paths(any_split.root, out)
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
        previous = prepare_out(out, header, config, overwrite, shards)
        if previous is not None:  # already complete with these settings, and it checks out
            return _report(out, previous, resumed=len(previous["shards"]), already_complete=True)
        atomic_write(out / MANIFEST, manifest_text({**header, "complete": False}))
        (out / SHARDS_DIR).mkdir(exist_ok=True)
        remove_temporary_files(out, header["classes"])

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
        manifest = finish(out, header, config, splits, [records[shard.id] for shard in shards])
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


def _with_targets(config: PreprocessConfig, kind: str) -> PreprocessConfig:
    """``config`` for a dataset with targets (``kind``: masks or boxes), or AugkitError where it
    cannot carry them.

    JPEGs are decoded in full: a reduced-scale decode rounds the image's size (a side of 333 decodes
    at 1/2 as 167), which its targets, annotated on the full image, would not follow exactly.
    """
    if config.format != "packed":
        raise AugkitError(f"the {kind} of this dataset are packed beside the images only: use --format packed")
    if config.copies:
        raise AugkitError(
            f"--copies of a dataset with {kind} is not supported yet (the copies' pipeline moves pixels, "
            "not targets); preprocess without --copies and augment at training time"
        )
    return replace(config, jpeg_draft=False)


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
