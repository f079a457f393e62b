"""Every command the README shows runs as printed, in a real process, and does what its comment says.

The examples name files a reader has (``cat.jpg``, ``~/data/flowers``, a CIFAR folder, a run
folder): the ``world`` fixture builds each of them from the shipped sample data, in a temporary
folder that serves as the working directory and as ``$HOME``, so the commands run with the
arguments printed. The few that need what a test machine does not have (a cluster's address,
several GPUs) are listed in ``NOT_HERE`` with the reason and the test that covers them instead.

These tests take a few minutes (the ablation examples train dozens of small models), so the
README's test command leaves them out (``-m "not examples"`` in pyproject.toml) and ``.ci/run``
runs them after it: ``python -m pytest -q -m examples -n auto`` (each xdist worker builds its own world).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.examples

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SETUP = ("python3 -m venv",)


def readme_examples() -> list[str]:
    """The README's example commands, in order, continuation lines joined, each once."""
    examples: list[str] = []
    for block in re.findall(r"```bash\n(.*?)\n```", README, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.strip()
            if command and not command.startswith("#") and not command.startswith(SETUP) and command not in examples:
                examples.append(command)
    return examples


# What cannot run on a test machine, and what tests it instead.
NOT_HERE = {
    "--distributor dask --address": "needs a Dask cluster at that address; tests/test_preprocess_distributed.py runs a local one",
    "--distributor ray": "needs a Ray cluster at that address; tests/test_preprocess_distributed.py runs a local one",
    "torchrun": "needs several GPUs or machines; tests/test_train_distributed.py runs torchrun with two CPU processes",
}


def _photo_crops(side: int, per_photo: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Crops of the sample photos, ``per_photo`` of each, as classes named after the photos (RGB)."""
    rng = np.random.default_rng(seed)
    classes: dict[str, list[np.ndarray]] = {}
    for path in sorted((ROOT / "sample_data" / "photos").iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            continue
        crops = []
        for _ in range(per_photo):
            size = int(rng.integers(min(image.shape[:2]) // 3, min(image.shape[:2])))
            y, x = rng.integers(0, image.shape[0] - size + 1), rng.integers(0, image.shape[1] - size + 1)
            crops.append(cv2.resize(image[y : y + size, x : x + size], (side, side), interpolation=cv2.INTER_AREA))
        classes[path.stem] = crops
    return classes


def _image_folder(root: Path, splits: dict[str, int], side: int, ext: str) -> None:
    for split, per_photo in splits.items():
        for name, crops in _photo_crops(side, per_photo, seed=len(split)).items():
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, crop in enumerate(crops):
                cv2.imwrite(str(folder / f"{i}.{ext}"), crop)


def _augkit(world: Path, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``command`` as a shell would split it, ``augkit`` run by this interpreter, in ``world``."""
    words = shlex.split(command)
    env = dict(os.environ, HOME=str(world / "home"))
    while "=" in words[0] and not words[0].startswith("-"):  # VAR=value before the command
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    assert words[0] == "augkit", command
    words = [env["HOME"] + w[1:] if w.startswith("~/") else w for w in words]  # as the shell expands it
    return subprocess.run(
        [sys.executable, "-m", "augkit", *words[1:]], cwd=world, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory holding every file the README's examples name."""
    world = tmp_path_factory.mktemp("readme")
    home = world / "home"
    shutil.copytree(ROOT / "sample_data", world / "sample_data", ignore=shutil.ignore_patterns("__pycache__"))
    photos = ROOT / "sample_data" / "photos"
    shutil.copy(photos / "chelsea.jpg", world / "cat.jpg")
    cv2.imwrite(str(world / "dog.png"), cv2.imread(str(photos / "coffee.jpg")))
    shutil.copy(photos / "astronaut.jpg", world / "photo.jpg")
    (world / "aug.yaml").write_text(
        "seed: 0\nsteps:\n  - crop: {size: 0.8, mode: random_resized}\n  - rotate: {limit: 15, p: 0.5}\n"
        "  - brightness: {limit: 0.2, p: 0.5}\n  - hflip: {p: 0.5}\n"
    )
    (world / "flowers.yaml").write_text("model: resnet\nepochs: 3\nbatch_size: 32\n")
    # The detection spec the README shows, as written there.
    det = re.search(r"```yaml\n(# det.yaml.*?)```", README, re.S).group(1)
    (world / "det.yaml").write_text(det)
    # What the studio's "Export YAML" downloads (its form: Pipeline.to_text).
    (world / "pipeline.yaml").write_text(
        "seed: 0\nsteps:\n- crop:\n    size: 64\n    mode: random_resized\n    scale:\n    - 0.5\n    - 1.0\n"
        "- rotate:\n    limit:\n    - -20\n    - 20\n    p: 0.7\n- hflip:\n    p: 0.5\n"
    )
    _image_folder(home / "data" / "flowers", {"": 16}, side=96, ext="jpg")  # class folders, no split (as downloaded)
    _image_folder(home / "data" / "pets", {"": 8}, side=256, ext="png")
    # A CIFAR-10 python folder in the real format (pickled batches of 3072-byte rows).
    import pickle

    cifar = world / "cifar-10-batches-py"
    cifar.mkdir()
    rng = np.random.default_rng(0)
    names = [f"class{i}".encode() for i in range(10)]
    (cifar / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 20).tolist()}
        (cifar / name).write_bytes(pickle.dumps(batch, protocol=2))
    # What other examples read: a preprocessed flowers-64, and the run folder the README names.
    for command in (
        "augkit preprocess ~/data/flowers ~/data/flowers-64 --size 64 --workers 8 --split-val 0.1",  # as the README's
        "augkit train --epochs 2 -o runs/cnn-20261126-101500",
        "augkit stats -o stats.json",
    ):
        done = _augkit(world, command)
        assert done.returncode == 0, (command, done.stderr)
    return world


def _summary(world: Path, run: str) -> dict:
    return json.loads((world / run / "summary.json").read_text())


def _newest_run(world: Path, prefix: str) -> Path:
    return max((world / "runs").glob(f"{prefix}-*"), key=lambda p: p.stat().st_mtime)


# What an example's comment (or its purpose) promises, checked on its output.
CLAIMS: dict[str, Callable[[Path, subprocess.CompletedProcess], None]] = {
    "augkit train                                   # cnn on the sample digits: ~99% in seconds":
        lambda world, done: _check(_summary(world, _newest_run(world, "cnn"))["final_val_acc"] >= 0.98, done),
    "augkit preprocess sample_data/digits digits-aug --copies 4":
        lambda world, done: _check(
            json.loads((world / "digits-aug" / "manifest.json").read_text())["counts"]["train"]["images"]
            == (1 + 4) * sum(1 for p in (world / "sample_data" / "digits" / "train").rglob("*.png")), done),
    "# 8 layers: stays at chance":
        lambda world, done: _check(_summary(world, _newest_run(world, "mlp"))["best_val_acc"] < 0.2, done),
    "--stages photo.jpg": lambda world, done: _check((world / "preview.png").is_file(), done),
    "augkit steps crop": lambda world, done: _check("mode" in done.stdout and "center" in done.stdout, done),
    "lr 100 diverges": lambda world, done: _check(re.search(r"diverg|failed", done.stdout + done.stderr, re.I) is not None, done),
    "augkit diagnose probe --compare -o probe.png": lambda world, done: _check((world / "probe.png").is_file(), done),
    "--json": lambda world, done: _check(_is_json(done.stdout), done),
}


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _check(ok: bool, done: subprocess.CompletedProcess) -> None:
    assert ok, f"the example ran but did not do what its comment says:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"


def _serve_briefly(world: Path, command: str) -> subprocess.CompletedProcess:
    """A server (``augkit studio``): started as printed, its page and state fetched once it
    prints its URL, then stopped with Ctrl-C (SIGINT), as a user stops it."""
    import signal
    import urllib.request

    words = shlex.split(command)
    assert words[:2] == ["augkit", "studio"] and "--open" not in words, command  # no browser windows from tests
    words = [str(world / "home") + w[1:] if w.startswith("~/") else w for w in words]
    env = dict(os.environ, HOME=str(world / "home"))
    process = subprocess.Popen([sys.executable, "-m", "augkit", *words[1:]], cwd=world, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        line = process.stdout.readline()
        url = re.search(r"http://\S+", line)
        if url is not None:
            for path in ("", "api/state"):
                with urllib.request.urlopen(url.group(0) + path, timeout=60) as response:
                    assert response.status == 200, (command, path)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    return subprocess.CompletedProcess(words, process.returncode, line + out, err)


# Folders an example writes (-o) and a later one reads. The examples are spread over xdist workers,
# each with its own world: a reader whose writer has not run in its world runs it first, and the
# writer's own test then takes that run's result (each runs once a world: a second would be refused).
SHARED_OUTPUTS = ("runs/watched",)
_WRITTEN: dict[tuple[Path, str], subprocess.CompletedProcess] = {}


def _run_example(world: Path, printed: str) -> subprocess.CompletedProcess:
    folder = next((f for f in SHARED_OUTPUTS if f in printed), None)
    if folder is not None:
        writer = next(c.split("  #")[0].strip() for c in readme_examples() if f"-o {folder}" in c)
        if (world, writer) not in _WRITTEN:
            _WRITTEN[world, writer] = _augkit(world, writer)
        if printed == writer:
            return _WRITTEN[world, writer]
        assert _WRITTEN[world, writer].returncode == 0, f"{writer}, which {printed} reads, failed"
    if printed.startswith("augkit studio"):
        return _serve_briefly(world, printed)
    return _augkit(world, printed)


@pytest.mark.parametrize("command", readme_examples())
def test_the_readmes_example_runs_as_printed(world, command):
    reason = next((why for key, why in NOT_HERE.items() if key in command), None)
    if reason:
        pytest.skip(reason)
    done = _run_example(world, command.split("  #")[0].strip())
    assert done.returncode == 0, f"{command}\nexit {done.returncode}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, done.stderr
    assert not re.search(r"^\S*(Warning|warn)\b", done.stderr, re.M), f"a warning in normal output:\n{done.stderr}"
    for key, claim in CLAIMS.items():
        if key in command:
            claim(world, done)


def test_every_example_is_run_or_named_with_a_reason():
    # An example the world cannot run (a file it does not build) fails above; one that is
    # skipped must say why, here, so that skipping never grows silently.
    skipped = [c for c in readme_examples() if any(key in c for key in NOT_HERE)]
    assert len(skipped) <= 4, skipped
    assert len(readme_examples()) >= 25
