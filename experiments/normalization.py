"""Normalisation compared: BatchNorm, GroupNorm and none in the small CIFAR-10 CNN, 3 seeds each.

GroupNorm uses 4 groups (4 and 8 channels per group at width 16); the setting is shared, and only matters
for model.norm=group. `FIXED` is the CPU budget of experiments/README.md.

    python main.py --mode=sweep --sweep=experiments/normalization.py --workdir=runs/normalization --workers=2
"""

from dl4cv_jax.sweep import Sweep, product

# CPU budget: a stratified 2,000-image training subset, 1,000 validation images, a 16-channel CNN, 4 epochs.
FIXED = {
    "data.max_train_examples": 2000,
    "data.val_fraction": 0.02,
    "model.width": 16,
    "num_epochs": 4,
    "batch_size": 64,
    "schedule.warmup_epochs": 0.0,
    "model.group_norm_groups": 4,
}


def get_sweep() -> Sweep:
    return Sweep(
        config="configs/cnn_cifar.py",
        settings=product({"model.norm": ["batch", "group", "none"]}),
        seeds=(0, 1, 2),
        fixed=FIXED,
    )
