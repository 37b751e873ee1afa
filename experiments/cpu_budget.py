"""The CPU budget the sweeps in this folder share (experiments/README.md, "The CPU budget used here").

One definition, so that the optimizer, augmentation and normalisation studies stay comparable: a stratified
2,000-image training subset, 1,000 validation images, a 16-channel CNN, batch 64, 4 epochs, no warm-up. A sweep
passes it as `Sweep(fixed=...)`; for full runs, drop it or override it on the command line (e.g.
`--config.num_epochs=20 --config.data.max_train_examples=0`).
"""

CPU_BUDGET: dict[str, object] = {
    "data.max_train_examples": 2000,
    "data.val_fraction": 0.02,
    "model.width": 16,
    "num_epochs": 4,
    "batch_size": 64,
    "schedule.warmup_epochs": 0.0,
}
