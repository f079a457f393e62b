"""The control the page draws for each parameter of a step, from the step's own description.

``augkit.pipeline.parameters.describe_step`` reads a step's schema (types, choices, bounds) for
``augkit steps``; this maps each parameter to one of a few controls, so every albumentations
transform is editable without a hand-written form:

- ``checkbox``: a bool;
- ``select``: one of a fixed set (a ``Literal``; OpenCV flags labelled by name);
- ``slider``: one number with both bounds declared;
- ``range``: a pair of numbers (or, when ``scalar``, also one number) with both bounds declared;
- ``number``: one number with a bound missing;
- ``text``: anything else (lists, mappings, values that may be null, a composition's steps),
  typed as YAML flow text and parsed by the server.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from augkit.pipeline.parameters import ParameterInfo, describe_step, format_value
from augkit.pipeline.registry import COMPOSITIONS

_SCALARS = {"int", "float"}
_PAIRS = {"[int, int]", "[float, float]", "[int, float]", "[float, int]"}
SLIDER_POSITIONS = 100  # a slider's step is the power of ten nearest below (high - low) / this


@functools.cache
def step_controls(name: str) -> dict[str, Any]:
    """JSON for ``GET /api/steps/<name>``: the summary and every parameter with its control.

    Raises:
        SpecError: no step has that name.
    """
    summary, parameters = describe_step(name)
    return {
        "name": name,
        "summary": summary,
        "composition": name in COMPOSITIONS,
        "parameters": [{**parameter.to_dict(), **control(parameter)} for parameter in parameters],
    }


def control(parameter: ParameterInfo) -> dict[str, Any]:
    """The control for one parameter: ``{"control": kind, ...}`` with what that kind needs."""
    kinds = {part.strip() for part in parameter.type.split("|") if part.strip()}
    bounded = parameter.low is not None and parameter.high is not None
    if parameter.choices and not kinds:
        labels = [format_value(choice, parameter.name) for choice in parameter.choices]
        return {"control": "select", "choice_labels": labels}
    if kinds == {"bool"}:
        return {"control": "checkbox"}
    numbers = kinds & _SCALARS
    pairs = kinds & _PAIRS
    if kinds and kinds <= _SCALARS | _PAIRS and bounded and not parameter.choices:
        integer = not any("float" in kind for kind in kinds)
        kind = "range" if pairs else "slider"
        return {"control": kind, "scalar": bool(numbers), "pair": bool(pairs), "integer": integer,
                "step": 1 if integer else slider_step(parameter.low, parameter.high)}  # fmt: skip
    if kinds and kinds <= _SCALARS and not parameter.choices:
        return {"control": "number", "integer": kinds == {"int"}}
    return {"control": "text"}


def slider_step(low: float, high: float) -> float:
    """A round step for a slider over [low, high]: 0.01 for [0, 1], 1 for [-360, 360]."""
    span = high - low
    if not math.isfinite(span) or span <= 0:
        return 1.0
    return 10.0 ** math.floor(math.log10(span / SLIDER_POSITIONS))
