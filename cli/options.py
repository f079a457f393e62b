"""Options shared by several commands, defined once."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import click

json_output = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable JSON result on stdout.")
quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
seed = click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: the pipeline's own, 0 if unset).")
workers = click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    show_default="all cores",
    help="Processes that read images in parallel.",
)
pipeline = click.option(
    "-p",
    "--pipeline",
    "pipeline_spec",
    metavar="PIPELINE",
    help="A pipeline file (.yaml/.json) or an inline spec such as \"crop(size=24, padding=2); hflip\".",
)
# A contact sheet's images and size (augkit preview; augkit studio starts its page with them).
sheet_inputs = click.argument("inputs", nargs=-1, type=click.Path(path_type=Path), metavar="[IMAGES or DATASET ...]")
variants = click.option("-n", "--variants", "n", type=click.IntRange(1, 32), default=6, show_default=True, help="Augmented variants per image.")
rows = click.option("--rows", type=click.IntRange(1, 64), default=4, show_default=True, help="Images sampled from each dataset given.")
threads = click.option(
    "--threads",
    type=int,  # its range (augkit.train.config.MAX_THREADS) is checked by the library: one line, exit code 2
    default=None,
    metavar="N",
    help="torch's CPU threads, 1 to 1024 (default: chosen from the work and the free cores, as for augkit train).",
)


class IntList(click.ParamType):
    """A list of integers typed as ``512,512``, ``'512 512'`` or ``512`` (``augkit.train.config.parse_int_list``).

    Anything else (``512x512``, ``512,,512``) is one line naming the option and the forms it
    takes (``AugkitError``: exit code 2), never a list the user did not write.
    """

    name = "list"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[int, ...]:
        from augkit.errors import AugkitError
        from augkit.train.config import INT_LIST_FORM, parse_int_list

        if isinstance(value, tuple):
            return value
        label = param.opts[0] if isinstance(param, click.Option) else "the list"
        try:
            return parse_int_list(str(value))
        except ValueError:
            raise AugkitError(f"{label} {value!r}: not a list of integers; write them {INT_LIST_FORM}") from None


def progress_bar(total: int, quiet: bool, unit: str = "img"):
    """A tqdm bar on stderr that appears only for runs longer than a second, and never when quiet."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=True if quiet else None, delay=1.0, dynamic_ncols=True, leave=False)


class OutputPath(click.ParamType):
    """A path the command writes: a file, or a folder (``folder=True``), checked before any work.

    Every output option of every command uses it, so each gets the same rule: what would make
    the write fail is refused when the command line is read, naming the path the user gave,
    never after the work is done, never naming a temporary file:

    - an existing path must be of the kind written: a file output is not a folder, a FIFO or a
      device; a folder output is not a file;
    - the nearest folder on the way that exists must be a folder (not a file) that this user
      may create files in (``os.access``: a read-only filesystem counts as not writable).

    Missing parent folders are created, as ``mkdir -p`` would (``-o results/today/stats.json``
    works in a fresh clone), and removed again, if still empty, when the command ends without
    writing into them. A folder output itself is left for its command to create.
    Errors are ``AugkitError``: one line, exit code 2.
    """

    name = "path"

    def __init__(self, folder: bool = False) -> None:
        self.folder = folder

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        from augkit.errors import AugkitError

        label = "OUT" if param is None else (param.opts[0] if isinstance(param, click.Option) else param.human_readable_name)
        path = Path(value)
        if not str(value):
            raise AugkitError(f"{label}: the path is empty; give the {'folder' if self.folder else 'file'} to write")
        try:
            created = _prepare_output(path, self.folder)
        except _Refused as refusal:
            raise AugkitError(f"{label} {path}: {refusal}") from None
        if created and ctx is not None:
            ctx.find_root().call_on_close(lambda: _remove_empty(created))
        return path


class _Refused(Exception):
    """Why an output path cannot be written (the reason only; the caller names the path)."""


def _prepare_output(path: Path, folder: bool) -> list[Path]:
    """Check ``path`` as an output (see ``OutputPath``); create a file's missing parent folders.

    Returns the folders created, deepest first.
    """
    kind = "folder" if folder else "file"
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise _Refused(f"cannot reach it ({e.strerror})") from None
        mode = None
    if mode is not None:
        if folder and not stat.S_ISDIR(mode):
            raise _Refused("is a file, not a folder; give the folder to write into")
        if not folder and stat.S_ISDIR(mode):
            raise _Refused("is a folder; give the path of a file to write (inside it, or elsewhere)")
        if not folder and not stat.S_ISREG(mode):
            raise _Refused("is not a regular file (a FIFO, a device or a socket); give the path of a file to write")
    # The nearest folder that exists decides: files are written (and folders created) in it.
    target = Path(os.path.abspath(path))
    start = target if folder and mode is not None else target.parent
    missing = []
    for ancestor in (start, *start.parents):
        try:
            mode = os.stat(ancestor).st_mode
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.ENOTDIR):
                raise _Refused(f"cannot reach {ancestor} ({e.strerror})") from None
            missing.append(ancestor)
            continue
        if not stat.S_ISDIR(mode):
            raise _Refused(f"{ancestor} is a file, not a folder; choose another path for the {kind}")
        if not os.access(ancestor, os.W_OK | os.X_OK):
            raise _Refused(f"no permission to write in the folder {ancestor}; choose another path for the {kind}")
        break
    if folder or not missing:
        return []
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _Refused(f"cannot create the folder {target.parent} ({e.strerror})") from None
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) that are still empty: created for an output never written."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # holds the output (or anything else): it and the folders above stay
            return
