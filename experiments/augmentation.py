"""Augmentation compared: none, crop + flip, and every augmentation the library offers, 3 seeds each.

"Every augmentation" is read from dl4cv_jax.data.augment when the sweep is loaded, in its registry's order,
so the sweep follows the library as augmentations are added. `FIXED` is the CPU budget of experiments/README.md.

    python main.py --mode=sweep --sweep=experiments/augmentation.py --workdir=runs/augmentation --workers=2
"""

from dl4cv_jax.sweep import Sweep

# CPU budget: a stratified 2,000-image training subset, 1,000 validation images, a 16-channel CNN, 4 epochs.
FIXED = {
    "data.max_train_examples": 2000,
    "data.val_fraction": 0.02,
    "model.width": 16,
    "num_epochs": 4,
    "batch_size": 64,
    "schedule.warmup_epochs": 0.0,
}


def every_augmentation() -> tuple[str, ...]:
    """The names dl4cv_jax.data.augment accepts, in its registry's order (mixing ones last, as it requires)."""
    from dl4cv_jax.data import augment

    registry = getattr(augment, "BUILDERS", None) or augment.AUGMENTATIONS
    return tuple(registry)


def get_sweep() -> Sweep:
    lists = [(), ("crop", "flip"), every_augmentation()]
    distinct = list(dict.fromkeys(lists))  # while the library offers only crop and flip, the last two coincide
    return Sweep(
        config="configs/cnn_cifar.py",
        settings=[{"data.augment": names} for names in distinct],
        seeds=(0, 1, 2),
        fixed=FIXED,
    )
