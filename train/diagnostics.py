"""Diagnostics: the lecture's probe experiment, and the same statistics for a trained run.

``run_probe``: the lecture's experiment. A deep MLP without biases (``depth`` layers of
``width`` units, no normalisation, no dropout), initialised by augkit's ``init_weights``, is fed
a batch of unit-Gaussian inputs; the statistics of ``augkit.train.hooks`` are read at every
activation. Gradients come from one backward pass of a random unit-norm gradient at the top
(``grad_norm`` of the last layer is 1; below, it shows how the signal shrinks or grows on its
way down). ``LECTURE_CASES`` are the five cases the lecture compares.

``diagnose_run``: a finished run's model (rebuilt from ``best.pt``) in eval mode on validation
batches: statistics over every batch seen (dead: never positive on any of them), gradient norms
of the cross-entropy loss from one backward pass on the first batch, warnings in plain words,
and a picture; when the run was trained with ``--watch-activations``, the picture adds the
histograms recorded during training (``activations.jsonl``).
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from augkit.errors import AugkitError
from augkit.train.activations import ACTIVATIONS, create_activation, width_factor
from augkit.train.config import MAX_BATCH_SIZE, MAX_INIT_STD, MAX_THREADS, MAX_WIDTH, SEED_LIMIT, check_range
from augkit.train.evaluate import check_plot_name, open_run
from augkit.train.hooks import ACTIVATIONS_FILE, ActivationStats, LayerStats, find_warnings
from augkit.train.inits import INITS, init_weights
from augkit.train.loop import resolve_device
from augkit.train.threads import ThreadChoice, apply_threads, choose_threads, count_step_flops, free_cores

DIAGNOSE = "diagnose.png"
PROBE_MAX_BYTES = 4 << 30  # the probe's weights and activations (float32) may take this much memory at most
# The lecture's nets have 6-10 layers. Far deeper chains overflow the C stack of torch's autograd
# (a segfault at depth 100000); 1000 layers of width 4 take a few seconds.
MAX_PROBE_DEPTH = 1000

# ----------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class ProbeCase:
    """An activation and an initialisation (``init_std``: normal's std, uniform's, constant's value)."""

    activation: str
    init: str
    init_std: float = 0.01

    @property
    def label(self) -> str:
        scaled = self.init in ("normal", "uniform", "constant")
        return f"{self.activation}, {self.init}" + (f" {self.init_std:g}" if scaled else "")


LECTURE_CASES = (
    ProbeCase("tanh", "normal", 0.01),  # activations shrink layer by layer toward zero
    ProbeCase("tanh", "normal", 0.05),  # a third of the units saturated at every layer
    ProbeCase("tanh", "xavier_normal"),  # well scaled, slowly shrinking
    ProbeCase("relu", "xavier_normal"),  # ReLU halves the variance each layer: collapse
    ProbeCase("relu", "kaiming_normal"),  # the factor 2 of Kaiming keeps it steady
)


@dataclass
class ProbeResult:
    case: ProbeCase
    layers: list[LayerStats]
    threads: ThreadChoice | None = None  # torch's intra-op threads it ran with, and why

    def to_dict(self, *, hist: bool = False) -> dict[str, Any]:
        return {
            "label": self.case.label,
            "activation": self.case.activation,
            "init": self.case.init,
            "init_std": self.case.init_std,
            "layers": [s.to_dict(hist=hist) for s in self.layers],
            "warnings": [w.message for w in find_warnings(self.layers, seen="on the batch")],
            "threads": self.threads.threads if self.threads is not None else None,
        }


def create_probe_model(case: ProbeCase, *, depth: int, width: int, device: torch.device | str = "cpu") -> nn.Sequential:
    """``depth`` x (Linear(width, width, bias=False), activation), initialised by ``case.init``.

    Weights are drawn from torch's global RNG (the caller seeds it); the parameters do not
    require grad (the probe needs gradients of activations, not of weights).
    """
    factor = width_factor(case.activation, 2)  # maxout: 2 pieces per unit
    # skip_init: torch's own default init of a 4096 x 4096 layer would be drawn and thrown away;
    # except for the "default" scheme, which is that init (skipped, the weights are whatever memory held).
    build = nn.Linear if case.init == "default" else functools.partial(nn.utils.skip_init, nn.Linear)
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, depth + 1):
        layers.append((f"fc{i}", build(width, width * factor, bias=False, device=device)))
        layers.append((f"act{i}", create_activation(case.activation, channels=width, pieces=2).to(device)))
    model = nn.Sequential(OrderedDict(layers))
    init_weights(model, case.init, std=case.init_std, activation=case.activation)
    return model.requires_grad_(False)


def check_probe(case: ProbeCase, *, depth: int, width: int, batch: int, seed: int) -> None:
    """Every option of the probe in its range, and the memory it needs under ``PROBE_MAX_BYTES``.

    Raises:
        AugkitError: naming the option (as its flag) and its bound, or the memory needed.
    """
    ACTIVATIONS.get(case.activation)
    INITS.get(case.init)
    check_range("--depth", depth, 1, MAX_PROBE_DEPTH, hint="the lecture's nets have 6 to 10 layers")
    check_range("--width", width, 1, MAX_WIDTH)
    check_range("--batch", batch, 1, MAX_BATCH_SIZE)
    check_range("--init-std", case.init_std, 0, MAX_INIT_STD, hint="the lecture's scales are 0.01 to 0.05")
    check_range("--seed", seed, 0, SEED_LIMIT, high_open=True, hint="numpy's seed range, as augkit train")
    # float32: the weights, and per layer the linear and the activation outputs with their gradients.
    features = width * width_factor(case.activation, 2)
    needed = 4 * depth * (width * features + 2 * batch * (features + width))
    if needed > PROBE_MAX_BYTES:
        raise AugkitError(f"a probe of depth {depth}, width {width} and batch {batch} needs {needed / 2**30:.1f} GiB "
                          f"for its weights and activations (at most {PROBE_MAX_BYTES >> 30} GiB); "
                          f"use a smaller --width, --depth or --batch")  # fmt: skip


def run_probe(
    case: ProbeCase, *, depth: int = 6, width: int = 4096, batch: int = 16, seed: int = 0, device: str = "cpu",
    threads: int | None = None,
) -> ProbeResult:
    """The lecture's experiment for one case: statistics of every layer on a unit-Gaussian batch.

    Runs with torch's intra-op threads set to ``threads``, or, when None, to the count
    ``augkit.train.threads`` chooses for the probe's forward and backward pass.

    Raises:
        AugkitError: an option out of range (``check_probe``) or an unknown device.
    """
    free = free_cores()  # read before torch's threads first work: spinning, they would count as busy
    check_probe(case, depth=depth, width=width, batch=batch, seed=seed)
    check_range("--threads", threads, 1, MAX_THREADS)
    torch_device = resolve_device(device)
    torch.manual_seed(seed)  # the same draws for every case: cases differ only by scale and activation
    model = create_probe_model(case, depth=depth, width=width, device=torch_device)
    chosen = apply_threads(choose_threads(count_step_flops(model, (width,), batch), threads, free=free))
    x = torch.randn(batch, width, device=torch_device, requires_grad=True)
    with ActivationStats(model) as stats:
        out = model(x)
        signal = torch.randn_like(out)
        out.backward(signal / signal.norm())
    return ProbeResult(case, stats.summary(), chosen)


# ----------------------------------------------------------------------------- a trained run


def diagnose_run(
    run_dir: str | Path,
    data: str | None = None,
    *,
    checkpoint: str = "best",
    device: str = "auto",
    batch_size: int | None = None,
    max_batches: int | None = None,
    plot: Path | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Per-layer statistics of the run in ``run_dir`` on validation batches, its warnings, a picture.

    Args:
        max_batches: look at this many validation batches at most (default: all of them).
        plot: where to draw (default: RUN_DIR/diagnose.png).
        threads: torch's CPU threads (default: chosen, as ``open_run`` does); the report's ``threads``.
    """
    from augkit.train.plots import describe_tricks, plot_diagnosis

    if max_batches is not None and max_batches < 1:
        raise AugkitError(f"--batches must be at least 1, got {max_batches}")
    check_plot_name(plot)
    run_dir = Path(run_dir)
    run = open_run(run_dir, data, checkpoint=checkpoint, device=device, batch_size=batch_size, threads=threads)
    model = run.model.eval()
    images, first = 0, None
    with torch.no_grad(), ActivationStats(model) as forward:
        for i, (inputs, targets) in enumerate(run.batches.batches(0)):
            if max_batches is not None and i >= max_batches:
                break
            model(inputs)
            images += len(targets)
            if first is None:
                first = (inputs, targets)
    if first is None:
        raise AugkitError(f"{run.splits.source} has no validation images to diagnose")
    layers = forward.summary()
    with ActivationStats(model) as backward:  # one backward pass, for the gradient norms
        nn.functional.cross_entropy(model(first[0]), first[1]).backward()
    for stats, grads in zip(layers, backward.summary()):
        stats.grad_norm = grads.grad_norm
    model.zero_grad(set_to_none=True)

    warnings = find_warnings(layers, seen=f"on {images} validation images")
    history = read_activation_history(run_dir / ACTIVATIONS_FILE)
    target = plot if plot is not None else run_dir / DIAGNOSE
    config = run.config
    title = f"{run_dir.name} ({run.checkpoint.name}) on {run.splits.source}: {describe_tricks(config)}"
    plot_diagnosis([s.to_dict(hist=True) for s in layers], target, history=history, title=title)
    return {
        "checkpoint": str(run.checkpoint),
        "data": run.splits.source,
        "images": images,
        "activation": run.config.activation,
        "layers": [s.to_dict() for s in layers],
        "warnings": [w.message for w in warnings],
        "history_steps": len(next(iter(history.values()))["steps"]) if history else 0,
        "plot": str(target),
        "threads": run.threads.threads,
    }


def read_activation_history(path: Path) -> dict[str, dict[str, Any]]:
    """``activations.jsonl`` as {layer: {"steps": [...], "hist": [[...], ...], "range": [lo, hi]}}.

    A torn last line (a crash while writing) is skipped; a step recorded twice (a resumed run
    repeats the steps after its last checkpoint) keeps its latest record. Empty if there is no file.
    """
    if not path.is_file():
        return {}
    records: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            records[int(record["step"])] = record
        except (ValueError, KeyError, TypeError):
            continue
    history: dict[str, dict[str, Any]] = {}
    for step in sorted(records):
        for row in records[step]["layers"]:
            entry = history.setdefault(row["layer"], {"steps": [], "hist": [], "range": row["range"]})
            entry["steps"].append(step)
            entry["hist"].append(row["hist"])
    return history
