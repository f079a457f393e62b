"""What each parameter of a pipeline step is, for people: ``augkit steps NAME`` prints it.

Every fact comes from the step itself, so that augkit's steps and albumentations' transforms
are described the same way and the description cannot drift from the code:

- the type, the allowed values (a ``Literal``) and the bounds (pydantic's ``Field(ge=...)``,
  albumentations' ``check_range_bounds``, augkit's ``Bounds``) from the step's pydantic ``InitSchema``;
- augkit's own bounds on albumentations' parameters (kernel sizes, counts, output sizes) from
  ``augkit.pipeline.registry``, which enforces them;
- the default from the signature of ``__init__``;
- the meaning from the ``Args:`` section of the class docstring (Google style, as both augkit
  and albumentations write them), the first sentence, without its "Default: ..." note.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from augkit.pipeline.registry import COMPOSITIONS, MAX_PARAMETER, cost_bound, get_step, size_bound, step_parameters

# OpenCV flags that albumentations takes as plain integers, by the name people know them by.
_CV2_FLAGS = {
    "interpolation": {0: "INTER_NEAREST", 1: "INTER_LINEAR", 2: "INTER_CUBIC", 3: "INTER_AREA", 4: "INTER_LANCZOS4",
                      5: "INTER_LINEAR_EXACT", 6: "INTER_NEAREST_EXACT"},
    "border_mode": {0: "BORDER_CONSTANT", 1: "BORDER_REPLICATE", 2: "BORDER_REFLECT", 3: "BORDER_WRAP",
                    4: "BORDER_REFLECT_101"},
}  # fmt: skip
# What a parameter every step has means, where a docstring does not say.
_COMMON_MEANINGS = {
    "p": "probability of applying the step to a sample (0 never, 1 always)",
    "transforms": "the steps to choose from or run, as a list in the same form as the pipeline's",
    "border_mode": "how the pixels the transform brings in from outside the image are filled (an OpenCV border flag)",
}


@dataclass(frozen=True)
class Bounds:
    """Where every number of a parameter lies, the high end included: ``Annotated[float |
    tuple[float, float], Bounds(-360, 360)]`` in an ``InitSchema``. A declaration for people
    (``augkit steps``) and for controls (``augkit studio``'s sliders); pydantic ignores it, the
    schema's validator enforces it."""

    low: float
    high: float
    low_inclusive: bool = True


@dataclass(frozen=True)
class ParameterInfo:
    """One parameter of a step, as ``augkit steps NAME`` shows it.

    Attributes:
        name: the key in a pipeline spec.
        type: "int | [int, int] | float" (YAML's lists for tuples, "null" for None), the choices
            left out; "" when the step declares none, or takes only the choices.
        default: the value used when the spec leaves the key out; ``inspect.Parameter.empty``
            when the key is required.
        choices: the values of a fixed set the parameter takes (a ``Literal``), else ().
        bounds: "in [0, 1]", ">= 0", "each in [0, 1]"; "" when none is declared.
        meaning: one line from the step's docstring; "" when it says nothing.
        low, high: the bounds as numbers (None where that side has none); inclusive or not as
            ``bounds`` says.
    """

    name: str
    type: str
    default: Any
    choices: tuple[Any, ...]
    bounds: str
    meaning: str
    low: float | None = None
    high: float | None = None

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, a required parameter without a ``default`` key."""
        data = {"name": self.name, "type": self.type, "choices": [_plain(c) for c in self.choices],
                "bounds": self.bounds, "low": self.low, "high": self.high, "meaning": self.meaning,
                "required": self.required}  # fmt: skip
        if not self.required:
            data["default"] = _plain(self.default)
        return data


def describe_step(name: str | type) -> tuple[str, list[ParameterInfo]]:
    """The step's one-line summary and its parameters, in the order its ``__init__`` declares them.

    Raises:
        SpecError: no step has that name (the message lists them and the command that does).
    """
    cls = get_step(name)
    summary = _plain_text((inspect.getdoc(cls) or "").split("\n\n")[0])
    fields = getattr(getattr(cls, "InitSchema", None), "model_fields", {})
    meanings = _docstring_meanings(cls)
    infos = []
    for key, parameter in step_parameters(cls).items():
        field = fields.get(key)
        annotation = field.annotation if field is not None else parameter.annotation
        metadata = list(field.metadata) if field is not None else []
        choices = _choices(annotation)
        if choices and all(isinstance(c, int) and not isinstance(c, bool) for c in choices):
            choices.sort()  # OpenCV flags, listed by value
        low, high, each = _limits(key, metadata + _annotated_metadata(annotation))
        infos.append(ParameterInfo(
            name=key,
            type="[step, ...]" if key == "transforms" and cls.__name__ in COMPOSITIONS else _type_text(annotation),
            default=parameter.default,
            choices=tuple(choices),
            bounds=_bounds_text(low, high, each),
            meaning=meanings.get(key) or _COMMON_MEANINGS.get(key, ""),
            low=None if low is None else low[0],
            high=None if high is None else high[0],
        ))  # fmt: skip
    return summary, infos


def format_value(value: Any, key: str = "") -> str:
    """A value as a spec would write it (YAML flow style: lists in brackets, null, true); an
    OpenCV flag of parameter ``key`` (``interpolation``, ``border_mode``) with its name."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    flags = next((names for suffix, names in _CV2_FLAGS.items() if key.endswith(suffix)), {})
    if isinstance(value, int) and value in flags:
        return f"{value} ({flags[value]})"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    return str(value)


# ----------------------------------------------------------------------------- types, choices, bounds


def _type_text(annotation: Any) -> str:
    """``int | tuple[int, int] | None`` -> "int | [int, int] | null"; a Literal's choices -> ""."""
    if annotation is inspect.Parameter.empty:
        return ""
    if isinstance(annotation, str):  # a signature annotation left as text (no schema field)
        text = annotation.replace("cv2.", "").replace("tuple[", "[").replace("None", "null")
        return " | ".join(part for part in re.sub(r"Literal\[[^\]]*\]", "", text).split(" | ") if part.strip())
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        parts = [_type_text(a) for a in args]
        return " | ".join(dict.fromkeys(p for p in parts if p))
    if origin is typing.Literal:
        return ""  # shown as the choices
    if origin in (tuple, list):
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            return f"[{_type_text(args[0]) if args else 'any'}, ...]"
        return "[" + ", ".join(_type_text(a) for a in args) + "]"
    if origin is dict:
        return "{" + ": ".join(_type_text(a) for a in args) + "}" if args else "mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation)).replace("cv2.", "")


def _choices(annotation: Any) -> list[Any]:
    """The values of every ``Literal`` in ``annotation`` (within unions and ``Annotated`` too)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return list(args)
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        members = args[:1] if origin is typing.Annotated else args
        return [choice for member in members for choice in _choices(member)]
    return []


def _annotated_metadata(annotation: Any) -> list[Any]:
    """Constraints attached to the members of a union (``Annotated[float, Ge(0)] | None``)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return list(args[1:])
    if origin in (typing.Union, types.UnionType):
        return [m for member in args for m in _annotated_metadata(member)]
    return []


# annotated_types' constraints (what pydantic's Field(ge=...) makes): (attribute, inclusive, lower bound)
_ANNOTATED_BOUNDS = (("ge", True, True), ("gt", False, True), ("le", True, False), ("lt", False, False))


Limit = tuple[float, bool]  # (bound, inclusive)


def _limits(key: str, metadata: list[Any]) -> tuple[Limit | None, Limit | None, bool]:
    """The declared bounds of a parameter (low, high, whether they bound each number of a
    pair), or augkit's own bound on its numbers (``augkit.pipeline.registry`` checks it for
    every step) when that is tighter."""
    low: Limit | None = None
    high: Limit | None = None
    each = False
    for item in metadata:
        if isinstance(item, Bounds):
            low, high, each = (item.low, item.low_inclusive), (item.high, True), True
        for attribute, inclusive, is_low in _ANNOTATED_BOUNDS:
            value = getattr(item, attribute, None)
            if isinstance(value, (int, float)):
                low, high = ((value, inclusive), high) if is_low else (low, (value, inclusive))
        check = _range_check(item)
        if check is not None:
            each = True
            low = (check["min_val"], check["min_inclusive"])
            high = (check["max_val"], check["max_inclusive"]) if check["max_val"] is not None else high
    if key not in ("p", "transforms"):
        bound = size_bound(key) or cost_bound(key)
        if bound is not None and bound < MAX_PARAMETER and (high is None or bound < high[0]):
            high = (bound, True)
            each = each or key not in ("height", "width", "size", "min_height", "min_width", "max_size")
    if key == "p" and low is None and high is None:
        low, high = (0, True), (1, True)  # registry.validate_params checks it for every step
    return low, high, each


def _bounds_text(low: Limit | None, high: Limit | None, each: bool) -> str:
    """Bounds in words: "in [0, 1]", "each >= 0", ""."""
    if low is None and high is None:
        return ""
    prefix = "each " if each else ""
    if low is not None and high is not None:
        left, right = ("[" if low[1] else "("), ("]" if high[1] else ")")
        return f"{prefix}in {left}{format_value(low[0])}, {format_value(high[0])}{right}"
    if low is not None:
        return f"{prefix}{'>=' if low[1] else '>'} {format_value(low[0])}"
    return f"{prefix}{'<=' if high[1] else '<'} {format_value(high[0])}"


def _range_check(item: Any) -> dict[str, Any] | None:
    """The bounds inside albumentations' ``check_range_bounds(min, max, ...)`` validator, read
    from its closure (its only record of them); None for any other validator."""
    func = getattr(item, "func", None)
    if getattr(func, "__qualname__", "") != "check_range_bounds.<locals>.validator" or func.__closure__ is None:
        return None
    cells = dict(zip(func.__code__.co_freevars, (c.cell_contents for c in func.__closure__)))
    if not {"min_val", "max_val", "min_inclusive", "max_inclusive"} <= cells.keys():
        return None
    return cells


# ----------------------------------------------------------------------------- docstrings

# "name: text", "a, b: text", "name (type): text", "name ((int, int) or int): text"
_ENTRY = re.compile(r"^(\w+(?:\s*,\s*\w+)*)\s*(?:\(.*?\))?\s*:\s*(.*)$")


def _docstring_meanings(cls: type) -> dict[str, str]:
    """name -> the first sentence of its entry under ``Args:``, from the class and its bases
    (the nearest class that documents a name wins)."""
    meanings: dict[str, str] = {}
    for klass in inspect.getmro(cls):
        for name, text in _args_section(inspect.cleandoc(klass.__dict__.get("__doc__") or "")).items():
            meanings.setdefault(name, _first_sentence(text))
    return meanings


def _args_section(doc: str) -> dict[str, str]:
    """The entries of a Google-style ``Args:`` section: "name (type): text" or "a, b: text",
    continued on lines indented further."""
    entries: dict[str, list[str]] = {}
    lines = doc.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() in ("Args:", "Arguments:", "Parameters:")), None)
    if start is None:
        return {}
    base = len(lines[start]) - len(lines[start].lstrip())
    entry_indent, current = None, []
    for line in lines[start + 1 :]:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if indent <= base:
            break
        match = _ENTRY.match(line.strip())
        if match and (entry_indent is None or indent == entry_indent):
            entry_indent, current = indent, [match.group(2)]
            for name in re.split(r"\s*,\s*", match.group(1)):
                entries[name] = current
        elif entry_indent is not None and indent > entry_indent:
            current.append(line.strip())
    return {name: " ".join(text) for name, text in entries.items()}


MAX_MEANING = 200  # characters: a sentence, not albumentations' paragraphs


def _first_sentence(text: str) -> str:
    """The first sentence of ``text``, lower-cased at its start, at most MAX_MEANING characters."""
    text = _plain_text(text)
    text = re.split(r"\s*Default(?:s| is|:)\b", text)[0].strip()
    text = re.split(r"(?<=[.!?:])\s+[-*]\s", text)[0]  # a list of cases follows
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z*(])", text)[0].rstrip(".:").strip()
    first = sentence.split(" ", 1)[0]
    if first[:1].isupper() and (first[1:].islower() or len(first) == 1):  # "Probability ..." but not "OpenCV"
        sentence = sentence[0].lower() + sentence[1:]
    if len(sentence) > MAX_MEANING:
        sentence = sentence[: MAX_MEANING - 4].rsplit(" ", 1)[0].rstrip(",;") + " ..."
    return sentence


def _plain_text(text: str) -> str:
    """Docstring markup off (``size`` -> size, `n` -> n), whitespace as single spaces."""
    return re.sub(r"``?([^`]*)``?", r"\1", " ".join(text.split()))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
