"""dl4cv_jax entry point: `python main.py --config=configs/resnet_cifar.py --workdir=runs/resnet_cifar`.

Flags and mode dispatch only; the work happens in the dl4cv_jax library.
"""

import logging as logging_std
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is only the input pipeline; keep it quiet.

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/digits_cnn.py", "Experiment config file; override fields with --config.a.b=value."
)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results go here; default runs/<config name>.")
flags.DEFINE_enum("mode", "train", ["train"], "train: train, validate each epoch, test the best checkpoint.")


def default_workdir(config_path: str) -> pathlib.Path:
    """runs/<config file name without .py>, so each config has its own place by default."""
    return pathlib.Path("runs") / pathlib.Path(config_path).stem


def _quiet_library_info(record: logging_std.LogRecord) -> bool:
    """Orbax logs several INFO lines per checkpoint, jax one per missing backend; keep their warnings only."""
    noisy = "/orbax/" in record.pathname or "/jax/_src/" in record.pathname
    return record.levelno >= logging_std.WARNING or not noisy


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from dl4cv_jax.choices import ConfigError
    from dl4cv_jax.train.loop import TrainingDivergedError, train_and_evaluate
    from dl4cv_jax.train.sharding import maybe_initialize_distributed

    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler()
    handler.addFilter(_quiet_library_info)
    handler.setFormatter(logging_std.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
    maybe_initialize_distributed()
    try:
        train_and_evaluate(FLAGS.config, workdir)
    except (ConfigError, TrainingDivergedError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    app.run(main)
