"""Batched augmentation on the device (``augkit train --augment-on device``): the CPU path's draws, whole batches.

``DeviceAugment(pipeline)(batch, indices, epoch)`` augments a uint8 N x C x H x W batch where it
lies (CPU or GPU) with, for every sample, the parameters the CPU path draws for (seed, epoch,
index): ``Pipeline.draw_batch`` draws them on the host for the whole batch, and the pixels
move a step at a time for the whole batch, never in a loop over samples. A run can switch between
``--augment-on cpu`` and ``device`` and keep its augmentation, sample by sample; this path is
what keeps a fast GPU fed when the host has few cores.

Steps with a batched form, and how they compare with the CPU path on uint8 images:

- ``crop`` (random or center, with padding, any border) and ``hflip``/``vflip``: exact. Each is
  a map of output rows to input rows and of output columns to input columns; consecutive ones
  compose into one map, applied by one gather per channel (constant padding reads a row and a
  column of the fill added to the source).
- ``rotate`` and ``crop(mode=random_resized)``: one bilinear ``grid_sample`` per step, in
  pixel-centre coordinates (``align_corners=True``), so that grid_sample's "reflection" mirrors
  about the edge pixels' centres: BORDER_REFLECT_101, the CPU path's "reflect" (with
  ``align_corners=False`` it would mirror about the edges, BORDER_REFLECT, one pixel off).
  "replicate" clamps to the edge; "constant" samples ``image - fill`` with zeros outside and
  adds ``fill`` back: bilinear with a constant border, exactly. Rotations match OpenCV's
  ``warpAffine`` but for a pixel in thousands one level apart (its fixed-point weights). A
  random-resized crop keeps its taps within the window (as resizing the cut window repeats
  its edge); enlarging, a tenth of a level apart on average (cv2.resize's fixed point); where
  the window is larger than the output, the CPU path averages every pixel under an output
  pixel (``augkit.resize``'s area filter) and this one interpolates between the nearest four:
  no antialiasing, about one level apart on average, tens at sharp edges.
- ``brightness``: exact (a whole number of levels per sample, added and clipped), unless
  ``delta * 255`` falls exactly half-way between two integers, where numpy rounds to even
  depending on the level. ``contrast``: the mean of each sample as the steps before leave it,
  exact; the scaling in float32 rather than float64, so a level within 1e-5 of a rounding
  boundary may come out one level apart.

tests/test_device_augment.py holds both paths to these bounds on photos. Between steps values
are rounded and clipped to 0..255, as the CPU path's uint8 images are. Anything else (blurs,
noise, albumentations' steps, compositions) has no batched form and is refused when the
augmentation is built. The resampling steps need images of at least 2 x 2 pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from augkit.errors import AugkitError
from augkit.pipeline import Pipeline
from augkit.pipeline.batch import StepDraws
from augkit.pipeline._albumentations import A
from augkit.pipeline.functional import saturate
from augkit.pipeline.registry import COMPOSITIONS
from augkit.pipeline.steps import Brightness, Contrast, Crop, Rotate

BATCHED_STEPS = ("crop", "rotate", "hflip", "vflip", "brightness", "contrast")


class DeviceAugment:
    """A pipeline's augmentation applied to whole uint8 batches, with the CPU path's per-sample draws.

    Args:
        pipeline: its top-level steps each one of ``BATCHED_STEPS`` (albumentations'
            HorizontalFlip and VerticalFlip count as hflip and vflip), without compositions.

    Raises:
        AugkitError: a step without a batched form, in one line naming it.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._steps = [_batched(name, transform) for name, transform in zip(pipeline.steps, _top_level(pipeline))]

    def draws(self, shape: tuple[int, int, int], indices: Sequence[int], epoch: int) -> list[StepDraws]:
        """Each step's draws for the samples ``indices`` of ``epoch``, inputs of ``shape`` (H, W, C):
        ``Pipeline.draw_batch``, the values the CPU path draws for each (epoch, index)."""
        return self.pipeline.draw_batch(shape, indices, epoch=epoch)

    def __call__(self, batch: torch.Tensor, indices: Sequence[int], epoch: int) -> torch.Tensor:
        """The augmented batch: uint8 N x C x H' x W' on ``batch``'s device (H' x W': the last crop's size).

        Args:
            batch: uint8 N x C x H x W, values 0..255, on any device, in any memory format
                (a channels-last view of an N x H x W x C batch is used without a copy).
            indices: the N samples' indices in their dataset (what the draws depend on).
            epoch: the epoch the batch belongs to.

        Raises:
            ValueError: ``batch`` is not a uint8 N x C x H x W tensor, or ``indices`` is not N long.
            AugkitError: a crop that changes the size applies to some samples only (p < 1).
        """
        if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.ndim != 4:
            raise ValueError(f"batch must be a uint8 N x C x H x W tensor, got {getattr(batch, 'dtype', type(batch))} "
                             f"of shape {tuple(getattr(batch, 'shape', ()))}")  # fmt: skip
        n, channels, height, width = batch.shape
        if len(indices) != n:
            raise ValueError(f"{len(indices)} indices for a batch of {n}")
        state = _State(batch.permute(0, 2, 3, 1))
        for step, draws in zip(self._steps, self.draws((height, width, channels), indices, epoch)):
            step.apply(state, draws)
        return state.result().permute(0, 3, 1, 2)

    def __repr__(self) -> str:
        return f"DeviceAugment({self.pipeline.steps})"


def _top_level(pipeline: Pipeline) -> list[Any]:
    """The top-level transforms, or the refusal of the first composition (whose children the
    pipeline lists among its transforms, so they would no longer line up with its steps)."""
    composition = next((name for name in pipeline.steps if name in COMPOSITIONS), None)
    if composition is not None:
        raise _refusal(composition)
    return pipeline.transforms


def _refusal(name: str) -> AugkitError:
    return AugkitError(
        f"--augment-on device: step {name!r} has no batched form (those with one: {', '.join(BATCHED_STEPS)}); "
        f"run it with --augment-on cpu (per image) or auto (the default, which picks cpu for it), or remove it"
    )


# ----------------------------------------------------------------------------- the batch between steps


class _State:
    """The batch between steps: N x H x W x C pixels, and the row and column maps not yet applied.

    Crops and flips only compose maps (``_Maps``); a step that needs the pixels themselves
    (``pixels``) applies them first. Pixels are uint8, or float32 holding integers 0..255 once
    a step computed in floats (converting back after every step would cost a pass each).
    """

    def __init__(self, source: torch.Tensor) -> None:
        self.source = source
        self.maps: _Maps | None = None

    @property
    def size(self) -> tuple[int, int]:
        if self.maps is not None:
            return self.maps.rows.shape[1], self.maps.cols.shape[1]
        return self.source.shape[1], self.source.shape[2]

    @property
    def count(self) -> int:
        return self.source.shape[0]

    @property
    def device(self) -> torch.device:
        return self.source.device

    def floats(self) -> torch.Tensor:
        """The pixels as float32, free to change in place (never the caller's batch, which is uint8)."""
        pixels = self.pixels()
        return pixels.float() if pixels.dtype == torch.uint8 else pixels

    def pixels(self) -> torch.Tensor:
        """The pixels with every map applied (uint8 when no step computed in floats)."""
        if self.maps is not None:
            self.source, self.maps = self.maps.apply(self.source), None
        return self.source

    def set_floats(self, pixels: torch.Tensor, *, whole: bool = False, within: bool = False) -> None:
        """New float32 pixels, rounded and clipped to the levels a uint8 image holds; a step that
        knows its values to be ``whole`` already, or ``within`` 0..255, skips that pass."""
        if not whole:
            pixels = pixels.round_()
        self.source, self.maps = pixels if within else pixels.clamp_(0, 255), None

    def result(self) -> torch.Tensor:
        pixels = self.pixels()
        return pixels if pixels.dtype == torch.uint8 else pixels.to(torch.uint8)


@dataclass
class _Maps:
    """Output pixel (i, j) of sample n is ``source[n, rows[n, i], cols[n, j]]``, or ``fill`` where
    ``rows`` or ``cols`` is -1: a crop's constant padding, which no later map undoes."""

    rows: torch.Tensor  # int64 N x h
    cols: torch.Tensor  # int64 N x w
    fill: int | None = None  # the value of the pixels padding filled; None while none is

    @classmethod
    def identity(cls, n: int, height: int, width: int, device: torch.device) -> _Maps:
        rows = torch.arange(height, device=device).expand(n, height)
        return cls(rows, torch.arange(width, device=device).expand(n, width))

    def then(self, rows: torch.Tensor | None, cols: torch.Tensor | None) -> None:
        """Follow these maps by a step that reads its output's ``rows`` and ``cols`` (N x h' and
        N x w' indices, -1 for padding; None: every one, in order)."""
        if rows is not None:
            self.rows = _follow(self.rows, rows)
        if cols is not None:
            self.cols = _follow(self.cols, cols)

    def apply(self, source: torch.Tensor) -> torch.Tensor:
        """N x h x w x C pixels from N x H x W x C ``source`` (uint8 or float32, any memory layout).

        One gather per channel, of single elements (3-4x faster than gathering pixels as rows of
        C bytes), into a channel-major result, which the steps after take as it is. Padding
        reads a row and a column of ``fill`` added at the top and the left of the source.
        """
        rows, cols = self.rows, self.cols
        if self.fill is not None:
            source = F.pad(source.permute(0, 3, 1, 2), (1, 0, 1, 0), value=self.fill).permute(0, 2, 3, 1)
            rows, cols = rows + 1, cols + 1  # -1, the padding, becomes the fill's row and column 0
        memory, (step_n, step_h, step_w, step_c) = _flat_memory(source)
        n, channels = source.shape[0], source.shape[3]
        starts = rows * step_h + (torch.arange(n, device=source.device) * step_n)[:, None]
        flat = (starts[:, :, None] + (cols * step_w)[:, None, :]).view(-1)
        out = torch.empty((channels, n, self.rows.shape[1], self.cols.shape[1]), dtype=source.dtype, device=source.device)
        for c in range(channels):  # a loop over channels, not samples: one gather each
            torch.index_select(memory[c * step_c :], 0, flat, out=out[c].view(-1))
        return out.permute(1, 2, 3, 0)


def _follow(before: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """An axis map followed by ``step``'s (indices into its output, -1 for padding)."""
    out = before.gather(1, step.clamp(min=0))
    return torch.where(step < 0, -1, out)


def _flat_memory(x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``x``'s memory as a 1-D tensor, and ``x``'s strides into it (``x`` made dense first if it has gaps)."""
    expected = 1
    for dim in sorted(range(x.ndim), key=x.stride, reverse=True)[::-1]:  # innermost first
        if x.shape[dim] != 1 and x.stride(dim) != expected:
            x = x.contiguous()
            break
        expected *= x.shape[dim]
    return x.as_strided((x.numel(),), (1,)), x.stride()


def _axis(start: torch.Tensor, length: int, size: int, border: str) -> torch.Tensor:
    """Positions ``start + 0 .. start + length - 1`` of an axis of ``size``, outside ones by ``border``.

    "reflect" mirrors about the edge pixel (BORDER_REFLECT_101, ``functional._border_index``),
    as often as needed; "replicate" repeats the edge pixel; "constant" marks them -1 (padding).
    """
    index = start[:, None] + torch.arange(length, device=start.device)
    if border == "constant":
        return torch.where((index < 0) | (index >= size), -1, index)
    if border == "replicate" or size == 1:
        return index.clamp(0, size - 1)
    period = 2 * size - 2
    index = torch.remainder(index, period)
    return torch.where(index >= size, period - index, index)


def _flip_axis(flip: torch.Tensor, size: int) -> torch.Tensor:
    forward = torch.arange(size, device=flip.device)
    return torch.where(flip[:, None], forward.flip(0), forward)


# ----------------------------------------------------------------------------- the steps


def _to(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


class _Flip:
    def __init__(self, axis: int) -> None:
        self.axis = axis  # 0: rows (vflip), 1: columns (hflip)

    def apply(self, state: _State, draws: StepDraws) -> None:
        if not draws.applied.any():
            return
        height, width = state.size
        flip = _to(draws.applied, state.device)
        if state.maps is None:
            state.maps = _Maps.identity(state.count, height, width, state.device)
        if self.axis == 0:
            state.maps.then(_flip_axis(flip, height), None)
        else:
            state.maps.then(None, _flip_axis(flip, width))


class _Crop:
    def __init__(self, transform: Crop) -> None:
        self.border = transform.border
        self.fill = int(saturate(float(transform.fill), np.dtype(np.uint8)))

    def apply(self, state: _State, draws: StepDraws) -> None:
        applied, params = draws.applied, draws.params
        if not applied.any():
            return
        height, width = state.size
        out = params["out"]  # one size for the batch (draw_batch refuses a resizing crop with p < 1)
        # Samples the crop skipped take the whole image: a window at (0, 0) of its own size.
        top, left = np.where(applied, params["y"], 0), np.where(applied, params["x"], 0)
        sizes = (np.where(applied, params["height"], height), np.where(applied, params["width"], width))
        if (sizes[0] == out[0]).all() and (sizes[1] == out[1]).all():
            self._cut(state, top, left, out)
        else:
            _resample(state, _window_affine(top, left, sizes, out), out, "replicate", 0, window=(top, left, *sizes))

    def _cut(self, state: _State, top: np.ndarray, left: np.ndarray, out: tuple[int, int]) -> None:
        """Windows of the output's size: row and column maps, composed with those before."""
        height, width = state.size
        pads = self.border == "constant" and bool(
            (top < 0).any() or (left < 0).any() or (top + out[0] > height).any() or (left + out[1] > width).any()
        )
        if pads and state.maps is not None and state.maps.fill not in (None, self.fill):
            state.pixels()  # an earlier crop padded with another value: its pixels first
        if state.maps is None:
            state.maps = _Maps.identity(state.count, height, width, state.device)
        if pads:
            state.maps.fill = self.fill
        state.maps.then(_axis(_to(top, state.device), out[0], height, self.border),
                        _axis(_to(left, state.device), out[1], width, self.border))  # fmt: skip


class _Rotate:
    def __init__(self, transform: Rotate) -> None:
        self.border = transform.border
        self.fill = int(saturate(float(transform.fill), np.dtype(np.uint8)))

    def apply(self, state: _State, draws: StepDraws) -> None:
        if not draws.applied.any():
            return
        height, width = state.size
        affine = _rotation_affine(draws.params["angle"], height, width)
        _resample(state, affine, (height, width), self.border, self.fill, only=draws.applied)


class _Brightness:
    def apply(self, state: _State, draws: StepDraws) -> None:
        if not draws.applied.any():
            return
        # x is a whole level, so rint(x + delta * 255) is x + rint(delta * 255) (ties aside),
        # and clipping before or after rounding gives the same level: functional.adjust_brightness.
        offset = np.where(draws.applied, np.rint(draws.params["delta"] * 255.0), 0.0).astype(np.float32)
        pixels = state.floats()
        state.set_floats(pixels.add_(_to(offset, state.device).view(-1, 1, 1, 1)), whole=True)


class _Contrast:
    def apply(self, state: _State, draws: StepDraws) -> None:
        if not draws.applied.any():
            return
        pixels = state.floats()
        n = pixels.shape[0]
        # The mean over all pixels and channels of each sample as it is now (functional.image_mean),
        # exact: rows of whole levels summed in float32 (exact below 2**24, rows of up to 65793
        # values), then the rows in float64 (float64 throughout would first copy the batch).
        mean = pixels.sum((2, 3)).double().sum(1) * (1.0 / pixels[0].numel())
        factor = _to(1.0 + np.where(draws.applied, draws.params["delta"], 0.0), state.device)
        shift = (mean * (1.0 - factor)).float().view(n, 1, 1, 1)
        state.set_floats(pixels.mul_(factor.float().view(n, 1, 1, 1)).add_(shift))


# Each step's batched form, by its transform's class (albumentations' flips are augkit's hflip, vflip).
_BATCHED: dict[type, Callable[[Any], Any]] = {
    Crop: _Crop,
    Rotate: _Rotate,
    A.HorizontalFlip: lambda transform: _Flip(axis=1),
    A.VerticalFlip: lambda transform: _Flip(axis=0),
    Brightness: lambda transform: _Brightness(),
    Contrast: lambda transform: _Contrast(),
}


def _batched(name: str, transform: Any) -> Any:
    """The batched form of one top-level step, or the refusal (AugkitError)."""
    make = _BATCHED.get(type(transform))
    if make is None:
        raise _refusal(name)
    return make(transform)


# ----------------------------------------------------------------------------- resampling


def _rotation_affine(angles: np.ndarray, height: int, width: int) -> np.ndarray:
    """N x 2 x 3 maps from output to input pixels of ``functional.rotate``: the inverse of OpenCV's
    ``getRotationMatrix2D((w-1)/2, (h-1)/2), angle, 1)``, a counter-clockwise turn as shown."""
    radians = np.deg2rad(angles)
    cos, sin = np.cos(radians), np.sin(radians)
    cx, cy = (width - 1) / 2, (height - 1) / 2
    affine = np.empty((len(angles), 2, 3))
    affine[:, 0, 0], affine[:, 0, 1], affine[:, 0, 2] = cos, -sin, cx - cos * cx + sin * cy
    affine[:, 1, 0], affine[:, 1, 1], affine[:, 1, 2] = sin, cos, cy - sin * cx - cos * cy
    return affine


def _window_affine(
    top: np.ndarray, left: np.ndarray, sizes: tuple[np.ndarray, np.ndarray], out: tuple[int, int]
) -> np.ndarray:
    """N x 2 x 3 maps from output to input pixels of windows resized to ``out`` (pixel centres
    aligned: ``augkit.resize``'s linear interpolation)."""
    scale_y, scale_x = sizes[0] / out[0], sizes[1] / out[1]
    affine = np.zeros((len(top), 2, 3))
    affine[:, 0, 0], affine[:, 0, 2] = scale_x, left + 0.5 * scale_x - 0.5
    affine[:, 1, 1], affine[:, 1, 2] = scale_y, top + 0.5 * scale_y - 0.5
    return affine


def _grid(
    affine: np.ndarray, size: tuple[int, int], out: tuple[int, int], window: tuple[np.ndarray, ...] | None
) -> tuple[np.ndarray, np.ndarray]:
    """``grid_sample``'s grid for pixel maps ``affine`` (output (x, y) -> input (x, y)), as a part
    per output row (N x 2 x h) and a part per output column (N x 2 x w), whose sums are the grid.

    Coordinates are ``align_corners=True``'s: -1 and 1 are the centres of the first and last
    pixels. ``window`` (top, left, height, width arrays) keeps the taps of an axis-aligned map
    within each sample's window.
    """
    (height, width), (out_h, out_w) = size, out
    rows = affine[:, None, :, 1] * np.arange(out_h)[None, :, None] + affine[:, None, :, 2]  # (b i + c, e i + f)
    cols = affine[:, None, :, 0] * np.arange(out_w)[None, :, None]  # (a j, d j)
    if window is not None:  # axis-aligned (b = d = 0): x follows the column, y the row
        top, left, h, w = (v[:, None] for v in window)
        cols[..., 0] = np.clip(cols[..., 0] + rows[:, :1, 0], left, left + w - 1)
        rows[..., 1] = np.clip(rows[..., 1], top, top + h - 1)
        rows[..., 0] = 0
    unit = np.array([2 / max(width - 1, 1), 2 / max(height - 1, 1)])
    rows, cols = (rows * unit - 1).astype(np.float32), (cols * unit).astype(np.float32)
    return rows.transpose(0, 2, 1), cols.transpose(0, 2, 1)


_PADDING = {"constant": "zeros", "reflect": "reflection", "replicate": "border"}


def _resample(
    state: _State, affine: np.ndarray, out: tuple[int, int], border: str, fill: int,
    *, only: np.ndarray | None = None, window: tuple[np.ndarray, ...] | None = None,
) -> None:  # fmt: skip
    """Bilinear resampling of every sample by its pixel map ``affine`` (N x 2 x 3), to ``out``.

    ``only``: the samples that take it (the others keep their pixels: ``out`` must be their
    size); ``window``: keep each sample's taps within it (``_grid``).
    """
    pixels = state.floats()
    source = pixels.permute(0, 3, 1, 2)
    chosen = None
    if only is not None and not only.all():
        chosen = _to(np.flatnonzero(only), state.device)
        affine, source = affine[only], source.index_select(0, chosen)
        window = None if window is None else tuple(v[only] for v in window)
    rows, cols = (_to(part, state.device) for part in _grid(affine, tuple(pixels.shape[1:3]), out, window))
    # Summed as x and y planes, then seen as grid_sample's N x h x w x 2 (a sum along a last
    # axis of 2 would run 8x slower).
    grid = (rows[:, :, :, None] + cols[:, :, None, :]).permute(0, 2, 3, 1)
    if border == "constant" and fill:
        source = source - fill  # bilinear with a constant border: zeros outside, the fill added back
    moved = F.grid_sample(source, grid, mode="bilinear", padding_mode=_PADDING[border], align_corners=True)
    if border == "constant" and fill:
        moved = moved.add_(fill)
    moved = moved.permute(0, 2, 3, 1)
    if chosen is not None:
        moved = pixels.index_copy_(0, chosen, moved)
    state.set_floats(moved, within=True)  # bilinear weights sum to 1: within the levels it mixes
