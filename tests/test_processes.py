"""Every process augkit starts dies with the augkit process that started it, even by kill -9
(which runs no cleanup): its forkserver, the workers, the resource tracker, a local Dask cluster.

Each test records the tree of a real command (pids read from /proc) once its workers run,
kills the command's process alone, as ``kill -9 PID`` does, and waits for the rest to end.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")


def start(args: list[object], log: Path, cwd: Path | None = None) -> subprocess.Popen:
    with open(log, "w") as stderr:  # the child has its own copy
        return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd)


def kill_when_ready(process: subprocess.Popen, ready: Callable[[list], bool], processes, log: Path) -> list:
    """Wait until ``ready(tree)``, kill -9 the process alone; returns the rest of its tree as it was."""
    deadline = time.monotonic() + 240  # only a hang reaches it
    while not ready(tree := processes.tree(process.pid)):
        assert process.poll() is None, f"the command ended before its workers ran: {log.read_text()}"
        assert time.monotonic() < deadline, f"its workers never ran: {[p.command for p in tree]}"
        time.sleep(0.1)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    return tree[1:]


def assert_all_ended(started: list, processes, log: Path) -> None:
    """Every process of ``started`` ends, and none prints a traceback (a pool worker used to, at
    its next result, on the broken pipe)."""
    left = processes.wait_until_ended(started)
    assert not left, "still running after the command was killed:\n" + "\n".join(p.command[:200] for p in left)
    # CPython's resource-sharer thread (a DataLoader worker passing a file descriptor) may print
    # its own ConnectionResetError when the peer is killed mid-handshake; any other traceback fails.
    text = re.sub(r"Traceback[^\n]*\n(?:\s+.*\n)*?.*resource_sharer.*(?:\n\s+.*)*\n\w*Error: \[Errno 104\][^\n]*", "", log.read_text())
    assert "Traceback" not in text, log.read_text()


def has(count: int, *names: str) -> Callable[[list], bool]:
    """At least ``count`` processes of the tree whose command line holds one of ``names``."""
    return lambda tree: sum(any(name in p.command for name in names) for p in tree) >= count


FORKSERVER, TRACKER = "multiprocessing.forkserver", "multiprocessing.resource_tracker"


def test_kill_9_of_train_with_augmentation_workers_ends_its_forkserver_worker_and_tracker(tmp_path, processes):
    # The case of the report: forkserver, worker and resource tracker lived on under PID 1.
    args = ["-m", "augkit", "train", "--workers", "1", "--augment", "rotate(limit=10)", "--augment-on", "cpu",
            "--epochs", "50", "-q", "-o", tmp_path / "run"]  # fmt: skip
    process = start(args, tmp_path / "stderr")
    # The worker runs the forkserver's command line too: it is forked from it.
    started = kill_when_ready(process, has(2, FORKSERVER), processes, tmp_path / "stderr")
    assert has(1, TRACKER)(started)
    assert_all_ended(started, processes, tmp_path / "stderr")


def test_kill_9_of_ablate_ends_its_workers_and_the_dataloader_workers_they_started(tmp_path, processes):
    # ablate's worker trains with augmentation: a forkserver of its own, and its DataLoader's worker.
    args = ["-m", "augkit", "ablate", "--grid", "lr=0.01,0.1", "--set", "augment=rotate(limit=10)", "--set", "workers=1",
            "--set", "augment_on=cpu",
            "--epochs", "50", "--seeds", "1", "--workers", "1", "-q", "-o", tmp_path / "out"]  # fmt: skip
    process = start(args, tmp_path / "stderr")
    started = kill_when_ready(process, has(4, FORKSERVER), processes, tmp_path / "stderr")
    assert_all_ended(started, processes, tmp_path / "stderr")


needs_dask = pytest.mark.skipif(importlib.util.find_spec("distributed") is None, reason="dask is not installed")


@pytest.mark.parametrize("distributor", ["local", pytest.param("dask", marks=needs_dask)])
def test_kill_9_of_preprocess_ends_its_workers(write_image_folder, tmp_path, processes, distributor):
    # Ray is left out: its agents leave a minute after the driver (they first try to tell the
    # cluster's dead GCS that the raylet died), and the test would wait that long.
    src = write_image_folder(tmp_path / "src", {"cat": 30, "dog": 30}, sizes=((64, 64),))
    args = ["-m", "augkit", "preprocess", src, tmp_path / "out", "--size", "48", "--shard-size", "5", "--copies", "100",
            "-p", "rotate(limit=10, p=1)", "--workers", "2", "--distributor", distributor, "-q"]  # fmt: skip
    process = start(args, tmp_path / "stderr")
    # Locally the server and its 2 workers; Dask's 2 workers are spawned (its scheduler runs in the driver).
    count, name = {"local": (3, FORKSERVER), "dask": (2, "spawn_main")}[distributor]
    started = kill_when_ready(process, has(count, name), processes, tmp_path / "stderr")
    assert_all_ended(started, processes, tmp_path / "stderr")


# Pools of augkit's own: each worker writes a file named by its pid, then blocks for good.
SCRIPT = """
import os, sys, threading, time
from pathlib import Path
from augkit.processes import worker_pool

def block(folder):
    Path(folder, str(os.getpid())).touch()
    {block}

def main(folder):
    with worker_pool(2) as pool:
        pool.map(block, [folder] * 2, chunksize=1)

if __name__ == "__main__":
    {main}
"""
CASES = {
    # The kernel's parent-death signal: libc's sleep called without releasing the GIL keeps the
    # worker's watching thread from ever running.
    "a-c-call-holding-the-gil": ("import ctypes; ctypes.PyDLL(None).sleep(600)", "main(sys.argv[1])"),
    # The watching thread alone: a forkserver started from another thread gets no parent-death
    # signal (the thread may end before the process).
    "a-pool-started-from-a-thread": ("time.sleep(600)",
                                     "t = threading.Thread(target=main, args=(sys.argv[1],)); t.start(); t.join()"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_kill_9_ends_pool_workers_whatever_they_are_doing(tmp_path, processes, case):
    block, main = CASES[case]
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent(SCRIPT).format(block=block, main=main))
    folder = tmp_path / "workers"
    folder.mkdir()
    process = start([script, folder], tmp_path / "stderr", cwd=tmp_path)
    started = kill_when_ready(process, lambda tree: len(list(folder.iterdir())) == 2, processes, tmp_path / "stderr")
    assert {int(p.name) for p in folder.iterdir()} <= {p.pid for p in started}
    assert_all_ended(started, processes, tmp_path / "stderr")


def test_die_with_parent_exits_at_once_when_the_parent_named_has_gone():
    code = "import sys; from augkit.processes import die_with_parent; die_with_parent(int(sys.argv[1])); print('on')"
    kept = subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, timeout=60)
    assert (kept.returncode, kept.stdout) == (0, "on\n"), kept.stderr
    # A pid that is not its parent: as if the parent had died before the signal was set.
    gone = subprocess.run([sys.executable, "-c", code, str(os.getpid() + 1)], capture_output=True, text=True, timeout=60)
    assert (gone.returncode, gone.stdout) == (1, ""), gone.stderr


def test_the_session_check_fails_and_names_a_process_a_test_left_running(tmp_path):
    # A session of its own, with this conftest: its one test passes but leaves a process behind.
    (tmp_path / "conftest.py").write_text((Path(__file__).parent / "conftest.py").read_text())
    (tmp_path / "test_leaky.py").write_text(
        "import subprocess, sys\n"
        "def test_leaves_a_sleeper():\n"
        "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)  # the leftover'])\n"
    )
    env = {**os.environ, "AUGKIT_TEST_LEFTOVER_GRACE_S": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_leaky.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 1, result.stdout
    assert "1 passed, 1 error" in result.stdout, result.stdout
    assert "1 process(es) started by this test session still ran after it (killed now)" in result.stdout
    assert "time.sleep(600)  # the leftover" in result.stdout
