"""Where a run's shards run: this machine's processes (``local``), or a Ray or Dask cluster.

A distributor maps a function over the pending tasks and yields each result as it arrives, in
any order. It has no say in the output: the engine checks what remote workers wrote exactly as
a resume would, and merges the records in plan order, so every distributor gives the same
bytes and any of them can resume a run another began (docs/scale-out.md).

Ray and Dask are optional extras (``pip install 'augkit[ray]'``, ``'augkit[dask]'``), imported
only when chosen: ``import augkit`` never loads them.

A cluster at an address is checked before OUT is touched, within ``connect_timeout`` seconds
(``--connect-timeout``, default ``CONNECT_TIMEOUT_S``) in all: a TCP connection first (a refused
port fails at once), then the engine's own client connects and disconnects in a child process.
Neither engine bounds that first exchange itself: Dask waits forever for a silent server's
handshake and reads a garbage-answering one's first bytes as a frame length (4.45 EiB), and
Ray retries inside C++ calls that hold off even SIGTERM. A child process can be abandoned at
the deadline, whatever it is blocked in; it dies with this process, so a SIGTERM here ends both.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from augkit.errors import AugkitError, RunError
from augkit.processes import die_with_parent, sigint_ignored, worker_pool
from augkit.preprocess.shard import SHARDS_DIR, ShardTask

# The environment variable each engine's own tools read for the cluster's address. The command
# line reads it (nothing below the command line reads the environment).
ADDRESS_ENV = {"ray": "RAY_ADDRESS", "dask": "DASK_SCHEDULER_ADDRESS"}
# The module that must import, and the engine's name, per distributor.
_PACKAGES = {"ray": ("ray", "Ray"), "dask": ("distributed", "Dask")}
CONNECT_TIMEOUT_S = 30.0  # to connect and exchange a first message: a cluster far away answers in seconds
MAX_CONNECT_TIMEOUT_S = 86400.0
# Ray's driver, quiet: errors come back as exceptions, not logs or a web page.
_RAY_OPTIONS = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}

Run = Callable[[ShardTask], dict[str, Any]]


def check_distributor(name: str, address: str | None = None, connect_timeout: float | None = None) -> None:
    """Refuse an unknown distributor, an address for ``local``, an engine that is not installed,
    a timeout without an address or out of (0, ``MAX_CONNECT_TIMEOUT_S``], or an address where no
    cluster of the engine answers within the timeout (None: ``CONNECT_TIMEOUT_S``).

    Called before OUT is touched, so that a mistake costs nothing.

    Raises:
        AugkitError: one line saying which, and what to change.
    """
    _check_choice(name, address, connect_timeout)
    if address is not None:
        _check_answers(name, address, CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout)


def run_tasks(
    function: Run,
    tasks: list[ShardTask],
    *,
    distributor: str = "local",
    workers: int = 1,
    address: str | None = None,
    connect_timeout: float | None = None,
) -> Iterator[dict[str, Any]]:
    """``function(task)`` for every task, yielded as each one finishes.

    Args:
        distributor: "local" (``workers`` processes here), "ray" or "dask".
        workers: processes of the pool, or of the cluster started on this machine when a Ray or
            Dask run has no ``address``; a cluster at an address runs as many as it has.
        address: the Ray or Dask scheduler to connect to; None starts a local cluster on loopback.
        connect_timeout: seconds the engine's client may take to connect to ``address`` (None:
            ``CONNECT_TIMEOUT_S``); ``check_distributor`` has made sure that it can.

    Raises:
        AugkitError: a bad distributor or address; a worker that does not see OUT or the source.
        RunError: the cluster lost a task (a worker died, the scheduler went away).
    """
    _check_choice(distributor, address, connect_timeout)
    timeout = CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
    if tasks:
        yield from _DISTRIBUTORS[distributor](function, tasks, workers, address, timeout)


def _check_choice(name: str, address: str | None, connect_timeout: float | None) -> None:
    """``check_distributor`` without the network."""
    if name not in _DISTRIBUTORS:
        raise AugkitError(f"unknown distributor {name!r}; choose one of: {', '.join(_DISTRIBUTORS)}")
    if name == "local" and address is not None:
        raise AugkitError("--address is for --distributor ray or dask; local runs on this machine's processes")
    if connect_timeout is not None:
        number = isinstance(connect_timeout, (int, float)) and not isinstance(connect_timeout, bool)
        if not (number and math.isfinite(connect_timeout) and 0 < connect_timeout <= MAX_CONNECT_TIMEOUT_S):
            raise AugkitError(
                f"--connect-timeout is {connect_timeout!r}; give the seconds to wait for the cluster, "
                f"above 0 and at most {MAX_CONNECT_TIMEOUT_S:g}"
            )
        if address is None:
            raise AugkitError("--connect-timeout is for a cluster at an --address (ray or dask); drop it, or give the address")
    if name == "local":
        return
    module, engine = _PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        raise AugkitError(f"--distributor {name} needs {engine}: pip install 'augkit[{name}]'")


# ----------------------------------------------------------------------------- local


def _run_local(
    function: Run, tasks: list[ShardTask], workers: int, address: str | None, connect_timeout: float
) -> Iterator[dict[str, Any]]:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            yield function(task)
        return
    # Ctrl-C or a failure terminates the pool: the other shards stop now; what is done stays done.
    # The shard code (numpy, OpenCV, albumentations: ~0.15 s) is imported once, in the forkserver.
    preload = ["augkit.preprocess.shard", "augkit.pipeline.core"]
    with worker_pool(min(workers, len(tasks)), initializer=_single_threaded_opencv, preload=preload) as pool:
        yield from pool.imap_unordered(function, tasks)


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


def _check_answers(name: str, address: str, timeout: float) -> None:
    """Refuse, within about ``timeout`` seconds, an ``address`` where no cluster of engine ``name`` answers."""
    deadline = time.monotonic() + timeout
    _check_reachable(address, name, timeout)
    command = [sys.executable, "-c", _PROBE, name, address, repr(timeout), str(os.getpid())]
    try:
        # stdin closed: the engine's client must not wait on this terminal.
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=max(deadline - time.monotonic(), 0.1))  # fmt: skip
    except subprocess.TimeoutExpired:  # run() has killed the probe
        raise AugkitError(
            f"the {_PACKAGES[name][1]} cluster at {address} did not answer within {timeout:g} s; start it, check "
            f"--address (default: ${ADDRESS_ENV[name]}), or wait longer with --connect-timeout SECONDS"
        ) from None
    if done.returncode != 0:  # the probe printed the one line, unless it died before it could
        lines = done.stdout.strip().splitlines() or [
            f"cannot connect to the {_PACKAGES[name][1]} cluster at {address}: its client ended with exit code "
            f"{done.returncode}; check --address (default: ${ADDRESS_ENV[name]})"
        ]
        raise AugkitError(lines[-1])


# In a child process: connect to the cluster and disconnect; print the error and exit 1 if it fails.
_PROBE = "import sys; from augkit.preprocess.distributors import _probe; _probe(*sys.argv[1:])"


def _probe(name: str, address: str, timeout: str, parent: str) -> None:
    # This child ends with its parent (a SIGTERM there must not leave it waiting), and in any
    # case soon after the parent's deadline, whatever call it is blocked in.
    if hasattr(signal, "alarm"):
        signal.alarm(math.ceil(float(timeout)) + 5)  # SIGALRM's default action ends the process
    die_with_parent(int(parent))
    try:
        client = _connect(name, address, float(timeout))
    except AugkitError as error:
        print(error, flush=True)
        sys.exit(1)
    if client is None:
        import ray

        ray.shutdown()
    else:
        client.close()


def _connect(name: str, address: str, timeout: float) -> Any:
    """The engine's client connected to ``address``: a Dask ``Client``, or None once Ray is (its
    connection is the process's).

    Raises:
        AugkitError: any failure to connect (refused, unauthenticated, a malformed address, an
            answer the client cannot read), in one line.
    """
    try:
        if name == "dask":
            from distributed import Client

            return Client(address, timeout=timeout)
        import ray

        ray.init(address=address, **_RAY_OPTIONS)
        return None
    except Exception as error:  # noqa: BLE001  (whatever the client raises, the address is the cause)
        while error.__cause__ is not None:  # Ray wraps the reason (a missing token, ...) twice
            error = error.__cause__
        reason = (str(error).strip().splitlines() or [""])[0] or type(error).__name__
        if not isinstance(error, (ConnectionError, OSError, ValueError)):
            reason = f"{type(error).__name__}: {reason}"  # MemoryError: Unable to allocate 4.45 EiB ...
        raise AugkitError(
            f"cannot connect to the {_PACKAGES[name][1]} cluster at {address}: {reason}; check --address "
            f"(default: ${ADDRESS_ENV[name]})"
        ) from None


def _check_reachable(address: str, name: str, timeout: float) -> None:
    """Fail at once, with one line, if nothing accepts a connection at ``address`` (host:port, any scheme).

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
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        reason = "timed out" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise AugkitError(
            f"cannot reach the {_PACKAGES[name][1]} cluster at {address} ({reason}); start it, or check --address "
            f"(default: ${ADDRESS_ENV[name]})"
        ) from None


def _run_dask(
    function: Run, tasks: list[ShardTask], workers: int, address: str | None, connect_timeout: float
) -> Iterator[dict[str, Any]]:
    from distributed import CancelledError, Client, KilledWorker, LocalCluster, as_completed

    cluster = None
    if address is None:
        # Its processes keep ignoring SIGINT (an ignored signal stays so across exec): the driver
        # alone answers Ctrl-C, by cancelling the tasks and closing the cluster.
        with sigint_ignored():
            # All on loopback, the scheduler's web page too (it opens even without the dashboard
            # package) and on any free port; task errors come back here, so the logs stay quiet.
            cluster = LocalCluster(
                n_workers=min(workers, len(tasks)), threads_per_worker=1, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL,
            )  # fmt: skip
        client = Client(cluster)
    else:
        client = _connect("dask", address, connect_timeout)
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


def _run_ray(
    function: Run, tasks: list[ShardTask], workers: int, address: str | None, connect_timeout: float
) -> Iterator[dict[str, Any]]:
    if address is None:
        # As for Dask: the cluster's processes ignore SIGINT from birth, so a Ctrl-C reaches the
        # driver alone, which cancels the tasks and stops the cluster (Ray's own processes,
        # interrupted together with it, could abort in its C++ core with a stack trace).
        with _loopback(), sigint_ignored():
            import ray

            ray.init(address="local", num_cpus=min(workers, len(tasks)), **_RAY_OPTIONS)
    else:
        import ray

        _connect("ray", address, connect_timeout)
    pending: list[Any]
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
    except BaseException:
        # After Ctrl-C or a failure, the rest stops with the job: shutting the driver down ends
        # the tasks it owns (and stops a cluster started here). No ray.cancel first: cancelling
        # a task while its reply is on the way aborts the driver in Ray's core ("Tried to
        # complete task that was not pending", seen with Ray 2.60 here), a stack trace on stderr.
        with _stderr_silenced():
            ray.shutdown()
        raise
    ray.shutdown()


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


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Send what this process writes to its stderr file descriptor nowhere while inside.

    For Ray's C++ core, which logs straight to descriptor 2 (not through Python) the errors of
    tasks that a stopping run abandons ("Failed to push error to driver"): the run's own one
    line says what happened. Setting RAY_BACKEND_LOG_LEVEL instead makes Ray print a line
    saying so.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


_DISTRIBUTORS: dict[str, Callable[..., Iterator[dict[str, Any]]]] = {
    "local": _run_local,
    "ray": _run_ray,
    "dask": _run_dask,
}
DISTRIBUTORS = tuple(_DISTRIBUTORS)
