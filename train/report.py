"""An ablation's results: ``results.csv`` (a row per run), ``report.md`` and ``report.png``.

Per configuration, over its seeds: mean ± std of the best validation accuracy, of the final
train/val gap, of the epochs to reach ``TARGET`` validation accuracy, and of the time. The gap
uses the final weights' accuracy on the training images in eval mode (``final_train_acc``), the
same measure as ``final_val_acc``, so dropout and augmentation are not credited for lowering a
train-mode accuracy. Failed runs (a NaN loss) are listed, never averaged.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augkit.files import atomic_write
from augkit.train.ablate import read_outcome
from augkit.train.grid import format_value, label
from augkit.train.config import TrainConfig

if TYPE_CHECKING:
    from augkit.train.grid import Run, Study

RESULTS, REPORT, PLOT = "results.csv", "report.md", "report.png"
TARGET = 0.9  # epochs_to_90: the first epoch whose validation accuracy reaches this
METRICS = ("best_val_acc", "best_epoch", "final_val_acc", "final_train_acc", "gap", "epochs_to_90", "seconds")


@dataclass
class Configuration:
    """One configuration of a study, over its seeds."""

    study: Study
    point: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["status"] == "ok"]

    def values(self, metric: str) -> list[float]:
        return [r[metric] for r in self.ok if r[metric] is not None]

    def mean(self, metric: str) -> float:
        values = self.values(metric)
        return statistics.fmean(values) if values else math.nan

    def cell(self, metric: str, digits: int) -> str:
        values = self.values(metric)
        if not values:
            return "—"
        text = f"{statistics.fmean(values):.{digits}f}"
        if len(values) > 1:
            text += f" ± {statistics.stdev(values):.{digits}f}"
        return text

    def curve(self) -> list[float]:
        """Validation accuracy per epoch, the mean over the seeds that finished."""
        curves = [r["curve"] for r in self.ok if r["curve"]]
        return [statistics.fmean(c[i] for c in curves) for i in range(min(map(len, curves)))] if curves else []


def collect(run: Run, out: Path, error: str = "") -> dict[str, Any]:
    """The results row of one run (plus its validation curve, for the plot), read from its folder."""
    row: dict[str, Any] = {"study": run.study.name, **{k: format_value(v) for k, v in run.point.items()}, "seed": run.seed}
    row.update(dict.fromkeys(METRICS), status="error", reason=error, run_dir=run.run_dir.relative_to(out).as_posix(), curve=[])
    outcome = read_outcome(run.run_dir)
    if outcome is None:
        return row  # stopped with an error (or its outcome file is damaged), which a rerun retries
    row.update(status=outcome["status"], reason=outcome.get("reason", ""))
    if outcome["status"] != "ok":
        return row
    try:
        summary = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8"))
        with open(run.run_dir / "metrics.csv", newline="", encoding="utf-8") as f:
            curve = [float(r["val_acc"]) for r in csv.DictReader(f)]
        summary = {key: float(summary[key]) for key in ("best_val_acc", "best_epoch", "final_val_acc", "seconds")}
    except (OSError, ValueError, KeyError, TypeError):
        row.update(status="error", reason=f"its summary.json or metrics.csv is damaged: delete {run.run_dir} "
                                          f"and run the same command again to redo it")  # fmt: skip
        return row
    reached = [epoch for epoch, acc in enumerate(curve, 1) if acc >= TARGET]
    row.update(
        best_val_acc=summary["best_val_acc"],
        best_epoch=int(summary["best_epoch"]),
        final_val_acc=summary["final_val_acc"],
        final_train_acc=outcome["final_train_acc"],
        gap=outcome["final_train_acc"] - summary["final_val_acc"],
        epochs_to_90=reached[0] if reached else None,
        seconds=summary["seconds"],
        curve=curve,
    )
    return row


def write_report(studies: Sequence[Study], runs: Sequence[Run], out: Path, errors: dict[Path, str] | None = None) -> dict[str, Any]:
    """results.csv, report.md and report.png in ``out``; returns where they are and the best of each study.

    ``errors``: why the runs that stopped with an error did (run folder -> reason).
    """
    from augkit.train.plots import plot_ablation

    rows = [collect(run, out, (errors or {}).get(run.run_dir, "")) for run in runs]
    _write_csv(rows, studies, out / RESULTS)
    tables = []
    for study in studies:
        configurations = {json.dumps(p, default=str): Configuration(study, p) for p in study.points()}
        for run, row in zip(runs, rows):
            if run.study is study:
                configurations[json.dumps(run.point, default=str)].rows.append(row)
        ranked = sorted(configurations.values(), key=lambda c: -c.mean("best_val_acc") if c.ok else math.inf)
        tables.append((study, ranked))
    failed = sum(r["status"] == "failed" for r in rows)
    lines = [
        "# Ablation report",
        "",
        f"`augkit ablate`: {len(rows)} runs, {sum(r['status'] == 'ok' for r in rows)} finished, {failed} failed; "
        f"{sum(r['seconds'] or 0 for r in rows):.0f} s of training in all. Per configuration, "
        f"{'mean ± std over the seeds' if any(s.seeds > 1 for s in studies) else 'one seed (no spread to show)'}; "
        f"the gap is the final train − val accuracy, both measured in eval mode. ★: the best; "
        f"tie: the same mean best val acc (to 4 decimals) as another configuration.",
    ]
    summary: dict[str, Any] = {"out": str(out), "runs": len(rows), "failed": failed, "best": [], "claims": []}
    for study, ranked in tables:
        lines += ["", *_section(study, ranked, len(studies) > 1)]
        if ranked and ranked[0].ok:
            best = ranked[0]
            tied = [label(c.point) for c, (rank, _) in zip(ranked[1:], _ranks(ranked)[1:]) if rank == 1]
            summary["best"].append({"study": study.name, "configuration": label(best.point), "tied_with": tied,
                                    "best_val_acc": best.mean("best_val_acc"), "seeds": len(best.ok)})  # fmt: skip
        for claim in study.claims:
            summary["claims"].append({"study": study.name, "claim": claim.text, "holds": _holds(claim, ranked)})
    atomic_write(out / REPORT, "\n".join(lines) + "\n")
    panels = [
        {
            "title": study.title or _grid_title(study),
            "bars": [{"label": _chart_label(c.point), "acc": c.mean("best_val_acc"), "acc_std": _std(c.values("best_val_acc")),
                      "gap": c.mean("gap"), "gap_std": _std(c.values("gap")), "curve": c.curve(), "rank": rank, "tie": tie}
                     for c, (rank, tie) in zip(ranked, _ranks(ranked))],  # fmt: skip
            "chance": _chance(runs, study),
            "seeds": study.seeds,
        }
        for study, ranked in tables
    ]
    plot_ablation(panels, out / PLOT)
    summary.update(results=str(out / RESULTS), report=str(out / REPORT), plot=str(out / PLOT))
    return summary


def _section(study: Study, ranked: list[Configuration], titled: bool) -> list[str]:
    base = study.base
    lines = [f"## {study.title or study.name}", ""] if titled or study.title else []
    seeds = f"seed {base.seed}" if study.seeds == 1 else f"seeds {base.seed}–{base.seed + study.seeds - 1}"
    lines.append(f"Data: {base.data or 'the sample digits'}; {base.epochs} epochs; {seeds}; "
                 f"base: {_base_changes(base)}; "
                 + (f"variants: {'; '.join(f'{name} ({label(changes)})' for name, changes in study.variants)}." if study.variants
                    else f"grid: {' × '.join(study.keys) or 'none'}."))  # fmt: skip
    if study.note:
        lines += ["", study.note]
    lines += [
        "",
        f"| | configuration | best val acc | gap (train − val) | epochs to {TARGET:.0%} | seconds per run | runs |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c, (rank, tie) in zip(ranked, _ranks(ranked)):
        best = rank == 1 and bool(c.ok)
        mark = " ".join(["★"] * best + ["tie"] * tie)
        bold = (lambda text: f"**{text}**") if best else (lambda text: text)
        reached = c.values("epochs_to_90")
        epochs = c.cell("epochs_to_90", 1) + (f" ({len(reached)} of {len(c.ok)})" if 0 < len(reached) < len(c.ok) else "")
        if c.ok and not reached:
            epochs = "never"
        others = ", ".join(f"{n} {status}" for status, n in _other_statuses(c).items())
        runs = f"{len(c.ok)} of {len(c.rows)} ({others})" if others else f"{len(c.rows)}"
        lines.append(f"| {mark} | {bold(label(c.point))} | {bold(c.cell('best_val_acc', 4))} | "
                     f"{c.cell('gap', 3)} | {epochs} | {c.cell('seconds', 1)} | {runs} |")  # fmt: skip
    for c in ranked:
        for status in ("failed", "error"):
            reasons = [r["reason"] for r in c.rows if r["status"] == status]
            if reasons:
                lines += ["", f"{label(c.point)}: {len(reasons)} run(s) {status}, e.g. {reasons[0]}"]
    if study.claims:
        lines += ["", "What the lecture says, and what these runs show:", ""]
        for claim in study.claims:
            lines.append(f"- {'✓' if _holds(claim, ranked) else '✗ (not seen here)'} {claim.text}")
    return lines


def _ranks(ranked: list[Configuration]) -> list[tuple[int, bool]]:
    """(rank, tie) of each configuration of ``ranked`` (best first): competition ranks (1, 2, 2,
    4) by the mean best validation accuracy to 4 decimals, the table's precision; a tie shares
    its mean with another. Configurations with no finished run come last, tied with none."""
    keys = [round(c.mean("best_val_acc"), 4) if c.ok else None for c in ranked]
    return [(keys.index(key) + 1, key is not None and keys.count(key) > 1) for key in keys]


def _holds(claim: Any, ranked: list[Configuration]) -> bool:
    def get(**point: Any) -> dict[str, float]:
        (match,) = [c for c in ranked if all(c.point.get(k) == v for k, v in point.items())]
        return {metric: match.mean(metric) for metric in METRICS}

    return bool(claim.holds(get))


def _other_statuses(c: Configuration) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in c.rows:
        if row["status"] != "ok":
            counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def _write_csv(rows: list[dict[str, Any]], studies: Sequence[Study], path: Path) -> None:
    keys = list(dict.fromkeys(key for study in studies for key in study.keys))
    columns = (["study"] if len(studies) > 1 else []) + keys + ["seed", "status", *METRICS, "reason", "run_dir"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})
    atomic_write(path, buffer.getvalue())


def _grid_title(study: Study) -> str:
    """A lone grid's heading: what it varies, on what, for how long ("dropout × lr on the sample digits, 2 epochs")."""
    data = study.base.data or "the sample digits"
    return f"{' × '.join(study.keys)} on {data}, {study.base.epochs} epoch{'s' if study.base.epochs != 1 else ''}"


def _chart_label(point: dict[str, Any]) -> str:
    """One line, or one key per line when long."""
    text = label(point)
    return label(point, "\n") if len(text) > 40 else text


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _chance(runs: Sequence[Run], study: Study) -> float | None:
    """1 / classes, from any finished run of ``study``."""
    for run in runs:
        if run.study is study and (run.run_dir / "summary.json").is_file():
            classes = json.loads((run.run_dir / "summary.json").read_text(encoding="utf-8")).get("classes")
            return 1 / classes if classes else None
    return None


def _base_changes(base: TrainConfig) -> str:
    """The base's fields that differ from TrainConfig's defaults (data, epochs and seed are said apart)."""
    defaults = TrainConfig().to_dict()
    changes = [f"{k}={format_value(v)}" for k, v in base.to_dict().items()
               if v != defaults[k] and k not in ("data", "epochs", "seed")]  # fmt: skip
    return ", ".join(changes) or "TrainConfig's defaults"
