"""Pipelines inside a user's own torch Dataset, under real DataLoader worker processes.

Two ways a user's Dataset calls a pipeline: ``pipeline(image)`` with no index (draws never
repeat across workers or epochs, but are not reproducible), and ``AugmentedDataset``, which
passes the sample's index and the epoch (the same images with any workers, fork or spawn).
"""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import augkit
from augkit.train.augmented import AugmentedDataset

SPEC = "rotate(limit=180, p=1); brightness(limit=0.3, p=1)"
METHODS = [m for m in ("fork", "spawn") if m in multiprocessing.get_all_start_methods()]


def _image(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (12, 12, 3), dtype=np.uint8)


class SameImageWithoutIndex(Dataset):
    """The issue's user: every item the same image through ``pipeline(image)``, no index."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pipeline = augkit.load_pipeline(SPEC)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        return self.pipeline(_image(0))


class Images(Dataset):
    """A plain dataset of (image, label) pairs."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        return _image(i), i


def _collect(dataset: Dataset, epochs: int, workers: int, method: str | None, persistent: bool = False) -> list[list[bytes]]:
    loader = DataLoader(
        dataset, batch_size=None, num_workers=workers, persistent_workers=persistent and workers > 0,
        multiprocessing_context=method if workers else None,
    )  # fmt: skip
    out = []
    for epoch in range(epochs):
        if isinstance(dataset, AugmentedDataset):
            dataset.set_epoch(epoch)
        out.append([np.asarray(item[0] if isinstance(item, (list, tuple)) else item).tobytes() for item in loader])
    return out


@pytest.mark.filterwarnings("ignore:This DataLoader will create 4 worker processes")  # 4 on 2 cores, as the issue had
@pytest.mark.parametrize(("method", "workers"), [(m, 4 if m == "fork" else 2) for m in METHODS])
def test_calls_without_an_index_never_repeat_across_dataloader_workers_or_epochs(method, workers):
    # The issue: 4 workers gave 2 distinct images out of 8 per epoch, and the next epoch the same.
    torch.manual_seed(0)
    epochs = _collect(SameImageWithoutIndex(8), epochs=2, workers=workers, method=method)
    assert [len(set(e)) for e in epochs] == [8, 8]
    assert not set(epochs[0]) & set(epochs[1])


def test_calls_without_an_index_are_numbered_in_the_main_process():
    pipeline = augkit.load_pipeline(SPEC)
    again = augkit.load_pipeline(SPEC)
    first = [pipeline(_image(0)).tobytes() for _ in range(3)]
    assert first == [again(_image(0), index=i).tobytes() for i in range(3)]


@pytest.mark.parametrize("method", METHODS)
def test_augmented_dataset_gives_the_same_images_with_any_workers_and_start_method(method):
    reference = _collect(AugmentedDataset(Images(), SPEC), epochs=2, workers=0, method=None)
    assert reference[0] != reference[1]  # set_epoch changes the draws
    assert len(set(reference[0])) == 8
    # Persistent workers keep their copy of the dataset across epochs: the epoch reaches them
    # through shared memory.
    parallel = _collect(AugmentedDataset(Images(), SPEC), epochs=2, workers=2, method=method, persistent=True)
    assert parallel == reference


def test_augmented_dataset_matches_the_pipeline_called_with_index_and_epoch():
    pipeline = augkit.load_pipeline(SPEC, seed=3)
    dataset = AugmentedDataset(Images(), pipeline, epoch=5)
    image, label = dataset[6]
    assert label == 6
    np.testing.assert_array_equal(image, pipeline(_image(6), index=6, epoch=5))


def test_items_keep_their_type_namedtuples_and_lists_included():
    from collections import namedtuple

    Sample = namedtuple("Sample", "image label")
    pipeline = augkit.load_pipeline(SPEC, seed=3)
    for wrap in (Sample, lambda image, label: [image, label], lambda image, label: (image, label)):
        class Wrapped(Images):
            def __getitem__(self, i, wrap=wrap):
                return wrap(*super().__getitem__(i))

        item = AugmentedDataset(Wrapped(), pipeline, epoch=5)[6]
        assert type(item) is type(wrap(_image(6), 6)) and item[1] == 6
        np.testing.assert_array_equal(item[0], pipeline(_image(6), index=6, epoch=5))


@pytest.mark.parametrize("epoch", [-1, 1.5, True, "2", 2**63])
def test_set_epoch_refuses_what_is_not_an_epoch(epoch):
    dataset = AugmentedDataset(Images(), SPEC)
    with pytest.raises(augkit.AugkitError, match=r"an integer epoch in \[0, 2\*\*63\)"):
        dataset.set_epoch(epoch)


def test_negative_indices_are_the_samples_they_name():
    dataset = AugmentedDataset(Images(), SPEC)
    np.testing.assert_array_equal(dataset[-1][0], dataset[7][0])


@pytest.mark.parametrize("mode", ["P", "CMYK", "RGBA", "YCbCr"])
def test_pil_images_are_taken_as_their_colours(mode):
    from PIL import Image

    rgb = Image.fromarray(_image(2))
    image = rgb.quantize(16) if mode == "P" else rgb.convert(mode)

    class Pil(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[object, int]:
            return image, 0

    pipeline = augkit.load_pipeline("hflip(p=1)")
    out, _ = AugmentedDataset(Pil(), pipeline)[0]
    np.testing.assert_array_equal(out, np.asarray(image.convert("RGB"))[:, ::-1])  # colours, not palette indices


def test_tensor_items_are_refused_with_the_fix():
    class Tensors(Dataset):
        def __len__(self) -> int:
            return 1

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.zeros(3, 8, 8), 0

    with pytest.raises(augkit.AugkitError, match=r"torch tensor.*permute\(1, 2, 0\)"):
        AugmentedDataset(Tensors(), SPEC)[0]
