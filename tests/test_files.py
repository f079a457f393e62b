"""augkit.files.atomic_write: symbolic links written through, special files refused, a full disk one line."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from augkit.errors import AugkitError
from augkit.files import TEMPORARY_NAME, atomic_write

POSIX = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="symbolic links, FIFOs and devices as POSIX has them")


def _leftovers(*folders: Path) -> list[str]:
    """atomic_write's temporary files left in ``folders``."""
    return sorted(p.name for folder in folders for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_write_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text("old")
    assert atomic_write(path, "new") == path
    assert path.read_text() == "new" and _leftovers(tmp_path) == []


@POSIX
def test_symbolic_link_is_written_through_and_stays_a_link(tmp_path):
    # The issue: `-o link.json` replaced the link with a file and left its target untouched.
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "stats.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert atomic_write(link, "new") == link
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"
    assert _leftovers(tmp_path, tmp_path / "real") == []


@POSIX
def test_dangling_symbolic_link_creates_its_target_as_open_would(tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to("made.json")
    atomic_write(link, "new")
    assert link.is_symlink() and (tmp_path / "made.json").read_text() == "new"


def _device(tmp_path: Path) -> Path:
    """A character device node like /dev/full (1, 7), made in tmp_path: a test gone wrong replaces this one."""
    node = tmp_path / "full"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except (PermissionError, OSError) as error:
        pytest.skip(f"cannot make a device node here ({error.strerror})")
    return node


@POSIX
@pytest.mark.parametrize("kind", ["character device", "FIFO", "directory"])
@pytest.mark.parametrize("through_link", [False, True], ids=["named", "through a link"])
def test_target_that_is_not_a_regular_file_is_refused_and_never_replaced(tmp_path, kind, through_link):
    # The issue: `-o /dev/full` run as root replaced the device node with a PNG.
    if kind == "character device":
        special = _device(tmp_path)
    elif kind == "FIFO":
        special = tmp_path / "fifo"
        os.mkfifo(special)
    else:
        special = tmp_path / "folder"
        special.mkdir()
    before = os.stat(special)
    path = special
    if through_link:
        path = tmp_path / "out.png"
        path.symlink_to(special)
    with pytest.raises(AugkitError) as info:
        atomic_write(path, b"\x89PNG not for a device")
    assert str(info.value).startswith(f"{path}")
    assert f"is a {kind}, not a regular file; augkit replaces only regular files" in str(info.value)
    after = os.stat(special)
    assert (after.st_mode, after.st_ino, after.st_rdev) == (before.st_mode, before.st_ino, before.st_rdev)
    assert _leftovers(tmp_path) == []


def test_failed_write_names_the_file_asked_for_not_the_temporary_one(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        atomic_write(tmp_path / "missing" / "stats.json", "x")
    assert info.value.filename == str(tmp_path / "missing" / "stats.json")


# ----------------------------------------------------------------------------- long names

# name -> a file name of up to the 255 bytes that Linux and macOS allow
LONG_NAMES = {
    "241 bytes": "a" * 236 + ".json",
    "244 bytes": "a" * 240 + ".png",
    "250 bytes": "a" * 245 + ".json",
    "255 bytes": "a" * 251 + ".png",
    "254 bytes of 2-byte characters": "\u00e9" * 125 + ".png",
}


@pytest.mark.parametrize("name", LONG_NAMES.values(), ids=LONG_NAMES)
def test_a_name_as_long_as_the_filesystem_allows_is_written_through_a_short_temporary_name(
    tmp_path, monkeypatch, name
):
    temporary = []
    real_chmod = os.chmod

    def chmod(path, mode, **options):  # atomic_write sets its temporary file's mode before the rename
        temporary.append(Path(path).name)
        return real_chmod(path, mode, **options)

    monkeypatch.setattr(os, "chmod", chmod)
    path = tmp_path / name
    atomic_write(path, "data")
    assert path.read_text() == "data" and _leftovers(tmp_path) == []
    [used] = temporary
    assert TEMPORARY_NAME.fullmatch(used) and used.startswith(f".{name[:40]}.") and len(used) <= 54


def test_the_temporary_name_pattern_is_atomic_writes_and_no_longer():
    assert TEMPORARY_NAME.fullmatch(".stats.json.k2_x9a0q.tmp")
    assert TEMPORARY_NAME.fullmatch("." + "a" * 40 + ".k2_x9a0q.tmp")
    assert not TEMPORARY_NAME.fullmatch("." + "a" * 41 + ".k2_x9a0q.tmp")  # a name atomic_write never makes
    assert not TEMPORARY_NAME.fullmatch(".notes.k2x9a0q.tmp")  # 7 random characters, not 8


def test_stats_o_writes_a_file_whose_name_is_250_bytes(tmp_path):
    out = tmp_path / ("s" * 245 + ".json")
    run = subprocess.run([sys.executable, "-m", "augkit", "stats", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert '"mean"' in out.read_text() and _leftovers(tmp_path) == []


# ----------------------------------------------------------------------------- a full disk, for real


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs holding an old ``stats.json`` and ``sheet.png``, then filled to the last byte."""
    mount = tmp_path / "small"
    mount.mkdir()
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs is Linux's")
    mounting = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]
    done = subprocess.run(mounting, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        (mount / "stats.json").write_text('{"old": true}\n')
        (mount / "sheet.png").write_bytes(b"old sheet")
        with open(mount / "filler", "wb", buffering=0) as filler:
            with pytest.raises(OSError) as full:
                while filler.write(b"\0" * 512):
                    pass
            assert full.value.errno == errno.ENOSPC
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.parametrize(
    "command, name",
    [(["stats", "-o"], "stats.json"), (["preview", "-n", "1", "--rows", "1", "-o"], "sheet.png")],
    ids=["stats -o", "preview -o"],
)
def test_full_disk_is_one_line_exit_1_and_keeps_the_old_file(full_disk, command, name):
    out = full_disk / name
    old = out.read_bytes()
    run = subprocess.run([sys.executable, "-m", "augkit", *command, str(out)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 1, run.stderr
    assert run.stderr == f"Error: {out}: no space left on device; free some space and run the command again\n"
    assert "Traceback" not in run.stdout
    assert out.read_bytes() == old
    assert _leftovers(full_disk) == []
