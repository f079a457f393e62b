"""The one place augkit imports albumentations.

albumentations 2.0.8 checks PyPI for a newer release when it is imported, which stalls for
seconds on machines without network access and leaks a request from every DataLoader worker.
The check is skipped when NO_ALBUMENTATIONS_UPDATE is set before the import, so every augkit
module imports albumentations from here. A value the user set stays as it is.
"""

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

__all__ = ["A"]
