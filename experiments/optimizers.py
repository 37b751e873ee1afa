"""Optimizers compared: SGD, momentum, Nesterov, Adam and AdamW on the small CIFAR-10 CNN, 3 seeds each.

Each optimizer gets a learning rate in its usual range (zipped with its name, since one rate does not suit
plain SGD and Adam alike); AdamW gets its customary decoupled weight decay, Adam keeps the config's L2 5e-4.
`CPU_BUDGET` (experiments/cpu_budget.py) is the CPU budget of experiments/README.md, shared by the three
sweeps; drop it (or override it on the command line, e.g. `--config.num_epochs=20`) for a full run.

    python main.py --mode=sweep --sweep=experiments/optimizers.py --workdir=runs/optimizers --workers=2
"""

from dl4cv_jax.sweep import Sweep, zipped
from experiments.cpu_budget import CPU_BUDGET


def get_sweep() -> Sweep:
    return Sweep(
        config="configs/cnn_cifar.py",
        settings=zipped(
            {
                "optimizer.name": ["sgd", "momentum", "nesterov", "adam", "adamw"],
                "optimizer.learning_rate": [0.2, 0.05, 0.05, 2e-3, 2e-3],
                "optimizer.weight_decay": [5e-4, 5e-4, 5e-4, 5e-4, 0.05],
            }
        ),
        seeds=(0, 1, 2),
        fixed=CPU_BUDGET,
    )
