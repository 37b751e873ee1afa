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

from dl4cv_jax.process import configure_process  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
    "config", "configs/digits_cnn.py", "Experiment config file; override fields with --config.a.b=value."
)
flags.DEFINE_string("workdir", None, "Checkpoints, logs and results go here; default runs/<config name>.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "predict", "compare", "preview", "sweep", "reproduce", "lr_find"],
    "train: train, validate, test the best checkpoint (k-fold with --config.cv.folds=K) | eval: report on a split "
    "of a trained workdir | predict: classify --images | compare: overlay the curves of the workdirs given as "
    "arguments | preview: augmented training images | sweep: run --sweep | reproduce: re-run a workdir's config "
    "| lr_find: learning-rate range test",
)
flags.DEFINE_enum("split", "test", ["train", "val", "test"], "eval: the split to evaluate.")
flags.DEFINE_string("checkpoint", "best", "eval/predict: best | latest | a step number.")
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


# The modes that read each mode-specific flag; given to another mode, the flag would be silently ignored.
MODE_FLAGS = {
    "split": ("eval",),
    "checkpoint": ("eval", "predict"),
    "tta": ("eval", "predict"),
    "images": ("predict",),
    "top_k": ("predict",),
    "output": ("compare",),
    "sweep": ("sweep",),
    "workers": ("sweep",),
}


def check_mode_flags(mode: str, given: set[str]) -> None:
    """UsageError for a flag on the command line that `mode` does not read (e.g. --tta with --mode=train)."""
    for name, modes in MODE_FLAGS.items():
        if name in given and mode not in modes:
            hint = " (training's views are config.eval_tta)" if name == "tta" else ""
            raise app.UsageError(f"--{name} applies to --mode={'|'.join(modes)}, not --mode={mode}{hint}")


def default_workdir(config_path: str) -> pathlib.Path:
    """runs/<config file name without .py>, so each config has its own place by default."""
    return pathlib.Path("runs") / pathlib.Path(config_path).stem


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
    workdir = FLAGS.workdir or default_workdir(config_flags.get_config_filename(FLAGS["config"]))
    maybe_initialize_distributed()
    try:
        run_mode(FLAGS.mode, pathlib.Path(workdir), argv[1:])
    except (ConfigError, TrainingDivergedError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")


def run_mode(mode: str, workdir: pathlib.Path, args: list[str]) -> None:
    """Hands each mode to the library function that does it; flags are read here and nowhere else."""
    if args and mode not in ("compare", "predict"):
        raise app.UsageError(f"unexpected arguments: {' '.join(args)}")
    check_mode_flags(mode, {name for name in MODE_FLAGS if FLAGS[name].present})
    if mode == "train" and FLAGS.config.get("vmap_seeds", 0) > 1:
        from dl4cv_jax.vmap_seeds import train_vmapped

        train_vmapped(FLAGS.config, workdir)  # one workdir per seed: workdir/seed=<s>
        return
    if mode == "train":
        if FLAGS.config.cv.folds > 1:  # k-fold cross-validation: one run per fold in workdir/fold_K
            from dl4cv_jax.cross_validation import run_cross_validation

            run_cross_validation(FLAGS.config, workdir)
            return
        from dl4cv_jax.train.loop import train_and_evaluate

        train_and_evaluate(FLAGS.config, workdir)
        return
    if mode == "preview":  # workdir/augmentations.png: augmented training images with their labels
        from dl4cv_jax.data.preview import write_preview

        logging.info("wrote %s", write_preview(FLAGS.config, workdir))
        return
    if mode == "eval":
        from dl4cv_jax.evaluate.cli import run_eval
        from dl4cv_jax.train.tta import parse_tta_flag

        run_eval(workdir, FLAGS.split, FLAGS.checkpoint, tta=parse_tta_flag(FLAGS.tta))
        return
    if mode == "predict":
        from dl4cv_jax.evaluate.cli import run_predict
        from dl4cv_jax.train.tta import parse_tta_flag

        # `--images a.jpg b.jpg dir/`: absl gives the first to the flag, the others arrive as arguments.
        run_predict(workdir, [*FLAGS.images, *args], FLAGS.checkpoint, FLAGS.top_k, parse_tta_flag(FLAGS.tta))
        return
    if mode == "compare":
        from dl4cv_jax.evaluate.cli import run_compare

        run_compare(args, FLAGS.output)
        return
    if mode == "sweep":
        from dl4cv_jax.sweep import load_sweep, run_sweep
        from dl4cv_jax.sweep.runner import array_task

        if not FLAGS.sweep:
            raise app.UsageError("--mode=sweep needs --sweep=<file>, e.g. --sweep=experiments/optimizers.py")
        sweep_dir = pathlib.Path(FLAGS.workdir) if FLAGS.workdir else default_workdir(FLAGS.sweep)
        overrides = config_flags.get_override_values(FLAGS["config"])  # --config.k=v: for every trial
        results = run_sweep(load_sweep(FLAGS.sweep), sweep_dir, FLAGS.workers, overrides, array_task())
        unfinished = [r["name"] for r in results if r["status"] != "done"]
        if unfinished:
            sys.exit(f"error: {len(unfinished)} of {len(results)} trials did not finish; see {sweep_dir}/results.md")
        return
    if mode == "reproduce":
        from dl4cv_jax.reproduce import reproduce

        report = reproduce(workdir)
        if not report["matches"]:
            sys.exit(f"error: the reproduction differs; see {report['reproduction']}/reproduce.json")
        return
    if mode == "lr_find":
        from dl4cv_jax.lr_find import lr_find

        lr_find(FLAGS.config, workdir)
        return
    raise app.UsageError(f"--mode={mode} is not available in this version")


if __name__ == "__main__":
    configure_process(restart=True)  # PRNG, XLA:CPU flag, allocator: see dl4cv_jax/process.py
    app.run(main)
