"""The one place augkit imports albumentations.

Two things happen around that import, and only here:

- albumentations 2.0.8 checks PyPI for a newer release when it is imported, which stalls on
  machines without network access and sends a request from every worker process. Setting
  NO_ALBUMENTATIONS_UPDATE first skips it (a value the user set is kept).
- albumentations imports its PyTorch helpers (ToTensorV2), and with them torch, whenever torch
  is installed: 1.6 s and 270 MB instead of 0.5 s and 90 MB per process, measured here. augkit
  never needs them (the training harness moves uint8 batches to the device itself) and its
  core must not load torch, so that import is skipped unless torch is already loaded.
  ``from albumentations.pytorch import ToTensorV2`` still works for anyone who wants it.
"""

import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

if "albumentations" not in sys.modules and "torch" not in sys.modules:
    # A None entry makes `from .pytorch import *` raise ImportError, which albumentations
    # catches; removing the entry afterwards lets a later explicit import proceed normally.
    sys.modules["albumentations.pytorch"] = None  # type: ignore[assignment]
    try:
        import albumentations as A
    finally:
        del sys.modules["albumentations.pytorch"]
else:
    import albumentations as A

__all__ = ["A"]
