"""Batch preprocessing of image datasets: parallel, resumable, and safe to kill at any moment.

    from augkit.preprocess import PreprocessConfig, preprocess
    report = preprocess("photos/", "photos-64/", PreprocessConfig(size=(64, 64)), workers=8)

``plan`` decides the shards, ``shard`` does one, ``engine`` runs them (``distributors``: where),
``out_folder`` checks OUT before a run and clears only augkit's files, ``assembly`` merges the
shards into the final output.
"""

from augkit.preprocess.engine import PreprocessReport, Progress, preprocess
from augkit.preprocess.plan import PreprocessConfig

__all__ = ["PreprocessConfig", "PreprocessReport", "Progress", "preprocess"]
