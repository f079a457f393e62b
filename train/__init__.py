"""augkit.train: the PyTorch training harness (torch + augkit, no click).

Installed as ``augkit.train`` from the top-level ``train/`` folder. Modules, in the order a run
uses them:

    config       TrainConfig: every option of a run (torch-free: the CLI reads it for --help)
    registry     options by name (timm-style), with errors that list the choices
    data         datasets -> uint8 arrays -> seeded batches; device-side standardisation
    activations  sigmoid ... maxout, by name
    inits        weight initialisations, by name, with the formulas written out
    models       mlp, cnn, resnet
    optim        optimisers, schedules, L2 on weights only, L1
    distributed  torchrun: one process's place in a DistributedDataParallel run
    hooks        per-layer activation statistics; the --watch-activations watcher
    loop         build() and train(): the training loop
    checkpoint   atomic checkpoints, loaded with weights_only=True
    evaluate     accuracy, per-class accuracy and the confusion matrix of a finished run
    diagnostics  augkit diagnose: the lecture's probe, and a trained run's layers
    grid, ablate, report, studies   augkit ablate: grids, runs, the report, the lecture's default
    plots        curves.png, confusion.png and the diagnose and ablate figures

This package's ``__init__`` imports nothing, so ``augkit.train.config`` loads without torch.
"""
