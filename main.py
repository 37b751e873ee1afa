"""dl4cv_jax entry point: `python main.py --config=configs/resnet_cifar.py --workdir=runs/resnet_cifar`.

Flags and mode dispatch only; each mode is a function in dl4cv_jax/modes.py.
"""

import logging as logging_std
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow is only the input pipeline; keep it quiet.

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from dl4cv_jax.modes import MODES, Command  # noqa: E402  (imports no jax: see dl4cv_jax/modes.py)
from dl4cv_jax.process import configure_process  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/digits_cnn.py", "Experiment config file; override fields with --config.a.b=value."
)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results go here; default runs/<config name>.")
flags.DEFINE_enum(
    "mode", "train", list(MODES), " | ".join(f"{name}: {mode.__doc__.strip()}" for name, mode in MODES.items())
)
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "eval: the split to evaluate.")
flags.DEFINE_string("checkpoint", "best", "eval/predict/compare_models: best | latest | a step number.")
flags.DEFINE_string(
    "tta",
    None,
    "eval/predict: test-time augmentation views to average, comma-separated (flip,translate) or none; "
    "default: the run's own config.eval_tta.",
)
flags.DEFINE_multi_string("images", [], "predict: image files or folders (--images a.jpg b.png dir/).")
flags.DEFINE_integer("top_k", 5, "predict: how many classes to report per image.")
flags.DEFINE_string("output", None, "compare: the PNG to write (default: compare.png in the current directory).")
flags.DEFINE_string("sweep", None, "sweep: the sweep definition file, e.g. experiments/optimizers.py.")
flags.DEFINE_integer("workers", 1, "sweep: trials run in parallel (one per accelerator, or N CPU processes).")
flags.DEFINE_multi_string(
    "models", [], "compare_models: NAME=FILE, NAME=FILE@preset (weight files) or workdirs; or as arguments."
)
flags.DEFINE_string("data_dir", None, "compare_models: the labelled folder, <class>/<images> (e.g. cifar10/test).")
flags.DEFINE_string(
    "class_map", None, "compare_models: folder class -> model class: JSON {folder: index}, or class names in order."
)
flags.DEFINE_integer("batch_size", 128, "compare_models: evaluation batch, and the batch of the images/second.")

# The modes that read each mode-specific flag; given to another mode, the flag would be silently ignored.
MODE_FLAGS = {
    "split": ("eval",),
    "checkpoint": ("eval", "predict", "compare_models"),
    "tta": ("eval", "predict"),
    "images": ("predict",),
    "top_k": ("predict",),
    "output": ("compare",),
    "sweep": ("sweep",),
    "workers": ("sweep",),
    "models": ("compare_models",),
    "data_dir": ("compare_models",),
    "class_map": ("compare_models",),
    "batch_size": ("compare_models",),
}
TAKE_ARGUMENTS = ("compare", "predict", "compare_models")  # the modes that read positional arguments


def check_mode_flags(mode: str, given: set[str]) -> None:
    """UsageError for a flag on the command line that `mode` does not read (e.g. --tta with --mode=train)."""
    for name, modes in MODE_FLAGS.items():
        if name in given and mode not in modes:
            hint = " (training's views are config.eval_tta)" if name == "tta" else ""
            raise app.UsageError(f"--{name} applies to --mode={'|'.join(modes)}, not --mode={mode}{hint}")


def _quiet_library_info(record: logging_std.LogRecord) -> bool:
    """Orbax logs several INFO lines per checkpoint, jax one per missing backend; keep their warnings only."""
    noisy = "/orbax/" in record.pathname or "/jax/_src/" in record.pathname
    return record.levelno >= logging_std.WARNING or not noisy


def main(argv: list[str]) -> None:
    from dl4cv_jax.choices import ConfigError
    from dl4cv_jax.train.loop import TrainingDivergedError
    from dl4cv_jax.train.sharding import maybe_initialize_distributed

    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler()
    handler.addFilter(_quiet_library_info)
    handler.setFormatter(logging_std.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    if argv[1:] and FLAGS.mode not in TAKE_ARGUMENTS:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    check_mode_flags(FLAGS.mode, {name for name in MODE_FLAGS if FLAGS[name].present})
    if FLAGS.mode == "sweep" and not FLAGS.sweep:
        raise app.UsageError("--mode=sweep needs --sweep=<file>, e.g. --sweep=experiments/optimizers.py")
    if FLAGS.mode == "compare_models" and not FLAGS.data_dir:
        raise app.UsageError("--mode=compare_models needs --data_dir=<folder of class folders>")
    command = Command(
        config=FLAGS.config,
        config_path=config_flags.get_config_filename(FLAGS["config"]),
        workdir=pathlib.Path(FLAGS.workdir) if FLAGS.workdir else None,
        args=tuple(argv[1:]),
        config_overrides=config_flags.get_override_values(FLAGS["config"]),
        split=FLAGS.split,
        checkpoint=FLAGS.checkpoint,
        tta=FLAGS.tta,
        images=tuple(FLAGS.images),
        top_k=FLAGS.top_k,
        output=FLAGS.output,
        sweep=FLAGS.sweep,
        workers=FLAGS.workers,
        models=tuple(FLAGS.models),
        data_dir=FLAGS.data_dir,
        class_map=FLAGS.class_map,
        batch_size=FLAGS.batch_size,
    )
    maybe_initialize_distributed()
    try:
        failure = MODES[FLAGS.mode](command)  # None, or why a run that raised nothing failed
    except (ConfigError, TrainingDivergedError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
    if failure:
        sys.exit(f"error: {failure}")


if __name__ == "__main__":
    configure_process(restart=True)  # PRNG, XLA:CPU flag, allocator: see dl4cv_jax/process.py
    app.run(main)
