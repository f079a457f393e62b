"""Pipeline specs: the YAML/JSON files and the inline command-line form, parsed and checked.

A spec is plain data::

    seed: 0
    steps:
      - crop: {size: 24, padding: 2}
      - rotate: {limit: 15, p: 0.5}
      - hflip: {p: 0.5}
      - RandomGamma: {p: 0.3}
      - OneOf: {p: 0.5, transforms: [{Blur: {}}, {GaussNoise: {}}]}
      - standardize: {stats: stats.json}

The inline form, for ``-p`` on the command line, writes the same steps separated by ``;``,
each as ``name`` or ``name(key=value, ...)``, values in YAML syntax::

    crop(size=24, padding=2); rotate(limit=15, p=0.5); hflip; RandomGamma(p=0.3)

``parse_spec`` accepts either, a file saved by ``albumentations.save`` (its transforms by
class name), or an already-parsed mapping, and returns the canonical form
``{"seed": int, "steps": [{name: {params}}, ...]}`` (plus ``"compile": False`` when a spec turns
the compiled plan off, ``augkit.pipeline.plan``). Structure is checked here; each step's
name and parameters are checked by ``augkit.pipeline.registry``.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from augkit.documents import DocumentError, parse_document, read_document, short_repr
from augkit.errors import AugkitWarning, SpecError
from augkit.pipeline.registry import COMPOSITIONS, get_step, list_steps
from augkit.pipeline.targets import canonical_targets, from_albumentations_params

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_ALBUMENTATIONS_KEYS = ("__class_fullname__", "__version__", "transform")


def parse_spec(source: str | Path | Mapping[str, Any] | list) -> tuple[dict[str, Any], Path]:
    """The canonical spec and the folder that relative paths in it (stats files) resolve against.

    Args:
        source: a spec file path, an inline spec string, a mapping, or a bare list of steps.
    """
    path = spec_file(source)
    if path is not None:
        with naming_file(path):
            return canonical_spec(_read_spec_file(path)), path.resolve().parent
    if isinstance(source, (Mapping, list)):
        return canonical_spec(source), Path.cwd()
    return canonical_spec(parse_inline(str(source))), Path.cwd()


def spec_file(source: object) -> Path | None:
    """The file ``source`` names, or None for an inline spec, a mapping or a list of steps."""
    if not isinstance(source, (str, Path)):
        return None
    path, text = Path(source), str(source)
    looks_like_file = path.suffix.lower() in SPEC_SUFFIXES and "(" not in text and ";" not in text
    return path if looks_like_file or isinstance(source, Path) or _is_file(path) else None


@contextlib.contextmanager
def naming_file(path: Path | None) -> Iterator[None]:
    """Prefix a SpecError raised inside with ``path`` (``aug.yaml: steps[0]: unknown step ...``).

    A message that already starts with the path (a syntax error with its line and column) is
    left as it is.
    """
    try:
        yield
    except SpecError as error:
        if path is None or str(error).startswith(str(path)):
            raise
        raise SpecError(f"{path}: {error}") from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a long inline spec is not a valid file name on every system
        return False


def _read_spec_file(path: Path) -> Any:
    try:
        data = read_document(path, what="pipeline spec")
    except FileNotFoundError:
        raise SpecError(f"pipeline file not found: {path}") from None
    except DocumentError as error:
        raise SpecError(str(error)) from None
    if isinstance(data, Mapping) and "transform" in data and "steps" not in data:
        return from_albumentations(data, path)
    return data


# ----------------------------------------------------------------------------- inline form


def split_top_level(text: str, separator: str) -> list[str]:
    """Split at ``separator`` outside brackets, parentheses and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def parse_inline(text: str) -> dict[str, Any]:
    """``"crop(size=24); hflip"`` -> ``{"steps": [{"crop": {"size": 24}}, {"hflip": {}}]}``."""
    steps = [_parse_inline_step(item.strip()) for item in split_top_level(text, ";") if item.strip()]
    if not steps:
        raise SpecError("inline pipeline is empty; for example: 'crop(size=24, padding=2); hflip'")
    return {"steps": steps}


def _parse_inline_step(item: str) -> dict[str, dict[str, Any]]:
    """``"rotate(limit=15, p=0.5)"`` -> ``{"rotate": {"limit": 15, "p": 0.5}}``."""
    name, _, rest = item.partition("(")
    name = name.strip()
    if not (name.isidentifier() or TIMM_NAME.match(name)):
        raise SpecError(f"inline pipeline: {item!r} is not a step; write name or name(key=value, ...)")
    params: dict[str, Any] = {}
    if rest:
        if not rest.rstrip().endswith(")"):
            raise SpecError(f"inline pipeline: {item!r} is missing its closing ')'")
        for pair in split_top_level(rest.rstrip()[:-1], ","):
            if not pair.strip():
                continue
            key, equals, value = pair.partition("=")
            if not equals or not key.strip().isidentifier():
                raise SpecError(f"inline pipeline: in {name}(...), {pair.strip()!r} is not key=value")
            if key.strip() in params:
                raise SpecError(f"inline pipeline: in {name}(...), {key.strip()} is given twice")
            source = f"inline pipeline: {name}({key.strip()}=...)"
            try:
                params[key.strip()] = parse_document(value.strip(), source=source, what="value")
            except DocumentError as error:
                raise SpecError(str(error)) from None
    return {name: params}


# ----------------------------------------------------------------------------- structure


def canonical_spec(data: Any) -> dict[str, Any]:
    """Check the structure and return ``{"seed": int, "steps": [{name: params}, ...]}``, with
    ``"targets"`` when the spec declares boxes or keypoints (``augkit.pipeline.targets``) and
    ``"compile": False`` when the spec says so (a plan runs by default: ``augkit.pipeline.plan``)."""
    if isinstance(data, list):
        data = {"steps": data}
    if not isinstance(data, Mapping):
        raise SpecError(f"a pipeline spec is a mapping with 'steps' (and optionally 'seed'), got {type(data).__name__}")
    unknown = set(data) - {"seed", "steps", "compile", "targets"}
    if unknown:
        raise SpecError(
            f"pipeline spec: unknown key(s) {', '.join(sorted(map(str, unknown)))}; expected 'seed', 'steps' "
            f"and optionally 'targets' and 'compile'"
        )
    compile_ = data.get("compile", True)
    if not isinstance(compile_, (bool, np.bool_)):
        raise SpecError(f"pipeline spec: 'compile' must be true or false, got {short_repr(compile_)}")
    seed = data.get("seed", 0)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        # 64-bit: seeds 5 and 5 + 2**64 would draw the same numbers.
        raise SpecError(f"pipeline spec: 'seed' must be an integer in [0, 2**64), got {short_repr(seed)}")
    seed = int(seed)
    if "steps" not in data or not isinstance(data["steps"], list):
        raise SpecError("pipeline spec: 'steps' must be a list of steps, e.g. [{hflip: {p: 0.5}}]")
    spec = {"seed": seed, "steps": [_canonical_step(step, f"steps[{i}]") for i, step in enumerate(data["steps"])]}
    if data.get("targets") is not None:  # boxes and keypoints, declared (augkit.pipeline.targets)
        spec["targets"] = canonical_targets(data["targets"])
    if not compile_:  # the default (true) is left out, so specs read as they did before plans
        spec["compile"] = False
    return spec


def _canonical_step(step: Any, where: str) -> dict[str, dict[str, Any]]:
    if isinstance(step, str):  # a bare name, or a step in inline form inside a composition
        step = _parse_inline_step(step) if "(" in step else {step: {}}
    if not isinstance(step, Mapping) or len(step) != 1:
        raise SpecError(f"pipeline spec {where}: a step is 'name' or {{name: {{params}}}}, got {step!r}")
    (name, params), = step.items()
    if params is None:
        params = {}
    if not isinstance(name, str) or not isinstance(params, Mapping):
        raise SpecError(f"pipeline spec {where} ({short_repr(name)}): parameters must be a mapping, got {short_repr(params)}")
    odd = next((key for key in params if not isinstance(key, str)), None)
    if odd is not None or None in params:
        raise SpecError(f"pipeline spec {where} ({name}): parameter names are words, got {short_repr(odd)}")
    params = dict(params)
    if TIMM_NAME.match(name):
        name, params = from_timm(name, params, where)
    if name in COMPOSITIONS:
        children = params.get("transforms")
        if not isinstance(children, list) or not children:
            raise SpecError(f"pipeline spec {where} ({name}): needs 'transforms', a non-empty list of steps")
        params["transforms"] = [_canonical_step(c, f"{where}.transforms[{j}]") for j, c in enumerate(children)]
    return {name: params}


# ----------------------------------------------------------------------------- timm's policy strings

# timm's strings for its augmentation policies (``--aa``; timm/data/auto_augment.py), read as the
# steps of augkit.pipeline.policies, whose operations and ranges are torchvision's:
#   rand-m9-n2-mstd0.5  randaugment(num_ops=2, magnitude=9, num_magnitude_bins=11, magnitude_std=0.5):
#                       timm's M and mstd are on its 0..10 scale, 11 bins of torchvision's ranges
#                       (timm's own operation set adds Invert and SolarizeAdd, drops Identity and
#                       applies each operation with probability 0.5; its ``inc1`` ranges are these)
#   augmix-m5-w3-d2-a1  augmix(severity=5, mixture_width=3, chain_depth=2, alpha=1.0)
#   original            autoaugment(policy=imagenet): the paper's ImageNet table, torchvision's bins
# Sections that have no equivalent are refused, never ignored.
TIMM_NAME = re.compile(r"(rand|augmix|original|originalr|v0|v0r)(-.*)?$")
# timm key -> (the step's parameter, its type); None: accepted and without effect (said above).
_TIMM_KEYS: dict[str, dict[str, tuple[str | None, type]]] = {
    "rand": {"m": ("magnitude", int), "n": ("num_ops", int), "mstd": ("magnitude_std", float), "inc": (None, int)},
    "augmix": {"m": ("severity", int), "w": ("mixture_width", int), "d": ("chain_depth", int), "a": ("alpha", float)},
    "original": {},
}
# timm's sections without an equivalent here, and what they ask for.
_TIMM_REFUSED = {
    "w": "a weighted choice of operations",
    "mmax": "magnitudes past timm's 10",
    "b": "timm's blended AugMix",
    "mstd": "a magnitude noise (randaugment's magnitude_std)",
}
# The parameters in the order the steps declare them (what to_spec shows).
_TIMM_ORDER = ("num_ops", "magnitude", "num_magnitude_bins", "magnitude_std", "severity", "mixture_width", "chain_depth",
               "alpha", "policy")  # fmt: skip
_TIMM_STEPS = {"rand": ("randaugment", {"magnitude": 10, "num_magnitude_bins": 11}), "augmix": ("augmix", {}),
               "original": ("autoaugment", {"policy": "imagenet"})}  # fmt: skip


def from_timm(text: str, params: Mapping[str, Any] | None = None, where: str = "") -> tuple[str, dict[str, Any]]:
    """A timm policy string (``rand-m9-n2-mstd0.5``) as a canonical step name and its parameters,
    ``params`` (e.g. ``p``) added; a section without an equivalent raises SpecError."""
    head, *sections = text.split("-")
    label = f"pipeline spec {where}: {text!r}" if where else repr(text)
    if head not in _TIMM_STEPS:
        raise SpecError(
            f"{label}: timm's AutoAugment policy {head!r} is not one torchvision publishes; augkit reads 'original' "
            f"as autoaugment(policy=imagenet), and has autoaugment(policy=imagenet|cifar10|svhn)"
        )
    name, values = _TIMM_STEPS[head]
    values, keys = dict(values), _TIMM_KEYS[head]
    for section in sections:
        match = re.fullmatch(r"([a-z]+)(\d[\d.]*)", section)
        key, raw = match.groups() if match else (section, "")
        if key == "b" and raw == "0":  # timm's default: not blended
            continue
        if key not in keys or not match:
            known = ", ".join(f"{k}N" for k in keys) or "none"
            reason = f"asks for {_TIMM_REFUSED[key]}, which {name} does not have" if key in _TIMM_REFUSED else "is not one timm reads"
            raise SpecError(f"{label}: section {section!r} {reason}; the sections it takes: {known}")
        parameter, kind = keys[key]
        try:
            value = kind(raw)
        except ValueError:
            raise SpecError(f"{label}: section {section!r} needs a {kind.__name__} after {key!r}") from None
        if key == "mstd" and value > 100:
            raise SpecError(f"{label}: mstd above 100 means timm's uniform magnitudes, which randaugment does not have")
        if parameter is not None:
            values[parameter] = value
    clash = sorted(set(values) & set(params or {}))
    if clash:
        raise SpecError(f"{label} sets {', '.join(clash)} already; give each once")
    return name, {**{k: values[k] for k in _TIMM_ORDER if k in values}, **(params or {})}


# ----------------------------------------------------------------------------- albumentations files


def from_albumentations(data: Mapping[str, Any], path: Path | str = "<dict>") -> dict[str, Any]:
    """Convert a dict written by ``albumentations.save`` (or ``to_dict``) into an augkit spec."""
    root = data.get("transform")
    if not isinstance(root, Mapping) or root.get("__class_fullname__") not in ("Compose", "Sequential"):
        raise SpecError(f"{path}: an albumentations file must hold a Compose under 'transform'")
    seed = root.get("seed")
    if seed is None:
        # Files written by albumentations itself carry no seed (augkit's carry the pipeline's).
        warnings.warn(
            f"{path}: this albumentations file carries no seed; augkit uses seed 0 "
            f"(add 'seed: N' to its Compose, or pass seed= to load_pipeline, to choose)",
            AugkitWarning,
            stacklevel=2,
        )
        seed = 0
    spec = {"seed": seed, "steps": _from_albumentations_steps(root.get("transforms", []), path)}
    targets = from_albumentations_params(root)  # its bbox_params and keypoint_params
    if targets:
        spec["targets"] = targets
    return spec


def _from_albumentations_steps(items: Any, path: Path | str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise SpecError(f"{path}: 'transforms' must be a list of transforms, got {short_repr(items)}")
    return [_from_albumentations_step(item, path) for item in items]


def _from_albumentations_step(item: Any, path: Path | str) -> dict[str, Any]:
    class_name = item.get("__class_fullname__") if isinstance(item, Mapping) else None
    if not isinstance(class_name, str):
        raise SpecError(f"{path}: a transform must be a mapping with '__class_fullname__', got {short_repr(item)}")
    params = {k: v for k, v in item.items() if k not in _ALBUMENTATIONS_KEYS and k != "strict"}
    # augkit's own steps are saved under their module path (augkit.pipeline.steps.Crop; before
    # the package re-layout, augkit.transforms.Crop): any augkit.* path maps by its class name.
    name = class_name
    if class_name.startswith("augkit."):
        by_class = {get_step(n).__name__: n for n in list_steps("augkit")}
        name = by_class.get(class_name.rsplit(".", 1)[-1], class_name)
    if name in COMPOSITIONS:
        params["transforms"] = _from_albumentations_steps(params.get("transforms", []), path)
    return {name: params}


def format_inline(spec: Mapping[str, Any]) -> str:
    """The inline form of a canonical spec's steps (the seed is not part of it)."""

    def value(v: Any) -> str:
        return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()

    def step(item: Mapping[str, Any]) -> str:
        (name, params), = item.items()
        if not params:
            return name
        return f"{name}({', '.join(f'{k}={value(v)}' for k, v in params.items())})"

    return "; ".join(step(s) for s in spec["steps"])
