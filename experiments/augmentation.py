"""Augmentation compared: none, crop + flip, and every augmentation the library offers, 3 seeds each.

"Every augmentation" is read from dl4cv_jax.data.augment when the sweep is loaded, in its registry's order,
so the sweep follows the library as augmentations are added. `CPU_BUDGET` (experiments/cpu_budget.py) is the
CPU budget of experiments/README.md, shared by the three sweeps.

    python main.py --mode=sweep --sweep=experiments/augmentation.py --workdir=runs/augmentation --workers=2
"""

from dl4cv_jax.sweep import Sweep
from experiments.cpu_budget import CPU_BUDGET


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
        fixed=CPU_BUDGET,
    )
