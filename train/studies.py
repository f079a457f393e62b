"""The lecture's comparison, the default of ``augkit ablate``: two studies on the sample digits.

1. ``init``: activation (relu, tanh) × initialisation (zeros, normal with std 0.01, Xavier,
   Kaiming) of an 8-layer MLP without BatchNorm, where nothing rescues a bad initialisation.
2. ``regularisation``: dropout (0, 0.5) × augmentation (none, a ±1 pixel shift) of a wide MLP
   on 300 training digits, a fifth of them filed under a wrong class (validation left clean).
   Regularisers curb memorisation, and on the clean digits there is little to memorise: 150 or
   300 clean images give the same gap with and without dropout (tests/test_train_evidence.py).

Each study states the lecture's claims with the same thresholds as the evidence tests, and the
report says whether the runs agree. Three seeds of both (36 runs) take under a minute on two
cores (34 s with two workers on a quiet machine; README.md "Ablation" has the measurements).

``augkit ablate --study augment`` runs ``augment_studies`` instead: the field's augmentation
tricks (none, a crop, crop+flip, TrivialAugment, MixUp, CutMix) for the default CNN on 300
digits, clean and a fifth mislabelled (README.md "Ablation" has what it measured).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

import augkit
from augkit.train.grid import Claim, Study
from augkit.train.config import TrainConfig

CHANCE = 0.1  # ten balanced classes
SHIFT = "crop(size=8, padding=1, border=constant)"  # the 8x8 digit moved by up to a pixel each way


def lecture_studies(data_dir: str | Path, *, seeds: int = 3, epochs: int | None = None) -> list[Study]:
    """The default comparison; the mislabelled digits are written under ``data_dir`` when it runs.

    Args:
        epochs: every run's epochs (default: each study's own, 10 and 60).
    """
    noisy = Path(data_dir).resolve() / "digits-300-noisy"

    def base(epochs_: int, **options: object) -> TrainConfig:
        return TrainConfig(**options, epochs=epochs or epochs_)  # type: ignore[arg-type]

    def gap_narrows(name: str, **regulariser: object) -> Claim:
        return Claim(
            f"{name} narrows the train/val gap of the MLP that memorises (by 0.04 or more), and it validates better",
            lambda get: (get(**regulariser)["gap"] < get(dropout=0.0, augment=None)["gap"] - 0.04
                         and get(**regulariser)["final_val_acc"] > get(dropout=0.0, augment=None)["final_val_acc"]),
        )  # fmt: skip

    init = Study(
        name="init",
        title="Initialisation × activation: an 8-layer MLP without BatchNorm",
        note="`normal` draws weights with std 0.01 (the course's weight_scale); biases start at zero.",
        base=base(10, model="mlp", hidden=(128,) * 7, batchnorm=False, init_std=0.01),
        grid={"activation": ("relu", "tanh"), "init": ("zeros", "normal", "xavier_normal", "kaiming_normal")},
        seeds=seeds,
        claims=(
            Claim("zero initialisation never breaks the symmetry: the net stays at chance",
                  lambda get: all(get(activation=a, init="zeros")["best_val_acc"] < CHANCE + 0.1 for a in ("relu", "tanh"))),
            Claim("small random weights (normal, std 0.01) vanish through 8 layers: the net stays at chance",
                  lambda get: all(get(activation=a, init="normal")["best_val_acc"] < CHANCE + 0.15 for a in ("relu", "tanh"))),
            Claim("Kaiming initialisation trains the deep ReLU net (above 0.85, and 0.30 above normal 0.01)",
                  lambda get: get(activation="relu", init="kaiming_normal")["best_val_acc"] > 0.85
                  and get(activation="relu", init="kaiming_normal")["best_val_acc"]
                  - get(activation="relu", init="normal")["best_val_acc"] >= 0.30),
            Claim("Xavier initialisation trains the deep tanh net (above 0.85)",
                  lambda get: get(activation="tanh", init="xavier_normal")["best_val_acc"] > 0.85),
        ),  # fmt: skip
    )
    regularisation = Study(
        name="regularisation",
        title="Dropout × augmentation: an MLP memorising 300 digits, a fifth of them mislabelled",
        note=(f"300 training digits, 20% of them filed under a wrong class, the validation digits left clean "
              f"(written to {noisy}); augmentation `{SHIFT}` moves each digit by up to a pixel. The training "
              f"accuracy counts the wrong labels: a net that learns the digits rather than memorising the labels "
              f"scores about 0.8 on them, below its validation accuracy, and its gap goes below zero."),
        base=base(60, data=str(noisy), model="mlp", hidden=(512, 512), batchnorm=False, weight_decay=0.0,
                  optimizer="adam", lr=1e-3, batch_size=25),
        grid={"dropout": (0.0, 0.5), "augment": (None, SHIFT)},
        seeds=seeds,
        claims=(gap_narrows("dropout 0.5", dropout=0.5, augment=None), gap_narrows("augmentation", dropout=0.0, augment=SHIFT)),
        prepare=lambda: noisy_digits(noisy),
    )  # fmt: skip
    return [init, regularisation]


# The augmentation study's variants: one trick each, the rest as the base.
CROP_FLIP = "crop(size=8, padding=1, border=constant); hflip"  # the CIFAR recipe's shift and mirror, on 8x8 digits
AUGMENT_VARIANTS = (
    ("none", {}),
    ("crop", {"augment": SHIFT}),
    ("crop+flip", {"augment": CROP_FLIP}),
    ("trivialaugment", {"augment": "trivialaugment"}),
    ("mixup", {"mixup": 0.8}),
    ("cutmix", {"cutmix": 1.0}),
)


def augment_studies(data_dir: str | Path, *, seeds: int = 3, epochs: int | None = None) -> list[Study]:
    """The field's augmentation tricks on small data: none / crop / crop+flip / TrivialAugment /
    MixUp / CutMix for the default CNN on 300 training digits, clean and with a fifth mislabelled.

    MixUp's alpha 0.8 and CutMix's 1.0 are timm's (and DeiT's) defaults; crop+flip is the
    CIFAR recipe, whose mirror does not suit digits (a mirrored 2 is no digit): the study keeps it
    to show that, beside the crop alone. On mislabelled data MixUp is reported to resist
    memorising the wrong labels (Zhang et al. 2018, section 3.4), which the second study tests.

    Args:
        epochs: every run's epochs (default: 40).
    """
    noisy = Path(data_dir).resolve() / "digits-300-noisy"
    base = TrainConfig(epochs=epochs or 40)
    clean = Study(
        name="clean",
        title="Augmentation tricks on 300 clean digits: the default CNN",
        note="300 training digits (`train_subset`, stratified, drawn per seed), the whole validation split.",
        base=base.replace({"train_subset": 300}),
        grid={},
        variants=AUGMENT_VARIANTS,
        seeds=seeds,
    )
    mislabelled = Study(
        name="mislabelled",
        title="Augmentation tricks on 300 digits, a fifth of them mislabelled: the default CNN",
        note=(f"The regularisation study's 300 training digits, 20% filed under a wrong class (written to {noisy}); "
              f"validation left clean."),
        base=base.replace({"data": str(noisy)}),
        grid={},
        variants=AUGMENT_VARIANTS,
        seeds=seeds,
        prepare=lambda: noisy_digits(noisy),
    )  # fmt: skip
    return [clean, mislabelled]


STUDIES = {"lecture": lecture_studies, "augment": augment_studies}  # augkit ablate --study NAME


def noisy_digits(root: Path, count: int = 300, noise: float = 0.2, seed: int = 0) -> Path:
    """``count`` sample training digits, ``noise`` of them filed under a wrong class; val left clean.

    An ImageFolder with train/ and val/, written once (to a temporary name, then renamed).
    """
    root = Path(root)
    if root.is_dir():
        return root
    rng = np.random.default_rng(seed)
    digits = augkit.sample_data_dir() / "digits"
    files = sorted((digits / "train").glob("*/*.png"))
    partial = root.with_name(f".{root.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    for i, source in enumerate(rng.permutation(len(files))[:count]):
        path = files[source]
        label = int(path.parent.name)
        if rng.random() < noise:
            label = (label + int(rng.integers(1, 10))) % 10
        target = partial / "train" / str(label) / f"{i:04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    shutil.copytree(digits / "val", partial / "val")
    partial.rename(root)
    return root
