"""The tiles of a contact sheet: what a pipeline makes of each source, and the PNG it gives."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from augkit.pipeline._albumentations import A
from augkit.pipeline.core import Pipeline
from augkit.pipeline.registry import COMPOSITIONS
from augkit.pipeline.targets import Augmented
from augkit.pipeline.steps import Scale, Standardize, SubtractMean
from augkit.pixels import to_uint8
from augkit.preview.layout import Tile, _tile, render
from augkit.preview.marks import Marks
from augkit.preview.sources import Source

# Steps whose float output to_viewable knows how to map back to pixels.
_NORMALIZERS = (Standardize, SubtractMean, Scale, A.Normalize)

# What ``augkit preview`` and ``augkit studio`` show when given no pipeline.
DEFAULT_PIPELINE = {
    "seed": 0,
    "steps": [
        {"crop": {"size": 0.8, "mode": "random_resized", "scale": [0.5, 1.0]}},
        {"rotate": {"limit": 15, "p": 0.7}},
        {"brightness": {"limit": 0.2, "p": 0.7}},
        {"contrast": {"limit": 0.2, "p": 0.7}},
        {"hflip": {"p": 0.5}},
    ],
}


def to_viewable(image: np.ndarray, normalizer: object | None) -> np.ndarray:
    """uint8 pixels for display: undo the last normalisation applied, clip, scale to 0..255.

    uint8 is shown as it is and uint16 rounded to 8 bits (``augkit.pixels``); float images are
    mapped back through the step that made them (or stretched when no step explains them).
    """
    if image.dtype in (np.uint8, np.uint16):
        return to_uint8(image)
    x = image.astype(np.float32)
    scale = shift = None
    if isinstance(normalizer, Standardize):
        scale, shift = normalizer.std.astype(np.float32), normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, SubtractMean):
        shift = normalizer.mean.astype(np.float32)
    elif isinstance(normalizer, A.Normalize) and normalizer.normalization == "standard":
        scale, shift = np.float32(normalizer.std), np.float32(normalizer.mean)
    try:  # statistics with another channel count than the image (a Normalize of 2 means on RGB) explain nothing
        fits = all(np.broadcast_shapes(x.shape, np.shape(v)) == x.shape for v in (scale, shift) if v is not None)
    except ValueError:
        fits = False
    if fits and shift is not None:
        x = (x * scale if scale is not None else x) + shift
    elif not isinstance(normalizer, Scale) and (x.min() < 0 or x.max() > 1):
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-12)  # unknown scale: stretch
    return (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)


def _last_normalizer(transforms: Sequence[object]) -> object | None:
    return next((t for t in reversed(transforms) if isinstance(t, _NORMALIZERS)), None)


def build_rows(pipeline: Pipeline, sources: Sequence[Source], n: int, stages: bool, epoch: int = 0) -> list[list[Tile]]:
    """The tiles of every row: original first, then variants (or stages, skipped steps included).

    Variants are the draws of epochs ``epoch`` .. ``epoch + n - 1``; stages are epoch ``epoch``'s.
    Captions say what was drawn; ``sheet`` adds each tile's true size. A source's targets go
    through the same draws, and each tile carries them as they are after it (``Tile.marks``).
    """
    if any(source.targets is not None for source in sources):
        pipeline = _marking(pipeline, sources)
    rows = []
    for source in sources:
        row = [_tile(to_viewable(source.image, None), source.label, marks=source.targets)]
        if stages:
            row += _stage_tiles(pipeline, source, epoch)
        else:
            normalizer = _last_normalizer(pipeline.transforms)
            for variant in range(epoch, epoch + n):
                out, applied = pipeline.replay(source.image, index=source.index, epoch=variant, **_given(source.targets))
                image, marks = _moved(out, source.targets)
                text = "  ".join(a.caption for a in applied if a.caption) or "(no change drawn)"
                row.append(_tile(to_viewable(image, normalizer), text, marks=marks))
        rows.append(row)
    return rows


# The label fields the sheet passes beside boxes and keypoints: their numbers in the source's
# lists, to find each survivor's class and colour after steps dropped others.
_BOX_FIELD, _POINT_FIELD = "box_number", "point_number"


def _marking(pipeline: Pipeline, sources: Sequence[Source]) -> Pipeline:
    """``pipeline`` taking targets as the sheet passes them (``_given``): boxes in Pascal VOC
    pixels, keypoints as x, y, each with its number as a label field. The spec's own settings
    for them are kept (``min_visibility``, ...: the same boxes survive in any format); the
    steps, seed and so every draw are the pipeline's."""
    targets = {}
    for name, form, field_name in (("bboxes", "pascal_voc", _BOX_FIELD), ("keypoints", "xy", _POINT_FIELD)):
        if any(getattr(source.targets, name, None) is not None for source in sources):  # none declared: no warning for it
            targets[name] = {**pipeline.targets.get(name, {}), "format": form, "label_fields": [field_name]}
    if not targets:  # masks need no declaration
        return pipeline
    # Relative stats files resolve where the pipeline's did.
    return Pipeline({**pipeline.to_spec(), "targets": targets}, base_dir=pipeline.base_dir)


def _given(marks: Marks | None) -> dict[str, Any]:
    """``marks`` as a ``_marking`` pipeline takes them (keyword arguments)."""
    if marks is None:
        return {}
    given: dict[str, Any] = {} if marks.mask is None else {"mask": marks.mask}
    if marks.bboxes is not None:
        given.update(bboxes=marks.bboxes, **{_BOX_FIELD: np.arange(len(marks.bboxes))})
    if marks.keypoints is not None:
        given.update(keypoints=marks.keypoints, **{_POINT_FIELD: marks.keypoint_ids})
    return given


def _moved(out: Any, marks: Marks | None) -> tuple[np.ndarray, Marks | None]:
    """The image and the marks of what a ``_marking`` pipeline returned for ``marks`` (``_given``)."""
    if marks is None or not isinstance(out, Augmented):
        return out, None
    bboxes = labels = keypoints = ids = None
    if out.bboxes is not None:
        bboxes = out.bboxes
        kept = np.asarray(out.fields[_BOX_FIELD], np.int64)
        labels = None if marks.labels is None else marks.labels[kept]
    if out.keypoints is not None:
        keypoints, ids = out.keypoints, np.asarray(out.fields[_POINT_FIELD], np.int64)
    return out.image, Marks(out.mask, bboxes, labels, keypoints, ids, marks.classes)


def contact_sheet(pipeline: Pipeline, sources: Sequence[Source], *, n: int = 6, epoch: int = 0, stages: bool = False) -> bytes:
    """The PNG ``augkit preview`` writes (and ``augkit studio`` shows) for ``sources``, with
    the targets they carry drawn over their tiles.

    Titled with the pipeline's seed and inline spec (and the first epoch drawn, when not 0),
    so a sheet says what made it. The same arguments give the same bytes.
    """
    from augkit.pipeline.spec import format_inline

    first = f", {'epoch' if stages else 'epochs'} {epoch}{'' if stages else f'..{epoch + n - 1}'}" if epoch else ""
    title = f"seed {pipeline.seed}{first}: {format_inline(pipeline.to_spec())}"
    return render(build_rows(pipeline, sources, n=n, stages=stages, epoch=epoch), title)


def _stage_tiles(pipeline: Pipeline, source: Source, epoch: int) -> list[Tile]:
    """A tile per step of the pipeline, in order: the image after it, or, for a step whose
    probability did not fire (or that its OneOf/SomeOf did not pick), "NAME: skipped (p=P)"."""
    outs = pipeline.stages(source.image, index=source.index, epoch=epoch, **_given(source.targets))
    done = {id(applied.transform): (applied, out) for applied, out in outs}
    tiles, normalizer, previous = [], None, to_viewable(source.image, None)
    for (name, parent), transform in zip(_leaf_steps(pipeline.to_spec()["steps"]), pipeline.transforms):
        if id(transform) not in done:
            reason = f"in {parent}" if parent else f"p={transform.p:g}"
            tiles.append(_tile(previous, f"{name}: skipped ({reason})", skipped=True))
            continue
        applied, out = done[id(transform)]
        image, marks = _moved(out, source.targets)
        if isinstance(transform, _NORMALIZERS):
            normalizer = transform
        previous = to_viewable(image, normalizer)
        tiles.append(_tile(previous, applied.caption or applied.name, marks=marks))
    return tiles


def _leaf_steps(steps: Sequence[dict], parent: str | None = None) -> Iterator[tuple[str, str | None]]:
    """(name, composition it is in or None) of every step that is not a composition, in the
    order ``Pipeline.transforms`` lists their transforms (depth first, in spec order)."""
    for step in steps:
        ((name, params),) = step.items()
        if name in COMPOSITIONS:
            yield from _leaf_steps(params["transforms"], name)
        else:
            yield name, parent
