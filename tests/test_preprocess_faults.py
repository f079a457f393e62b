"""`augkit preprocess` when things go wrong: broken files, kill -9 and Ctrl-C of a real run, a
full disk, class names that could escape OUT; and what must not change: SRC, and peak memory as
the dataset grows. Every broken dataset is built at test time.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

PIPELINE = "rotate(limit=30); hflip"
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def encoded(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(image))
    assert ok
    return buf.tobytes()


def png_claiming(image: np.ndarray, width: int, height: int) -> bytes:
    """A real PNG whose IHDR says width x height, its CRC fixed so that only the size is wrong."""
    data = bytearray(encoded(image, ".png"))
    assert data[12:16] == b"IHDR"  # signature (8), then the first chunk's length (4) and type
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # over type and 13 data bytes
    return bytes(data)


# name -> (file name, its bytes made from a real image, the reason the manifest gives)
FAULTS = {
    "zero-bytes": ("zero.jpg", lambda image: b"", "empty file"),
    "truncated-jpeg": ("cut.jpg", lambda image: encoded(image, ".jpg")[:-300], "truncated"),  # a download cut short
    "text-named-jpg": ("notes.jpg", lambda image: b"shopping list: milk, eggs\n", "not an image"),
    "pixel-bomb": ("bomb.png", lambda image: png_claiming(image, 40_000, 40_000), "too many pixels"),
    "signed-16-bit": ("signed.tiff", lambda image: encoded(image[..., 0].astype(np.int16), ".tiff"), "unsupported"),
}


def add_fault(folder: Path, fault: str, image: np.ndarray) -> tuple[Path, str]:
    """Write one broken file into ``folder``; returns its path and the expected reason."""
    if fault == "unreadable":
        path = folder / "locked.png"
        path.write_bytes(encoded(image, ".png"))
        path.chmod(0)
        return path, "permission denied"
    name, make, reason = FAULTS[fault]
    path = folder / name
    path.write_bytes(make(image))
    return path, reason


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- broken files


@pytest.mark.parametrize(
    "fault",
    [
        *FAULTS,
        pytest.param("unreadable", marks=pytest.mark.skipif(AS_ROOT, reason="root reads any file, whatever its mode")),
    ],
)
def test_a_broken_file_is_skipped_with_its_reason_and_the_run_succeeds(
    make_image_folder, photo_crops, preprocess_cli, tmp_path, fault
):
    src = make_image_folder({"cat": 2, "dog": 2})
    bad, reason = add_fault(src / "cat", fault, photo_crops(1, seed=7)[0])
    out = tmp_path / "out"
    result = preprocess_cli(src, out, "--size", "16")
    assert result.exit_code == 0, result.output
    [skipped] = manifest(out)["skipped"]
    assert skipped["path"] == str(bad) and reason in skipped["reason"]
    assert f"skipped {bad}: {skipped['reason']}" in result.output
    counts = manifest(out)["counts"]["train"]
    assert counts == {"images": 4, "sources": 5, "skipped": 1, "per_class": {"cat": 2, "dog": 2}}
    assert np.load(out / "train_images.npy").shape == (4, 16, 16, 3)


def test_strict_exits_1_after_writing_everything_else(
    make_image_folder, photo_crops, preprocess_cli, assert_fails, tree_digest, tmp_path
):
    src = make_image_folder({"cat": 3, "dog": 3})
    for i, fault in enumerate(FAULTS):
        add_fault(src / ("cat", "dog")[i % 2], fault, photo_crops(1, seed=i)[0])
    lenient, strict = tmp_path / "lenient", tmp_path / "strict"
    assert preprocess_cli(src, lenient, "--size", "16", "--shard-size", "3").exit_code == 0
    result = preprocess_cli(src, strict, "--size", "16", "--shard-size", "3", "--strict")
    assert_fails(result, 1, "--strict", f"{len(FAULTS)} file(s) were skipped")
    assert all(f"skipped {s['path']}: {s['reason']}" in result.stdout for s in manifest(strict)["skipped"])
    assert manifest(strict)["complete"] is True
    assert tree_digest(strict) == tree_digest(lenient)


def tree_state(root: Path) -> dict[str, tuple]:
    """Every file's and folder's mode, mtime and (files) sha256, the root's included."""
    state = {}
    for path in [root, *root.rglob("*")]:
        info = path.stat()
        state[path.relative_to(root).as_posix()] = (info.st_mode, info.st_mtime_ns, path.is_file() and sha256(path))
    return state


@pytest.mark.parametrize("out_format", ["packed", "folder"])
def test_src_is_never_modified(make_image_folder, photo_crops, preprocess_cli, tmp_path, out_format):
    src = make_image_folder({"cat": 3, "dog": 2}, ext="jpg")
    for i, fault in enumerate(FAULTS):
        add_fault(src / "dog", fault, photo_crops(1, seed=i)[0])
    before = tree_state(src)
    flags = ["--size", "16", "--format", out_format, "--copies", "2", "-p", PIPELINE, "--split-val", "0.4"]
    assert preprocess_cli(src, tmp_path / "out", *flags).exit_code == 0
    assert tree_state(src) == before


@pytest.mark.skipif(os.sep == "\\", reason="a backslash is a path separator on Windows: no such folder there")
@pytest.mark.parametrize("source", ["folder named a\\b", "CIFAR class named ../evil"])
def test_a_class_name_that_could_escape_out_is_refused(
    make_image_folder, make_cifar, preprocess_cli, assert_fails, tree_digest, tmp_path, source
):
    if source.startswith("folder"):
        src = make_image_folder({"ok": 1, "a\\b": 1})
    else:
        src = make_cifar("cifar10", names=["../evil", *(f"class{i}" for i in range(1, 10))]).root
    before = tree_digest(tmp_path)
    out = tmp_path / "deep" / "out"
    assert_fails(preprocess_cli(src, out, "--format", "folder"), 2, "refusing class name")
    assert tree_digest(tmp_path) == before and not (tmp_path / "deep").exists()


# ----------------------------------------------------------------------------- a full disk


def fill_the_disk_at(monkeypatch, module: str, nth: int) -> list:
    """Make ``module``'s atomic_write fail with ENOSPC on its ``nth`` call; returns the calls."""
    real, calls = importlib.import_module(module).atomic_write, []

    def full_disk(path, data, **options):
        calls.append(path)
        if len(calls) == nth:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **options)

    monkeypatch.setattr(f"{module}.atomic_write", full_disk)
    return calls


FLAGS = ["--size", "16", "--shard-size", "2"]  # 7 images: 4 shards


@pytest.mark.parametrize(
    ("module", "nth"),
    [("augkit.preprocess.shard", 4), ("augkit.stats.channel_stats", 1), ("augkit.preprocess.assembly", 1)],
    ids=["shard-file", "stats", "final-manifest"],
)
def test_disk_full_stops_with_one_line_and_a_rerun_resumes(
    make_image_folder, preprocess_cli, assert_fails, tree_digest, tmp_path, monkeypatch, module, nth
):
    src = make_image_folder({"cat": 4, "dog": 3})
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(src, clean, *FLAGS).exit_code == 0
    calls = fill_the_disk_at(monkeypatch, module, nth)
    assert_fails(preprocess_cli(src, out, *FLAGS), 1, "no space left", "run the same command again to resume")
    assert len(calls) == nth and manifest(out)["complete"] is False
    monkeypatch.undo()
    rerun = preprocess_cli(src, out, *FLAGS)
    assert rerun.exit_code == 0 and "resumed:" in rerun.output and "already complete" not in rerun.output
    assert tree_digest(out) == tree_digest(clean)


def test_resume_redoes_a_done_shard_whose_file_no_longer_matches_its_checksum(
    make_image_folder, preprocess_cli, tree_digest, tmp_path, monkeypatch
):
    src = make_image_folder({"cat": 4, "dog": 3})
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert preprocess_cli(src, clean, *FLAGS).exit_code == 0
    fill_the_disk_at(monkeypatch, "augkit.preprocess.shard", 7)  # images, labels, record: 2 shards done
    assert preprocess_cli(src, out, *FLAGS).exit_code == 1
    monkeypatch.undo()
    shard = out / ".shards" / "train-00000.images.npy"
    shard.write_bytes(shard.read_bytes()[:-1] + b"\x00")  # a bit flipped on disk since it was recorded
    result = preprocess_cli(src, out, *FLAGS)
    assert result.exit_code == 0 and "resumed: 1 of 4 shards" in result.output
    assert tree_digest(out) == tree_digest(clean)


# ----------------------------------------------------------------------------- killed runs

# A real run, in its own process group (its pool workers and forkserver with it), that takes a
# couple of seconds: 1500 images in shards of 20, so a kill lands with most shards still to do.
RUN = ["--workers", "2", "--shard-size", "20", "--size", "32", "-q"]
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="reads process groups from /proc")


@pytest.fixture(scope="module")
def big_src(tmp_path_factory, write_image_folder) -> Path:
    root = tmp_path_factory.mktemp("big") / "src"
    return write_image_folder(root, {f"class{c}": 300 for c in range(5)}, sizes=((48, 48),))


def start(src: Path, out: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "augkit", "preprocess", str(src), str(out), *RUN]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_to_the_end(src: Path, out: Path) -> str:
    process = start(src, out)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    return stdout


@pytest.fixture(scope="module")
def uninterrupted(big_src, tmp_path_factory, tree_digest) -> dict[str, str]:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    run_to_the_end(big_src, out)
    return tree_digest(out)


def wait_for(condition, what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.002)


def group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies are dead: their parent died first)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(pgrp) == group and state != "Z":
            return True
    return False


def assert_nothing_incomplete(out: Path) -> None:
    """What a stopped run leaves: files under final names are whole, or not there at all."""
    assert manifest(out)["complete"] is False  # it really stopped mid-way
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["manifest.json"]
    records = [json.loads(p.read_text()) for p in (out / ".shards").glob("*.json")]
    assert records
    for record in records:
        for entry in record["files"]:
            assert sha256(out / entry["path"]) == entry["sha256"], entry["path"]
    for array in (out / ".shards").glob("*.npy"):
        np.load(array)  # a shard array without its record yet is still a whole file


@linux_only
@pytest.mark.parametrize(
    ("signum", "code", "message"),
    [(signal.SIGKILL, -signal.SIGKILL, None), (signal.SIGINT, 1, "run the same command again to resume")],
    ids=["kill-9", "ctrl-c"],
)
def test_a_stopped_run_resumes_to_the_same_bytes(big_src, uninterrupted, tree_digest, tmp_path, signum, code, message):
    out = tmp_path / "out"
    process = start(big_src, out)

    def a_shard_is_done() -> bool:
        assert process.poll() is None, "the run ended before a shard was recorded"
        return any((out / ".shards").glob("*.json"))

    wait_for(a_shard_is_done, "a first shard")
    os.killpg(process.pid, signum)  # the whole group, as a terminal's Ctrl-C or a kill -9 of the job
    _, stderr = process.communicate(timeout=120)
    wait_for(lambda: not group_alive(process.pid), "the run's processes to end")
    assert process.returncode == code, stderr
    if message:
        [line] = stderr.strip().splitlines()
        assert line.startswith("Error: interrupted") and message in line
    assert_nothing_incomplete(out)

    assert "resumed:" in run_to_the_end(big_src, out)
    assert tree_digest(out) == uninterrupted


# ----------------------------------------------------------------------------- Ctrl-C while workers start

# Moments to press Ctrl-C: (seconds after the command started) while augkit still imports, and
# (seconds after its forkserver appeared) while the server imports its preload, forks the
# workers and they start: the window where workers and server used to print tracebacks.
# (The parent ignores Ctrl-C for the few milliseconds in which it starts the forkserver; the
# first moment after it is well clear of them.)
MOMENTS = [("start", 0.2), ("start", 0.5), ("start", 1.0),
           ("forkserver", 0.05), ("forkserver", 0.1), ("forkserver", 0.2), ("forkserver", 0.3)]  # fmt: skip


def forkserver_started(pid: int) -> bool:
    """Whether the process ``pid`` has started its multiprocessing forkserver."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            ppid = int((cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"multiprocessing.forkserver" in cmdline.read_bytes():
                return True
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    return False


def interrupt_at(process: subprocess.Popen, moment: tuple[str, float]) -> str:
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) at ``moment``; returns stderr,
    once every process of the group has ended."""
    since, delay = moment
    if since == "forkserver":
        wait_for(lambda: forkserver_started(process.pid) or process.poll() is not None, "the forkserver")
    time.sleep(delay)
    assert process.poll() is None, "the command ended before Ctrl-C: give it more work"
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    wait_for(lambda: not group_alive(process.pid), "the command's processes to end")
    return stderr


def assert_one_line_from_the_parent(process: subprocess.Popen, stderr: str, *lines: str) -> None:
    """Exit code 1, and stderr one line that starts with one of ``lines``: no worker's traceback.

    Or killed by SIGINT after that line: CPython ends so when the KeyboardInterrupt was raised
    inside code run by ``exec`` of a string, which dataclasses and namedtuple do while modules
    import (Python/pythonrun.c, run_eval_code_obj); a shell shows both as an interrupted run.
    """
    assert process.returncode in (1, -signal.SIGINT), stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    [line] = [line for line in stderr.splitlines() if line.strip()]
    assert line.startswith(lines), stderr


@linux_only
@pytest.mark.parametrize("moment", MOMENTS, ids=[f"{since}+{delay}s" for since, delay in MOMENTS])
def test_ctrl_c_while_the_workers_start_is_one_line_from_the_parent(big_src, tmp_path, moment):
    process = start(big_src, tmp_path / "out")
    stderr = interrupt_at(process, moment)
    interrupted = "Error: interrupted with "  # ... N of 75 shards done; run the same command again to resume
    # Before the run starts (imports, planning) click's own line; once it has, augkit's.
    expected = (interrupted,) if moment[0] == "forkserver" else ("Aborted!", interrupted)
    assert_one_line_from_the_parent(process, stderr, *expected)


def test_workers_ignore_ctrl_c_from_birth_and_the_parent_still_gets_it():
    from augkit.processes import sigint_deferred, worker_pool

    with worker_pool(2) as pool:
        assert pool.apply(signal.getsignal, (signal.SIGINT,)) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # held until the block ends, not raised here
        held = True
    assert held


# ----------------------------------------------------------------------------- memory

PEAK_RSS = """
import resource, sys
from augkit.cli.main import cli
try:
    cli(sys.argv[1:], prog_name="augkit")
finally:
    print("peak_rss_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="resource is Unix only")
def test_peak_memory_stays_flat_for_ten_times_the_images(write_image_folder, tmp_path):
    # Output 64 x 64 x 3: 3000 images are 37 MB, far over 20% of the process's own size, so a
    # run that held its output (or mapped all of it at once) would fail here.
    peaks = []
    for n in (300, 3000):
        src = write_image_folder(tmp_path / f"src{n}", {f"class{c}": n // 3 for c in range(3)})
        command = [sys.executable, "-c", PEAK_RSS, "preprocess", str(src), str(tmp_path / f"out{n}"),
                   "--size", "64", "--workers", "1", "--shard-size", "100", "-q"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        peaks.append(int(result.stdout.rsplit("peak_rss_kb", 1)[1]))
    assert peaks[1] <= 1.2 * peaks[0], f"peak RSS {peaks[0]} kB for 300 images, {peaks[1]} kB for 3000"
