"""Normalisation compared: BatchNorm, GroupNorm and none in the small CIFAR-10 CNN, 3 seeds each.

GroupNorm uses 4 groups (4 and 8 channels per group at width 16); the setting is shared, and only matters
for model.norm=group. `FIXED` is the shared CPU budget (experiments/cpu_budget.py) plus that setting.

    python main.py --mode=sweep --sweep=experiments/normalization.py --workdir=runs/normalization --workers=2
"""

from dl4cv_jax.sweep import Sweep, product
from experiments.cpu_budget import CPU_BUDGET

# The shared CPU budget, plus the GroupNorm setting (it only matters for model.norm=group).
FIXED = {**CPU_BUDGET, "model.group_norm_groups": 4}


def get_sweep() -> Sweep:
    return Sweep(
        config="configs/cnn_cifar.py",
        settings=product({"model.norm": ["batch", "group", "none"]}),
        seeds=(0, 1, 2),
        fixed=FIXED,
    )
