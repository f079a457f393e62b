"""Where a run's shards run: this machine's processes (``local``), or a Ray or Dask cluster.

A distributor maps a function over the pending tasks and yields each result as it arrives, in
any order. It has no say in the output: the engine checks what remote workers wrote exactly as
a resume would, and merges the records in plan order, so every distributor gives the same
bytes and any of them can resume a run another began (docs/scale-out.md).

Ray and Dask are optional extras (``pip install 'augkit[ray]'``, ``'augkit[dask]'``), imported
only when chosen: ``import augkit`` never loads them.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from augkit.errors import AugkitError, RunError
from augkit.preprocess.shard import SHARDS_DIR, ShardTask

# The environment variable each engine's own tools read for the cluster's address. The command
# line reads it (nothing below the command line reads the environment).
ADDRESS_ENV = {"ray": "RAY_ADDRESS", "dask": "DASK_SCHEDULER_ADDRESS"}
# The module that must import, and the engine's name, per distributor.
_PACKAGES = {"ray": ("ray", "Ray"), "dask": ("distributed", "Dask")}
CONNECT_TIMEOUT_S = 10.0  # to reach a scheduler that answers at all; a refused port fails at once

Run = Callable[[ShardTask], dict[str, Any]]


def check_distributor(name: str, address: str | None = None) -> None:
    """Refuse an unknown distributor, an address for ``local``, an engine that is not installed,
    or an address where nothing answers.

    Called before OUT is touched, so that a mistake costs nothing.
    """
    if name not in _DISTRIBUTORS:
        raise AugkitError(f"unknown distributor {name!r}; choose one of: {', '.join(_DISTRIBUTORS)}")
    if name == "local":
        if address is not None:
            raise AugkitError("--address is for --distributor ray or dask; local runs on this machine's processes")
        return
    module, engine = _PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise AugkitError(f"--distributor {name} needs {engine}: pip install 'augkit[{name}]'")
    if address is not None:
        _check_reachable(address, engine)


def run_tasks(
    function: Run, tasks: list[ShardTask], *, distributor: str = "local", workers: int = 1, address: str | None = None
) -> Iterator[dict[str, Any]]:
    """``function(task)`` for every task, yielded as each one finishes.

    Args:
        distributor: "local" (``workers`` processes here), "ray" or "dask".
        workers: processes of the pool, or of the cluster started on this machine when a Ray or
            Dask run has no ``address``; a cluster at an address runs as many as it has.
        address: the Ray or Dask scheduler to connect to; None starts a local cluster on loopback.

    Raises:
        AugkitError: a bad distributor or address; a worker that does not see OUT or the source.
        RunError: the cluster lost a task (a worker died, the scheduler went away).
    """
    check_distributor(distributor, address)
    if tasks:
        yield from _DISTRIBUTORS[distributor](function, tasks, workers, address)


# ----------------------------------------------------------------------------- local


def _run_local(function: Run, tasks: list[ShardTask], workers: int, address: str | None) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield function(task)
        return
    # Not "fork": a child forked while OpenCV's thread pool is busy can hang on its locks.
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if context.get_start_method() == "forkserver":
        # Import the shard code (numpy, OpenCV, albumentations: ~0.15 s) once in the server,
        # not once in every worker it forks.
        context.set_forkserver_preload(["augkit.preprocess.shard", "augkit.pipeline"])
    pool = context.Pool(min(workers, len(tasks)), initializer=_init_pool_worker)
    try:
        yield from pool.imap_unordered(function, tasks)
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C or a failure: stop the other shards now; what is done stays done
        raise
    finally:
        pool.join()


def _init_pool_worker() -> None:
    # Ctrl-C reaches every process of the terminal's group: only the parent handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _single_threaded_opencv()


def _single_threaded_opencv() -> None:
    import cv2

    cv2.setNumThreads(1)  # one shard per core; OpenCV's own threads would contend


# ----------------------------------------------------------------------------- clusters


def _on_worker(function: Run, task: ShardTask) -> dict[str, Any]:
    """One shard on a cluster's worker, once it has checked that it sees OUT and the source."""
    # Without a shared filesystem a worker would write OUT on its own disk, or skip every image
    # as missing: say so, rather than let the run end with nothing or with holes.
    for what, path in (("OUT", Path(task.out) / SHARDS_DIR), ("the source", task.dataset.root)):
        if path is not None and not Path(path).exists():
            raise AugkitError(
                f"{what} ({path}) is not visible on worker {socket.gethostname()}: every worker must see OUT and "
                "the source at the same paths as this machine (a shared filesystem: docs/scale-out.md)"
            )
    _single_threaded_opencv()
    return function(task)


def _check_reachable(address: str, engine: str) -> None:
    """Fail in seconds, with one line, if nothing answers at ``address`` (host:port, any scheme).

    Ray retries an unreachable address for minutes, and Dask until its timeout, before saying why.
    """
    try:
        parts = urlsplit(address if "://" in address else f"//{address}")
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, or out of range: the engine names the problem
        return
    if host is None or port is None:  # "auto", a scheduler file, ...: the engine's own business
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise AugkitError(
            f"cannot reach the {engine} cluster at {address} ({reason}); start it, or check --address "
            f"(default: ${ADDRESS_ENV[engine.lower()]})"
        ) from None


def _run_dask(function: Run, tasks: list[ShardTask], workers: int, address: str | None) -> Iterator[dict[str, Any]]:
    from distributed import CancelledError, Client, KilledWorker, LocalCluster, as_completed

    cluster = None
    if address is None:
        with _sigint_ignored_by_children():
            # All on loopback, the scheduler's web page too (it opens even without the dashboard
            # package) and on any free port; task errors come back here, so the logs stay quiet.
            cluster = LocalCluster(
                n_workers=min(workers, len(tasks)), threads_per_worker=1, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
            )  # fmt: skip
        client = Client(cluster)
    else:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, ValueError) as error:
            raise AugkitError(f"cannot connect to the Dask scheduler at {address}: {error}") from None
    futures = []
    try:
        # pure=False: every task is new work, not something for Dask to look up by its hash.
        futures = client.map(_on_worker, [function] * len(tasks), tasks, pure=False)
        for future in as_completed(futures):
            yield future.result()  # a task's own exception is raised here, as it would be locally
    except (KilledWorker, CancelledError) as error:
        raise RunError(f"the Dask cluster lost a shard ({error}); run the same command again to resume") from None
    finally:
        client.cancel(futures)  # after Ctrl-C or a failure: stop the rest; what is done stays done
        client.close()
        if cluster is not None:
            cluster.close()


@contextmanager
def _sigint_ignored_by_children() -> Iterator[None]:
    """Processes started inside keep ignoring SIGINT (an ignored signal stays so across exec).

    Ctrl-C reaches every process of the terminal's group: the driver alone handles it, by
    cancelling the tasks and closing the cluster; workers that saw it would print tracebacks.
    """
    if threading.current_thread() is not threading.main_thread():  # only there can it be set
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_ray(function: Run, tasks: list[ShardTask], workers: int, address: str | None) -> Iterator[dict[str, Any]]:
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    if address is None:
        with _loopback():
            import ray

            ray.init(address="local", num_cpus=min(workers, len(tasks)), **quiet)
    else:
        import ray

        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError) as error:  # unauthenticated, a malformed address, ...
            while error.__cause__ is not None:  # Ray wraps the reason (a missing token, ...) twice
                error = error.__cause__
            reason = str(error).strip().splitlines()[0]
            raise AugkitError(f"cannot connect to the Ray cluster at {address}: {reason}") from None
    pending: list[Any] = []
    try:
        shard = ray.remote(num_cpus=1)(_on_worker)
        pending = [shard.remote(function, task) for task in tasks]
        while pending:
            [done], pending = ray.wait(pending, num_returns=1)
            try:
                record = ray.get(done)
            except ray.exceptions.RayTaskError as error:
                raise error.cause from None  # the task's own exception, as it would be raised locally
            except ray.exceptions.RayError as error:  # a worker or node died, ...
                first_line = str(error).strip().splitlines()[0]
                raise RunError(f"the Ray cluster lost a shard ({first_line}); run the same command again to resume") from None
            yield record
    finally:
        for ref in pending:  # after Ctrl-C or a failure: stop the rest; what is done stays done
            ray.cancel(ref)
        ray.shutdown()  # disconnects from a cluster at an address; stops one started here


@contextmanager
def _loopback() -> Iterator[None]:
    """Keep a Ray cluster started for this run on loopback while it starts.

    Ray binds a new cluster to the machine's network address so that other machines can join;
    one that lives for a single run has no use for that. Ray reads this setting when it is
    imported, and its processes inherit it when they start, so it applies where Ray is first
    imported here (always, from the command line).
    """
    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    if name in os.environ:  # the user's choice
        yield
        return
    os.environ[name] = "0"
    try:
        yield
    finally:
        del os.environ[name]


_DISTRIBUTORS: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
    "local": _run_local,
    "ray": _run_ray,
    "dask": _run_dask,
}
DISTRIBUTORS = tuple(_DISTRIBUTORS)
