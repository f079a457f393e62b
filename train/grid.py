"""An ablation's plan: ``Study`` (a base config, a grid over its fields, seeds), its runs and their names.

``parse_grid`` reads ``--grid KEY=V1,V2,...``; ``plan_runs`` expands studies into runs, each with
its config and its folder ``OUT/runs/[STUDY/]KEY=V,KEY=V/seedK``. Nothing here loads torch.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from augkit.errors import AugkitError
from augkit.pipeline.spec import split_top_level
from augkit.train.config import TrainConfig, parse_assignment


@dataclass(frozen=True)
class Claim:
    """A sentence from the lecture and a test of it on a study's means (``get(**point)[metric]``)."""

    text: str
    holds: Callable[[Callable[..., dict[str, float]]], bool]


@dataclass(frozen=True)
class Study:
    """A base config, a grid over its fields, and ``seeds`` seeds (base.seed, base.seed + 1, ...) each.

    ``variants`` replaces the grid with named configurations, for comparisons that are not a
    product (none / crop+flip / MixUp / CutMix change different fields): each is a name and its
    field changes, and a run's point is ``{"variant": name}`` (labelled by the name alone, ``mixup``;
its folder ``variant=mixup``).
    """

    base: TrainConfig
    grid: dict[str, tuple[Any, ...]]  # field -> its values, converted (see parse_grid)
    seeds: int = 3
    name: str = ""  # the folder under OUT/runs and a section of the report; "" for a lone grid
    title: str = ""
    note: str = ""  # shown under the title: what the study sets up, and why
    claims: tuple[Claim, ...] = ()
    prepare: Callable[[], None] | None = field(default=None, compare=False)  # writes what base needs (a dataset)
    variants: tuple[tuple[str, dict[str, Any]], ...] = ()  # (name, field changes), in place of the grid

    @property
    def keys(self) -> list[str]:
        """What a point names: the grid's fields, or ``variant``."""
        return [VARIANT] if self.variants else list(self.grid)

    def points(self) -> list[dict[str, Any]]:
        """The configurations, in order: the variants', or the grid's (the last key varies fastest)."""
        if self.variants:
            return [{VARIANT: name} for name, _ in self.variants]
        return [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]

    def changes(self, point: dict[str, Any]) -> dict[str, Any]:
        """The config fields ``point`` sets: a variant's changes, or the grid point itself."""
        return dict(self.variants)[point[VARIANT]] if self.variants else point

    def to_plan(self) -> dict[str, Any]:
        grid = {key: [_plain(v) for v in values] for key, values in self.grid.items()}
        plan = {"name": self.name, "base": self.base.to_dict(), "grid": grid, "seeds": self.seeds}
        if self.variants:
            plan["variants"] = {name: {k: _plain(v) for k, v in changes.items()} for name, changes in self.variants}
        return plan


VARIANT = "variant"  # the key of a variants study's points


@dataclass(frozen=True)
class Run:
    study: Study
    point: dict[str, Any]
    seed: int
    config: TrainConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return label(self.point)


def parse_grid(texts: Sequence[str], base: TrainConfig) -> dict[str, tuple[Any, ...]]:
    """``--grid`` arguments -> {field: values}, each value converted and checked against ``base``.

    ``KEY=V1,V2,...``: dashes in KEY read as underscores; values are YAML (``null``, ``true``,
    ``[256, 256]``), separated by commas outside brackets, parentheses and quotes, so
    ``hidden=[256,256],[512]`` and ``augment=null,crop(size=8, padding=1)`` are two values
    each; a list that contains ``|`` is split on ``|`` only (``hidden=256,256|512``).
    """
    grid: dict[str, tuple[Any, ...]] = {}
    for text in texts:
        key, sep, values = text.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key or not values.strip():
            raise AugkitError(f"--grid takes KEY=V1,V2,... (for example --grid dropout=0,0.5), got {text!r}")
        if key == "seed":
            raise AugkitError("--grid seed: seeds come from --seeds K (each configuration runs K seeds); drop seed from --grid")
        if key in grid:
            raise AugkitError(f"--grid {key} is given twice; list all its values in one --grid {key}=V1,V2,...")
        items = values.split("|") if "|" in values else split_top_level(values, ",")
        converted: list[Any] = []
        for item in items:
            if not item.strip():
                raise AugkitError(f"--grid {text!r} has an empty value; write null for none")
            value = getattr(base.replace(dict([parse_assignment(f"{key}={item}", option="--grid")]), source="--grid"), key)
            if value in converted:
                hint = " (a list of widths is one value in brackets: hidden=[256,256],[512])" if isinstance(value, tuple) else ""
                raise AugkitError(f"--grid {key} lists {format_value(value)} twice{hint}")
            converted.append(value)
        grid[key] = tuple(converted)
    return grid


def plan_runs(studies: Sequence[Study], out: Path) -> list[Run]:
    """Every run of ``studies``, seed by seed (a first look at every configuration comes early)."""
    runs = []
    for study in studies:
        folder = out / "runs" / study.name if study.name else out / "runs"
        for k in range(study.seeds):
            for point in study.points():
                seed = study.base.seed + k
                config = study.base.replace({**study.changes(point), "seed": seed}, source=f"--grid {label(point)}")
                runs.append(Run(study, point, seed, config, folder / slug(point) / f"seed{seed}"))
    return runs


def format_value(value: Any) -> str:
    """A value as YAML would write it inline: ``null``, ``true``, ``0.5``, ``[256, 256]``."""
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(map(format_value, value)) + "]"
    return yaml_scalar(value)


def yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)  # repr: 1e-05 and 1.2e-05 stay apart


def label(point: dict[str, Any], sep: str = ", ") -> str:
    """``dropout=0.5, lr=0.1``; a variant by its name alone (``mixup``)."""
    if list(point) == [VARIANT]:
        return str(point[VARIANT])
    return sep.join(f"{key}={format_value(value)}" for key, value in point.items()) or "base"


def slug(point: dict[str, Any]) -> str:
    """A folder name for a configuration: ``activation=tanh,init=xavier_normal``, stable across runs.

    Values that are not plain names or numbers (pipelines, paths), or longer than 24 characters,
    become a readable prefix and a hash of the whole value.
    """
    parts = []
    for key, value in point.items():
        text = "x".join(map(str, value)) if isinstance(value, tuple) else yaml_scalar(value)
        if not re.fullmatch(r"[A-Za-z0-9._+-]{1,24}", text):
            prefix = re.sub(r"[^A-Za-z0-9._+-]+", "_", text)[:24].strip("_")
            text = f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
        parts.append(f"{key}={text}")
    return ",".join(parts) or "base"


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
