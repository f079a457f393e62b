"""Shared fixtures: test data is built at test time, in tmp_path, never committed; and a check
that the session leaves no process running (``no_process_left_behind``)."""

from __future__ import annotations

import json
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import pickle
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest


@pytest.fixture
def write_png() -> Callable[[Path, np.ndarray], Path]:
    """Write a uint8 RGB (H x W x 3) or gray (H x W) array as PNG with OpenCV (folders made)."""

    def write(path: Path, pixels: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = pixels[..., ::-1] if pixels.ndim == 3 else pixels
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(bgr))
        assert ok
        path.write_bytes(buf.tobytes())
        return path

    return write


@dataclass
class FakeCifar:
    """A CIFAR folder written in the real format, and what was written into it."""

    root: Path
    names: list[str]  # class names in the meta file's order
    train_rows: np.ndarray  # N x 3072 uint8, train batches in order
    train_labels: np.ndarray  # meta-order indices
    val_rows: np.ndarray
    val_labels: np.ndarray


def _dump(path: Path, obj: object) -> None:
    # Protocol 2 with bytes keys: the shape of the official (Python 2) files.
    path.write_bytes(pickle.dumps(obj, protocol=2))


@pytest.fixture
def make_cifar(tmp_path: Path) -> Callable[..., FakeCifar]:
    """Build a small CIFAR-10 ("cifar10") or CIFAR-100 ("cifar100") python folder.

    Random pixels and labels from a fixed seed; ``rows`` per batch file; ``names`` the class
    names in meta order; ``str_keys`` writes str keys instead of the official bytes keys.
    """

    def make(kind: str = "cifar10", rows: int = 4, names: list[str] | None = None,
             str_keys: bool = False) -> FakeCifar:  # fmt: skip
        rng = np.random.default_rng(0)
        names = names or [f"class{i}" for i in range(10)]
        key = (lambda k: k) if str_keys else (lambda k: k.encode())
        root = tmp_path / kind
        root.mkdir()
        if kind == "cifar10":
            train_files = [f"data_batch_{i}" for i in range(1, 6)]
            val_files, label_key = ["test_batch"], "labels"
            _dump(root / "batches.meta", {key("label_names"): [n.encode() for n in names]})
        else:
            train_files, val_files, label_key = ["train"], ["test"], "fine_labels"
            _dump(root / "meta", {key("fine_label_names"): [n.encode() for n in names],
                                  key("coarse_label_names"): [b"coarse0", b"coarse1"]})  # fmt: skip
        written = []
        for files in (train_files, val_files):
            data = rng.integers(0, 256, (rows * len(files), 3072), dtype=np.uint8)
            labels = rng.integers(0, len(names), rows * len(files))
            for i, name in enumerate(files):
                part = slice(i * rows, (i + 1) * rows)
                batch = {
                    key("batch_label"): name.encode(),
                    key(label_key): [int(v) for v in labels[part]],
                    key("data"): data[part],
                    key("filenames"): [f"{name}_{j}.png".encode() for j in range(rows)],
                }
                if kind == "cifar100":  # coarse labels differ from fine ones: using them is a bug
                    batch[key("coarse_labels")] = [1] * rows
                _dump(root / name, batch)
            written += [data, labels]
        return FakeCifar(root, names, *written)

    return make


@dataclass
class FakePacked:
    """An `augkit preprocess` packed output written in the real format, and what went into it."""

    root: Path
    manifest: dict
    images: dict[str, np.ndarray]  # split -> N x H x W x C uint8, as written
    labels: dict[str, np.ndarray]  # split -> N int64


@pytest.fixture
def make_packed(tmp_path: Path) -> Callable[..., FakePacked]:
    """Build a packed `augkit preprocess` output folder: manifest.json + .npy arrays per split.

    Random pixels and labels from a fixed seed; ``counts`` rows per split (a split left out is
    not written); ``shape`` of one image (H, W, C); ``classes`` [] writes unlabelled (-1)
    samples; ``complete`` False is an interrupted run.
    """

    def make(counts: dict[str, int] | None = None, shape: tuple[int, int, int] = (4, 6, 3),
             classes: tuple[str, ...] = ("cat", "dog", "owl"), complete: bool = True,
             name: str = "packed") -> FakePacked:  # fmt: skip
        rng = np.random.default_rng(1)
        counts = {"train": 5, "val": 3} if counts is None else counts
        root = tmp_path / name
        root.mkdir()
        images, labels, entries = {}, {}, {}
        for split, n in counts.items():
            images[split] = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
            labels[split] = rng.integers(0, len(classes), n) if classes else np.full(n, -1)
            labels[split] = labels[split].astype(np.int64)
            entries[split] = {"images": f"{split}_images.npy", "labels": f"{split}_labels.npy",
                              "count": n}  # fmt: skip
            np.save(root / entries[split]["images"], images[split])
            np.save(root / entries[split]["labels"], labels[split])
        manifest = {
            "format": "augkit.preprocess/1",
            "complete": complete,
            "output": {"format": "packed", "splits": entries},
            "classes": list(classes),
            # Keys the reader does not need, as preprocess writes them.
            "source": "somewhere/else",
            "stats": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
            "skipped": [{"path": "bad.png", "reason": "truncated"}],
        }
        (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
        return FakePacked(root, manifest, images, labels)

    return make


# ----------------------------------------------------------------------------- preprocess


@pytest.fixture(scope="session")
def photo_crops() -> Callable[..., list[np.ndarray]]:
    """Distinct real RGB images: crops of the sample photos, area-resized to ``sizes`` (cycled)."""
    import augkit

    folder = augkit.sample_data_dir() / "photos"
    photos = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in sorted(folder.glob("*.[jp][pn]g"))]

    def crops(count: int, sizes: tuple[tuple[int, int], ...] = ((32, 32),), seed: int = 0) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        images = []
        for i in range(count):
            photo, (h, w) = photos[i % len(photos)], sizes[i % len(sizes)]
            y, x = rng.integers(0, photo.shape[0] - 3 * h), rng.integers(0, photo.shape[1] - 3 * w)
            window = np.ascontiguousarray(photo[y : y + 3 * h, x : x + 3 * w])
            images.append(cv2.resize(window, (w, h), interpolation=cv2.INTER_AREA))
        return images

    return crops


@pytest.fixture(scope="session")
def write_image_folder(photo_crops: Callable[..., list[np.ndarray]]) -> Callable[..., Path]:
    """Write a dataset of photo crops at ``root``; returns ``root``.

    ``folders`` maps a folder under the root ("cat", "train/cat") to its number of images,
    written as 0000.<ext>, 0001.<ext>, ... with OpenCV; ``sizes`` (height, width) are cycled.
    """

    def write(root: Path, folders: dict[str, int], *, sizes: tuple[tuple[int, int], ...] = ((32, 32),),
              ext: str = "png", seed: int = 0) -> Path:  # fmt: skip
        images = iter(photo_crops(sum(folders.values()), sizes, seed))
        for folder, count in folders.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                ok, buf = cv2.imencode(f".{ext}", np.ascontiguousarray(next(images)[..., ::-1]))
                assert ok
                (root / folder / f"{i:04d}.{ext}").write_bytes(buf.tobytes())
        return root

    return write


@pytest.fixture
def make_image_folder(tmp_path: Path, write_image_folder: Callable[..., Path]) -> Callable[..., Path]:
    """``write_image_folder`` at tmp_path/<name> (default "src")."""

    def make(folders: dict[str, int], *, name: str = "src", **options: Any) -> Path:
        return write_image_folder(tmp_path / name, folders, **options)

    return make


@pytest.fixture
def preprocess_cli() -> Callable[..., Any]:
    """Run ``augkit preprocess ARGS --workers N`` in-process through CliRunner; returns the Result.

    One worker unless asked: a single process runs the shards in this process, so
    monkeypatches reach them (and no pool has to start).
    """
    from click.testing import CliRunner

    from augkit.cli.main import cli

    def run(*args: object, workers: int = 1) -> Any:
        argv = ["preprocess", *map(str, args), "--workers", str(workers)]
        return CliRunner().invoke(cli, argv, catch_exceptions=False)

    return run


@pytest.fixture
def assert_fails() -> Callable[..., str]:
    """Check a CliRunner result: exit ``code``, one "Error: " line holding ``fragments``, no traceback.

    Click's own usage errors may add their "Usage:" and "Try ..." lines; nothing else may appear
    on stderr. Returns the error line.
    """

    def check(result: Any, code: int, *fragments: str) -> str:
        assert result.exit_code == code, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1, result.stderr
        assert all(line.startswith(("Usage:", "Try ", "Error: ")) for line in lines), result.stderr
        assert "Traceback" not in result.output
        for fragment in fragments:
            assert fragment in errors[0], errors[0]
        return errors[0]

    return check


@pytest.fixture(scope="session")
def tree_digest() -> Callable[[Path], dict[str, str]]:
    """sha256 of every file below a folder, hidden ones included, by path relative to it."""
    import hashlib

    def digest(root: Path) -> dict[str, str]:
        files = (p for p in Path(root).rglob("*") if p.is_file())
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    return digest


# ----------------------------------------------------------------------------- processes

# Every process the tests start inherits this mark (a new one per session, a nested session's
# too), so that the session can find, at its end, any of them still running: a test (or
# augkit) that left a process behind fails the run.
SESSION_MARK = "AUGKIT_TEST_SESSION"
os.environ[SESSION_MARK] = uuid.uuid4().hex

# Ctrl-C as a terminal delivers it, whoever started the tests: a shell runs a background job
# (`cmd &`, nohup) with SIGINT ignored, which Python then keeps, and the Ctrl-C tests (which
# signal this process and its children) would see an ignored signal instead of a user's.
signal.signal(signal.SIGINT, signal.default_int_handler)
# Seconds that processes still running at the end get to end on their own (the check's own test
# sets less): a killed command's workers and forkserver end within a second of it.
LEFTOVER_GRACE_S = float(os.environ.get("AUGKIT_TEST_LEFTOVER_GRACE_S", "20"))
LINUX = sys.platform.startswith("linux")  # the checks read /proc


@dataclass(frozen=True)
class Process:
    """A process seen in /proc; ``started`` (clock ticks after boot) tells a reused pid apart."""

    pid: int
    started: int
    command: str


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of ``pid``, or None once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[19])


def _process(pid: int, started: int) -> Process:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        command = "?"
    return Process(pid, started, command)


def process_tree(root: int) -> list[Process]:
    """Linux: ``root`` and every process below it now (children, theirs, ...), root first."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[0] != "Z":
            children.setdefault(stat[1], []).append((int(entry.name), stat[2]))
    found, todo = [], [(root, stat[2])] if (stat := _stat(root)) else []
    while todo:
        pid, started = todo.pop(0)
        found.append(_process(pid, started))
        todo += children.get(pid, [])
    return found


def running(processes: list[Process]) -> list[Process]:
    """Those of ``processes`` that still run (a zombie has ended; a reused pid is another process)."""
    return [p for p in processes if (stat := _stat(p.pid)) is not None and stat[0] != "Z" and stat[2] == p.started]


def wait_until_ended(processes: list[Process], seconds: float = 60) -> list[Process]:
    """Poll until none of ``processes`` runs, for ``seconds`` at most (a guard against a hang,
    not a measure); returns those still running then."""
    deadline = time.monotonic() + seconds
    while (left := running(processes)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _marked_processes() -> list[Process]:
    """Processes that inherited this session's mark, but this process's own helpers: its
    forkserver and resource tracker (started by in-process pools) end when it does."""
    mark = f"{SESSION_MARK}={os.environ[SESSION_MARK]}".encode()
    own = {os.getpid(), multiprocessing.forkserver._forkserver._forkserver_pid,
           multiprocessing.resource_tracker._resource_tracker._pid}  # fmt: skip
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            marked = mark in (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or another user's
            continue
        if marked and (stat := _stat(int(entry.name))) is not None and stat[0] != "Z":
            found.append(_process(int(entry.name), stat[2]))
    return found


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the session if a process that its tests started still runs at its end."""
    yield
    if not LINUX:
        return
    left = wait_until_ended(_marked_processes(), seconds=LEFTOVER_GRACE_S)
    if left:
        lines = "\n".join(f"  {p.pid}: {p.command}" for p in left)
        for process in running(left):  # they are this session's: they would run on, orphaned
            os.kill(process.pid, signal.SIGKILL)
        pytest.fail(f"{len(left)} process(es) started by this test session still ran after it (killed now):\n{lines}",
                    pytrace=False)  # fmt: skip


@pytest.fixture(scope="session")
def processes() -> SimpleNamespace:
    """Linux: ``tree(pid)`` (``process_tree``), ``running(processes)``, ``wait_until_ended(processes)``."""
    return SimpleNamespace(tree=process_tree, running=running, wait_until_ended=wait_until_ended)
