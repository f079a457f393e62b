"""Exceptions raised for problems with the user's input.

Every error a user can cause (a bad path, a broken image, an invalid pipeline spec) is an
``AugkitError``: the command line turns it into one readable line and exit code 2. Anything
else escaping the library is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
from pathlib import Path

# errno -> what it means, for a write that failed because the disk (or quota) is full: the run
# failed, not its input, and the same command continues once there is room.
DISK_FULL = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for its filesystem",
}
# Errors that say something about this process, not about the file it was reading (out of file
# descriptors or memory, a descriptor closed under it while a worker is torn down): never a
# reason to record a file as unreadable, which a resumed run would then skip for good.
PROCESS_ERRORS = frozenset({errno.EBADF, errno.EINTR, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN})


class AugkitError(Exception):
    """A problem with the user's input, explained in one line (what was wrong, how to fix it)."""


class AugkitWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints one line)."""


class ImageReadError(AugkitError):
    """A file that could not be read as an image; carries the path and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class SpecError(AugkitError):
    """An invalid pipeline spec: unknown step, unknown or ill-typed parameter, bad probability."""


class DatasetError(AugkitError):
    """A dataset that cannot be opened: missing, empty, or of a layout augkit does not know."""


class RunError(Exception):
    """A run that could not finish for a reason other than its input (disk full, interrupted).

    The command line prints it as one line with exit code 1; what was done is kept, and
    running the same command again resumes.
    """
