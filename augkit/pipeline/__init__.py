"""Augmentation pipelines: a spec in, a reproducible function of (image, epoch, index) out.

The contract, in the order a spec travels::

    spec       "crop(size=24); hflip" or aug.yaml  ->  {"seed": 0, "steps": [{"crop": {"size": 24}}, ...]}
    registry   each step name -> a class (augkit's steps, or albumentations' by class name);
               parameters checked against its schema and augkit's bounds, then built
    steps      augkit's own transforms: draw their randomness, forward to functional
    Pipeline   the steps in one albumentations Compose, re-seeded per sample
    plan       how the Pipeline runs them (by default): the same draws, one warp, one table,
               one normalisation per sample where steps compose (``compile: false`` turns it off)

    >>> pipeline = load_pipeline("crop(size=24, padding=2); rotate(limit=15); hflip", seed=0)
    >>> out = pipeline(image, index=7, epoch=3)            # the same array in every process
    >>> out, applied = pipeline.replay(image, index=7, epoch=3)
    >>> [a.caption for a in applied]                       # what each applied step drew: "crop (4,9)"

Per-sample seeding: before each image the pipeline re-seeds its generators from (seed, epoch,
index), so a sample's augmentation does not depend on which worker process loaded it, and any
sample can be replayed alone. ``replay`` returns the parameters each step drew, ``stages`` the
image after each step, ``to_spec`` / ``save`` the spec back (albumentations' own ``save``
writes the Compose too, and ``load_pipeline`` reads such files). ``draw`` gives one sample's
draws without pixels, ``draw_batch`` many samples' as arrays (what batched augmentation applies).

Modules, each importing (at its top) only modules listed before it:

    _albumentations  the one import of albumentations (no update check, no torch)
    functional       the arithmetic: pure functions on H x W x C arrays
    seeding          the per-sample random streams (SplitMix64 keys, PCG64 state)
    registry         step names -> classes, parameter checks; ``create_step``, ``list_steps``
    spec             parse and check a spec's structure (inline, YAML/JSON, albumentations files)
    steps            augkit's transforms (crop, rotate, brightness, ..., standardize): AUGKIT_STEPS
    policies         the augmentation policies (randaugment, trivialaugment, autoaugment, augmix),
                     registered into AUGKIT_STEPS when the registry first lists the steps
    parameters       each step's parameters described for people (``augkit steps NAME``)
    plan             the compiled form of a pipeline's top-level steps (``Plan``)
    batch            the steps' draws for a batch of samples at once (``draw_batch``)
    targets          masks, boxes and keypoints: the spec's ``targets``, the ``Augmented`` result
    core             ``Pipeline``, ``load_pipeline``, ``Applied``, captions

Image inputs follow ``augkit.pixels``: uint8, uint16 or float32 on [0, 1]; anything else raises
``PixelError``. A bad spec raises ``SpecError`` naming the step and the parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augkit._lazy import lazy_attributes
from augkit.errors import SpecError

# name -> module that defines it, loaded on first use (PEP 562): ``augkit.pipeline.spec`` and
# ``registry`` import without albumentations (0.5 s), which ``core`` and ``steps`` load.
_LAZY = {
    "Pipeline": "augkit.pipeline.core",
    "load_pipeline": "augkit.pipeline.core",
    "Applied": "augkit.pipeline.core",
    "Augmented": "augkit.pipeline.targets",
    "list_steps": "augkit.pipeline.registry",
    "get_step": "augkit.pipeline.registry",
    "create_step": "augkit.pipeline.registry",
}

__all__ = ["SpecError", *_LAZY]

if TYPE_CHECKING:
    from augkit.pipeline.core import Applied, Pipeline, load_pipeline
    from augkit.pipeline.registry import create_step, get_step, list_steps
    from augkit.pipeline.targets import Augmented


__getattr__ = lazy_attributes("augkit.pipeline", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
