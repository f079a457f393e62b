"""The README's promise: its main command's jobs run for real, and CI runs its test command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def command_after(marker: str) -> str:
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.*?)\n```", README, re.S)
    assert match, f"README.md has no bash block after <!-- {marker} -->"
    return match.group(1).strip()


def test_the_main_commands_augkit_jobs_run_on_the_sample_data_in_a_real_process(tmp_path):
    """Runs every `.venv/bin/augkit ...` part of the first command with this interpreter's augkit
    (the install parts are what CI's fresh clone exercises): the default training run, which
    must reach 98% validation accuracy on the sample digits."""
    jobs = [part.strip() for part in command_after("main-command").split("&&") if "bin/augkit " in part]
    assert [shlex.split(j)[1] for j in jobs] == ["train"]
    for job in jobs:
        args = shlex.split(job)[1:]
        done = subprocess.run([sys.executable, "-m", "augkit", *args], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_val_acc"] >= 0.98 and summary["epochs"] == 20, summary
    assert "best val acc" in done.stdout and str(Path("runs") / run_dir.name) in done.stdout


def test_ci_runs_exactly_the_readmes_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "<!-- test-command -->" in ci  # .ci/run reads the command from the README ...
    extracted = subprocess.run(
        ["awk", re.search(r"awk '(.*?)' README.md", ci, re.S).group(1), "README.md"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert extracted == command_after("test-command")  # ... and gets the one the README shows
    assert "pytest" in extracted


def test_the_readmes_python_api_example_runs(tmp_path):
    match = re.search(r"## Python API\s*```python\n(.*?)\n```", README, re.S)
    assert match, "README.md has no Python API example"
    digits = str(ROOT / "sample_data" / "digits")
    code = match.group(1).replace('"sample_data/digits"', repr(digits))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "'seed': 0" in done.stdout and (tmp_path / "stats.json").is_file()


def test_the_readmes_own_dataset_example_runs_with_real_workers(tmp_path):
    match = re.search(r"```python\n(from torch.utils.data import DataLoader\n.*?AugmentedDataset.*?)\n```", README, re.S)
    assert match, "README.md has no AugmentedDataset example"
    digits = str(ROOT / "sample_data" / "digits")
    code = "import augkit\n" + match.group(1).replace('"sample_data/digits"', repr(digits))
    code += "\nassert images.dtype.is_floating_point is False and tuple(images.shape[1:]) == (8, 8, 1), images.shape  # gray digits: one channel\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_the_readmes_targets_example_runs(tmp_path):
    section = re.search(r"## Masks, boxes and keypoints(.*?)\n## ", README, re.S).group(1)
    (tmp_path / "det.yaml").write_text(re.search(r"```yaml\n(# det.yaml.*?)```", section, re.S).group(1))
    code = re.search(r"```python\n(.*?)\n```", section, re.S).group(1).replace('"sample_data/', repr(str(ROOT / "sample_data")) + ' + "/')
    code += "\nprint(out.image.shape == out.mask.shape[:2] + (3,), len(dataset), dataset.kind)\n"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "4", "coco"]


def test_every_package_in_the_tree_is_listed_for_installation():
    """A sub-package missing from pyproject.toml works in the editable install of the tests and
    is silently absent from a wheel."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(config["packages"])
    folders = {package: ROOT / folder for package, folder in config["package-dir"].items()}
    found = set()
    for package, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            parts = init.parent.relative_to(folder).parts
            found.add(".".join((package, *parts)) if parts else package)
    found -= {p for p in found if p.startswith("augkit.sample_data.")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
