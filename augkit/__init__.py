"""augkit: preprocessing, augmentation and training tricks from "Training Neural Networks".

The public API is imported lazily: ``import augkit`` is instant and loads neither OpenCV nor
albumentations (nor, ever, torch or click); each name below loads its module on first use.

    >>> import augkit
    >>> image = augkit.read_image("sample_data/photos/coffee.jpg")
    >>> pipeline = augkit.load_pipeline("crop(size=0.8); rotate(limit=15); hflip")
    >>> augmented = pipeline(image, index=0, epoch=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from augkit._lazy import lazy_attributes
from augkit.errors import AugkitError, AugkitWarning, DatasetError, ImageReadError, SpecError

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "read_image": "augkit.io.images",
    "write_image": "augkit.io.writer",
    "open_dataset": "augkit.io.datasets",
    "Dataset": "augkit.io.datasets",
    "sample_data_dir": "augkit.io.datasets",
    "ChannelStats": "augkit.stats.channel_stats",
    "compute_stats": "augkit.stats.dataset",
    "Pipeline": "augkit.pipeline.core",
    "load_pipeline": "augkit.pipeline.core",
    "list_steps": "augkit.pipeline.registry",
    "get_step": "augkit.pipeline.registry",
    "create_step": "augkit.pipeline.registry",
}

__all__ = ["AugkitError", "AugkitWarning", "DatasetError", "ImageReadError", "SpecError", "__version__", *_LAZY]

if TYPE_CHECKING:
    from augkit.io.datasets import Dataset, open_dataset, sample_data_dir
    from augkit.io.images import read_image
    from augkit.io.writer import write_image
    from augkit.pipeline.core import Pipeline, load_pipeline
    from augkit.pipeline.registry import create_step, get_step, list_steps
    from augkit.stats import ChannelStats, compute_stats


__getattr__ = lazy_attributes("augkit", _LAZY, globals())


def __dir__() -> list[str]:
    return sorted(__all__)
