"""The metric that checkpointing, early stopping and reduce-on-plateau watch (config.checkpoint.monitor)."""

from dl4cv_jax.choices import choose

# monitor name -> whether a higher value is better
MONITORS: dict[str, bool] = {"val_loss": False, "val_accuracy": True}


def monitor_mode(monitor: str) -> bool:
    """Returns higher_is_better for a monitored metric: False for val_loss, True for val_accuracy."""
    return choose(MONITORS, "checkpoint.monitor", monitor)
