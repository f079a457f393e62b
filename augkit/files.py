"""Atomic file writes: a reader never sees a half-written file under its final name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# mkstemp creates files readable by the owner only; give written files the mode an ordinary
# open() would (0o666 less the umask). Reading the umask means setting it, so do it once here.
_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, data: bytes | str, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename.

    The rename is atomic on POSIX and Windows, so a crash leaves either the old file or the
    new one, never a mix; the temporary file is removed if anything fails.

    Args:
        durable: flush the data to disk (fsync) before the rename, so that it survives a power
            cut too. Callers that verify what they wrote before trusting it (a shard's files are
            checked against their checksums on resume) can skip it: on a typical disk it is
            most of the cost of writing a small file.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
