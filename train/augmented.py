"""``AugmentedDataset``: an augkit pipeline inside your own PyTorch ``Dataset``, seeded per sample.

A pipeline called as ``pipeline(image)`` inside ``Dataset.__getitem__`` does not know which
sample it is augmenting. augkit keeps such calls from repeating across DataLoader workers and
epochs (``augkit.pipeline.seeding.process_salt``), but cannot make them reproducible: which worker
loads which sample is up to the DataLoader. Passing the sample's index and the epoch makes
every sample's draws a function of (pipeline seed, epoch, index) alone, the same with 0, 2 or
16 workers, fork or spawn, on every run::

    from torch.utils.data import DataLoader
    from augkit.train.augmented import AugmentedDataset

    train = AugmentedDataset(my_dataset, "crop(size=24, padding=2); hflip; standardize(stats=stats.json)")
    loader = DataLoader(train, batch_size=64, shuffle=True, num_workers=4, persistent_workers=True)
    for epoch in range(epochs):
        train.set_epoch(epoch)  # as DistributedSampler.set_epoch: before iterating the epoch
        for images, labels in loader:
            ...

``set_epoch`` writes the epoch into a one-element tensor in shared memory, which the dataset's
copies in the DataLoader's workers share (torch passes shared-memory tensors to worker processes
by handle, under fork and spawn alike), so it reaches persistent workers too.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from augkit.errors import AugkitError
from augkit.pipeline import Pipeline, load_pipeline


class AugmentedDataset(torch.utils.data.Dataset):
    """``dataset[i]`` with its image augmented by ``pipeline(image, index=i, epoch=epoch)``.

    Args:
        dataset: any map-style dataset (``len`` and ``[i]``) whose items are an image, or a
            tuple/list whose first element is the image (``(image, label)``, as torchvision's).
            Images are numpy arrays H x W x C (or H x W) under augkit's pixel contract: uint8,
            uint16, or float32 on [0, 1]; a PIL image is taken as gray (H x W x 1) or RGB pixels.
        pipeline: a ``Pipeline``, or anything ``augkit.load_pipeline`` takes (a spec file, an
            inline spec, a mapping).
        epoch: the epoch to start at (``set_epoch`` changes it).

    Items come back as the dataset's, with the augmented image (a numpy array: the pipeline's
    output) in the image's place.
    """

    def __init__(self, dataset: Sequence[Any], pipeline: Pipeline | str | Path | Mapping[str, Any], *, epoch: int = 0) -> None:
        self.dataset = dataset
        self.pipeline = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch[0])

    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` from now on, in this process and in the DataLoader's workers."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or not 0 <= epoch < 2**63:
            raise AugkitError(f"set_epoch takes an integer epoch in [0, 2**63), got {epoch!r}")
        self._epoch[0] = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        index = operator.index(index)
        if -len(self) <= index < 0:
            index += len(self)  # dataset[-1] is dataset[n - 1], and augmented alike
        item = self.dataset[index]
        if isinstance(item, (tuple, list)):
            if not item:
                raise AugkitError(f"dataset item {index} is an empty {type(item).__name__}; expected (image, ...)")
            values = [self._augment(item[0], index), *item[1:]]
            return type(item)(*values) if hasattr(item, "_fields") else type(item)(values)  # a namedtuple takes fields
        return self._augment(item, index)

    def _augment(self, image: Any, index: int) -> np.ndarray:
        if not isinstance(image, np.ndarray):
            if isinstance(image, torch.Tensor):
                raise AugkitError(
                    f"dataset item {index} holds a torch tensor; augkit pipelines take numpy images "
                    f"H x W x C (drop ToTensor from the dataset, or pass image.permute(1, 2, 0).numpy())"
                )
            image = _pil_pixels(image) if isinstance(image, Image.Image) else np.asarray(image)
        return self.pipeline(image, index=index, epoch=self.epoch)

    def __repr__(self) -> str:
        return f"AugmentedDataset({len(self)} items, {self.pipeline!r}, epoch={self.epoch})"


def _pil_pixels(image: Image.Image) -> np.ndarray:
    """A PIL image's pixels as augkit reads a file's (the gray rule of ``augkit.io.datasets``): gray
    (1, L; LA with its alpha composited onto white) is uint8 H x W x 1, 16-bit gray uint16
    H x W x 1, everything else RGB H x W x 3 (palette images are their colours, not their
    indices; CMYK, YCbCr and alpha are converted)."""
    if image.mode in ("LA", "La"):
        white = Image.new("L", image.size, 255)
        white.paste(image.convert("L"), mask=image.getchannel("A"))
        image = white
    if image.mode == "1":
        image = image.convert("L")
    if image.mode in ("L", "I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image)[..., None]
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
