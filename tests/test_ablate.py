"""`augkit ablate`: the grid's syntax, a folder per run, results.csv and the report, failed runs as
outcomes, resume after a real kill, every user mistake as one line with exit 2 before any
training, and the lecture's default comparison agreeing with test_train_evidence.py.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from augkit.cli.main import cli
from augkit.train.grid import Study, parse_grid, plan_runs, slug
from augkit.train.config import TrainConfig
from augkit.train.studies import AUGMENT_VARIANTS, SHIFT, augment_studies, lecture_studies

# Tiny runs: a one-layer MLP on the 8x8 sample digits, two epochs.
TINY = ["--set", "model=mlp", "--set", "hidden=16", "--epochs", "2", "--seeds", "2"]
# lr 1e6 without BatchNorm turns the loss NaN in the first epoch: a legitimate, failed outcome.
GRID = ["--grid", "lr=0.05,1e6", "--grid", "dropout=0,0.3", "--set", "schedule=constant", "--set", "batchnorm=false"]


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def read_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- the grid


@pytest.mark.parametrize(
    ("text", "key", "values"),
    [
        ("dropout=0,0.5", "dropout", (0.0, 0.5)),
        ("weight-decay=0,5e-4", "weight_decay", (0.0, 5e-4)),
        ("batchnorm=true,false", "batchnorm", (True, False)),
        ("hidden=[256,256],[512]", "hidden", ((256, 256), (512,))),
        ("hidden=256,256|512", "hidden", ((256, 256), (512,))),
        ("augment=null,crop(size=8, padding=1); rotate(limit=10)", "augment", (None, "crop(size=8, padding=1); rotate(limit=10)")),
        ("augment=null|hflip; rotate(limit=10)", "augment", (None, "hflip; rotate(limit=10)")),
        ("activation=relu, tanh", "activation", ("relu", "tanh")),
    ],
)
def test_grid_values_split_on_top_level_commas_or_on_bars_and_take_the_fields_type(text, key, values):
    assert parse_grid([text], TrainConfig()) == {key: values}


def test_repeated_grids_make_the_cartesian_product_seed_by_seed(tmp_path):
    grid = parse_grid(["activation=relu,tanh", "init=xavier_normal,kaiming_normal,normal"], TrainConfig(seed=5))
    runs = plan_runs([Study(TrainConfig(seed=5), grid, seeds=2)], tmp_path)
    assert len(runs) == 12 and [r.seed for r in runs] == [5] * 6 + [6] * 6
    assert runs[1].point == {"activation": "relu", "init": "kaiming_normal"}  # the last key varies fastest
    assert runs[1].run_dir == tmp_path / "runs" / "activation=relu,init=kaiming_normal" / "seed5"
    assert (runs[1].config.activation, runs[1].config.init, runs[7].config.seed) == ("relu", "kaiming_normal", 6)


def test_run_folders_are_readable_stable_and_never_shared():
    assert slug({"dropout": 0.5, "hidden": (256, 256)}) == "dropout=0.5,hidden=256x256"
    assert slug({"augment": None}) == "augment=null"
    pipeline = slug({"augment": "crop(size=8, padding=1); hflip"})
    assert pipeline.startswith("augment=crop_size_8_padding") and pipeline == slug({"augment": "crop(size=8, padding=1); hflip"})
    assert pipeline != slug({"augment": "crop(size=8, padding=1);  hflip"})
    assert slug({"weight_decay": 1e-05}) != slug({"weight_decay": 1.00001e-05})
    assert all(c not in slug({"augment": "../../x y/z"}) for c in "/ ")


# ----------------------------------------------------------------------------- user mistakes


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--grid", "dropuot=0,0.5"], "did you mean dropout"),
        (["--grid", "dropout=0,1"], "dropout must be in [0, 1)"),
        (["--grid", "epochs=two"], "epochs must be int"),
        (["--grid", "activation=relu,relux"], "did you mean relu"),
        (["--grid", "augment=rotat(limit=10)"], "rotate"),
        (["--grid", "seed=0,1"], "--seeds"),
        (["--grid", "dropout"], "KEY=V1,V2"),
        (["--grid", "dropout=0,,0.5"], "empty value"),
        (["--grid", "hidden=256,256"], "twice"),
        (["--grid", "dropout=0,0.5", "--grid", "dropout=0.2"], "given twice"),
        (["--grid", "warmup-epochs=0,3", "--epochs", "2"], "warmup_epochs (3.0) must be shorter"),
        (["--grid", "epochs=2,8", "--grid", "warmup-epochs=0,3"], "warmup_epochs (3.0) must be shorter than the run (epochs=2)"),
        (["--grid", "dropout=0,0.5", "--base-config", "missing.yaml"], "missing.yaml"),
        (["--grid", "dropout=0,0.5", "no-such-data"], "no-such-data"),
        (["--set", "dropout=0.5"], "needs --grid"),
        (["--study", "augment", "--grid", "dropout=0,0.5"], "--study augment is a comparison of its own"),
        (["--study", "augment", "--set", "dropout=0.5"], "the augment comparison"),
        (["--study", "augmnet"], "'augmnet' is not one of"),
    ],
)
def test_user_mistakes_are_one_line_exit_2_before_any_training(tmp_path, args, expected):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["ablate", *args, "-o", str(out), "-q"])
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()  # nothing left behind: the same -o works once the mistake is fixed


def test_an_unrelated_folder_is_never_used_as_out(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = invoke("ablate", "--grid", "dropout=0,0.5", "-o", tmp_path)
    assert result.exit_code == 2 and "holds no ablation" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


# ----------------------------------------------------------------------------- a small ablation


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, str]:
    """lr (0.05, 1e6) x dropout (0, 0.3), two seeds: 8 tiny runs, 4 of them failing with a NaN loss."""
    out = tmp_path_factory.mktemp("ablate") / "out"
    result = invoke("ablate", *GRID, *TINY, "--workers", "2", "-o", out)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_each_run_has_its_folder_and_results_csv_a_row_with_its_numbers(small):
    out, _ = small
    rows = read_rows(out)
    assert len(rows) == 8
    assert list(rows[0])[:4] == ["lr", "dropout", "seed", "status"]
    assert {"best_val_acc", "best_epoch", "final_val_acc", "final_train_acc", "gap", "epochs_to_90", "seconds"} <= set(rows[0])
    for row in rows:
        run_dir = out / row["run_dir"]
        assert run_dir.parent.parent == out / "runs" and run_dir.name == f"seed{row['seed']}"
        config = TrainConfig.load(run_dir / "config.yaml")
        assert (config.lr, config.dropout, config.seed, config.epochs) == (float(row["lr"]), float(row["dropout"]), int(row["seed"]), 2)
        if row["status"] != "ok":
            continue
        summary = json.loads((run_dir / "summary.json").read_text())
        assert float(row["best_val_acc"]) == pytest.approx(summary["best_val_acc"], abs=1e-5)
        assert float(row["gap"]) == pytest.approx(float(row["final_train_acc"]) - float(row["final_val_acc"]), abs=1e-5)
        with open(run_dir / "metrics.csv", newline="") as f:
            reached = [int(r["epoch"]) for r in csv.DictReader(f) if float(r["val_acc"]) >= 0.9]
        assert row["epochs_to_90"] == (str(reached[0]) if reached else "")


def test_a_diverging_configuration_is_a_failed_row_not_the_end_of_the_ablation(small):
    out, output = small
    rows = read_rows(out)
    assert {r["status"] for r in rows if r["lr"] == "1000000.0"} == {"failed"}
    assert {r["status"] for r in rows if r["lr"] == "0.05"} == {"ok"}
    assert all("loss became" in r["reason"] for r in rows if r["status"] == "failed")
    # In the grid's words (lr=1e+06), not augkit train's flags or its -o advice: the ablation chose them.
    reasons = [r["reason"] for r in rows if r["status"] == "failed"]
    assert all("(lr=1e+06; try 100000)" in r and "batchnorm=false; try batchnorm=true" in r for r in reasons), reasons
    assert not any("--" in r or "-o" in r for r in reasons), reasons
    assert "4 failed" in output


def test_report_sorts_configurations_by_best_val_acc_and_marks_the_best(small):
    out, output = small
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "2 epochs" in report and "seeds 0–1" in report and "schedule=constant" in report
    table = [line.split("|") for line in report.splitlines() if line.startswith("| ") and "configuration" not in line]
    means = [float(cells[3].strip(" *").split(" ± ")[0]) for cells in table if "—" not in cells[3]]
    assert len(means) == 2 and means == sorted(means, reverse=True)
    assert table[0][1].strip() == "★" and table[0][2].strip().startswith("**lr=0.05")
    assert "—" in table[-1][3] and table[-1][7].strip() == "0 of 2 (2 failed)"
    assert "loss became" in report  # why they failed
    assert (out / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "best lr=0.05" in output


def test_running_a_finished_ablation_again_trains_nothing(small):
    out, _ = small
    checkpoints = sorted(out.glob("runs/*/*/last.pt"))
    before = {p: p.stat().st_mtime_ns for p in checkpoints}
    results = (out / "results.csv").read_bytes()
    result = invoke("ablate", *GRID, *TINY, "-o", out)
    assert result.exit_code == 0 and "all 8 runs done before" in result.output and "0 trained now" in result.output
    summary = json.loads(invoke("ablate", *GRID, *TINY, "-o", out, "--json").output)
    assert (summary["runs"], summary["ran"], summary["failed"], summary["errors"]) == (8, 0, 4, 0)
    assert summary["best"][0]["configuration"].startswith("lr=0.05") and summary["report"] == str(out / "report.md")
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == before
    assert (out / "results.csv").read_bytes() == results


@pytest.mark.parametrize("damage", ["[]", "", '{"status": "ok"}', '{"status": "ok", "best_val_acc": "x"}'])
def test_a_damaged_run_outcome_is_redone_by_a_rerun_never_a_traceback(tmp_path, damage):
    out, args = tmp_path / "out", ["--grid", "dropout=0,0.3", "--set", "model=mlp", "--set", "hidden=16", "--epochs", "1", "--seeds", "1"]
    assert invoke("ablate", *args, "-o", out).exit_code == 0
    (outcome,) = sorted(out.glob("runs/dropout=0.3*/seed*/ablation.json"))
    outcome.write_text(damage, encoding="utf-8")
    result = invoke("ablate", *args, "-o", out)
    assert result.exit_code == 0, result.output
    assert {r["status"] for r in read_rows(out)} == {"ok"}
    assert json.loads(outcome.read_text(encoding="utf-8"))["status"] == "ok"


def test_without_o_two_grids_over_the_same_keys_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny = ["--set", "model=mlp", "--set", "hidden=8", "--epochs", "1", "--seeds", "1", "--workers", "1", "--json"]
    first = json.loads(invoke("ablate", "--grid", "dropout=0,0.3", *tiny).output)
    second = json.loads(invoke("ablate", "--grid", "dropout=0,0.5", *tiny).output)
    assert first["report"] == str(Path("ablations", "dropout", "report.md"))
    assert second["report"] == str(Path("ablations", "dropout-2", "report.md"))
    again = json.loads(invoke("ablate", "--grid", "dropout=0,0.5", *tiny).output)  # the same command continues its own
    assert again["report"] == second["report"] and again["ran"] == 0
    assert [r["dropout"] for r in read_rows(tmp_path / "ablations" / "dropout")] == ["0.0", "0.3"]


def test_out_holding_another_grid_is_refused_saying_what_differs(small):
    out, _ = small
    plan = (out / "plan.json").read_bytes()
    result = invoke("ablate", "--grid", "lr=0.05,0.1", "--grid", "dropout=0,0.3", *TINY, "-o", out)
    assert result.exit_code == 2, result.output
    assert "holds another ablation" in result.output and "grid" in result.output and "-o" in result.output
    result = invoke("ablate", *GRID, *TINY[:-1], "3", "-o", out)  # --seeds 3
    assert result.exit_code == 2 and "seeds 2 there, 3 here" in result.output, result.output
    assert (out / "plan.json").read_bytes() == plan


def test_a_run_that_stops_with_an_error_is_reported_after_the_others_and_retried_by_a_rerun(tmp_path):
    out, args = tmp_path / "out", ["--grid", "dropout=0,0.3", "--set", "model=mlp", "--set", "hidden=16", "--epochs", "1", "--seeds", "1"]
    assert invoke("ablate", *args, "-o", out).exit_code == 0
    broken = out / "runs" / "dropout=0.3" / "seed0"
    for name in ("ablation.json", "summary.json"):
        (broken / name).unlink()
    (broken / "last.pt").write_bytes(b"not a checkpoint")  # looks resumable; cannot be read
    result = invoke("ablate", *args, "-o", out)
    assert result.exit_code == 1 and "1 of 2 runs stopped with an error" in result.output, result.output
    assert "cannot be read" in result.output and "run the same command again" in result.output
    rows = read_rows(out)
    assert [r["status"] for r in rows] == ["ok", "error"] and "cannot be read" in rows[1]["reason"]
    (broken / "last.pt").unlink()  # the fix: nothing to resume, so the run starts again
    result = invoke("ablate", *args, "-o", out)
    assert result.exit_code == 0 and [r["status"] for r in read_rows(out)] == ["ok", "ok"], result.output


# ----------------------------------------------------------------------------- resume after kill -9

# Three runs of a second or two, one after another (one worker): killed during the second.
RESUMABLE = ["--grid", "dropout=0,0.2,0.4", "--set", "model=mlp", "--set", "hidden=256,256", "--set", "batch_size=32",
             "--epochs", "6", "--seeds", "1", "--workers", "1"]  # fmt: skip


def _ablate(*args: object, core: int = 0) -> subprocess.Popen:
    """`augkit ablate` in a process of its own, on one core (of those this process may use)."""

    def one_core() -> None:
        # One core, so one thread per run: on a shared machine, two threads contending with
        # other processes make these tiny runs ten times slower, and a timing test flaky.
        if hasattr(os, "sched_setaffinity"):
            cores = sorted(os.sched_getaffinity(0))
            os.sched_setaffinity(0, {cores[core % len(cores)]})

    return subprocess.Popen([sys.executable, "-m", "augkit", "ablate", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=one_core)  # fmt: skip


def test_an_ablation_killed_mid_way_keeps_finished_runs_and_ends_as_a_clean_one(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    first, second, third = (killed / "runs" / f"dropout={p}" / "seed0" for p in ("0.0", "0.2", "0.4"))
    reference = _ablate(*RESUMABLE, "-o", clean, "-q", core=1)
    victim = _ablate(*RESUMABLE, "-o", killed)
    deadline = time.monotonic() + 180
    while not ((first / "ablation.json").exists() and (second / "last.pt").exists()):
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the second run never finished an epoch"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    time.sleep(1.0)  # its worker notices that the parent is gone and leaves (within 0.2 s)
    assert not (second / "ablation.json").exists()
    finished = {name: (first / name).stat().st_mtime_ns for name in ("last.pt", "summary.json", "ablation.json")}
    third.mkdir(parents=True, exist_ok=True)
    (third / "metrics.csv").write_text("a run killed before its first checkpoint\n")

    rerun = _ablate(*RESUMABLE, "-o", killed)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr
    assert "3 runs: 1 done before, 1 to resume, 1 to run" in stderr
    assert {name: (first / name).stat().st_mtime_ns for name in finished} == finished  # not redone
    assert reference.wait(timeout=300) == 0, reference.communicate()

    def without_time(out: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_rows(out)]

    assert without_time(killed) == without_time(clean)
    assert [r["epoch"] for r in csv.DictReader(open(second / "metrics.csv"))] == [str(e) for e in range(1, 7)]


# ----------------------------------------------------------------------------- Ctrl-C while workers start

# Moments to press Ctrl-C, in seconds after the forkserver appeared: while the server imports
# torch (seconds), forks the workers, they start, and they begin training. (Earlier, the parent
# itself imports torch, whose C++ side may abort on a KeyboardInterrupt raised inside one of
# its callbacks: torch's, not the pool's.)
STARTING = [("forkserver", 0.05), ("forkserver", 0.5), ("forkserver", 1.0), ("forkserver", 2.0),
            ("forkserver", 3.0)]  # fmt: skip


@pytest.mark.skipif(sys.platform != "linux", reason="reads process groups from /proc")
@pytest.mark.parametrize("moment", STARTING, ids=[f"{since}+{delay}s" for since, delay in STARTING])
def test_ctrl_c_while_the_workers_start_is_one_line_from_the_parent(tmp_path, moment):
    from test_preprocess_faults import assert_one_line_from_the_parent, interrupt_at

    args = ["--grid", "lr=0.01,0.1", "--set", "model=mlp", "--set", "hidden=16", "--epochs", "5", "--seeds", "2",
            "--workers", "2", "-q", "-o", tmp_path / "out"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "augkit", "ablate", *map(str, args)], start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert_one_line_from_the_parent(process, interrupt_at(process, moment), "Error: interrupted")


# ----------------------------------------------------------------------------- the lecture's comparison


def test_the_default_comparison_scaled_down_agrees_with_the_evidence_tests(tmp_path, monkeypatch):
    """`augkit ablate` with no grid and one seed, the studies cut to 5 and 30 epochs (from 10 and
    60; 5 is the evidence test's own length, and by 30 the plain MLP has memorised its 300
    digits): every claim in the report holds, and results.csv shows why."""
    import augkit.train.studies

    def scaled(data_dir: Path, *, seeds: int, epochs: int | None) -> list[Study]:
        init, regularisation = lecture_studies(data_dir, seeds=seeds, epochs=epochs)
        return [dataclasses.replace(study, base=study.base.replace({"epochs": epochs}))
                for study, epochs in ((init, 5), (regularisation, 30))]  # fmt: skip

    monkeypatch.setattr(augkit.train.studies, "lecture_studies", scaled)
    out = tmp_path / "lecture"
    result = invoke("ablate", "--seeds", "1", "--workers", "2", "-o", out)
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text(encoding="utf-8")
    assert report.count("- ✓") == 6 and "✗" not in report, report

    rows = read_rows(out)
    assert len(rows) == 12 and {r["study"] for r in rows} == {"init", "regularisation"}
    acc = {(r["activation"], r["init"]): float(r["best_val_acc"]) for r in rows if r["study"] == "init"}
    assert max(acc[a, i] for a in ("relu", "tanh") for i in ("zeros", "normal")) < 0.25
    assert acc["relu", "kaiming_normal"] > 0.85 and acc["tanh", "xavier_normal"] > 0.85
    gap = {(r["dropout"], r["augment"]): float(r["gap"]) for r in rows if r["study"] == "regularisation"}
    plain = gap["0.0", "null"]
    assert plain > 0.08 and gap["0.5", "null"] < plain - 0.04 and gap["0.0", SHIFT] < plain - 0.04, gap
    assert (out / "runs" / "init" / "activation=relu,init=kaiming_normal" / "seed0" / "summary.json").is_file()
    assert (out / "data" / "digits-300-noisy" / "val").is_dir()


def test_lecture_studies_take_seeds_and_epochs_and_write_their_data_only_when_run(tmp_path):
    init, regularisation = lecture_studies(tmp_path, seeds=2, epochs=3)
    assert (init.seeds, regularisation.seeds, init.base.epochs, regularisation.base.epochs) == (2, 2, 3, 3)
    assert not (tmp_path / "digits-300-noisy").exists()


def test_a_variants_study_runs_named_configurations_and_its_plan_names_their_changes(tmp_path):
    clean, mislabelled = augment_studies(tmp_path, seeds=2, epochs=3)
    assert [p["variant"] for p in clean.points()] == [name for name, _ in AUGMENT_VARIANTS]
    runs = plan_runs([clean], tmp_path / "out")
    assert len(runs) == 2 * len(AUGMENT_VARIANTS)
    by_name = {(r.point["variant"], r.seed): r for r in runs}
    assert by_name["mixup", 1].config == TrainConfig(epochs=3, train_subset=300, mixup=0.8, seed=1)
    assert by_name["crop", 0].config.augment == SHIFT and by_name["none", 0].config == TrainConfig(epochs=3, train_subset=300)
    assert by_name["cutmix", 0].run_dir == tmp_path / "out" / "runs" / "clean" / "variant=cutmix" / "seed0"
    assert clean.to_plan()["variants"]["mixup"] == {"mixup": 0.8}
    assert mislabelled.base.data == str(tmp_path.resolve() / "digits-300-noisy") and not Path(mislabelled.base.data).exists()


def test_the_augment_study_runs_every_trick_from_the_command_line(tmp_path):
    out = tmp_path / "augment"
    result = CliRunner().invoke(cli, ["ablate", "--study", "augment", "--seeds", "1", "--epochs", "1", "--workers", "1",
                                      "-o", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert sorted((r["study"], r["variant"]) for r in rows) == sorted(
        (study, name) for study in ("clean", "mislabelled") for name, _ in AUGMENT_VARIANTS)
    assert all(r["status"] == "ok" for r in rows)
    report = (out / "report.md").read_text()
    assert "| mixup |" in report.replace("**", "") and "variants: none (base); crop (augment=" in report
    mixup = yaml.safe_load((out / "runs" / "clean" / "variant=mixup" / "seed0" / "config.yaml").read_text())
    assert (mixup["mixup"], mixup["train_subset"], mixup["augment"]) == (0.8, 300, None)
