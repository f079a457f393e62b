"""Ablations: a grid over ``TrainConfig`` fields, several seeds each, run in parallel processes.

A ``Study`` (``augkit.train.grid``) is a base config, a grid (field -> values) and a number of
seeds; its runs are the cartesian product of the grid, each seed in its own folder::

    OUT/plan.json                          the studies: a rerun with another plan is refused
    OUT/runs/[STUDY/]KEY=V,KEY=V/seedK/    an ordinary RUN_DIR (``augkit train`` writes the same)
                                 ablation.json   the run's outcome: ok (+ eval-mode train accuracy) or failed
    OUT/results.csv, report.md, report.png (``augkit.train.report``)

Running the same ablation again continues it: a run with ``ablation.json`` is done and skipped;
one whose ``summary.json`` covers every epoch only gets its ``ablation.json``; one with a
``last.pt`` resumes from it (exactly, as ``augkit train --resume``); any other is started again.
A run whose loss turns NaN is an outcome, recorded as failed (and not retried), not the end of
the ablation; any other error is reported once every run has ended, and retried by a rerun.
Ctrl-C stops the workers and ends in one line (``RunError``): what is kept, and that the same
command continues.
Every config is built (data, model, pipeline, device) before the first run starts, so a
mistake in the grid is one error, with nothing trained.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import json
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from augkit.documents import DocumentError, read_document
from augkit.errors import AugkitError, RunError
from augkit.files import atomic_write
from augkit.processes import exit_with_parent, sigint_deferred, worker_context
from augkit.train.config import MAX_THREADS, TrainConfig, check_range, check_utf8
from augkit.train.grid import Run, Study, plan_runs

PLAN, OUTCOME, LOCK = "plan.json", "ablation.json", ".ablate.lock"


# ----------------------------------------------------------------------------- running


def run_ablation(
    studies: Sequence[Study], out: str | Path, *, workers: int = 1, threads: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run (or continue) every run of ``studies`` into ``out`` and write the results and the report.

    Returns the report's summary (see ``augkit.train.report.write_report``) with ``ran``, the
    runs trained now, and ``errors``; raises ``RunError`` after the report when some run stopped
    with an error other than a failed run (a rerun retries those), and at once on Ctrl-C. The
    runs go to ``workers`` processes started by forkserver or spawn: a script that calls this
    must do so under ``if __name__ == "__main__":``. Each run takes torch's CPU threads
    ``threads``, or chooses them (``augkit.train.threads``) within its worker's share of the
    cores free when the ablation starts; its log line and summary.json say how many.
    """
    from augkit.train import report
    from augkit.train.threads import free_cores

    free = free_cores()  # before this process's own torch threads first work (checking the configs)
    check_range("--threads", threads, 1, MAX_THREADS)
    out = Path(out)
    check_utf8(out, "OUT", fix="choose a UTF-8 name for -o")
    existed = out.exists()
    fresh = not existed or (out.is_dir() and not any(p.name != LOCK for p in out.iterdir()))
    if not fresh and not (out / PLAN).is_file():
        raise AugkitError(f"OUT {out} is not empty and holds no ablation ({PLAN}); choose another -o")
    out.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        plan = _plan(studies)
        try:
            _check_plan(out, plan)
            for study in studies:
                if study.prepare is not None:
                    study.prepare()
            runs = plan_runs(studies, out)
            todo = [(run, state) for run in runs if (state := run_state(run)) != "done"]
            check_configs([run.config for run, _ in todo], log)
        except (AugkitError, KeyboardInterrupt) as error:
            if fresh:  # a mistake in the input (or a Ctrl-C) leaves nothing behind: the same -o starts again
                shutil.rmtree(out, ignore_errors=True)
                if existed:
                    out.mkdir()
            if isinstance(error, KeyboardInterrupt):
                raise RunError("interrupted while checking the configurations, before any run of this command "
                               "started; run the same command again to continue") from None  # fmt: skip
            raise
        try:
            atomic_write(out / PLAN, json.dumps(plan, indent=2) + "\n")
            errors = _execute(todo, len(runs), workers, threads, free, log)
            summary = report.write_report(studies, runs, out, errors={run.run_dir: reason for run, reason in errors})
        except KeyboardInterrupt:
            done = sum(run_state(run) == "done" for run in runs)
            raise RunError(f"interrupted with {done} of {len(runs)} runs finished, kept in {out / 'runs'}; run the "
                           f"same command again to continue (the other runs resume from their last.pt, or start "
                           f"again)") from None  # fmt: skip
    summary.update(ran=len(todo), errors=len(errors))
    if errors:
        run, reason = errors[0]
        raise RunError(f"{len(errors)} of {len(runs)} runs stopped with an error (first, {run.run_dir}: {reason}); "
                       f"the report has the others; run the same command again to retry them")  # fmt: skip
    return summary


def read_outcome(run_dir: Path) -> dict[str, Any] | None:
    """A run's ``ablation.json``, or None when it is missing or damaged (then the run is redone).

    ok: ``{"status": "ok", "final_train_acc", "best_val_acc", "best_epoch", "seconds", ...}``
    with numbers; failed: ``{"status": "failed", "reason": str}``.
    """
    try:
        outcome = read_document(run_dir / OUTCOME, what="run outcome", format="json")
    except (OSError, AugkitError):
        return None
    if not isinstance(outcome, dict):
        return None
    if outcome.get("status") == "failed":
        return outcome if isinstance(outcome.get("reason"), str) else None
    numbers = ("final_train_acc", "best_val_acc", "best_epoch", "seconds")
    if outcome.get("status") == "ok" and all(_is_number(outcome.get(key)) for key in numbers):
        return outcome
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_state(run: Run) -> str:
    """done (skip) | finished (trained, outcome missing) | resume (from last.pt) | new."""
    if read_outcome(run.run_dir) is not None:
        return "done"
    try:
        summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
        if summary["epochs"] == run.config.epochs:
            return "finished"
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return "resume" if (run.run_dir / "last.pt").is_file() else "new"


def check_configs(configs: Sequence[TrainConfig], log: Callable[[str], None]) -> None:
    """Build every distinct config once, as a run would (data, model, pipeline, device): user errors now."""
    from augkit.train.loop import build

    seen: set[str] = set()
    for config in configs:
        key = json.dumps({**config.to_dict(), "seed": 0}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        with tempfile.TemporaryDirectory() as scratch:
            parts = build(config, Path(scratch))
            parts.train_batches.close()
    if seen:
        log(f"checked {len(seen)} configuration(s)")


def _plan(studies: Sequence[Study]) -> dict[str, Any]:
    """What PLAN records: an ablation is continued only by the command that gives the same."""
    return {"augkit_ablate": 1, "studies": [s.to_plan() for s in studies]}


def default_out(base: str | Path, make_studies: Callable[[Path], Sequence[Study]]) -> tuple[Path, list[Study]]:
    """Where an ablation without -o goes, and its studies: ``base``, or ``base-2``, ``base-3``, ...

    The first of them that is absent, empty, or holds this very plan (so the same command
    continues its own ablation): two ablations over the same keys never meet in one folder.
    ``make_studies(out)`` builds the studies for a candidate (the lecture's keep data in it).
    """
    base = Path(base)
    for n in itertools.count(1):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        studies = list(make_studies(candidate))
        if not candidate.exists() or (candidate.is_dir() and not any(p.name != LOCK for p in candidate.iterdir())):
            return candidate, studies
        try:
            if read_document(candidate / PLAN, what="ablation plan", format="json") == _plan(studies):
                return candidate, studies
        except (OSError, DocumentError):
            pass
    raise AssertionError("unreachable")


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / PLAN
    try:
        before = read_document(path, what="ablation plan", format="json")
    except FileNotFoundError:
        return
    except DocumentError as error:
        raise AugkitError(f"{error}; remove {out} or choose another -o") from None
    if before == plan:
        return
    studies = before.get("studies") if isinstance(before, dict) else None
    if not isinstance(studies, list) or not all(isinstance(s, dict) and isinstance(s.get("base", {}), dict) for s in studies):
        raise AugkitError(f"{path} is not an ablation plan (damaged?); remove {out} or choose another -o")
    raise AugkitError(f"OUT {out} holds another ablation ({_difference(before, plan)}); run the same command "
                      f"as before to continue it, or choose another -o")  # fmt: skip


def _difference(before: dict[str, Any], now: dict[str, Any]) -> str:
    old, new = before.get("studies", []), now["studies"]
    if [s.get("name") for s in old] != [s["name"] for s in new]:
        return "other studies"
    for a, b in zip(old, new):
        for part in ("grid", "seeds"):
            if a.get(part) != b[part]:
                return f"{part} {json.dumps(a.get(part))} there, {json.dumps(b[part])} here"
        for key in b["base"]:
            if a.get("base", {}).get(key) != b["base"][key]:
                return f"{key} {json.dumps(a.get('base', {}).get(key))} there, {json.dumps(b['base'][key])} here"
    return "another plan"


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One ablation at a time in ``out``: two would train the same run folders."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; nothing guards against a second process
        yield
        return
    with open(out / LOCK, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise AugkitError(f"OUT {out} is in use by another `augkit ablate`; wait for it, or choose another -o") from None
        yield


def _execute(
    todo: list[tuple[Run, str]], total: int, workers: int, threads: int | None, free: int, log: Callable[[str], None]
) -> list[tuple[Run, str]]:
    """Run ``todo`` on ``workers`` processes, one line per finished run; returns the errors.

    ``free``: the cores free at the start, shared among the workers; ``threads``: each run's
    torch threads (None: each run chooses within its worker's share).
    """
    done_before = total - len(todo)
    if not todo:
        log(f"all {total} runs done before")
        return []
    workers = min(workers, len(todo))
    share = max(1, free // workers)
    resumed = sum(state == "resume" for _, state in todo)
    if threads is not None:
        each = f"{threads} thread(s) (--threads)"
    else:
        each = f"1 thread ({free} core(s) free)" if share == 1 else f"1 to {share} threads by the work ({free} cores free)"
    log(f"{total} runs: {done_before} done before, {resumed} to resume, {len(todo) - resumed} to run; "
        f"{workers} worker(s) x {each}")  # fmt: skip
    context = worker_context(preload=["augkit.train.loop"])  # torch imported once, not per worker
    # The workers' lifeline: nothing is ever sent; when this process lets go of its end, the
    # workers read end-of-file and leave at once (they leave when it dies, too: exit_with_parent).
    lifeline, held = context.Pipe(duplex=False)
    errors: list[tuple[Run, str]] = []
    count = done_before
    futures: dict[concurrent.futures.Future, Run] = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                initializer=_start_worker, initargs=(share, lifeline)) as pool:  # fmt: skip
        try:
            # Submitting starts the workers: a Ctrl-C meanwhile is raised once each start is
            # complete, so that every worker started is stopped below.
            for run, state in todo:
                with sigint_deferred():
                    futures[pool.submit(run_one, run.config.to_dict(), str(run.run_dir), state, threads)] = run
            for future in concurrent.futures.as_completed(futures):
                run, count = futures[future], count + 1
                where = f"[{count}/{total}] {run.study.name + ': ' if run.study.name else ''}{run.label}, seed {run.seed}"
                try:
                    outcome = future.result()
                except concurrent.futures.process.BrokenProcessPool:
                    errors.append((run, "its worker process died (killed, or out of memory?)"))
                except Exception as error:  # noqa: BLE001  (a bug or a changed input: the other runs go on)
                    errors.append((run, f"{type(error).__name__}: {error}"))
                else:
                    log(f"{where}: {_describe(outcome)}")
                    continue
                log(f"{where}: error: {errors[-1][1]}")
        except BaseException:  # Ctrl-C: stop the workers now; what finished stays finished
            # Letting go of the lifeline ends the workers, and the pool marks every future left
            # broken. No future is cancelled here: on Python 3.11 the pool's manager thread then
            # fails setting that exception on a cancelled future (InvalidStateError, printed
            # with a traceback).
            held.close()
            raise
    held.close()
    return errors


def _describe(outcome: dict[str, Any]) -> str:
    if outcome["status"] != "ok":
        return f"failed: {outcome['reason']}"
    return (f"best val acc {outcome['best_val_acc']:.4f} (epoch {outcome['best_epoch']}), "
            f"{outcome['seconds']:.1f} s")  # fmt: skip


# ----------------------------------------------------------------------------- in a worker


def _start_worker(cores: int, lifeline: Any) -> None:
    import signal

    from tqdm import tqdm

    from augkit.train.threads import limit_cores

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches every process of the terminal: the parent handles it
    limit_cores(cores)  # the workers share the free cores; each run chooses its threads within its share
    # tqdm's default lock is a named semaphore, which a worker leaving by os._exit (exit_with_parent)
    # never unlinks: the resource tracker would then print a warning beside the parent's one line.
    tqdm.set_lock(threading.RLock())
    # A worker that outlived its parent would go on writing a run folder that the next
    # `augkit ablate` continues; it leaves too when the parent lets go of the lifeline (Ctrl-C).
    exit_with_parent(lifeline)


def run_one(values: dict[str, Any], run_dir: str, state: str, threads: int | None = None) -> dict[str, Any]:
    """Train one run (``state`` new, or resume from last.pt), then write its ``ablation.json``; returns it.

    ``threads``: torch's CPU threads for this run (``--threads``), in place of the config's.
    """
    from augkit.train.divergence import NonFiniteLoss
    from augkit.train.loop import train

    config, folder = TrainConfig.from_dict(values), Path(run_dir)
    if threads is not None:  # where and how fast it runs, not what it computes: kept out of the plan
        config = config.replace({"threads": threads})
    started = time.perf_counter()
    if state in ("new", "resume"):
        if state == "new" and folder.exists():
            shutil.rmtree(folder)  # killed before its first epoch ended: nothing to continue
        try:
            train(config, folder, resume=state == "resume", quiet=True, log=lambda message: None)
        except NonFiniteLoss as error:  # an outcome (lr too high, init too large), not the ablation's end
            outcome = {"status": "failed", "reason": error.outcome}  # in config fields: lr=100, not --lr 100
            atomic_write(folder / OUTCOME, json.dumps(outcome, indent=2) + "\n")
            return outcome
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    outcome = {
        "status": "ok",
        "final_train_acc": train_accuracy(config, folder),
        "best_val_acc": summary["best_val_acc"],
        "best_epoch": summary["best_epoch"],
        "seconds": summary["seconds"],
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    atomic_write(folder / OUTCOME, json.dumps(outcome, indent=2) + "\n")
    return outcome


def train_accuracy(config: TrainConfig, run_dir: Path) -> float:
    """Accuracy of the run's final weights on its training images in eval mode (no dropout, no augmentation).

    The loop's train_acc is measured in train mode while the weights change: dropout's noise and
    the augmented images lower it, which would credit them with a train/val gap they did not close.
    """
    import torch

    from augkit.train import data as datalib
    from augkit.train.checkpoint import LAST, load_checkpoint, unwrapped
    from augkit.train.loop import build, evaluate_batches

    parts = build(config.replace({"augment": None, "workers": 0}), run_dir)
    parts.train_batches.close()
    unwrapped(parts.model).load_state_dict(load_checkpoint(run_dir / LAST, map_location=parts.device)["model"])
    splits = parts.splits
    loader = datalib.Loader(splits.train_images, splits.train_labels, batch_size=config.batch_size,
                                 train=False, seed=config.seed)  # fmt: skip
    batches = datalib.DeviceBatches(loader, parts.normalizer, parts.device, channels_last=parts.train_batches.channels_last)
    return evaluate_batches(parts.model, parts, batches, torch.nn.CrossEntropyLoss())[1]
