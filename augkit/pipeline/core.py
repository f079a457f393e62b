"""``Pipeline``: an albumentations Compose built from a spec, with per-sample seeding and replay.

``pipeline(image, index=i, epoch=e)`` re-seeds the generators its transforms draw from with
(spec seed, e, i) before running them (see ``augkit.pipeline.seeding``), so an augmented sample is a
pure function of its inputs: the same in a preview, an offline augmentation run and any
DataLoader worker. ``replay`` also returns the parameters each step drew, ``stages`` the image after
each step, and ``to_spec`` gives back the spec the pipeline was built from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from augkit.errors import AugkitError, SpecError
from augkit.files import atomic_write
from augkit.pipeline._albumentations import A
from augkit.pipeline.batch import StepDraws, draw_batch
from augkit.pipeline.plan import Plan, Targets, check_output_size, check_padding
from augkit.pipeline.registry import COMPOSITIONS, create_step
from augkit.pipeline.seeding import SampleRandom, epoch_key, index_key, process_salt
from augkit.pipeline.spec import SPEC_SUFFIXES, naming_file, parse_spec, spec_file
from augkit.pipeline.steps import AugkitTransform
from augkit.pipeline.targets import (
    Augmented, check_box_extents, check_mask_shapes, checked_rows, compose_params, kept_labels, label_fields, label_rows, masks_in,
    masks_out,
)
from augkit.pixels import MAX_SIDE, PixelError, check_image

# Parameters that name files, resolved against the spec file's folder.
PATH_PARAMS = {"standardize": ("stats",), "subtract_mean": ("stats",)}
# Bookkeeping albumentations adds to every transform's parameters: not worth a caption.
_UNCAPTIONED = {"shape", "fill", "fill_mask", "interpolation", "mask_interpolation", "border_mode", "output_shape"}


@dataclass(frozen=True)
class Applied:
    """One step's parameters for one sample, as drawn (``caption`` is the readable summary)."""

    name: str
    params: dict[str, Any]
    caption: str
    transform: Any = field(repr=False, compare=False)


@dataclass(frozen=True)
class _Leaf:
    name: str
    transform: Any


class Pipeline:
    """A validated, reproducible augmentation/preprocessing pipeline.

    Build one with ``load_pipeline``; ``compose`` is the albumentations ``Compose`` inside,
    usable wherever albumentations is. One object must not be called from several threads at
    once (its transforms share two generators); worker processes each get their own copy.
    """

    def __init__(self, spec: Mapping[str, Any], base_dir: str | Path | None = None) -> None:
        spec, _ = parse_spec(spec)
        self._spec = spec
        self.seed: int = spec["seed"]
        # Absolute, so that save() can re-express relative paths from wherever it writes.
        self._base_dir = Path(base_dir if base_dir is not None else Path.cwd()).resolve()
        self._leaves: list[_Leaf] = []
        transforms = [self._build(step, f"steps[{i}]") for i, step in enumerate(spec["steps"])]
        # Boxes and keypoints as the spec declares them (masks need no declaration).
        self.targets: dict[str, dict[str, Any]] = spec.get("targets", {})
        self._label_fields = label_fields(self.targets)
        self.compose = _SeededCompose(transforms, p=1.0, seed=self.seed, **compose_params(self.targets))
        self._top_level = tuple(transforms)
        self.compose.uint16_blocker = next((leaf.name for leaf in self._leaves if not _takes_uint16(leaf.transform)), None)
        self._random = SampleRandom(numpy=any(_draws_from_numpy(t) for t in _walk(transforms)))
        # Every transform draws from these two objects; reseeding them per sample is the whole
        # seeding scheme (albumentations would otherwise share one stream across all samples).
        self.compose.set_random_state(self._random.numpy, self._random.python)
        self._calls = 0
        self._epoch_key: tuple[tuple[int, int] | None, int] = (None, 0)
        # The compiled form (augkit.pipeline.plan): the same draws, merged warps and tables.
        self.plan: Plan | None = Plan(self.steps, transforms) if spec.get("compile", True) else None

    def _build(self, step: dict[str, dict[str, Any]], where: str) -> Any:
        """The transform for one canonical step (compositions recursively); errors say where."""
        (name, params), = step.items()
        params = dict(params)
        if name in COMPOSITIONS:
            params["transforms"] = [
                self._build(child, f"{where}.{name}[{j}]") for j, child in enumerate(params["transforms"])
            ]
        for key in PATH_PARAMS.get(name, ()):
            if isinstance(params.get(key), str):
                params[key] = str(self._base_dir / params[key])
        try:
            transform = create_step(name, **params)
        except SpecError as error:
            raise SpecError(f"{where}: {error}") from None
        if name not in COMPOSITIONS:
            self._leaves.append(_Leaf(name, transform))
        return transform

    # ------------------------------------------------------------------------- running

    def __call__(
        self,
        image: np.ndarray,
        *,
        mask: np.ndarray | None = None,
        masks: Any = None,
        bboxes: Any = None,
        keypoints: Any = None,
        index: int | None = None,
        epoch: int = 0,
        **labels: Any,
    ) -> np.ndarray | Augmented:
        """Augment one image, and its targets if given; the result depends only on (seed,
        ``epoch``, ``index``).

        Args:
            image: H x W or H x W x C, uint8 (0..255), uint16 (0..65535) or float32 on [0, 1]
                (``augkit.pixels``); anything else is refused, never guessed.
            mask: H x W labels (bool, uint8, uint16, int32; float32 for a soft mask), moved with
                the image, nearest-neighbour. masks: several, N x H x W or a list.
            bboxes: N x 4 (more columns ride along) in the box format the spec's ``targets``
                declares (``augkit.pipeline.targets``); keypoints likewise.
            labels: the label fields the spec declares (``labels=[...]`` by default for boxes),
                one entry per box or keypoint.
            index: the sample's index in its dataset: what makes a sample's draws the same in
                every process and different from every other sample's.
            epoch: the epoch (or any counter of passes over the data).

        Returns:
            The image alone when no target is given; else an ``Augmented`` (image, mask, masks,
            bboxes, keypoints, label fields), the same draws. Boxes and keypoints go through the
            compiled plan with the image (the same image as without them); a mask makes every step
            run on its own (the same image to OpenCV's rounding: about 0.1 gray levels).

        Without ``index``, calls are numbered 0, 1, 2, ... within this object: reproducible in
        the main process; in worker processes (a DataLoader's, a multiprocessing pool's) the
        numbering is mixed with the worker's own seed, so workers and epochs never repeat each
        other (``augkit.pipeline.seeding.process_salt``), but only ``index`` makes a sample reproducible
        (``augkit.train.augmented.AugmentedDataset`` passes it for a torch Dataset).

        Raises:
            PixelError: the image is outside the pixel contract (dtype or value range).
            AugkitError: a step failed on this image (the message names the step and the shape);
                targets the spec does not declare, or of the wrong shape.
        """
        _check_image_input(image, self.compose.uint16_blocker)
        epoch = _counter("epoch", epoch)
        if index is None:
            index = self._calls
            self._calls += 1
            salt = process_salt()
            if salt:
                index ^= salt  # a stream of this worker's own (the key scatters every bit)
        else:
            index = _counter("index", index)
        key = self._key(index, epoch)
        if mask is not None or masks is not None or bboxes is not None or keypoints is not None or labels:
            targets = {"mask": mask, "masks": masks, "bboxes": bboxes, "keypoints": keypoints}
            return self._with_targets(image, {k: v for k, v in targets.items() if v is not None}, labels, key)
        self._random.reseed(key)
        try:
            if self.plan is not None and self.plan.accepts(image):
                out = self.plan(image)
            else:
                out = self._run_steps(image)
        except AugkitError:
            raise
        except Exception:  # noqa: BLE001 (any step's failure becomes one line, below)
            pass
        else:
            if type(out) is np.ndarray and 1 < out.ndim < 4 and out.size:
                return out
        raise self._failure(image, key)

    def _with_targets(self, image: np.ndarray, targets: dict[str, Any], labels: dict[str, Any], key: int) -> Augmented:
        """The image and its targets through albumentations' Compose, each step on its own, with
        the draws of sample ``key`` (the same, in the same order, as the image alone gets)."""
        for name in ("bboxes", "keypoints"):
            if name in targets and name not in self.targets:
                example = "{bboxes: {format: pascal_voc}}" if name == "bboxes" else "{keypoints: {format: xy}}"
                raise AugkitError(
                    f"{name} given, but the pipeline's spec declares no {name} format: add 'targets: {example}' "
                    f"to it (augkit.pipeline.targets lists the formats)"
                )
        declared = self._label_fields
        for field_name in labels:
            if field_name not in declared:
                names = ", ".join(declared) or "none"
                raise AugkitError(f"unknown argument or label field {field_name!r}; the spec declares label fields: {names}")
        alone = next((name for name in labels if declared[name] not in targets), None)
        if alone is not None:
            raise AugkitError(f"{alone} given without the {declared[alone]} it labels: pass both, one entry per box or keypoint")
        missing = [name for name, target in declared.items() if target in targets and name not in labels]
        if missing:
            raise AugkitError(f"label field {missing[0]!r} not given: pass {missing[0]}=[...] beside the "
                              f"{declared[missing[0]]}, one entry each")  # fmt: skip
        for name in ("bboxes", "keypoints"):
            if name in targets:
                targets[name] = checked_rows(name, targets[name], self.targets[name]["format"])
        settings = self.targets.get("bboxes", {})
        if "bboxes" in targets and not settings.get("filter_invalid_bboxes", False):  # that setting drops them instead
            check_box_extents(targets["bboxes"], settings["format"], *image.shape[:2], settings.get("clip", False))
        check_mask_shapes(*image.shape[:2], targets.get("mask"), targets.get("masks"))
        rows = {name: label_rows(name, value, declared[name], len(targets[declared[name]])) for name, value in labels.items()}
        data = {"image": image, **targets, **rows}
        if "masks" in data:
            data["masks"] = masks_in(data["masks"])
        for name, target in declared.items():  # albumentations wants every declared target, given or not
            if target not in targets:
                data[target], data[name] = [], []
        self._random.reseed(key)
        try:
            if self.plan is not None and "mask" not in targets and "masks" not in targets and self.plan.accepts(image):
                # The compiled path: the image as without targets, boxes and keypoints moved by its maps.
                self.compose.preprocess(data)
                carried = Targets({k: v for k, v in data.items() if k != "image"}, self.compose)
                moved = self.plan(image, carried)
                out = self.compose.postprocess({**carried.data, "image": moved})
            else:
                # force_apply: the Compose's own draw for its p (always 1) would shift every step's draws.
                out = self.compose(force_apply=True, **data)
        except AugkitError:
            raise
        except Exception as error:  # noqa: BLE001 (albumentations' checks of the targets: one line)
            lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
            raise AugkitError(f"the pipeline failed on this image and its targets: {lines[0][:300] if lines else type(error).__name__}") from None
        out.update({name: kept_labels(value, out[name]) for name, value in labels.items()})
        if "masks" in targets:
            out["masks"] = masks_out(targets["masks"], out["masks"], out["image"])
        return _augmented(out, targets, labels)

    def _key(self, index: int, epoch: int) -> int:
        """The sample's key (``augkit.pipeline.seeding``): the epoch's part is kept between calls."""
        if self._epoch_key[0] != (self.seed, epoch):  # two of sample_key's three mixes, kept
            self._epoch_key = ((self.seed, epoch), epoch_key(self.seed, epoch))
        return index_key(self._epoch_key[1], index)

    def _run_steps(self, image: np.ndarray) -> Any:
        """The top-level steps one after another: what Compose.__call__ does for an image alone,
        minus its set-up for boxes, keypoints and shape checks across targets (an image pipeline
        has none of those): about 5% of a 32x32 pipeline's time (bench/pipeline_overhead.py)."""
        data = {"image": image}
        for name, transform in zip(self.steps, self._top_level):
            check_padding(f"step {name!r}", transform, data["image"])
            data = transform(**data)
            check_output_size(f"step {name!r}", data["image"])
        return data["image"]

    def draw(self, shape: tuple[int, ...], *, index: int, epoch: int = 0) -> list[tuple[str, dict[str, Any] | None]]:
        """What each top-level step draws for sample (``epoch``, ``index``) of an image of ``shape``,
        without touching pixels: ``(name, params)`` in spec order, params None where the step's
        probability skipped it. The same values ``replay`` reports and the pipeline applies.

        Args:
            shape: the input image's H x W or H x W x C.

        Raises:
            AugkitError: a step whose draws depend on the pixels (a composition such as
                ``OneOf``, or an albumentations step outside the plan's kinds: ``Plan.drawable``).
        """
        if self.plan is None or not self.plan.drawable:
            plan = Plan(self.steps, self._top_level)
            if not plan.drawable:
                raise AugkitError(f"draw: step {plan.undrawable!r} draws from the image itself; only replay reads its draws")
        else:
            plan = self.plan
        self._random.reseed(self._key(_counter("index", index), _counter("epoch", epoch)))
        return plan.draws(_image_shape(shape))

    def _failure(self, image: np.ndarray, key: int) -> AugkitError:
        """The one line for a call that raised or returned no image: the same draws again, step by
        step, to name the step and its reason (only failures pay for checking every step)."""
        self._random.reseed(key)
        data = {"image": image}
        for position, transform in enumerate(self._top_level):
            before = data["image"]
            try:
                check_padding(f"step {self.steps[position]!r}", transform, data["image"])
                data = transform(**data)
                _check_output(data["image"])
                check_output_size(f"step {self.steps[position]!r}", data["image"])
            except AugkitError as error:
                return error
            except Exception as error:  # noqa: BLE001
                return _step_failed(self.steps[position], position, before, error)
        return AugkitError("the pipeline failed on this image, and did not when it ran again step by step")

    def draw_batch(self, shape: tuple[int, ...], indices: Any, *, epoch: int = 0) -> list[StepDraws]:
        """``draw`` for many samples at once, as arrays (``augkit.pipeline.batch``): about 0.3 us a
        sample against ``draw``'s 13-35 us, the same values.

        Args:
            shape: the inputs' H x W or H x W x C (one size for the batch).
            indices: the samples' indices (ints).

        Raises:
            AugkitError: a step without batched draws (named).
        """
        return draw_batch(self, _image_shape(shape), _indices(indices), _counter("epoch", epoch))

    def replay(self, image: np.ndarray, *, index: int, epoch: int = 0, **targets: Any) -> tuple[Any, list[Applied]]:
        """Like calling the pipeline (``targets``: as ``__call__`` takes them, which then returns
        an ``Augmented``), and also return what each applied step drew."""
        for leaf in self._leaves:  # children a OneOf did not pick keep their last draw otherwise
            leaf.transform.params = {}
        plan, self.plan = self.plan, None  # step by step: each transform keeps what it drew
        try:
            output = self(image, index=index, epoch=epoch, **targets)
        finally:
            self.plan = plan
        applied = [
            Applied(
                leaf.name,
                dict(leaf.transform.params),
                caption(leaf.name, leaf.transform, leaf.transform.params),
                leaf.transform,
            )
            for leaf in self._leaves
            if leaf.transform.params
        ]
        return output, applied

    def stages(self, image: np.ndarray, *, index: int, epoch: int = 0, **targets: Any) -> list[tuple[Applied, Any]]:
        """The image after each applied step, in order, for the draws of sample (``epoch``, ``index``).

        With ``targets`` (as ``__call__`` takes them) an ``Augmented`` after each step instead:
        boxes and keypoints filtered after each step as albumentations' Compose filters them
        (``min_visibility``, ...), in the spec's formats; the last is what ``replay`` returns.
        """
        given = {key: value for key, value in targets.items() if value is not None}
        _, applied = self.replay(image, index=index, epoch=epoch, **given)  # its errors for targets it refuses
        labels = {name: value for name, value in given.items() if name in self._label_fields}
        # Row numbers for the labels, as in __call__ (targets.label_rows; replay has checked them).
        data = {"image": image, **given, **{name: np.arange(len(value)) for name, value in labels.items()}}
        if given:
            data.update({key: _label_map(masks_in(data[key]), key) for key in ("mask", "masks") if key in data})
            for name, target in self._label_fields.items():  # albumentations wants every declared target, as in __call__
                if target not in given:
                    data[target], data[name] = [], []
            self.compose.preprocess(data)  # boxes and keypoints into albumentations' form, label fields as columns
        result = []
        for step in applied:
            try:
                data = step.transform.apply_with_params(step.params, **data)
            except AugkitError:
                raise
            except Exception as error:  # noqa: BLE001 (as in __call__)
                raise _step_failed(step.name, None, data["image"], error) from None
            if not given:
                result.append((step, data["image"]))
                continue
            data = self.compose.check_data_post_transform(data)
            out = self.compose.postprocess(dict(data))  # a copy: the next step goes on from albumentations' form
            out.update({name: kept_labels(value, out[name]) for name, value in labels.items()})
            if "masks" in given:
                out["masks"] = masks_out(given["masks"], out["masks"], out["image"])
            result.append((step, _augmented(out, given, labels)))
        return result

    # ------------------------------------------------------------------------- spec

    def to_spec(self) -> dict[str, Any]:
        """The canonical spec this pipeline was built from (seed included)."""
        return json.loads(json.dumps(self._spec))  # a deep copy the caller may change

    def save(self, path: str | Path) -> Path:
        """Write the spec as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically.

        Relative paths in it (stats files) are rewritten relative to the folder ``path`` is in,
        so the saved file loads from where it was saved, wherever the pipeline came from.
        """
        path = Path(path)
        if path.suffix.lower() not in SPEC_SUFFIXES:
            raise SpecError(f"save the pipeline as .yaml, .yml or .json, not {path.name!r}")
        return atomic_write(path, self.to_text(path.suffix, folder=path.parent))

    def to_text(self, suffix: str = ".yaml", *, folder: str | Path | None = None) -> str:
        """The spec as ``save`` writes it: YAML, or JSON for ``suffix`` ".json"; relative paths in
        it (stats files) rewritten relative to ``folder`` (None: as the spec wrote them)."""
        spec = self.to_spec()
        if folder is not None:
            _rebase_paths(spec["steps"], self._base_dir, Path(folder).resolve())
        return json.dumps(spec, indent=2) + "\n" if suffix.lower() == ".json" else yaml.safe_dump(spec, sort_keys=False)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the spec (stats files) resolve against (absolute)."""
        return self._base_dir

    @property
    def transforms(self) -> list[Any]:
        """Every transform that draws or applies (compositions' children included), in spec order."""
        return [leaf.transform for leaf in self._leaves]

    @property
    def steps(self) -> list[str]:
        """The names of the top-level steps."""
        return [next(iter(step)) for step in self._spec["steps"]]

    def __len__(self) -> int:
        return len(self._spec["steps"])

    def __repr__(self) -> str:
        return f"Pipeline(seed={self.seed}, steps={self.steps})"


def load_pipeline(
    source: str | Path | Mapping[str, Any] | list | Pipeline,
    *,
    seed: int | None = None,
    base_dir: str | Path | None = None,
) -> Pipeline:
    """Build a pipeline from a spec file, an inline spec, a mapping, or a list of steps.

    Args:
        source: e.g. ``"aug.yaml"``, ``"crop(size=24, padding=2); hflip"``, ``{"steps": [...]}``.
        seed: overrides the spec's seed.
        base_dir: where relative paths in the spec (stats files) resolve; by default the spec
            file's folder, or the current directory for inline specs and mappings.
    """
    if isinstance(source, Pipeline):
        source, base_dir = source.to_spec(), base_dir or source._base_dir
    spec, spec_dir = parse_spec(source)
    if seed is not None:
        spec["seed"] = seed
    with naming_file(spec_file(source)):  # "aug.yaml: steps[2]: ...": which of the user's files
        return Pipeline(spec, base_dir if base_dir is not None else spec_dir)


def _augmented(out: Mapping[str, Any], given: Iterable[str], labels: Iterable[str]) -> Augmented:
    """The Compose's output as an ``Augmented``: the targets ``given`` (the rest None) and the
    label fields ``labels``."""
    given = set(given)
    return Augmented(
        image=out["image"],
        mask=out.get("mask"),
        masks=out.get("masks"),
        bboxes=None if "bboxes" not in given else np.asarray(out["bboxes"], np.float32),
        keypoints=None if "keypoints" not in given else np.asarray(out["keypoints"], np.float32),
        fields={name: out[name] for name in labels},
    )


class _SeededCompose(A.Compose):
    """albumentations' Compose, whose ``albumentations.save`` output keeps the pipeline's seed.

    albumentations 2.0 leaves ``seed`` out of what it saves, although ``Compose`` takes it:
    written into the Compose's own entry, it reloads as ``A.Compose(..., seed=N)`` with plain
    albumentations, and as the pipeline's seed with ``augkit.load_pipeline``.
    """

    uint16_blocker: str | None = None  # the first step that cannot take uint16 images (set by Pipeline)

    def __call__(self, *args: Any, force_apply: bool = False, **data: Any) -> dict[str, Any]:
        """albumentations' call, with the image under the pixel contract and masks that survive it.

        Raises:
            PixelError: the image is outside ``augkit.pixels``' contract.
            AugkitError: a mask whose labels albumentations would change (it holds masks of 32
                and 64 bits as int32).
        """
        if isinstance(data.get("image"), np.ndarray):
            check_image(data["image"])
            _check_uint16(data["image"], self.uint16_blocker)
        for key in ("mask", "masks"):
            if key in data:
                data[key] = _label_map(data[key], key)
        out = super().__call__(*args, force_apply=force_apply, **data)
        check_output_size("the pipeline", out.get("image"))  # its steps ran inside albumentations' Compose
        return out

    def to_dict_private(self) -> dict[str, Any]:
        data = super().to_dict_private()
        data["__class_fullname__"] = "Compose"  # loads without augkit, as a plain Compose
        data["seed"] = self.seed
        return data


# albumentations steps measured to treat a uint16 image as they treat the same image in 8 bits
# (output / 257 within 0.3 of a gray level of the uint8 output, tests/test_pipeline.py): geometry,
# crops and resizes, flips, linear filters, dropouts, and intensity steps that scale by the
# dtype's maximum. The others (Normalize, RandomGamma, Solarize, ... assume 0..255 or [0, 1] and
# return wrong values for uint16 without an error) are refused uint16 images.
UINT16_ALBUMENTATIONS = frozenset({
    "AdvancedBlur", "Affine", "Blur", "CenterCrop", "ChannelDropout", "ChannelShuffle", "CoarseDropout",
    "ConstrainedCoarseDropout", "Crop", "CropAndPad", "D4", "Defocus", "ElasticTransform", "Emboss", "Erasing",
    "FancyPCA", "FrequencyMasking", "GaussianBlur", "GlassBlur", "GridDistortion", "GridDropout",
    "GridElasticDeform", "HEStain", "HorizontalFlip", "ISONoise", "Illumination", "InvertImg", "LongestMaxSize",
    "Morphological", "MotionBlur", "NoOp", "OpticalDistortion", "Pad", "PadIfNeeded", "Perspective",
    "PiecewiseAffine", "PixelDropout", "PlanckianJitter", "PlasmaBrightnessContrast", "PlasmaShadow",
    "RandomBrightnessContrast", "RandomCrop", "RandomCropFromBorders", "RandomGridShuffle", "RandomResizedCrop",
    "RandomRotate90", "RandomScale", "RandomSizedCrop", "Resize", "RingingOvershoot", "Rotate", "SafeRotate",
    "SaltAndPepper", "Sharpen", "ShiftScaleRotate", "ShotNoise", "SmallestMaxSize", "Spatter", "SquareSymmetry",
    "ThinPlateSpline", "TimeMasking", "TimeReverse", "ToFloat", "ToGray", "ToRGB", "ToSepia", "Transpose",
    "UnsharpMask", "VerticalFlip", "XYMasking", "ZoomBlur",
})  # fmt: skip


def _takes_uint16(transform: Any) -> bool:
    return isinstance(transform, AugkitTransform) or type(transform).__name__ in UINT16_ALBUMENTATIONS


def _check_uint16(image: np.ndarray, blocker: str | None) -> None:
    if blocker is not None and image.dtype == np.uint16:
        raise PixelError(
            f"image: uint16, but step {blocker!r} (albumentations') reads images as uint8 or float32 and would "
            f"return wrong values; pass image.astype(np.float32) / 65535 (float32 on [0, 1]), or use augkit's "
            f"own steps, which take uint16"
        )


# Mask dtypes albumentations passes through as they are; it casts 64-bit ones to int32, and
# OpenCV moves no uint32 array.
_MASK_DTYPES = {np.dtype(t) for t in (np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.float32)}
_INT32 = np.iinfo(np.int32)


def _label_map(mask: Any, key: str) -> Any:
    """``mask`` as albumentations keeps it: 32- and 64-bit integer labels as int32, if they fit."""
    if isinstance(mask, (list, tuple)):  # masks as a list: each checked as one mask is
        return type(mask)(_label_map(one, f"{key}[{i}]") for i, one in enumerate(mask))
    if not isinstance(mask, np.ndarray) or mask.dtype in _MASK_DTYPES or mask.size == 0:
        return mask
    if mask.dtype.kind in "iu" and mask.dtype.itemsize >= 4:
        low, high = int(mask.min()), int(mask.max())
        if _INT32.min <= low and high <= _INT32.max:
            return mask.astype(np.int32)
        raise AugkitError(
            f"{key}: {mask.dtype} labels from {low} to {high} do not fit int32, which albumentations holds "
            f"masks as; renumber the labels (np.unique(mask, return_inverse=True)) to fit"
        )
    raise AugkitError(
        f"{key}: {mask.dtype} masks are not label maps; pass bool, uint8, uint16 or int32 labels "
        f"(float32 for soft masks)"
    )


def _rebase_paths(steps: list[dict[str, Any]], old_base: Path, new_base: Path) -> None:
    """Rewrite, in place, relative file parameters from ``old_base`` to ``new_base``."""
    for step in steps:
        (name, params), = step.items()
        for key in PATH_PARAMS.get(name, ()):
            value = params.get(key)
            if isinstance(value, str) and not Path(value).is_absolute():
                target = old_base / value
                try:
                    params[key] = Path(os.path.relpath(target, new_base)).as_posix()
                except ValueError:  # another drive (Windows): no relative path exists
                    params[key] = str(target)
        if name in COMPOSITIONS:
            _rebase_paths(params["transforms"], old_base, new_base)


def _check_image_input(image: Any, blocker: str | None) -> None:
    """One image (H x W or H x W x C) under the pixel contract, that every step takes; else one line."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or 0 in image.shape:
        shape = getattr(image, "shape", None)
        raise AugkitError(
            f"a pipeline takes one image as a numpy array (H x W or H x W x C), got "
            f"{type(image).__name__}{f' of shape {shape}' if shape is not None else ''}"
        )
    check_image(image)
    _check_uint16(image, blocker)


_KEYS = 2**64


def _counter(name: str, value: Any) -> int:
    """``value`` (a sample index or an epoch) as a Python int in [0, 2**64); else one line.

    Keys are 64-bit: a larger or negative value would share its draws with another one.
    """
    if type(value) is int and 0 <= value < _KEYS:  # the common case, first: once per image
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not 0 <= value < _KEYS:
        raise AugkitError(f"{name} must be an integer in [0, 2**64) (the sample's {name}), got {value!r}")
    return int(value)


def _image_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as an image's (H, W) or (H, W, C), each a positive int (what a call would accept)."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = ()
    whole = all(isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_)) for d in dims)
    if not (2 <= len(dims) <= 3 and whole and all(0 < d <= MAX_SIDE for d in dims[:2]) and min(dims) > 0):
        raise AugkitError(
            f"shape must be an image's (height, width) or (height, width, channels), sides 1 to {MAX_SIDE}, "
            f"got {shape!r}"
        )
    return tuple(int(d) for d in dims)


def _indices(indices: Any) -> np.ndarray:
    """Sample indices as a uint64 array, each an integer in [0, 2**64); else one line (``_counter``'s)."""
    if isinstance(indices, np.ndarray) and indices.ndim == 1 and indices.dtype.kind in "iu":
        if indices.dtype.kind == "i" and indices.size and indices.min() < 0:  # checked as an array
            _counter("index", int(indices.min()))
        return indices.astype(np.uint64)
    try:
        values = list(indices.tolist() if isinstance(indices, np.ndarray) else indices)
    except TypeError:
        values = [indices]
    return np.array([_counter("index", value) for value in values], dtype=np.uint64)


class _NotAnImage(Exception):
    """A step returned something that is not an image (reported by ``_step_failed``)."""


def _check_output(out: Any) -> None:
    """What a step returned is an image: H x W or H x W x C, not empty (no pass over pixels)."""
    if not isinstance(out, np.ndarray) or out.ndim not in (2, 3) or 0 in out.shape:
        what = f"an array of shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__
        raise _NotAnImage(f"it returned {what}, not an image")


def _step_failed(name: str, position: int | None, image: np.ndarray, error: Exception) -> AugkitError:
    """A step that raised (an albumentations or OpenCV error on an odd image), as one line."""
    where = f"step {name!r}" + (f" (steps[{position}])" if position is not None else "")
    shape = " x ".join(str(d) for d in image.shape) if isinstance(image, np.ndarray) else "?"
    dtype = getattr(image, "dtype", "?")
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = lines[0][:300] if lines else ""
    if not isinstance(error, _NotAnImage):
        reason = f"{type(error).__name__}{': ' + reason if reason else ''}"
    return AugkitError(
        f"{where} failed on a {shape} {dtype} image: {reason}; check the step's parameters against images of this size"
    )


# albumentations transforms known to draw from the Python generator only (their `p` check).
_PYTHON_ONLY = (A.HorizontalFlip, A.VerticalFlip)


def _draws_from_numpy(transform: Any) -> bool:
    """Whether a transform may draw from its numpy generator; unknown ones are assumed to."""
    if type(transform) in _PYTHON_ONLY:
        return False
    return getattr(transform, "draws_from_numpy", True)


def _walk(transforms: Any) -> Any:
    """Every transform in a tree of compositions, compositions included."""
    for transform in transforms:
        yield transform
        yield from _walk(getattr(transform, "transforms", ()))


def caption(name: str, transform: Any, params: Mapping[str, Any]) -> str:
    """A short readable summary of the parameters one step drew ("rot -12.3°")."""
    describe = getattr(transform, "describe", None)
    if describe is not None:
        return describe(params)
    if isinstance(transform, (A.HorizontalFlip, A.VerticalFlip)):
        return name  # nothing drawn: that it happened is the news
    parts = []
    for key, value in params.items():
        if key in _UNCAPTIONED:
            continue
        if isinstance(value, (bool, np.bool_)):
            parts.append(f"{key}={bool(value)}")
        elif isinstance(value, (int, float, np.integer, np.floating)):
            parts.append(f"{key} {float(value):.3g}")
        elif isinstance(value, tuple) and len(value) <= 4 and all(isinstance(v, (int, float)) for v in value):
            parts.append(f"{key} ({','.join(f'{float(v):.3g}' for v in value)})")
    return f"{name} {' '.join(parts)}".strip()
