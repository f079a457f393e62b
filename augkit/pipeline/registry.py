"""Pipeline steps by name: augkit's own (``crop``, ``standardize``, ...) and every albumentations
transform by its class name (``RandomGamma``, ``CLAHE``, ...).

Names resolve only through this registry, never through imports of arbitrary Python paths, so
a pipeline file cannot make augkit run code it did not ship. The functions follow timm's
shape: ``get_step(name)`` looks a class up, ``create_step(name, **params)`` validates and
builds, ``list_steps()`` lists; an unknown name is an error that lists the choices and the
closest matches.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import re
import warnings
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

from augkit.documents import short_repr
from augkit.errors import AugkitError, SpecError
from augkit.io.images import DEFAULT_MAX_PIXELS
from augkit.pixels import MAX_SIDE

# Steps that hold other steps; a spec gives them a ``transforms`` list.
COMPOSITIONS = ("OneOf", "SomeOf", "Sequential", "RandomOrder")

# albumentations classes that are not usable as a step of an image pipeline, and why.
_NEEDS_VOLUME = "it transforms 3-D volumes"
_NEEDS_BBOXES = "it needs bounding boxes"
_NEEDS_MASK = "it needs a mask"
_NEEDS_METADATA = "it needs extra inputs besides the image (reference images or overlays)"
UNSUPPORTED = {
    "Lambda": "it wraps Python callables, which a spec file cannot carry",
    "TextImage": "it needs a font file and text metadata",
    "ToTensorV2": "it returns a torch tensor; augkit pipelines return arrays (augkit.train makes tensors)",
    **dict.fromkeys(["CenterCrop3D", "CoarseDropout3D", "CubicSymmetry", "Pad3D", "PadIfNeeded3D", "RandomCrop3D"], _NEEDS_VOLUME),
    **dict.fromkeys(["AtLeastOneBBoxRandomCrop", "BBoxSafeRandomCrop", "RandomCropNearBBox", "RandomSizedBBoxSafeCrop"], _NEEDS_BBOXES),
    **dict.fromkeys(["CropNonEmptyMaskIfExists", "MaskDropout"], _NEEDS_MASK),
    **dict.fromkeys(["FDA", "HistogramMatching", "Mosaic", "OverlayElements", "PixelDistributionAdaptation"], _NEEDS_METADATA),
}
# Base classes and composition machinery: not steps at all.
_NOT_STEPS = {"BasicTransform", "DualTransform", "ImageOnlyTransform", "Transform3D", "ReplayCompose", "Compose", "BaseCompose", "SelectiveChannelTransform"}


def _augkit_steps() -> dict[str, type]:
    # Deferred: augkit.pipeline.steps loads albumentations, which a spec can be parsed without.
    # The augmentation policies register into the same table when their module is imported.
    from augkit.pipeline import policies  # noqa: F401
    from augkit.pipeline.steps import AUGKIT_STEPS

    return AUGKIT_STEPS


@cache
def _albumentations_steps() -> dict[str, type]:
    from augkit.pipeline._albumentations import A  # deferred: albumentations takes 0.5 s to import

    base = A.core.transforms_interface.BasicTransform
    composition = A.core.composition.BaseCompose
    steps = {}
    for name in dir(A):
        obj = getattr(A, name)
        if not isinstance(obj, type) or name.startswith("_") or name in _NOT_STEPS or name in UNSUPPORTED:
            continue
        if issubclass(obj, composition) and name in COMPOSITIONS:
            steps[name] = obj
        elif issubclass(obj, base) and not inspect.isabstract(obj):
            steps[name] = obj
    return steps


def _all_steps() -> dict[str, type]:
    return {**_albumentations_steps(), **_augkit_steps()}


def list_steps(source: str = "all") -> list[str]:
    """Step names, sorted: ``source`` is "all", "augkit" (the lecture's steps) or "albumentations"."""
    if source == "augkit":
        return sorted(_augkit_steps())
    if source == "albumentations":
        return sorted(_albumentations_steps())
    if source == "all":
        return sorted(_all_steps())
    raise ValueError(f"source must be 'all', 'augkit' or 'albumentations', got {source!r}")


def _choices_hint(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    close += [c for c in choices if c.lower() == name.lower() and c not in close]
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def get_step(name: str | type) -> type:
    """The transform class registered as ``name``; a class passes through unchanged."""
    if isinstance(name, type):
        return name
    steps = _all_steps()
    if name in steps:
        return steps[name]
    if name in UNSUPPORTED:
        raise SpecError(f"step {name!r} cannot be used in an augkit pipeline: {UNSUPPORTED[name]}; augkit pipelines transform images")
    augkit_names = ", ".join(sorted(_augkit_steps()))
    raise SpecError(
        f"unknown step {name!r}{_choices_hint(name, sorted(steps))}; augkit's steps are {augkit_names}, "
        "and every albumentations transform by its class name (`augkit steps --all` lists them all)"
    )


def step_parameters(cls: type) -> dict[str, inspect.Parameter]:
    """The keyword parameters a step accepts, in declaration order."""
    params = inspect.signature(cls.__init__).parameters
    return {
        k: p
        for k, p in params.items()
        if k not in ("self", "strict") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _describe_type(parameter: inspect.Parameter) -> str:
    annotation = parameter.annotation
    if annotation is inspect.Parameter.empty:
        return "a value"
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    return text.replace("cv2.", "")


# Every number anywhere in a step's parameters, also when written as a string that reads as
# one (YAML 1.1 reads a bare 1e308 as a string, and pydantic turns "1e308", "inf" and "nan"
# into floats): finite and at most the largest pixel value. augkit's own steps bound theirs
# more tightly in their schemas; albumentations' parameters are not augkit's to know one by
# one, but 1e308 or NaN send some of OpenCV's loops spinning forever.
MAX_PARAMETER = 65535.0
# albumentations parameters that are output sizes in pixels, bounded like augkit's crop size.
_SIZE_KEYS = ("height", "width", "size", "min_height", "min_width", "max_size", "max_size_hw")
# albumentations parameters (by name) whose cost grows without bound with their value, and the
# largest value each may take: kernel sizes (OpenCV's median filter stops at 255), counts, zoom
# factors. At these bounds a 512 x 512 image takes at most about 2 s (RandomShadow's 1024
# shadows); MedianBlur's blur_limit 65535 took 15 s, ZoomBlur's max_factor 65535 over 2 min.
_COSTLY = (
    (re.compile(r"blur_limit|kernel_size|sigma_limit|max_delta"), 255),
    (re.compile(r"^num_|^number_of|n_segments|iterations"), 1024),
    (re.compile(r"max_factor"), 16),
    # Factors that grow the output (RandomScale's scale_limit, Affine's scale, CropAndPad's
    # percent): 16 takes a 512 x 512 image to 8704 x 8704 at most; CropAndPad's px, in pixels.
    # Growth that only an image's size can measure (Pad's padding) is checked on each step's
    # output (plan.check_output_size).
    (re.compile(r"^scale$|scale_limit|^percent$"), 16),
    (re.compile(r"^px$"), 4096),
)


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a number or a string that reads as one; else None."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        return None
    try:
        return float(value)
    except ValueError:  # a word ("constant")
        return None
    except OverflowError:  # an int beyond float's range
        return math.inf


def _numbers(value: Any) -> Iterator[float]:
    """Every number in ``value``, nested lists and mappings included."""
    pending = [value]  # a stack, not recursion: a spec built in Python may nest without limit
    while pending:
        item = pending.pop()
        if isinstance(item, Mapping):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif (number := _number(item)) is not None:
            yield number


def cost_bound(key: str) -> float:
    """The largest magnitude of the numbers an albumentations parameter named ``key`` may hold:
    ``_COSTLY``'s bound for kernel sizes, counts and zoom factors, else MAX_PARAMETER."""
    return next((limit for pattern, limit in _COSTLY if pattern.search(key)), MAX_PARAMETER)


def size_bound(key: str) -> int | None:
    """The largest output side an albumentations parameter named ``key`` may ask for, if it is one."""
    return MAX_SIDE if key in _SIZE_KEYS else None


def _check_numbers(name: str, key: str, value: Any) -> None:
    """Every number in ``value`` finite and within MAX_PARAMETER (tighter for ``_COSTLY`` keys)."""
    bound = cost_bound(key)
    if not all(-bound <= number <= bound for number in _numbers(value)):  # False for NaN too
        raise SpecError(
            f"step {name!r}: parameter {key!r} got {short_repr(value)}; its numbers must be finite and within "
            f"+-{bound:g}"
        )


def _check_sizes(name: str, params: Mapping[str, Any]) -> None:
    """Output sizes (albumentations' height/width/size...) within MAX_SIDE and the pixel limit."""

    def sides(key: str) -> list[float]:
        value = params.get(key)
        return [n for n in (_number(v) for v in (value if isinstance(value, (list, tuple)) else [value])) if n is not None]

    for key in _SIZE_KEYS:
        if any(side > MAX_SIDE for side in sides(key)):
            raise SpecError(f"step {name!r}: parameter {key!r} got {short_repr(params[key])}; sizes are at most {MAX_SIDE} pixels")
    areas = [("height", sides("height") + sides("width")), ("min_height", sides("min_height") + sides("min_width"))]
    areas += [(key, sides(key)) for key in _SIZE_KEYS if isinstance(params.get(key), (list, tuple))]
    for key, pair in areas:
        if len(pair) == 2 and pair[0] * pair[1] > DEFAULT_MAX_PIXELS:
            raise SpecError(
                f"step {name!r}: {key} {pair[0]:g} x {pair[1]:g} = {pair[0] * pair[1]:,.0f} pixels is more than the "
                f"pixel limit ({DEFAULT_MAX_PIXELS:,})"
            )


def validate_params(name: str, cls: type, params: Mapping[str, Any]) -> None:
    """Check ``params`` against the step's signature and schema; one SpecError names the key."""
    accepted = step_parameters(cls)
    for key, value in params.items():
        if key not in accepted:
            raise SpecError(
                f"step {name!r}: unknown parameter {key!r}{_choices_hint(key, list(accepted))}; "
                f"{name} accepts: {', '.join(accepted) or 'no parameters'}"
            )
        if key != "transforms":
            _check_numbers(name, key, value)
        expected = _describe_type(accepted[key])
        if isinstance(value, bool) and expected != "a value" and "bool" not in expected:
            # pydantic would read True as 1: a flag typed where a number or a word goes is a slip.
            raise SpecError(f"step {name!r}: parameter {key!r} got {value!r}, expected {expected}")
    _check_sizes(name, params)
    if "p" in params:
        p = params["p"]
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0 <= p <= 1:
            raise SpecError(f"step {name!r}: parameter 'p' is a probability in [0, 1], got {p!r}")
    schema = getattr(cls, "InitSchema", None)
    if schema is None:
        return
    from pydantic import ValidationError

    defaults = {k: p.default for k, p in accepted.items() if p.default is not inspect.Parameter.empty}
    try:
        schema(**{**defaults, **params, "strict": False})
    except ValidationError as error:
        raise SpecError(_schema_message(name, accepted, params, error)) from None


def _schema_message(name: str, accepted: dict, params: Mapping[str, Any], error: Any) -> str:
    """One line from pydantic's report: the first problem with a key the user gave."""
    problems = error.errors()
    for problem in problems:
        key = problem["loc"][0] if problem["loc"] else None
        if key in params:
            expected = _describe_type(accepted[key]) if key in accepted else "a valid value"
            return (
                f"step {name!r}: parameter {key!r} got {params[key]!r}, expected {expected} "
                f"({problem['msg'].rstrip('.')})"
            )
        if problem["type"] == "missing" and key in accepted:
            return f"step {name!r}: parameter {key!r} is required ({_describe_type(accepted[key])})"
    # A check across several fields (e.g. "give either stats or mean and std").
    message = problems[0]["msg"].removeprefix("Value error, ")
    return f"step {name!r}: {message}"


def create_step(name: str | type, /, **params: Any) -> Any:
    """Validate ``params`` and build the step ``name`` (a transform instance)."""
    cls = get_step(name)
    label = name if isinstance(name, str) else cls.__name__
    validate_params(label, cls, params)
    with warnings.catch_warnings():
        # albumentations warns about deprecated spellings; the spec keeps what the user wrote.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return cls(**params)
        except AugkitError:
            raise
        except Exception as error:  # noqa: BLE001 (any failure to build a step is one line)
            lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
            reason = lines[0][:300] if lines else type(error).__name__
            if not isinstance(error, (ValueError, TypeError)):
                reason = f"{type(error).__name__}: {reason}"
            raise SpecError(f"step {label!r}: {reason}") from None
