"""Diagnostics: per-layer statistics against direct computation, hooks that always go away and
read the device once, the lecture's probe numbers, the training watcher driven by a hand loop,
and `augkit diagnose` (probe and RUN_DIR) end to end, every user mistake one line with exit 2.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from augkit.cli.main import cli
from augkit.train.activations import ACTIVATIONS, create_activation, width_factor
from augkit.train.config import TrainConfig
from augkit.train.diagnostics import LECTURE_CASES, ProbeCase, create_probe_model, open_run, read_activation_history, run_probe
from augkit.train.hooks import (
    DEAD_FAMILY, HIST_BINS, ActivationStats, ActivationWatcher, LayerStats, activation_layers, find_warnings, hist_range,
)  # fmt: skip
from augkit.train.inits import INITS
from augkit.train.loop import train
from augkit.train.models import create_model

SMALL_PROBE = ["--depth", "3", "--width", "64", "--batch", "8"]


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def hooks_on(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


# ----------------------------------------------------------------------------- statistics


def _expected(name: str, out: torch.Tensor) -> dict[str, float]:
    """What the statistics of ``out`` (every batch concatenated) must be, computed directly."""
    lo, hi = hist_range(name)
    saturated = {"tanh": (out.abs() > 0.99), "sigmoid": (out < 0.01) | (out > 0.99)}.get(name)
    dead = (out.amax(dim=0) <= 0).float().mean().item() if name in DEAD_FAMILY else 0.0
    return {
        "mean": out.mean().item(),
        "std": out.std(correction=0).item(),
        "saturated": 0.0 if saturated is None else saturated.float().mean().item(),
        "dead": dead,
        "hist": torch.histc(out, HIST_BINS, lo, hi).tolist(),
    }


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_statistics_over_several_batches_equal_those_of_all_the_outputs_at_once(name):
    torch.manual_seed(0)
    units = 7
    linear = nn.Linear(5, units * width_factor(name, 2))
    with torch.no_grad():
        linear.bias[:2] = -100.0  # (at least) two units never positive: dead in the ReLU family
    model = nn.Sequential(linear, create_activation(name, channels=units, pieces=2))
    batches = [torch.randn(n, 5) * 3 for n in (9, 4, 12)]  # x3: tanh and sigmoid saturate
    with torch.no_grad(), ActivationStats(model) as stats:
        for x in batches:
            model(x)
        (layer,) = stats.summary()
        expected = _expected(name, torch.cat([model(x) for x in batches]))
    assert layer.layer == "1" and layer.activation == name and layer.grad_norm is None
    for key in ("mean", "std", "saturated", "dead"):
        assert getattr(layer, key) == pytest.approx(expected[key], rel=1e-5, abs=1e-6), key
    assert layer.hist == expected["hist"]
    if name in DEAD_FAMILY:
        assert layer.dead >= 2 / units - 1e-6
    if name in ("tanh", "sigmoid"):
        assert 0.05 < layer.saturated < 0.95


def test_a_channel_is_dead_only_if_no_sample_and_no_position_of_any_batch_is_positive():
    conv = nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        conv.weight[:] = torch.tensor([0.0, 1.0, 0.0]).view(3, 1, 1, 1)
        conv.bias[:] = torch.tensor([-1.0, 0.0, 1.0])  # channel 0 never positive, 2 always, 1 follows x
    model = nn.Sequential(conv, nn.ReLU())
    negative = -torch.ones(2, 1, 3, 3)
    one_pixel = negative.clone()
    one_pixel[1, 0, 2, 1] = 1.0  # channel 1 positive at one position of one sample
    with torch.no_grad(), ActivationStats(model) as stats:
        model(negative)
        assert stats.summary()[0].dead == pytest.approx(2 / 3)
        model(one_pixel)
        assert stats.summary()[0].dead == pytest.approx(1 / 3)


def test_grad_norm_is_the_norm_of_the_losss_gradient_at_each_activation_output():
    torch.manual_seed(0)
    model = create_model(TrainConfig(model="cnn", channels=(4, 6), activation="tanh"), (1, 8, 8), 3)
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1])
    outputs = {}

    def keep(name: str):
        def hook(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            output.retain_grad()
            outputs[name] = output

        return hook

    handles = [m.register_forward_hook(keep(n)) for n, m in model.named_modules() if isinstance(m, nn.Tanh)]
    with ActivationStats(model) as stats:
        nn.functional.cross_entropy(model(x), y).backward()
    for handle in handles:
        handle.remove()
    layers = stats.summary()
    assert [s.layer for s in layers] == ["stage1.act1", "stage1.act2", "stage2.act1", "stage2.act2"]
    for s in layers:
        assert s.grad_norm == pytest.approx(outputs[s.layer].grad.norm().item(), rel=1e-5)


def test_layers_are_the_activation_modules_in_model_order_with_readable_names():
    resnet = create_model(TrainConfig(model="resnet", channels=(4, 8)), (3, 8, 8), 2)
    assert [(layer.name, layer.activation) for layer in activation_layers(resnet)] == [
        ("stem.act", "relu"), ("stage1.residual.act1", "relu"), ("stage1.act", "relu"),
        ("stage2.residual.act1", "relu"), ("stage2.act", "relu"),
    ]  # fmt: skip


def test_hooks_read_the_device_never_and_the_summary_once(monkeypatch):
    """A read is a CPU-GPU sync on a GPU: none per layer or batch, one per summary."""
    model = create_model(TrainConfig(model="cnn", channels=(4, 4), activation="tanh"), (1, 8, 8), 3)
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    reads: list[str] = []

    def counted(method: str):
        original = getattr(torch.Tensor, method)

        def read(self, *args, **kwargs):
            reads.append(method)
            return original(self, *args, **kwargs)

        return read

    for method in ("cpu", "item", "tolist", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, method, counted(method))
    with ActivationStats(model) as stats:
        for _ in range(3):
            nn.functional.cross_entropy(model(x), y).backward()
        assert reads == []
        stats.summary()
    assert reads == ["cpu", "tolist"]


def test_hooks_go_away_on_exit_and_when_the_block_raises():
    model = create_model(TrainConfig(model="mlp", hidden=(8, 8)), (1, 4, 4), 2)
    with ActivationStats(model):
        assert hooks_on(model) == 2
    assert hooks_on(model) == 0
    with pytest.raises(RuntimeError, match="boom"), ActivationStats(model):
        raise RuntimeError("boom")
    assert hooks_on(model) == 0


def test_warnings_name_the_layer_the_problem_and_what_to_try():
    def stats(**values) -> LayerStats:
        row = {"mean": 0.0, "std": 0.5, "saturated": 0.0, "dead": 0.0, "grad_norm": None, "hist": [], "range": (0.0, 1.0)}
        return LayerStats(values.pop("layer", "act1"), values.pop("activation", "relu"), **{**row, **values})

    assert find_warnings([stats(dead=0.5), stats(saturated=0.3, activation="tanh"), stats(std=0.011)]) == []
    (dead,) = find_warnings([stats(layer="act3", dead=0.62)], seen="on 360 validation images")
    assert dead.message == ("layer act3: 62% of relu units are dead (never positive on 360 validation images); "
                            "try leaky_relu, a lower learning rate or Kaiming init")  # fmt: skip
    (saturated,) = find_warnings([stats(activation="sigmoid", saturated=0.45)])
    assert saturated.condition == "saturated" and "45% of sigmoid outputs" in saturated.message
    (collapsed,) = find_warnings([stats(activation="tanh", std=0.001)])
    assert collapsed.condition == "collapsed" and "std 0.001" in collapsed.message
    # Activations that overflowed float32: Inf, and NaN once Inf - Inf is taken.
    for values in ({"mean": math.inf, "std": math.nan}, {"mean": 5.0, "std": math.inf}):
        (overflowed,) = find_warnings([stats(layer="act7", dead=0.9, **values)], seen="on the batch")
        assert overflowed.condition == "overflowed" and overflowed.message.startswith(
            "layer act7: activations are not finite on the batch (they overflowed float32)")
    # A layer no forward pass reached has no statistics at all: nothing to warn about.
    nan = math.nan
    assert find_warnings([stats(mean=nan, std=nan, saturated=nan, dead=nan)]) == []


# ----------------------------------------------------------------------------- the lecture's probe


@pytest.fixture(scope="module")
def lecture() -> dict[tuple[str, str, float], list[LayerStats]]:
    """The five cases at the command's defaults: depth 6, width 4096, batch 16, seed 0."""
    return {(c.activation, c.init, c.init_std): run_probe(c).layers for c in LECTURE_CASES}


def stds(layers: list[LayerStats]) -> np.ndarray:
    return np.array([s.std for s in layers])


def test_probe_tanh_normal_001_activations_shrink_layer_by_layer_toward_zero(lecture):
    std = stds(lecture["tanh", "normal", 0.01])  # measured: 0.49 0.29 0.18 0.11 0.072 0.046
    assert 0.4 < std[0] < 0.6
    assert np.all(np.diff(std) < 0) and np.all(std[1:] / std[:-1] < 0.7)  # x0.62 a layer at width 4096
    assert std[-1] < 0.08 and std[-1] / std[0] < 0.15


def test_probe_tanh_normal_005_std_near_085_with_a_third_saturated(lecture):
    layers = lecture["tanh", "normal", 0.05]  # measured: std 0.85-0.87, saturated 0.41 then 0.33-0.34
    assert all(0.75 < s.std < 0.95 for s in layers)
    assert all(0.2 < s.saturated < 0.45 for s in layers)
    assert [w.condition for w in find_warnings(layers)] == ["saturated"] * 6


def test_probe_tanh_xavier_from_about_06_falling_to_about_03(lecture):
    std = stds(lecture["tanh", "xavier_normal", 0.01])  # measured: 0.63 0.48 0.41 0.36 0.32 0.29
    assert 0.55 < std[0] < 0.7 and np.all(np.diff(std) < 0) and 0.22 < std[-1] < 0.38


def test_probe_relu_xavier_collapses_toward_01(lecture):
    std = stds(lecture["relu", "xavier_normal", 0.01])  # measured: 0.58 0.41 0.29 0.21 0.14 0.10
    assert 0.5 < std[0] < 0.65 and np.all(np.diff(std) < 0) and std[-1] < 0.2


def test_probe_relu_kaiming_stays_near_08(lecture):
    layers = lecture["relu", "kaiming_normal", 0.01]  # measured: 0.81-0.82 at every layer
    assert all(0.6 < s.std < 1.0 for s in layers)
    assert all(0.8 < s.grad_norm < 1.25 for s in layers)  # and so do the gradients


def test_probe_gradients_start_at_norm_1_and_vanish_with_small_weights(lecture):
    for layers in lecture.values():
        assert layers[-1].grad_norm == pytest.approx(1.0, rel=1e-4)
    small = [s.grad_norm for s in lecture["tanh", "normal", 0.01]]  # measured: 0.094 at layer 1
    assert np.all(np.diff(small) > 0) and small[0] < 0.2


@pytest.mark.parametrize(
    "case", [ProbeCase(a, "kaiming_normal") for a in ACTIVATIONS.names()] + [ProbeCase("tanh", i, 0.1) for i in INITS.names()],
    ids=lambda c: c.label,
)  # fmt: skip
def test_probe_runs_with_every_registered_activation_and_init(case):
    result = run_probe(case, depth=3, width=32, batch=8)
    assert [s.layer for s in result.layers] == ["act1", "act2", "act3"]
    assert all(math.isfinite(s.std) and s.grad_norm is not None for s in result.layers)


def test_probe_default_init_is_torchs_default_not_uninitialised_memory():
    # torch's Linear default: kaiming_uniform with a=sqrt(5), U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std 1/sqrt(3 fan_in).
    # A model built with skip_init and left as is holds whatever memory held (zeros, or NaN some runs).
    width = 512
    model = create_probe_model(ProbeCase("tanh", "default"), depth=2, width=width)
    for layer in (model.fc1, model.fc2):
        w = layer.weight
        assert w.abs().max() <= 1 / math.sqrt(width)
        assert w.std().item() == pytest.approx(1 / math.sqrt(3 * width), rel=0.02)


# ----------------------------------------------------------------------------- the training watcher


def hand_loop(model: nn.Module, watcher: ActivationWatcher, steps: int, epoch: int = 1) -> None:
    """What the training loop does, in the order it does it."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(0)
    with watcher:
        for step in range(steps):
            x, y = torch.randn(8, 1, 4, 4, generator=generator), torch.randint(0, 3, (8,), generator=generator)
            watcher.before_step(step)
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            watcher.after_backward(step, epoch)
            optimizer.step()


def test_watcher_appends_one_line_every_n_steps_with_every_layers_statistics(tmp_path):
    model = create_model(TrainConfig(model="mlp", hidden=(16, 16)), (1, 4, 4), 3)
    path = tmp_path / "activations.jsonl"
    hand_loop(model, ActivationWatcher(model, 3, path, log=print), steps=7)
    hand_loop(model, ActivationWatcher(model, 3, path, log=print), steps=2, epoch=2)  # appends
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in records] == [(0, 1), (3, 1), (6, 1), (0, 2)]
    for record in records:
        assert [row["layer"] for row in record["layers"]] == ["act1", "act2"]
        for row in record["layers"]:
            assert set(row) == {"layer", "mean", "std", "saturated", "dead", "grad_norm", "hist", "range"}
            assert row["range"] == [0.0, 4.0] and len(row["hist"]) == HIST_BINS and row["grad_norm"] > 0
            assert sum(row["hist"]) <= 8 * 16 and all(isinstance(c, int) for c in row["hist"])


def test_watcher_registers_hooks_only_for_armed_steps_and_removes_them(tmp_path):
    model = create_model(TrainConfig(model="mlp", hidden=(8,)), (1, 4, 4), 2)
    with ActivationWatcher(model, 5, tmp_path / "a.jsonl") as watcher:
        watcher.before_step(3)
        assert hooks_on(model) == 0
        watcher.before_step(5)
        assert hooks_on(model) == 1
        model(torch.randn(2, 1, 4, 4)).sum().backward()
        watcher.after_backward(5, 1)
        assert hooks_on(model) == 0
        watcher.before_step(10)
        with pytest.raises(RuntimeError, match="boom"), watcher:
            raise RuntimeError("boom")  # a step that fails after arming: the hooks still go
        assert hooks_on(model) == 0


def test_watcher_warns_once_per_layer_and_condition(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    with torch.no_grad():
        model[1].bias.fill_(-100.0)  # every ReLU unit dead ...
        model[3].bias.zero_()  # ... so the tanh's inputs are all zero: collapsed
    logged: list[str] = []
    hand_loop(model, ActivationWatcher(model, 2, tmp_path / "a.jsonl", log=logged.append), steps=8)
    assert len(logged) == 2, logged  # once each, though every armed step crosses both
    assert logged[0].startswith("warning: step 0 (epoch 1): layer 2: 100% of relu units are dead")
    assert "layer 4: activations have collapsed" in logged[1]


def test_watcher_off_does_nothing(tmp_path):
    model = create_model(TrainConfig(model="mlp", hidden=(8,)), (1, 4, 4), 3)
    hand_loop(model, ActivationWatcher(model, 0, tmp_path / "a.jsonl"), steps=3)
    assert not (tmp_path / "a.jsonl").exists()


def test_history_skips_a_torn_line_and_keeps_the_latest_record_of_a_repeated_step(tmp_path):
    path = tmp_path / "activations.jsonl"

    def line(step: int, count: int) -> str:
        return json.dumps({"step": step, "epoch": 1, "layers": [{"layer": "act1", "hist": [count], "range": [0, 1]}]})

    path.write_text("\n".join([line(0, 1), line(5, 2), line(5, 3), line(10, 4)]) + '\n{"step": 15, "ep')
    assert read_activation_history(path) == {"act1": {"steps": [0, 5, 10], "hist": [[1], [3], [4]], "range": [0, 1]}}


# ----------------------------------------------------------------------------- augkit diagnose probe


def test_probe_command_prints_the_table_and_draws_the_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = succeeded(invoke("diagnose", "probe", *SMALL_PROBE, "--init-std", "0.5"))  # 0.5 x sqrt(64): saturates
    assert "tanh, normal 0.5" in out and "act3" in out and "saturated" in out
    assert "warning: layer act1:" in out and (tmp_path / "probe.png").read_bytes()[:4] == b"\x89PNG"


def test_probe_json_holds_every_layers_statistics(tmp_path):
    report = json.loads(succeeded(invoke("diagnose", "probe", *SMALL_PROBE, "--activation", "relu",
                                         "--init", "kaiming_normal", "--json", "-o", tmp_path / "p.png")))  # fmt: skip
    assert (report["activation"], report["init"]) == ("relu", "kaiming_normal")
    assert [set(row) for row in report["layers"]] == [{"layer", "mean", "std", "saturated", "dead", "grad_norm"}] * 3


def test_probe_compare_runs_the_lectures_five_cases(tmp_path):
    report = json.loads(succeeded(invoke("diagnose", "probe", "--compare", *SMALL_PROBE, "--json", "-o", tmp_path / "c.png")))
    assert [c["label"] for c in report["cases"]] == [
        "tanh, normal 0.01", "tanh, normal 0.05", "tanh, xavier_normal", "relu, xavier_normal", "relu, kaiming_normal",
    ]  # fmt: skip
    assert all(len(c["layers"]) == 3 for c in report["cases"]) and Path(report["plot"]).is_file()


def test_probe_help_lists_the_registries_choices():
    out = succeeded(invoke("diagnose", "probe", "--help"))
    for name in [*ACTIVATIONS.names(), *INITS.names()]:
        assert name in out, name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--activation", "relux"], "did you mean relu"),
        (["--init", "kaiming_norml"], "kaiming_normal"),
        (["--depth", "0"], "--depth must be in [1, 1000], got 0"),
        (["--width", "0"], "--width must be in [1, 65536], got 0"),
        (["--batch", "-1"], "--batch must be in [1, 1048576], got -1"),
        (["--init-std", "-1"], "--init-std must be in [0, 10], got -1"),
        (["--width", "100000"], "--width must be in [1, 65536], got 100000"),
        (["--width", "32768"], "use a smaller --width, --depth or --batch"),
        # The QA's: a TypeError drawing the figure, an overflow seeding, -1 taken, a segfault after 39 s.
        (["--init-std", "1e308"], "--init-std must be in [0, 10], got 1e+308"),
        (["--init-std", "nan"], "--init-std must be in [0, 10], got nan"),
        (["--seed", "99999999999999999999"], "--seed must be in [0, 4294967296), got 99999999999999999999"),
        (["--seed", "-1"], "--seed must be in [0, 4294967296), got -1"),
        (["--depth", "100000", "--width", "4"], "--depth must be in [1, 1000], got 100000"),
        (["--batch", "100000000"], "--batch must be in [1, 1048576], got 100000000"),
        (["--width", "4", "--depth", "1000", "--batch", "1048576"], "needs 62.5 GiB for its weights and activations"),
        (["--compare", "--depth", "1001"], "--depth must be in [1, 1000], got 1001"),
        (["--compare", "--activation", "relu"], "drop --activation"),
    ],
)
def test_probe_user_mistakes_are_one_line_exit_2(args, expected, assert_fails, tmp_path):
    assert_fails(invoke("diagnose", "probe", "-o", tmp_path / "p.png", *args), 2, expected)
    assert not (tmp_path / "p.png").exists()


# Extreme values the bounds allow: the figure, the table and --json cope with activations that
# overflow float32 (relu after constant 10 grows x40 a layer: Inf by layer 25) and with 1000 layers.
AT_THE_BOUNDS = {
    "overflowing": ["--init", "constant", "--init-std", "10", "--activation", "relu", "--depth", "50", "--width", "64"],
    "deepest, saturated": ["--init", "uniform", "--init-std", "10", "--activation", "tanh", "--depth", "1000", "--width", "4"],
    "deepest, compared": ["--compare", "--depth", "1000", "--width", "4"],
    "smallest": ["--init", "normal", "--init-std", "0", "--activation", "sigmoid", "--depth", "1", "--width", "1",
                 "--batch", "1", "--seed", "4294967295"],
}  # fmt: skip


@pytest.mark.parametrize("case", AT_THE_BOUNDS)
def test_probe_at_its_bounds_prints_the_table_and_draws_the_figure(case, tmp_path):
    plot = tmp_path / "p.png"
    text = succeeded(invoke("diagnose", "probe", *AT_THE_BOUNDS[case], "-o", plot))
    assert plot.read_bytes()[:4] == b"\x89PNG" and text.endswith(f"-> {plot}\n")
    report = json.loads(succeeded(invoke("diagnose", "probe", *AT_THE_BOUNDS[case], "--json", "-o", plot)))
    layers = [row for case_report in report.get("cases", [report]) for row in case_report["layers"]]
    assert all(row["std"] is None or math.isfinite(row["std"]) for row in layers)  # JSON has no NaN
    if case == "overflowing":
        assert layers[0]["std"] == pytest.approx(60.54, rel=1e-3) and layers[-1]["std"] is None
        assert "warning: layer act50: activations are not finite on the batch (they overflowed float32)" in text
        assert re.search(r"^  act50 +- +- ", text, re.MULTILINE), text  # no number where there is none


def test_figures_draw_statistics_that_are_not_finite(tmp_path):
    from augkit.train.plots import plot_diagnosis, plot_probe

    row = {"layer": "act1", "mean": None, "std": None, "saturated": 0.0, "dead": 1.0, "grad_norm": None,
           "hist": [3] + [0] * 39, "range": [0.0, 4.0]}  # fmt: skip
    finite = {**row, "layer": "act2", "mean": 0.5, "std": 0.7, "dead": 0.0}
    plot_probe([("relu, constant 10", [finite, row]), ("tanh", [row, row])], tmp_path / "p.png", title="t")
    plot_diagnosis([row, finite], tmp_path / "d.png", history={"act1": {"steps": [0], "hist": [[1] * 40], "range": [0, 4]}})
    assert (tmp_path / "p.png").read_bytes()[:4] == (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


# ----------------------------------------------------------------------------- augkit diagnose RUN_DIR


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    train(TrainConfig(channels=(8, 8), epochs=1, device="cpu"), run_dir, quiet=True, log=lambda message: None)
    return run_dir


def test_diagnose_run_prints_the_table_and_draws_the_histograms(trained_run, tmp_path):
    plot = tmp_path / "d.png"
    report = json.loads(succeeded(invoke("diagnose", trained_run, "--json", "-o", plot)))
    assert report["images"] == 360 and report["activation"] == "relu" and report["history_steps"] == 0
    assert [row["layer"] for row in report["layers"]] == ["stage1.act1", "stage1.act2", "stage2.act1", "stage2.act2"]
    for row in report["layers"]:
        assert row["std"] > 0 and 0 <= row["dead"] <= 1 and row["saturated"] == 0 and row["grad_norm"] > 0
    assert plot.read_bytes()[:4] == b"\x89PNG"
    text = succeeded(invoke("diagnose", "run", trained_run, "--batches", "2"))  # the subcommand's long form
    assert "stage2.act2" in text and "grad_norm" in text and (trained_run / "diagnose.png").is_file()


def test_diagnose_run_matches_statistics_taken_by_hand_over_the_validation_batches(trained_run, tmp_path):
    report = json.loads(succeeded(invoke("diagnose", trained_run, "--json", "-o", tmp_path / "d.png")))
    run = open_run(trained_run, device="cpu")
    model = run.model.eval()
    act = dict(model.named_modules())["stage2.act2"]
    outputs = []
    handle = act.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.no_grad():
        for x, _ in run.batches.batches(0):
            model(x)
    handle.remove()
    out = torch.cat(outputs)
    row = report["layers"][-1]
    assert row["std"] == pytest.approx(out.std(correction=0).item(), rel=1e-4)
    assert row["dead"] == pytest.approx((out.amax(dim=(0, 2, 3)) <= 0).float().mean().item())


def test_diagnose_run_draws_the_history_the_watcher_recorded(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("best.pt", "config.yaml", "stats.json"):
        (run_dir / name).write_bytes((trained_run / name).read_bytes())
    model = open_run(run_dir, device="cpu").model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    with ActivationWatcher(model, 2, run_dir / "activations.jsonl") as watcher:
        for step in range(6):
            watcher.before_step(step)
            nn.functional.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3])).backward()
            watcher.after_backward(step, 1)
            optimizer.step()
    report = json.loads(succeeded(invoke("diagnose", run_dir, "--json")))
    assert report["history_steps"] == 3 and Path(report["plot"]) == run_dir / "diagnose.png"


def test_diagnose_run_mistakes_are_one_line_exit_2(trained_run, tmp_path, make_image_folder, assert_fails):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_fails(invoke("diagnose", tmp_path / "missing"), 2, "does not exist")
    assert_fails(invoke("diagnose", empty), 2, "holds no checkpoint (best.pt or last.pt)")
    other_classes = make_image_folder({"cat": 3, "dog": 3}, sizes=((8, 8),), name="cats")
    assert_fails(invoke("diagnose", trained_run, other_classes), 2, "classes")
    other_size = make_image_folder({str(d): 5 for d in range(10)}, sizes=((16, 16),), name="big")
    assert_fails(invoke("diagnose", trained_run, other_size, "--batches", "1"), 2, "preprocess it")
    assert_fails(invoke("diagnose", trained_run, "--batches", "0"), 2, "--batches must be at least 1")
