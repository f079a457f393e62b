"""Targets besides the image: masks, bounding boxes and keypoints, as a spec declares them.

Masks need no declaration (a mask is a label image of the image's height and width: every
geometric step moves it with the image, nearest-neighbour). Boxes and keypoints do: ``[10, 20,
50, 60]`` is COCO's x, y, width, height or Pascal VOC's corners, and only the spec can say which::

    seed: 0
    targets:
      bboxes: {format: coco, label_fields: [labels], min_visibility: 0.3}
      keypoints: {format: xy}
    steps: [...]

The keys and their meanings are albumentations' ``BboxParams`` and ``KeypointParams`` (2.0.x),
which a pipeline's ``compose`` is built with, so that albumentations' transforms and augkit's
move targets the same way in one pipeline. Formats (albumentations' names):

- boxes: ``pascal_voc`` [x_min, y_min, x_max, y_max] in pixels; ``coco`` [x_min, y_min, width,
  height] in pixels; ``yolo`` [x_center, y_center, width, height] as fractions of the image's
  sides; ``albumentations`` [x_min, y_min, x_max, y_max] as fractions;
- keypoints: ``xy``, ``yx``, ``xya``, ``xys``, ``xyas``, ``xysa``, ``xyz`` (x, y in pixels;
  a: an angle, in degrees unless ``angle_in_degrees: false``; s: a scale).

A box is kept while ``min_area`` (pixels, default 0), ``min_width``/``min_height`` (pixels,
default 1: torchvision's ``SanitizeBoundingBoxes``; albumentations' 0 keeps boxes a crop cut to
nothing) and ``min_visibility`` (the fraction of its area still in the image, default 0) hold
after each step; the part outside the image is clipped. A keypoint that leaves the image is dropped unless
``remove_invisible: false``. Label fields (``label_fields``, by default ``[labels]`` for boxes
and none for keypoints) are lists beside them, one entry per box or keypoint, dropped with it;
each entry comes back as given (any type: class indices, names, ids), as ``kept_labels`` does.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from augkit.documents import short_repr
from augkit.errors import AugkitError, SpecError

BBOX_FORMATS = ("pascal_voc", "coco", "yolo", "albumentations")
KEYPOINT_FORMATS = ("xy", "yx", "xya", "xys", "xyas", "xysa", "xyz")
# Per target: key -> (kind, default). Kinds: "format", "fields", "fraction" (in [0, 1]),
# "pixels" (>= 0), "flag" (true or false), "ratio" (> 0 or null).
_KEYS: dict[str, dict[str, tuple[str, Any]]] = {
    "bboxes": {
        "format": ("format", None),
        "label_fields": ("fields", ["labels"]),
        "min_area": ("pixels", 0.0),
        "min_visibility": ("fraction", 0.0),
        # torchvision's SanitizeBoundingBoxes(min_size=1): a box a crop has cut to a sliver (or to
        # nothing: albumentations keeps zero-width boxes, which a later rotation would revive) is gone.
        "min_width": ("pixels", 1.0),
        "min_height": ("pixels", 1.0),
        "clip": ("flag", False),
        "filter_invalid_bboxes": ("flag", False),
        "max_accept_ratio": ("ratio", None),
        "check_each_transform": ("flag", True),
    },
    "keypoints": {
        "format": ("format", None),
        "label_fields": ("fields", []),
        "remove_invisible": ("flag", True),
        "angle_in_degrees": ("flag", True),
        "check_each_transform": ("flag", True),
    },
}
_FORMATS = {"bboxes": BBOX_FORMATS, "keypoints": KEYPOINT_FORMATS}
# Names a label field cannot take: the call's own keywords, and the names albumentations'
# Compose.__call__ and Pipeline.__call__ give their own arguments.
_RESERVED = {"image", "mask", "masks", "bboxes", "keypoints", "index", "epoch", "self", "force_apply"}
# What the columns of each format hold, for the error that names a table of the wrong shape.
_COLUMNS = {
    "pascal_voc": "x_min, y_min, x_max, y_max in pixels",
    "coco": "x_min, y_min, width, height in pixels",
    "yolo": "x_center, y_center, width, height as fractions of the sides",
    "albumentations": "x_min, y_min, x_max, y_max as fractions of the sides",
}
# albumentations carries label fields as float32 columns beside the boxes (label_manager, 2.0.x):
# a row index rides exactly below 2**24.
MAX_ROWS = 2**24


def canonical_targets(data: Any, where: str = "pipeline spec") -> dict[str, dict[str, Any]]:
    """Check a spec's ``targets`` and return it as given (defaults are not filled in).

    Raises:
        SpecError: one line naming the key (``targets.bboxes.format``) and what it takes.
    """
    if not isinstance(data, Mapping) or not data:
        raise SpecError(f"{where}: 'targets' maps bboxes and/or keypoints to their settings, e.g. "
                        f"{{bboxes: {{format: coco}}}}; got {short_repr(data)}")  # fmt: skip
    unknown = [key for key in data if key not in _KEYS]
    if unknown:
        raise SpecError(f"{where}: unknown target {short_repr(unknown[0])} in 'targets'; declare bboxes and/or "
                        "keypoints (masks need no declaration)")  # fmt: skip
    targets = {}
    fields_seen: dict[str, str] = {}
    for target, settings in data.items():
        place = f"{where}: targets.{target}"
        if not isinstance(settings, Mapping) or "format" not in settings:
            raise SpecError(f"{place} needs at least a format, one of {', '.join(_FORMATS[target])}; got {short_repr(settings)}")
        checked = {}
        for key, value in settings.items():
            if key not in _KEYS[target]:
                raise SpecError(f"{place}: unknown key {short_repr(key)}; {target} take {', '.join(_KEYS[target])}")
            checked[key] = _checked(target, key, value, f"{place}.{key}")
        for name in checked.get("label_fields", _KEYS[target]["label_fields"][1]):
            if name in fields_seen:
                raise SpecError(f"{place}.label_fields: {name!r} is already a label field of {fields_seen[name]}; "
                                "give each target its own label fields")  # fmt: skip
            fields_seen[name] = target
        targets[target] = checked
    return targets


def _checked(target: str, key: str, value: Any, place: str) -> Any:
    kind = _KEYS[target][key][0]
    if kind == "format":
        if value not in _FORMATS[target]:
            raise SpecError(f"{place} must be one of {', '.join(_FORMATS[target])}, got {short_repr(value)}")
        return value
    if kind == "fields":
        if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
            raise SpecError(f"{place} must be a list of names (Python identifiers), got {short_repr(value)}")
        clash = next((v for v in value if v in _RESERVED), None)
        if clash is not None or len(set(value)) != len(value):
            problem = f"{clash!r} is the name of an argument of the call" if clash else "a name is repeated"
            raise SpecError(f"{place}: {problem}; pick other names")
        return list(value)
    if kind == "flag":
        if not isinstance(value, bool):
            raise SpecError(f"{place} must be true or false, got {short_repr(value)}")
        return value
    if kind == "ratio" and value is None:
        return None
    number = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if kind == "fraction" and not (number and 0 <= value <= 1):
        raise SpecError(f"{place} is a fraction in [0, 1], got {short_repr(value)}")
    if kind == "pixels" and not (number and value >= 0):
        raise SpecError(f"{place} is a number of pixels >= 0, got {short_repr(value)}")
    if kind == "ratio" and not (number and value > 0):
        raise SpecError(f"{place} is a ratio > 0 or null, got {short_repr(value)}")
    return float(value)


def label_fields(targets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Every declared label field -> the target it labels ("bboxes" or "keypoints")."""
    return {name: target for target, settings in targets.items()
            for name in settings.get("label_fields", _KEYS[target]["label_fields"][1])}  # fmt: skip


def compose_params(targets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``bbox_params`` and ``keypoint_params`` for albumentations' ``Compose``, from ``targets``."""
    from augkit.pipeline._albumentations import A

    params: dict[str, Any] = {}
    for target, cls, keyword in (("bboxes", A.BboxParams, "bbox_params"), ("keypoints", A.KeypointParams, "keypoint_params")):
        if target in targets:
            settings = {key: default for key, (_, default) in _KEYS[target].items()}
            params[keyword] = cls(**{**settings, **targets[target]})
    return params


def from_albumentations_params(root: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``targets`` of a Compose saved by albumentations (its ``bbox_params``, ``keypoint_params``),
    without the keys left at their defaults."""
    targets = {}
    for target, keyword in (("bboxes", "bbox_params"), ("keypoints", "keypoint_params")):
        saved = root.get(keyword)
        if saved is None:
            continue
        if not isinstance(saved, Mapping):  # else the file's boxes or keypoints would go undeclared, unsaid
            raise SpecError(f"an albumentations file's {keyword} maps settings (format, label_fields, ...) "
                            f"to values, got {short_repr(saved)}")  # fmt: skip
        settings = {key: value for key, value in saved.items() if key in _KEYS[target]}
        if settings.get("label_fields") is None:
            settings["label_fields"] = []
        targets[target] = {key: value for key, value in settings.items()
                           if key == "format" or value != _KEYS[target][key][1]}  # fmt: skip
    return targets


def checked_rows(target: str, value: Any, fmt: str) -> np.ndarray:
    """``bboxes`` or ``keypoints`` as given to a pipeline, as an N x K float64 array: K at least
    the columns of ``fmt`` (4 for boxes, one per letter for keypoints; more ride along), every
    number finite. An empty list or array is N = 0.

    Raises:
        AugkitError: not a table of numbers, too few columns, or a NaN or infinity (which
            albumentations would report in its own, normalised, coordinates, or drop unsaid).
    """
    columns = 4 if target == "bboxes" else len(fmt)
    meaning = _COLUMNS.get(fmt, ", ".join(fmt))
    try:
        rows = np.asarray(value)
    except (ValueError, TypeError):  # rows of different lengths
        rows = None
    if rows is not None and rows.ndim >= 1 and len(rows) == 0:
        return np.zeros((0, columns))
    if rows is None or rows.dtype.kind not in "iuf" or rows.ndim != 2 or rows.shape[1] < columns:
        got = f"shape {rows.shape} of {rows.dtype}" if rows is not None and rows.dtype.kind != "O" else short_repr(value)
        raise AugkitError(f"{target}: expected N x {columns} numbers, one row each ({fmt}: {meaning}); got {got}")
    finite = np.isfinite(rows).all(axis=1)
    if not finite.all():
        first = int(np.argmin(finite))
        raise AugkitError(f"{target}[{first}] is {short_repr(rows[first].tolist())}: NaN or infinity; give finite "
                          f"numbers ({fmt}: {meaning})")  # fmt: skip
    return rows.astype(np.float64, copy=False)


def check_box_extents(rows: np.ndarray, fmt: str, height: int, width: int, clip: bool) -> None:
    """Raise AugkitError, in the user's own numbers and the image's pixels, for the first box of
    ``rows`` (N x 4+, ``checked_rows``) that is empty or, unless ``clip``, outside the ``height`` x
    ``width`` image: albumentations would say it in its normalised coordinates."""
    if not len(rows):
        return
    a, b, c, d = (rows[:, k] for k in range(4))
    if fmt == "coco":
        corners = np.stack([a, b, a + c, b + d], 1)
    elif fmt == "yolo":
        corners = np.stack([(a - c / 2) * width, (b - d / 2) * height, (a + c / 2) * width, (b + d / 2) * height], 1)
    elif fmt == "albumentations":
        corners = np.stack([a * width, b * height, c * width, d * height], 1)
    else:  # pascal_voc
        corners = rows[:, :4]
    empty = (corners[:, 2] <= corners[:, 0]) | (corners[:, 3] <= corners[:, 1])
    slack = 1e-3  # pixels: rounding in the user's conversions
    outside = ((corners[:, :2] < -slack) | (corners[:, 2:] > [width + slack, height + slack])).any(axis=1)
    bad = empty | (outside & (not clip))
    if not bad.any():
        return
    i = int(np.argmax(bad))
    given = short_repr([round(float(v), 4) for v in rows[i, :4]])
    if empty[i]:
        raise AugkitError(f"bboxes[{i}] is {given} ({fmt}: {_COLUMNS[fmt]}): it has no area (x_max <= x_min or y_max <= y_min: a width or height <= 0)")
    raise AugkitError(f"bboxes[{i}] is {given} ({fmt}: {_COLUMNS[fmt]}), outside the {width} x {height} image (width x height); "
                      "fix it, or set 'clip: true' under targets.bboxes to clip boxes to the image")  # fmt: skip


def label_rows(name: str, value: Any, target: str, count: int) -> np.ndarray:
    """The row numbers 0..count-1 that stand in for label field ``name`` while its boxes or
    keypoints go through albumentations, which would otherwise hold the labels as float32 (ids past
    2**24 rounded, ints back as floats, strings refused after numbers: its LabelManager keeps the
    first call's kind); ``kept_labels`` gives back the entries of the rows that remain.

    Raises:
        AugkitError: ``value`` is not one entry per box or keypoint, or there are MAX_ROWS or more.
    """
    one = "box" if target == "bboxes" else "keypoint"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or np.ndim(value) == 0:
        raise AugkitError(f"{name} must be a list or array, one entry per {one}; got {short_repr(value)}")
    if len(value) != count:
        raise AugkitError(f"{name} has {len(value)} entries for {count} {target}: give one per {one}")
    if count >= MAX_ROWS:
        raise AugkitError(f"{count:,} {target} in one image: at most {MAX_ROWS - 1:,} (albumentations holds "
                          "their labels as float32); split them")  # fmt: skip
    return np.arange(count)


def kept_labels(given: Any, rows: Any) -> Any:
    """The entries of label field ``given`` at ``rows`` (what ``label_rows`` stood in for, after the
    steps): an array indexed for an array, else a list of the entries, as given."""
    rows = np.rint(np.asarray(rows, np.float64)).astype(np.intp).reshape(-1)
    if isinstance(given, np.ndarray):
        return given[rows]
    entries = list(given)
    return [entries[row] for row in rows.tolist()]


def check_mask_shapes(height: int, width: int, mask: Any = None, masks: Any = None) -> None:
    """Raise AugkitError unless ``mask`` (H x W or H x W x C) and ``masks`` (N x H x W [x C], or a
    list of H x W [x C]) have the image's ``height`` and ``width``. Masks that are not arrays are
    left to albumentations' own check, which names them."""
    named = [("mask", mask, 2)] if isinstance(mask, np.ndarray) else []
    if isinstance(masks, np.ndarray):
        named.append(("masks", masks, 3))
    elif isinstance(masks, (list, tuple)):
        named += [(f"masks[{i}]", m, 2) for i, m in enumerate(masks) if isinstance(m, np.ndarray)]
    for name, array, ndim in named:
        if array.ndim not in (ndim, ndim + 1):
            layout = "H x W" if ndim == 2 else "N x H x W"
            raise AugkitError(f"{name}: expected {layout} labels (or {layout} x C), got shape {array.shape}")
        size = array.shape[ndim - 2 : ndim]
        if size != (height, width):
            raise AugkitError(f"{name}: {size[0]} x {size[1]} (height x width), but the image is {height} x {width}: "
                              "a mask has its image's height and width")  # fmt: skip


def masks_in(masks: Any) -> Any:
    """``masks`` as albumentations takes them: an empty list for an N = 0 array (it cannot stack none)."""
    return [] if isinstance(masks, np.ndarray) and len(masks) == 0 else masks


def masks_out(given: Any, moved: Any, image: np.ndarray) -> Any:
    """The masks the steps gave back (``moved``), or, for an N = 0 array given, an N = 0 array of the
    output ``image``'s height and width again."""
    if isinstance(given, np.ndarray) and len(given) == 0:
        return np.zeros((0, *image.shape[:2], *given.shape[3:]), given.dtype)
    return moved


@dataclass(frozen=True)
class Augmented:
    """What a pipeline returns when targets are given: the image and each target, moved together.

    Attributes:
        image: H x W or H x W x C, the pipeline's output (dtype as without targets).
        mask: H x W labels (bool, uint8, uint16, float32 as given; 32- and 64-bit integer labels
            as int32, albumentations' mask type, refused when they do not fit), or None.
        masks: N x H x W (an array, or a list when a list was given), or None.
        bboxes: N x 4 float32 (more columns if more were given) in the spec's box format; boxes
            that left the image (per ``min_visibility``, ``min_area``, ...) are gone. None when
            none were given.
        keypoints: N x K float32 in the spec's keypoint format, or None.
        fields: every label field given (``labels``, ...), each filtered with its boxes or keypoints.
    """

    image: np.ndarray
    mask: np.ndarray | None = None
    masks: Any = None
    bboxes: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> Any:
        """The label field named ``labels`` (the boxes' by default), or None."""
        return self.fields.get("labels")
