"""Files on disk: atomic writes (a reader never sees a half-written file under its final name),
and opening for reading only what is a regular file (never a FIFO, a device or a socket)."""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from augkit.errors import AugkitError

# mkstemp creates files readable by the owner only; give written files the mode an ordinary
# open() would (0o666 less the umask). Reading the umask means setting it, so do it once here.
_UMASK = os.umask(0)
os.umask(_UMASK)

# stat test -> the name of a file that is not a regular one.
_SPECIAL_FILES = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISSOCK, "socket"),
)


def special_file_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file ("FIFO", ...); None if it is."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _SPECIAL_FILES if test(mode)), "special file")


class NotRegularFileError(AugkitError):
    """A path to read that names a folder, a FIFO, a device or a socket; ``kind`` says which."""

    def __init__(self, path: str | Path, kind: str) -> None:
        self.path, self.kind = str(path), kind
        super().__init__(f"{path}: is a {kind}, not a regular file")

    def __reduce__(self) -> tuple:  # raised in worker processes too
        return type(self), (self.path, self.kind)


def open_regular(path: str | Path) -> BinaryIO:
    """``path`` (symbolic links followed) opened for reading in binary, if it is a regular file.

    Checked with ``stat`` before opening, because opening is not harmless for what is not a
    file (a FIFO blocks until a writer comes; some devices act when opened), and again on the
    open descriptor, opened without blocking, so that a FIFO put in the file's place meanwhile
    is caught too.

    Raises:
        NotRegularFileError: a folder, a FIFO, a device or a socket.
        OSError: as the system reports it (FileNotFoundError, also for a dangling link;
            PermissionError; ELOOP for a link loop).
    """
    _check_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(path: str | Path, mode: int) -> None:
    kind = special_file_kind(mode)
    if kind is not None:
        raise NotRegularFileError(path, kind)


def read_npy_header(file: BinaryIO) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """(shape, dtype, Fortran order, bytes after the header) of the ``.npy`` file open in ``file``.

    Read from the header alone, which may claim any shape: callers check it against what they
    expect, and the byte count against the shape, before numpy reads or maps anything.

    Raises:
        ValueError: not a .npy file, or a format version other than 1.0 and 2.0 (3.0 only adds
            UTF-8 field names, which no array augkit reads has).
    """
    try:
        version = np.lib.format.read_magic(file)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f".npy format version {version[0]}.{version[1]}; expected 1.0 or 2.0")
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read(file)
    except (TypeError, SyntaxError, EOFError) as error:  # what numpy raises for garbled headers
        raise ValueError(str(error) or type(error).__name__) from None
    return shape, dtype, fortran_order, os.fstat(file.fileno()).st_size - file.tell()


# atomic_write's temporary files: ".<the first 40 characters of the name>.<8 random>.tmp" in the
# folder of the file written. Cut short, so that a name as long as the filesystem allows (255
# bytes) still has a temporary name (40 characters are at most 160 bytes in UTF-8); the random
# part is tempfile's (8 of a-z, 0-9 and _). ``TEMPORARY_NAME`` matches these names and no
# longer ones: it is how callers recognise a killed write's leftovers as augkit's own.
_TEMPORARY_NAME_CHARS = 40
TEMPORARY_NAME = re.compile(rf"\.(?P<name>[^/]{{1,{_TEMPORARY_NAME_CHARS}}})\.[a-z0-9_]{{8}}\.tmp")  # name: the target's, cut


def atomic_write(path: str | Path, data: bytes | str, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    The rename is atomic on POSIX and Windows, so a crash leaves either the old file or the
    new one, never a mix; if anything fails the temporary file is removed and the old file,
    if any, is left as it was. The temporary file's name (``TEMPORARY_NAME``) has at most 54
    characters, whatever the length of ``path``'s name.

    A symbolic link is written through: what it points at is replaced (the temporary file is
    made in the target's folder, so the rename stays on one filesystem), and the link stays a
    link. A target that exists and is not a regular file (a device such as /dev/full, a FIFO,
    a directory) is refused, never replaced.

    Args:
        durable: flush the data to disk (fsync) before the rename, so that it survives a power
            cut too. Callers that verify what they wrote before trusting it (a shard's files are
            checked against their checksums on resume) can skip it: on a typical disk it is
            most of the cost of writing a small file.

    Raises:
        AugkitError: ``path``, or what it points at, exists and is not a regular file.
        OSError: the write failed (no space left on device, permission denied, ...); its
            ``filename`` is ``path``, not the temporary file's name.
    """
    path = Path(path)
    target = Path(os.path.realpath(path))
    try:
        kind = special_file_kind(os.stat(target).st_mode)
    except FileNotFoundError:
        kind = None  # a new file (or a dangling link's target, created as open() would)
    if kind is not None:
        where = path if target == Path(os.path.abspath(path)) else f"{path} (a link to {target})"
        raise AugkitError(
            f"{where}: is a {kind}, not a regular file; augkit replaces only regular files, "
            f"give the path of a file to write"
        )
    payload = data.encode("utf-8") if isinstance(data, str) else data
    tmp = None
    try:
        prefix = f".{target.name[:_TEMPORARY_NAME_CHARS]}."
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            # A failed write() names no file, a failed rename the temporary one: name the file
            # the caller asked for (the command line prints it).
            error.filename, error.filename2 = str(path), None
        raise
    return path
