"""The images a contact sheet shows: named directly, or sampled (seeded) from datasets, with their targets."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from augkit.errors import AugkitError, AugkitWarning, ImageReadError
from augkit.io.datasets import Dataset, open_dataset, stored_channels
from augkit.io.images import is_image_file, read_image
from augkit.io.targets import mask_path
from augkit.preview.marks import Marks


@dataclass(frozen=True)
class Source:
    """One row's input: its image, a label for the row, the sample index that seeds it, and
    its targets (``Marks`` in the image's pixels), drawn over every tile of its row.

    Raises:
        AugkitError: a mask of another height and width than the image.
    """

    image: np.ndarray
    label: str
    index: int
    targets: Marks | None = None

    def __post_init__(self) -> None:
        mask = None if self.targets is None else self.targets.mask
        if mask is not None and mask.shape != self.image.shape[:2]:
            raise AugkitError(f"{self.label}: its mask is {mask.shape[0]}x{mask.shape[1]}, the image "
                              f"{self.image.shape[0]}x{self.image.shape[1]} (height x width)")  # fmt: skip


def collect_sources(
    inputs: Sequence[str | Path], rows: int, seed: int, *, confined: bool = False, targets: bool = True
) -> list[Source]:
    """Images named directly, plus ``rows`` images sampled (seeded) from each dataset named.

    An image named directly must be readable (ImageReadError says why not); files of a dataset
    that cannot be read are passed over, as every command passes them over, with a warning.
    ``confined``: a dataset's files that resolve outside its folder (a symlink out) are passed
    over too, silently, as if absent (``augkit studio`` reads only under the folders it is given).
    ``targets``: a dataset's masks or boxes come with its images (``Source.targets``); a sample
    whose targets are broken is passed over as an unreadable image is.
    """
    sources: list[Source] = []
    for item in inputs:
        path = Path(item)
        if is_image_file(path) and not path.is_dir():  # a FIFO or a broken link too: the reader says what it is
            # The gray rule (augkit.io.datasets) for an image on its own: a gray file stays one channel.
            sources.append(Source(read_image(path, gray=stored_channels(path) == 1), path.name, len(sources)))
            continue
        dataset = open_dataset(path)
        sources.extend(_sample(dataset, rows, seed, confined, targets and dataset.target_kind is not None))
    return sources


def _sample(dataset: Dataset, rows: int, seed: int, confined: bool = False, targets: bool = False) -> list[Source]:
    """``rows`` readable images of ``dataset`` (with their targets, if ``targets``), in a seeded
    random order, shown by index."""
    order = np.random.default_rng(seed).permutation(len(dataset)).tolist()
    if confined:
        order = [i for i in order if _inside(dataset, i, targets)]
    picked: list[tuple[int, np.ndarray, Marks | None]] = []
    skipped: list[ImageReadError] = []
    for i in order:
        try:
            image = dataset.read(i)
            picked.append((i, image, _read_marks(dataset, i, image.shape) if targets else None))
        except ImageReadError as error:  # a TargetReadError too
            skipped.append(error)
        if len(picked) == rows:
            break
    if skipped:
        first = skipped[0]
        if not picked:
            raise AugkitError(f"no readable image in {dataset.root}: all {len(skipped)} failed (the first, {first})")
        warnings.warn(f"passed over {len(skipped)} unreadable file(s) in {dataset.root}, e.g. {first}", AugkitWarning, stacklevel=2)
    sources = []
    for i, image, marks in sorted(picked, key=lambda pick: pick[0]):
        label = Path(dataset.sources[i]).name
        if dataset.classes and dataset.labels[i] >= 0:
            label = f"{dataset.classes[dataset.labels[i]]}/{label}"
        sources.append(Source(image, label, i, marks))
    return sources


def _read_marks(dataset: Dataset, i: int, shape: tuple[int, ...]) -> Marks:
    """Sample ``i``'s targets (``Dataset.read_targets``) as the sheet draws them; TargetReadError if broken."""
    targets = dataset.read_targets(i, shape)
    return Marks(mask=targets.mask, bboxes=targets.bboxes, labels=targets.labels, classes=dataset.classes)


def _inside(dataset: Dataset, i: int, targets: bool = False) -> bool:
    """Whether sample ``i`` of ``dataset`` resolves inside its root (array kinds read from the
    root itself), and, with ``targets``, its mask file too (boxes were read with the dataset)."""
    if dataset._store is not None or dataset.root is None:
        return True
    paths = [Path(dataset.sources[i])]
    if targets and dataset.target_kind == "masks":
        paths.append(mask_path(dataset.sources[i]))
    try:
        return all(dataset.root.resolve() in path.resolve().parents for path in paths)
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): not a file inside
        return False
