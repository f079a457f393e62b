"""`augkit preprocess --distributor ray|dask`: the shards run on a cluster, and OUT comes out
byte for byte as a local run's; a run stopped under one distributor resumes under another.

Each cluster is started once per module, on loopback only, in its own process group (as a
real cluster's processes are not the driver's). Ray and Dask are optional: their tests are
skipped, saying so, where they are not installed (both are in the dev extra, so CI runs them).
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.preprocess.distributors import ADDRESS_ENV
from test_preprocess_faults import group_alive, wait_for  # the stopped-run helpers

HAVE = {"ray": importlib.util.find_spec("ray") is not None, "dask": importlib.util.find_spec("distributed") is not None}


def needs(engine: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not HAVE[engine], reason=f"{engine} is not installed: pip install 'augkit[{engine}]'")


def engines(*names: str) -> list:
    return [pytest.param(name, marks=needs(name)) for name in names]


PIPELINE = "rotate(limit=30); hflip; brightness(limit=0.2)"
FLAGS = {  # small shards: many merges of statistics, and shards that finish out of order
    "packed": ["--size", "24", "--shard-size", "3", "--copies", "2", "-p", PIPELINE, "--split-val", "0.25"],
    "folder": ["--size", "24", "--shard-size", "3", "--format", "folder", "--image-format", "jpg",
               "--copies", "1", "-p", PIPELINE],
}  # fmt: skip
# Loopback only, no usage report, no token (the cluster is reachable from this machine alone).
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
CLUSTERS = {
    "dask": """
import sys
from distributed import LocalCluster
cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0")
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # until the tests are done
cluster.close()
""",
    "ray": """
import sys, ray
context = ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()  # until the tests are done
ray.shutdown()
""",
}


def invoke(*args: object, env: dict[str, str] | None = None):
    """``augkit preprocess ARGS`` in this process (one local worker unless ARGS say otherwise)."""
    return CliRunner(env=env).invoke(cli, ["preprocess", *map(str, args)], catch_exceptions=False)


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", autouse=True)
def ray_on_loopback() -> Iterator[None]:
    """Ray in this process (the driver) on loopback too, and without a token, like the cluster."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def src(tmp_path_factory, write_image_folder) -> Path:
    root = write_image_folder(tmp_path_factory.mktemp("data") / "src", {"cat": 5, "dog": 4, "owl": 3},
                              sizes=((30, 40), (44, 30)))  # fmt: skip
    (root / "cat" / "broken.png").write_bytes(b"")  # skipped, and listed: the lists merge too
    return root


@pytest.fixture(scope="module")
def local_runs(src, tmp_path_factory, tree_digest) -> dict[str, dict[str, str]]:
    """The local run's files (sha256 by path) for each of FLAGS: what every distributor must write."""
    digests = {}
    for name, flags in FLAGS.items():
        out = tmp_path_factory.mktemp("local") / "out"
        succeeded(invoke(src, out, *flags, "--workers", "1"))
        digests[name] = tree_digest(out)
    return digests


@pytest.fixture(scope="module", params=engines("dask", "ray"))
def cluster(request, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """(distributor, address) of a two-worker cluster on loopback, in a process group of its own."""
    engine = request.param
    process = subprocess.Popen(
        [sys.executable, "-c", CLUSTERS[engine]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **RAY_ENV}, start_new_session=True,
    )  # fmt: skip
    try:
        address = process.stdout.readline().strip()
        assert address, f"the {engine} cluster did not start"
        yield engine, address
    finally:
        process.stdin.close()  # the cluster's script closes it and ends
        try:
            process.wait(timeout=60)
        finally:
            if group_alive(process.pid):  # the group is ours: what did not stop, stops now
                os.killpg(process.pid, signal.SIGKILL)
            wait_for(lambda: not group_alive(process.pid), f"the {engine} cluster's processes to end")


def written_here(path, data, **options):
    raise AssertionError(f"a shard ran in the driver's process: it wrote {path}")


@pytest.fixture
def shards_never_run_here(monkeypatch) -> None:
    """Fail any shard that writes from this process: a cluster's run must do them all elsewhere.

    Runs that use it pass ``--workers 1``, with which the local distributor would run every
    shard in this process.
    """
    monkeypatch.setattr("augkit.preprocess.shard.atomic_write", written_here)


@pytest.fixture
def closed_port() -> Iterator[str]:
    """A loopback address where a connection is refused: the port is bound, never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


# ----------------------------------------------------------------------------- same bytes


@pytest.mark.parametrize("out_format", list(FLAGS))
def test_a_cluster_run_writes_the_same_bytes_as_a_local_run(
    src, local_runs, cluster, shards_never_run_here, tree_digest, tmp_path, out_format
):
    distributor, address = cluster
    out = tmp_path / "out"
    succeeded(invoke(src, out, *FLAGS[out_format], "--workers", "1", "--distributor", distributor, "--address", address))
    written = tree_digest(out)
    assert written["stats.json"] == local_runs[out_format]["stats.json"]  # statistics merge exactly
    assert manifest(out)["skipped"] and written["manifest.json"] == local_runs[out_format]["manifest.json"]
    assert written == local_runs[out_format]
    # The distributor is not part of the output: the local run sees its own run, complete.
    assert "already complete" in succeeded(invoke(src, out, *FLAGS[out_format]))


@pytest.mark.parametrize("distributor", engines("dask", "ray"))
def test_without_an_address_a_local_cluster_runs_the_shards(
    src, local_runs, shards_never_run_here, tree_digest, tmp_path, monkeypatch, distributor
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    out = tmp_path / "out"
    succeeded(invoke(src, out, *FLAGS["packed"], "--distributor", distributor, "--workers", "1"))
    assert tree_digest(out) == local_runs["packed"]


@needs("ray")
def test_a_ray_cluster_started_for_the_run_is_on_loopback_only():
    code = """
import os
from augkit.preprocess.distributors import _loopback
with _loopback():
    import ray
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
print(ray.util.get_node_ip_address(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in os.environ)
ray.shutdown()
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}  # Ray's default
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["127.0.0.1", "False"]  # and the environment is as it was


# ----------------------------------------------------------------------------- resume across distributors


def test_a_run_stopped_under_local_resumes_on_a_cluster_to_the_same_bytes(
    src, local_runs, cluster, tree_digest, tmp_path, monkeypatch
):
    import augkit.preprocess.shard as shard

    distributor, address = cluster
    real, calls = shard.atomic_write, []

    def full_disk_at_the_10th_write(path, data, **options):
        calls.append(path)
        if len(calls) == 10:  # images, labels, record: three shards done, the fourth stopped
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **options)

    out = tmp_path / "out"
    monkeypatch.setattr(shard, "atomic_write", full_disk_at_the_10th_write)
    assert invoke(src, out, *FLAGS["packed"], "--workers", "1").exit_code == 1
    assert len(list((out / ".shards").glob("*.json"))) == 3
    monkeypatch.setattr(shard, "atomic_write", written_here)  # the rest runs on the cluster
    result = succeeded(invoke(src, out, *FLAGS["packed"], "--workers", "1", "--distributor", distributor, "--address", address))
    assert f"resumed: 3 of {len(manifest(out)['shards'])} shards" in result
    assert tree_digest(out) == local_runs["packed"]


@pytest.mark.skipif(sys.platform != "linux", reason="reads process groups from /proc")
@pytest.mark.parametrize(
    ("stopped", "signum"),
    [pytest.param("dask", signal.SIGKILL, marks=needs("dask")),
     pytest.param("dask", signal.SIGINT, marks=needs("dask")),
     pytest.param("ray", signal.SIGINT, marks=needs("ray"))],
    ids=["kill-9-under-dask", "ctrl-c-under-dask", "ctrl-c-under-ray"],
)  # fmt: skip
def test_a_cluster_run_stopped_part_way_resumes_locally_to_the_same_bytes(
    write_image_folder, tree_digest, tmp_path, stopped, signum
):
    # Enough shards that the stop lands with most still to do; the cluster is the run's own,
    # in the run's process group, so the signal reaches it as a terminal's would.
    big = write_image_folder(tmp_path / "big", {f"class{c}": 120 for c in range(5)}, sizes=((48, 48),))
    flags = ["--size", "32", "--shard-size", "10", "--workers", "2", "-q"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    succeeded(invoke(big, clean, *flags))
    command = [sys.executable, "-m", "augkit", "preprocess", str(big), str(out), *flags, "--distributor", stopped]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "DASK_SCHEDULER_ADDRESS")}
    process = subprocess.Popen(command, start_new_session=True, stderr=subprocess.PIPE, text=True, env=env)

    def a_shard_is_done() -> bool:
        assert process.poll() is None, "the run ended before a shard was recorded"
        return any((out / ".shards").glob("*.json"))

    wait_for(a_shard_is_done, "a first shard")
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=120)
    wait_for(lambda: not group_alive(process.pid), "the run's processes to end")
    if signum == signal.SIGINT:  # the driver alone answers: it cancels the tasks, closes the cluster
        assert process.returncode == 1, stderr
        [line] = stderr.strip().splitlines()  # and no worker's traceback
        assert line.startswith("Error: interrupted") and "run the same command again to resume" in line
    assert manifest(out)["complete"] is False

    result = succeeded(invoke(big, out, *flags[:-1]))
    assert "resumed:" in result
    assert tree_digest(out) == tree_digest(clean)


# ----------------------------------------------------------------------------- errors


def test_an_unknown_distributor_is_a_usage_error(src, assert_fails, tmp_path):
    assert_fails(invoke(src, tmp_path / "out", "--distributor", "spark"), 2, "--distributor", "local", "ray", "dask")
    assert not (tmp_path / "out").exists()


def test_an_address_for_the_local_distributor_is_refused(src, assert_fails, tmp_path):
    assert_fails(invoke(src, tmp_path / "out", "--address", "127.0.0.1:8786"), 2, "--address is for --distributor ray or dask")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("distributor", "module", "engine"), [("ray", "ray", "Ray"), ("dask", "distributed", "Dask")])
def test_a_missing_engine_says_which_extra_to_install(src, assert_fails, tmp_path, monkeypatch, distributor, module, engine):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it fails
    line = assert_fails(invoke(src, tmp_path / "out", "--distributor", distributor), 2)
    assert line == f"Error: --distributor {distributor} needs {engine}: pip install 'augkit[{distributor}]'"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("distributor", engines("dask", "ray"))
@pytest.mark.parametrize("given", ["flag", "environment"])
def test_an_address_where_nothing_answers_is_one_line_before_out_is_touched(
    src, assert_fails, closed_port, tmp_path, distributor, given
):
    variable = {"ray": "RAY_ADDRESS", "dask": "DASK_SCHEDULER_ADDRESS"}[distributor]
    args = [src, tmp_path / "out", "--distributor", distributor]
    result = invoke(*args, "--address", closed_port) if given == "flag" else invoke(*args, env={variable: closed_port})
    engine = {"ray": "Ray", "dask": "Dask"}[distributor]
    assert_fails(result, 2, f"cannot reach the {engine} cluster at {closed_port}", "refused", f"${variable}")
    assert not (tmp_path / "out").exists()


# What a server that is not a scheduler answers: nothing (it accepts, and stays silent), or
# bytes of another protocol (a web server's reply, read by Dask as a frame length of 3.07 EiB).
ANSWERS = {"silent": None, "garbage": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4}


@pytest.fixture(params=list(ANSWERS))
def wrong_server(request) -> Iterator[tuple[str, str]]:
    """(kind, "127.0.0.1:PORT") of a TCP server, in a thread of this process, that accepts
    every connection and answers ANSWERS[kind]."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                connection, _ = listener.accept()
                accepted.append(connection)  # held open: the client waits on a live connection
                if ANSWERS[request.param] is not None:
                    with contextlib.suppress(OSError):
                        connection.sendall(ANSWERS[request.param])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield request.param, f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close() alone does not, on Linux)
        listener.close()
        for connection in accepted:
            connection.close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def start_preprocess(src: Path, out: Path, *args: object) -> subprocess.Popen:
    """`augkit preprocess` in a process of its own (and a process group, for group_alive)."""
    env = {k: v for k, v in os.environ.items() if k not in ADDRESS_ENV.values()} | RAY_ENV
    command = [sys.executable, "-m", "augkit", "preprocess", str(src), str(out), *map(str, args)]
    return subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


@pytest.mark.parametrize("distributor", engines("dask", "ray"))
def test_a_server_that_is_silent_or_answers_garbage_is_one_line_exit_2_within_the_timeout(
    src, wrong_server, tmp_path, distributor
):
    kind, address = wrong_server
    process = start_preprocess(src, tmp_path / "out", "--distributor", distributor, "--address", address,
                               "--connect-timeout", 5)  # fmt: skip
    _, stderr = process.communicate(timeout=120)  # only a hang would take this long
    wait_for(lambda: not group_alive(process.pid), "the probe of the address to end")
    assert process.returncode == 2, stderr
    [line] = stderr.strip().splitlines()
    engine = {"ray": "Ray", "dask": "Dask"}[distributor]
    if kind == "silent":
        assert line == (f"Error: the {engine} cluster at {address} did not answer within 5 s; start it, check "
                        f"--address (default: ${ADDRESS_ENV[distributor]}), or wait longer with --connect-timeout "
                        f"SECONDS")  # fmt: skip
    else:  # Dask reads the reply as a 3.07 EiB frame; Ray's client retries until the deadline
        assert line.startswith((f"Error: cannot connect to the {engine} cluster at {address}: ",
                                f"Error: the {engine} cluster at {address} did not answer within 5 s")), line  # fmt: skip
    assert not (tmp_path / "out").exists()


@needs("ray")
@pytest.mark.skipif(sys.platform != "linux", reason="reads process groups from /proc")
def test_sigterm_while_ray_connects_ends_the_process_and_its_probe(src, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does), never answers
    with listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        process = start_preprocess(src, tmp_path / "out", "--distributor", "ray", "--address", address,
                                   "--connect-timeout", 600)  # fmt: skip
        time.sleep(3)  # connecting: Ray's client is inside a C++ call that retries for minutes
        assert process.poll() is None
        process.terminate()
        process.communicate(timeout=60)  # only a process that ignores SIGTERM would take this long
        assert process.returncode == -signal.SIGTERM
        wait_for(lambda: not group_alive(process.pid), "the probe to end with its parent", seconds=60)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--connect-timeout", "nan"], "--connect-timeout is nan; give the seconds"),
     (["--connect-timeout", "0"], "--connect-timeout is 0.0; give the seconds"),
     (["--connect-timeout", "-5"], "--connect-timeout is -5.0; give the seconds"),
     (["--connect-timeout", "inf"], "--connect-timeout is inf; give the seconds"),
     (["--connect-timeout", "1e9"], "at most 86400"),
     (["--connect-timeout", "10"], "--connect-timeout is for a cluster at an --address"),
     (["--distributor", "dask", "--connect-timeout", "10"], "--connect-timeout is for a cluster at an --address")],
)  # fmt: skip
def test_a_connect_timeout_that_is_not_a_time_to_wait_is_a_usage_error(src, assert_fails, tmp_path, args, message):
    assert_fails(invoke(src, tmp_path / "out", *args), 2, message)
    assert not (tmp_path / "out").exists()


def test_help_says_how_long_connecting_may_take_and_how_to_change_it():
    from augkit.preprocess.distributors import CONNECT_TIMEOUT_S

    help_text = " ".join(CliRunner().invoke(cli, ["preprocess", "--help"]).output.split())
    assert "--connect-timeout SECONDS" in help_text and f"(default: {CONNECT_TIMEOUT_S:g})" in help_text


def test_a_workers_error_is_the_same_one_line_as_locally(make_image_folder, cluster, assert_fails, tmp_path):
    distributor, address = cluster
    mixed = make_image_folder({"cat": 2}, sizes=((30, 40), (44, 30)))  # one shard, two sizes: refused on the worker
    local = assert_fails(invoke(mixed, tmp_path / "local"), 2, "different sizes")
    remote = invoke(mixed, tmp_path / "remote", "--distributor", distributor, "--address", address)
    assert assert_fails(remote, 2) == local


@needs("dask")
def test_shards_written_where_this_machine_cannot_see_them_are_refused(src, assert_fails, tmp_path, monkeypatch):
    """A worker without OUT on a shared filesystem writes on its own disk: the driver finds out."""
    import augkit.preprocess.distributors as distributors

    elsewhere = tmp_path / "workers-own-disk"

    def on_other_machines(function, tasks, workers, address, connect_timeout):
        for task in tasks:
            (elsewhere / ".shards").mkdir(parents=True, exist_ok=True)
            yield function(type(task)(task.shard, task.dataset, task.names, task.config, str(elsewhere)))

    monkeypatch.setitem(distributors._DISTRIBUTORS, "dask", on_other_machines)
    out = tmp_path / "out"
    assert_fails(invoke(src, out, "--size", "24", "--distributor", "dask"), 2, "train-00000", "shared with this machine")
    assert manifest(out)["complete"] is False and not list((out / ".shards").iterdir())


def test_a_worker_that_cannot_see_out_says_so(src, tmp_path):
    from augkit.errors import AugkitError
    from augkit.preprocess.distributors import _on_worker
    from augkit.preprocess.plan import PreprocessConfig, make_shards, open_splits
    from augkit.preprocess.shard import ShardTask, run_shard

    config = PreprocessConfig(shard_size=4)
    splits = open_splits(src, config)
    [shard, *_] = make_shards(splits, config)
    task = ShardTask(shard, splits["train"].subset(range(4)), None, config, str(tmp_path / "not-here"))
    with pytest.raises(AugkitError, match=r"OUT \(.*not-here/.shards\) is not visible on worker .*shared filesystem"):
        _on_worker(run_shard, task)


# ----------------------------------------------------------------------------- the seam


def test_import_augkit_loads_neither_ray_nor_dask():
    code = "import sys, augkit, augkit.preprocess; print([m for m in ('ray', 'dask', 'distributed') if sys.modules.get(m)])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_command_lines_choices_are_the_distributors():
    from augkit.cli.preprocess import DISTRIBUTORS as choices
    from augkit.preprocess.distributors import DISTRIBUTORS

    assert choices == DISTRIBUTORS
