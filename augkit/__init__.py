"""augkit: preprocessing, augmentation and training tricks from "Training Neural Networks".

The public API is imported lazily: ``import augkit`` is instant and loads neither OpenCV nor
albumentations (nor, ever, torch or click); each name below loads its module on first use.

    >>> import augkit
    >>> image = augkit.read_image("sample_data/photos/coffee.jpg")
    >>> pipeline = augkit.load_pipeline("crop(size=0.8); rotate(limit=15); hflip")
    >>> augmented = pipeline(image, index=0, epoch=0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from augkit.errors import AugkitError, AugkitWarning, DatasetError, ImageReadError, SpecError

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "read_image": "augkit.images",
    "write_image": "augkit.images",
    "open_dataset": "augkit.datasets",
    "Dataset": "augkit.datasets",
    "sample_data_dir": "augkit.datasets",
    "ChannelStats": "augkit.stats",
    "compute_stats": "augkit.stats",
    "Pipeline": "augkit.pipeline",
    "load_pipeline": "augkit.pipeline",
    "list_steps": "augkit.registry",
    "get_step": "augkit.registry",
    "create_step": "augkit.registry",
}

__all__ = ["AugkitError", "AugkitWarning", "DatasetError", "ImageReadError", "SpecError", "__version__", *_LAZY]

if TYPE_CHECKING:
    from augkit.datasets import Dataset, open_dataset, sample_data_dir
    from augkit.images import read_image, write_image
    from augkit.pipeline import Pipeline, load_pipeline
    from augkit.registry import create_step, get_step, list_steps
    from augkit.stats import ChannelStats, compute_stats


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'augkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
