"""augkit.train: the PyTorch training harness (torch + augkit, no click).

Installed as ``augkit.train`` from the top-level ``train/`` folder. The harness itself
(TrainConfig, registries, the loop) is not written yet; this package exists so the
layering ``cli -> train -> augkit`` is in place from the start.
"""
