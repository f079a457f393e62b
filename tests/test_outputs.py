"""Where commands write: every output option checked before any work, by one rule.

The rule (``augkit.cli.options.OutputPath``): missing parent folders are created, as
``mkdir -p`` would, and removed again if the command writes nothing into them; a path that
cannot be written (its nearest existing folder is a file or not writable, a folder where a file
goes, a file where a folder goes, a FIFO) is one line naming the path the user gave, exit 2,
before the work starts. The issue's examples run in real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.cli.options import OutputPath

# Every output of every command: (arguments before the path, is it a folder). RUN_DIR
# arguments need not exist: the output is checked when the command line is read, first.
OUTPUTS = {
    "stats -o": (["stats", "-o"], False),
    "preview -o": (["preview", "-o"], False),
    "evaluate -o": (["evaluate", "no-run", "-o"], False),
    "diagnose probe -o": (["diagnose", "probe", "-o"], False),
    "diagnose run -o": (["diagnose", "run", "no-run", "-o"], False),
    "train -o": (["train", "-o"], True),
    "lr-find -o": (["lr-find", "-o"], False),
    "ablate -o": (["ablate", "-o"], True),
    "preprocess OUT": (["preprocess", "digits"], True),
}


def invoke(*args: object, cwd: Path) -> click.testing.Result:
    previous = os.getcwd()
    try:
        os.chdir(cwd)
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(previous)


def assert_one_line(output: str, *fragments: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), output
    assert "Traceback" not in output and ".tmp" not in output  # never a temporary file's name
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def run_augkit(*args: str, cwd: Path, user: list[str] | None = None) -> subprocess.CompletedProcess:
    command = [*(user or []), sys.executable, "-m", "augkit", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300)


def _commands(group: click.Group, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield name, command
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", c) for sub, c in _commands(command, ctx))


def test_every_output_of_every_command_is_checked_by_the_one_rule():
    ctx = click.Context(cli)
    outputs = {}
    for name, command in _commands(cli, ctx):
        for param in command.params:
            if param.name == "out":
                label = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
                outputs[f"{name} {label}"] = param.type
    assert outputs.keys() == OUTPUTS.keys()
    for label, kind in outputs.items():
        assert isinstance(kind, OutputPath) and kind.folder == OUTPUTS[label][1], label


# ----------------------------------------------------------------------------- missing folders are created


@pytest.mark.parametrize(
    "args",
    [["stats", "-o", "nodir/x/stats.json", "--workers", "1"], ["preview", "-n", "1", "--rows", "1", "-o", "nodir/p.png"]],
    ids=["stats", "preview"],
)
def test_the_issues_examples_create_the_missing_folders_and_write(tmp_path, args):
    run = run_augkit(*args, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = tmp_path / args[args.index("-o") + 1]
    assert out.is_file()
    if out.suffix == ".json":
        assert len(json.loads(out.read_text())["mean"]) == 1  # the sample digits: one gray channel
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left


def test_a_plot_output_creates_its_folders_too(tmp_path):
    out = tmp_path / "figures" / "deep" / "probe.png"
    result = invoke("diagnose", "probe", "--depth", "2", "--width", "8", "--batch", "4", "-o", out, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_folders_made_for_an_output_are_removed_when_the_command_fails_before_writing(tmp_path):
    result = invoke("preview", "-p", "rotat(limit=3)", "-o", "new/sub/sheet.png", cwd=tmp_path)
    assert_one_line(result.output, "unknown step 'rotat'")
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_existed_is_never_removed(tmp_path):
    (tmp_path / "kept").mkdir()
    result = invoke("preview", "-p", "rotat(limit=3)", "-o", "kept/sheet.png", cwd=tmp_path)
    assert result.exit_code == 2 and (tmp_path / "kept").is_dir()


# ----------------------------------------------------------------------------- refused before the work


@pytest.mark.parametrize("output", OUTPUTS)
def test_a_parent_that_is_a_file_is_refused_in_one_line_before_the_work(tmp_path, output):
    args, _ = OUTPUTS[output]
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke(*args, "notes.txt/out", cwd=tmp_path)
    assert result.exit_code == 2
    label = "OUT" if output.startswith("preprocess") else "-o"
    assert_one_line(result.output, f"{label} notes.txt/out: {tmp_path / 'notes.txt'} is a file, not a folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # nothing ran: no run folder, no plot
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("output", [name for name, (_, folder) in OUTPUTS.items() if not folder])
def test_a_folder_where_a_file_is_written_is_refused(tmp_path, output):
    args, _ = OUTPUTS[output]
    (tmp_path / "plots").mkdir()
    result = invoke(*args, "plots", cwd=tmp_path)
    assert result.exit_code == 2
    assert_one_line(result.output, "-o plots: is a folder; give the path of a file to write")
    assert list((tmp_path / "plots").iterdir()) == []


@pytest.mark.parametrize("output", [name for name, (_, folder) in OUTPUTS.items() if folder])
def test_a_file_where_a_folder_is_written_is_refused(tmp_path, output):
    args, _ = OUTPUTS[output]
    (tmp_path / "results").write_text("mine")
    result = invoke(*args, "results", cwd=tmp_path)
    label = "OUT" if output.startswith("preprocess") else "-o"
    assert_one_line(result.output, f"{label} results: is a file, not a folder")
    assert (tmp_path / "results").read_text() == "mine"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_is_never_written(tmp_path):
    os.mkfifo(tmp_path / "stats.json")
    result = invoke("stats", "-o", "stats.json", cwd=tmp_path)
    assert_one_line(result.output, "-o stats.json: is not a regular file")


# ----------------------------------------------------------------------------- no permission


@pytest.fixture
def read_only_folder() -> Iterator[Path]:
    """A folder its user may not write in, inside a folder anyone may enter (pytest's tmp_path is
    private to root, which the unprivileged process of the test below could not reach)."""
    base = Path(tempfile.mkdtemp(prefix="augkit-outputs-"))
    try:
        base.chmod(0o755)
        (base / "locked").mkdir()
        (base / "locked").chmod(0o555)
        yield base / "locked"
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base)


def _as_unprivileged_user() -> list[str]:
    """The prefix that runs a command without root's power to write anywhere: none when not root."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot run the command as a user without write permission")
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.parametrize(("args", "kind"), [(["stats", "-o", "x/stats.json"], "file"), (["train", "-o", "run"], "folder")],
                         ids=["stats -o", "train -o"])  # fmt: skip
def test_a_folder_without_write_permission_is_refused_before_the_work(read_only_folder, args, kind):
    *head, name = args
    run = run_augkit(*head, str(read_only_folder / name), cwd=read_only_folder.parent, user=_as_unprivileged_user())
    assert run.returncode == 2, run.stderr
    assert_one_line(run.stderr, f"no permission to write in the folder {read_only_folder}", f"choose another path for the {kind}")
    assert run.stdout == "" and list(read_only_folder.iterdir()) == []


@pytest.fixture
def read_only_mount(tmp_path) -> Iterator[Path]:
    """A read-only tmpfs (root may not write there either)."""
    mount = tmp_path / "ro"
    mount.mkdir()
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs is Linux's")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_read_only_filesystem_is_refused_before_the_work(read_only_mount):
    result = invoke("preview", "-o", read_only_mount / "sheets" / "p.png", cwd=read_only_mount.parent)
    assert_one_line(result.output, f"no permission to write in the folder {read_only_mount}")
