"""The ``augkit`` command group: lazy subcommands and the one place errors become exit codes.

Subcommands are imported only when run (or when ``--help`` lists them), and their modules
import augkit's heavy parts inside the command, so ``augkit --help`` stays instant and loads
neither albumentations nor torch.

Exit codes: 0 ok, 1 the run failed (a full disk, whatever was writing), 2 bad usage or input
(one readable line, no traceback).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import click

from augkit import __version__
from augkit.errors import DISK_FULL, PROCESS_ERRORS, AugkitError, AugkitWarning, RunError

# name -> "module:attribute"; the order here is the order in --help.
COMMANDS = {
    "preprocess": "augkit.cli.preprocess:preprocess",
    "preview": "augkit.cli.preview:preview",
    "studio": "augkit.cli.studio:studio",
    "stats": "augkit.cli.stats:stats",
    "steps": "augkit.cli.steps:steps",
    "train": "augkit.cli.train:train",
    "lr-find": "augkit.cli.lr_find:lr_find",
    "evaluate": "augkit.cli.evaluate:evaluate",
    "ablate": "augkit.cli.ablate:ablate",
    "diagnose": "augkit.cli.diagnose:diagnose",
}


class UserError(click.ClickException):
    """A mistake in the user's input: printed as one line, exit code 2."""

    exit_code = 2


class RunFailed(click.ClickException):
    """A run that could not finish (disk full, interrupted): one line, exit code 1."""

    exit_code = 1


_NO_ARGS_IS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click 8.2+


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is needed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _NO_ARGS_IS_HELP:
            raise  # a group called alone (`augkit diagnose`): its help, as click shows it
        except click.UsageError as error:  # a bad option or value: one line, not click's three
            command = error.ctx.command_path if error.ctx is not None else ctx.command_path
            raise UserError(f"{error.format_message()} (see `{command} --help`)") from None
        except AugkitError as error:
            raise UserError(str(error)) from None
        except RunError as error:
            raise RunFailed(str(error)) from None
        except OSError as error:
            where = f"{error.filename}: " if error.filename else ""
            if error.errno in DISK_FULL:
                # The run failed, not the input: whichever command was writing (atomic writes
                # leave the old file as it was and no temporary file behind).
                raise RunFailed(f"{where}{DISK_FULL[error.errno]}; free some space and run the command again") from None
            if error.errno in PROCESS_ERRORS:  # this process's trouble (no file descriptors left, ...)
                raise RunFailed(f"{where}{error.strerror or error}; the run failed, run the command again") from None
            # Output paths are user input too: a missing folder, no permission.
            if error.filename is None:
                raise
            raise UserError(f"{error.filename}: {error.strerror or error}") from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="augkit")
def cli() -> None:
    """Preprocessing, augmentation and training tricks from "Training Neural Networks".

    Every command runs with no data argument on the sample data shipped with augkit.

    \b
    Examples:
      augkit preview                       # a contact sheet of the sample photos
      augkit stats -o stats.json           # per-channel mean/std of the sample digits
      augkit preview -p "crop(size=0.8); rotate(limit=20); hflip" photos/
      augkit train                         # a small CNN on the sample digits, ~98-99% in seconds
    """
    _show_augkit_warnings_as_one_line()


def _show_augkit_warnings_as_one_line() -> None:
    """augkit's own warnings (a file passed over, a spec without a seed) as ``warning: ...`` on
    stderr; every other warning as the hook in place before shows it. Installed once."""
    python = warnings.showwarning
    if getattr(python, "augkit", False):
        return

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, AugkitWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            python(message, category, *args, **kwargs)

    show.augkit = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def main() -> None:
    cli(prog_name="augkit")
