"""Worker processes: the one place augkit decides how they start, and who answers Ctrl-C.

Every pool augkit runs (``augkit stats``, ``preprocess``, ``ablate``, the training DataLoader)
takes its multiprocessing context from ``worker_context``:

- **forkserver**, else spawn; never fork: a child forked while OpenCV's or torch's thread pool
  holds a lock can hang in its first parallel call.
- **Ctrl-C is the parent's alone.** A terminal's Ctrl-C reaches every process of its group. The
  forkserver is started here with SIGINT ignored: an ignored signal stays ignored across exec,
  so the server ignores it from its first instruction (its module preload included, which
  takes seconds with torch), and it restores in every worker it forks the handlers it
  inherited, so every worker ignores it from birth too. The parent's own handler is put back
  at once: it gets KeyboardInterrupt as before and reports the interruption in one line;
  no worker prints a traceback of its own.
- **A start is never cut in half.** Workers are started inside ``sigint_deferred``
  (``worker_pool`` does; ablate's executor does around each submit): a Ctrl-C that comes
  meanwhile is raised once the pool holds every worker it started, so the parent can stop them
  all (a worker the parent lost track of would go on starting, and print a traceback when the
  parent's exit removes the semaphores it is unpickling).

The forkserver is one per process and keeps the preload it started with: the first pool of a
command decides what its server imports.

**Workers die with the process that started them**, even by kill -9, which runs no cleanup.
Python's forkserver leaves when its "alive" pipe reaches end-of-file, but every worker holds a
copy of that pipe's write end (so that it could ask the server for workers of its own), and a
worker does not leave on its own: a DataLoader worker watches its parent's pid, which is the
server's; an ablate worker (``ProcessPoolExecutor``) waits on a task queue whose write end it
holds itself; a ``Pool`` worker noticed only when it next sent a result, with a BrokenPipeError
traceback. Server and worker waited for each other, and with the resource tracker (~490 MB with
torch) lived on under PID 1. Two mechanisms end them now:

- ``exit_with_parent``, everywhere: each worker (``worker_pool``'s, the DataLoader's, ablate's)
  leaves at once when the process that asked for it is gone. Its thread waits on the pipe that
  multiprocessing keeps from that process to the worker (``parent_process().sentinel``); the
  kernel closes it when that process dies. Then the server's alive pipe closes and it leaves,
  and the resource tracker, once the last holder of its pipe has gone, removes what they left
  (named semaphores) and leaves too.
- On Linux, the kernel's parent-death signal (``die_with_parent``): the forkserver, started from
  the main thread, is killed when this process dies, and each worker when the server dies, even
  one that a long C call keeps from running the watching thread.

Elsewhere (macOS, Windows) the first one alone applies; a worker stuck in a C call that holds
the GIL leaves when the call returns. Processes that Ray or Dask start for a local cluster end
with the driver by those engines' own means (Ray: the parent-death signal; Dask: a pipe).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import multiprocessing.pool
import multiprocessing.resource_tracker
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from typing import Any


def worker_context(preload: Sequence[str] = ()) -> BaseContext:
    """The context to start worker processes with: forkserver (started now), else spawn.

    Args:
        preload: modules the forkserver imports once, before it forks any worker (numpy,
            OpenCV, torch: seconds that each worker would otherwise spend on its own).
            Ignored when the forkserver of this process already runs.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():  # Windows
        # Spawned children get no disposition from their parent there; each pool's initializer
        # makes its workers ignore SIGINT once they run.
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # This module first: on Linux, the server it starts below makes itself die with this process
    # as it imports it, before the seconds of the rest.
    context.set_forkserver_preload([__name__, *preload])
    # The resource tracker, which the forkserver needs, ignores SIGINT on its own: started
    # first, it leaves the window below to the server's fork and exec alone. The server is
    # started now rather than at the first worker's start, which waits for the preload: the
    # parent ignores Ctrl-C for those few milliseconds only (a Ctrl-C then is lost, not held:
    # a signal blocked in one thread is taken by another).
    multiprocessing.resource_tracker.ensure_running()
    with sigint_ignored(), _forkserver_dies_with_this_process():
        multiprocessing.forkserver.ensure_running()
    return context


@contextmanager
def worker_pool(
    workers: int, *, initializer: Callable[..., None] | None = None, initargs: tuple = (), preload: Sequence[str] = ()
) -> Iterator[multiprocessing.pool.Pool]:
    """A ``multiprocessing`` pool of ``workers`` processes from ``worker_context(preload)``,
    each ignoring SIGINT and then running ``initializer(*initargs)``.

    Started whole (a Ctrl-C meanwhile is raised once every worker can be stopped), closed and
    joined on the way out; on an error, a Ctrl-C or a generator closed early, terminated at
    once (work in flight is lost; what is done stays done).
    """
    context = worker_context(preload)
    pool = None
    try:
        with sigint_deferred():
            pool = context.Pool(workers, initializer=_start_worker, initargs=(initializer, *initargs))
        yield pool
        pool.close()
    except BaseException:
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()


def _start_worker(initializer: Callable[..., None] | None, *initargs: Any) -> None:
    # A forkserver's workers ignore SIGINT from birth already; spawned ones (Windows) from here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent()
    if initializer is not None:
        initializer(*initargs)


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold a Ctrl-C that comes while inside, and raise it (KeyboardInterrupt) on the way out.

    For starting worker processes: the first start through a forkserver waits for its preload
    (seconds with torch), so a Ctrl-C is held that long at most, never lost.
    """
    previous = _replaceable_handler()
    if previous is None:
        yield
        return
    held: list[Any] = []
    signal.signal(signal.SIGINT, lambda signum, frame: held.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if held:
            if callable(previous):
                previous(signal.SIGINT, held[0])  # Python's default handler raises KeyboardInterrupt
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


@contextmanager
def sigint_ignored() -> Iterator[None]:
    """Ignore SIGINT in this process while inside; processes started inside keep ignoring it."""
    previous = _replaceable_handler()
    if previous is None:
        yield
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _replaceable_handler() -> Any:
    """SIGINT's handler, if this thread may replace it and put it back, else None (then the
    context managers above do nothing): only the main thread can set a handler, and only one
    set from Python can be put back."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGINT)


# ----------------------------------------------------------------------------- dying with the parent

# How this process tells the forkserver it starts which process to die with: the server reads
# it when it imports this module (first in its preload), and removes it from its environment
# before it forks any worker. Internal: set for the few milliseconds of the server's start.
_FORKSERVER_PARENT = "_AUGKIT_FORKSERVER_PARENT"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent(lifeline: multiprocessing.connection.Connection | None = None) -> None:
    """In a worker process: leave at once (``os._exit(1)``) when the process that started it
    (multiprocessing's ``parent_process()``) has gone, or has closed its end of ``lifeline``.

    Call it first in a worker's initializer. A thread waits on the worker's end of the pipe that
    multiprocessing keeps from the parent (``parent_process().sentinel``): end-of-file when the
    parent dies, however it dies. ``lifeline``, the read end of a ``Pipe(duplex=False)`` whose
    other end the parent holds, lets the parent stop its workers early (ablate does on Ctrl-C).
    Does nothing in a process that multiprocessing did not start and that has no lifeline.
    """
    parent = multiprocessing.parent_process()
    waited = ([parent.sentinel] if parent is not None else []) + ([lifeline] if lifeline is not None else [])
    if not waited:
        return

    def watch() -> None:
        multiprocessing.connection.wait(waited)  # returns on end-of-file (or an error) of either
        os._exit(1)

    threading.Thread(target=watch, name="augkit-exit-with-parent", daemon=True).start()


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when the thread that started it ends (with
    its process, for a process started from a main thread). Everywhere: exit at once
    (``os._exit(1)``) if ``parent`` (a pid) is no longer this process's parent.
    """
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above: no signal will come
        os._exit(1)


@contextmanager
def _forkserver_dies_with_this_process() -> Iterator[None]:
    """Linux: a forkserver started inside (preloading this module) dies with this process, and
    its workers with it.

    Only from the main thread: the parent-death signal follows the thread that started the
    server, and another thread may end before the process does (a server started from one has
    the watching threads of ``exit_with_parent`` alone).
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        yield
        return
    os.environ[_FORKSERVER_PARENT] = str(os.getpid())
    try:
        yield
    finally:
        del os.environ[_FORKSERVER_PARENT]


def _arm_forkserver() -> None:
    """In a forkserver that ``worker_context`` started: die with that process, and have every
    worker forked from here die with this server."""
    parent = os.environ.pop(_FORKSERVER_PARENT, None)
    if parent is None:
        return
    die_with_parent(int(parent))
    server = os.getpid()
    os.register_at_fork(after_in_child=lambda: die_with_parent(server))


_arm_forkserver()
