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
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import multiprocessing.pool
import multiprocessing.resource_tracker
import signal
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
    context.set_forkserver_preload(list(preload))
    # The resource tracker, which the forkserver needs, ignores SIGINT on its own: started
    # first, it leaves the window below to the server's fork and exec alone. The server is
    # started now rather than at the first worker's start, which waits for the preload: the
    # parent ignores Ctrl-C for those few milliseconds only (a Ctrl-C then is lost, not held:
    # a signal blocked in one thread is taken by another).
    multiprocessing.resource_tracker.ensure_running()
    with sigint_ignored():
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
