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

from dl4cv_jax.config_files import flag_error_line  # noqa: E402  (imports no jax either)
from dl4cv_jax.modes import MODES, Command  # noqa: E402  (imports no jax: see dl4cv_jax/modes.py)
from dl4cv_jax.process import configure_process  # noqa: E402

FLAGS = flags.FLAGS
DEFAULT_CONFIG = "configs/digits_cnn.py"
try:  # without --config, the default file is read here, at import, together with any --config.a.b overrides
    config_flags.DEFINE_config_file(
        "config", DEFAULT_CONFIG, "Experiment config file; override fields with --config.a.b=value."
    )
except Exception as error:  # whatever a config file or an override does wrong, one line
    sys.exit(f"error: {flag_error_line(error, sys.argv, DEFAULT_CONFIG)}")
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
flags.DEFINE_string("gt", None, "eval_<task>: ground truth (COCO JSON, mask folder, MOTChallenge files, CSV).")
flags.DEFINE_string("pred", None, "eval_<task>: predictions (COCO results JSON, mask folder, tracker files, CSV).")
flags.DEFINE_integer("num_classes", 0, "eval_segmentation: classes (0: the largest index in the masks + 1).")
flags.DEFINE_integer("ignore_index", 255, "eval_segmentation: ground-truth value of pixels that count nowhere.")
# Several processes (docs/multihost.md); SLURM and TPU pods need none of these, jax reads their environment.
flags.DEFINE_string(
    "coordinator", None, "host:port of process 0, for a job of several processes (JAX_COORDINATOR_ADDRESS)."
)
flags.DEFINE_integer("num_processes", None, "How many processes the job has (JAX_NUM_PROCESSES).")
flags.DEFINE_integer("process_id", None, "This process's index, 0..num_processes-1 (JAX_PROCESS_ID).")
flags.DEFINE_integer("distributed_timeout", 60, "Seconds until a lost process stops the others (heartbeat, shutdown).")

TASK_MODES = ("eval_detection", "eval_segmentation", "eval_tracking", "eval_regression")  # evaluation from files
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
    "gt": TASK_MODES,
    "pred": TASK_MODES,
    "num_classes": ("eval_segmentation",),
    "ignore_index": ("eval_segmentation",),
}
TAKE_ARGUMENTS = ("compare", "predict", "compare_models")  # the modes that read positional arguments


def check_mode_flags(mode: str, given: set[str]) -> None:
    """UsageError for a flag on the command line that `mode` does not read (e.g. --tta with --mode=train)."""
    for name, modes in MODE_FLAGS.items():
        if name in given and mode not in modes:
            hint = " (training's views are config.eval_tta)" if name == "tta" else ""
            raise app.UsageError(f"--{name} applies to --mode={'|'.join(modes)}, not --mode={mode}{hint}")


def _quiet_library_info(record: logging_std.LogRecord) -> bool:
    """Orbax logs several INFO lines per checkpoint, jax one per missing backend; keep their warnings only,
    as one line each: a failed background write (a full disk) is reported by the run in one `error:` line."""
    noisy = "/orbax/" in record.pathname or "/jax/_src/" in record.pathname
    if noisy:
        record.exc_info, record.exc_text = None, None
    return record.levelno >= logging_std.WARNING or not noisy


def _not_from_config_flags(record: logging_std.LogRecord) -> bool:
    """ml_collections warns when get_config() returns None; parse_flags says so itself, in its one line."""
    return "config_flags" not in record.pathname


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (app.run's `flags_parser`), with every way the command line can be wrong before
    main() runs reported as one `error:` line: absl would print two lines, ml_collections a traceback."""
    absl_logger = logging_std.getLogger("absl")
    absl_logger.addFilter(_not_from_config_flags)
    try:
        rest = FLAGS(argv)
        FLAGS.config.keys()  # ml_collections defers a config file that failed to load to the first read
    except Exception as error:  # a config file is user code; any failure gets one line
        sys.exit(f"error: {flag_error_line(error, argv, DEFAULT_CONFIG)}")
    finally:
        absl_logger.removeFilter(_not_from_config_flags)
    return rest


def os_error_line(error: OSError) -> str:
    """`path: reason` for an OSError the system raised (permission denied, not a directory, disk full), else
    its message: the traceback would say no more that a user can act on."""
    if error.filename is None:
        return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    second = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{error.filename}{second}: {error.strerror or type(error).__name__}"


def exit_before_finalization(line: str) -> None:
    """Prints `line` and ends the process with status 1 at once. After a failed background save, orbax leaves
    tensorstore writes in flight whose callbacks target an event loop it has closed; at interpreter shutdown
    each would print a traceback under the one line (see also `ignoring_closed_loop_callbacks`). Everything the
    run keeps was written and closed before the failing save began, so skipping Python's finalization loses
    nothing."""
    sys.stdout.flush()
    print(line, file=sys.stderr, flush=True)
    os._exit(1)


def run_mode(mode: str, command: Command) -> None:
    """Runs one mode; bad input (a ConfigError, a missing or unreadable file), a diverged run or a mode's own
    failure exits with status 1 and one `error:` line, no traceback. A run stopped by SIGTERM after saving its
    checkpoint exits with PREEMPTED_EXIT_STATUS (75, dl4cv_jax/train/preemption.py) and one `preempted` line."""
    from dl4cv_jax.choices import ConfigError
    from dl4cv_jax.train.checkpoints import CheckpointWriteError, UnreadableCheckpointError
    from dl4cv_jax.train.loop import TrainingDivergedError
    from dl4cv_jax.train.preemption import PREEMPTED_EXIT_STATUS, PreemptedError
    from dl4cv_jax.train.sharding import LostProcessError

    one_line = (ConfigError, TrainingDivergedError, UnreadableCheckpointError)
    try:
        failure = MODES[mode](command)  # None, or why a run that raised nothing failed
    except one_line as error:
        sys.exit(f"error: {error}")
    except (CheckpointWriteError, LostProcessError) as error:  # a lost process: jax's exit would wait for it
        exit_before_finalization(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: {os_error_line(error)}")
    except PreemptedError as error:  # SIGTERM: saved at a step boundary; a status a job script can requeue on
        print(error, file=sys.stderr, flush=True)
        sys.exit(PREEMPTED_EXIT_STATUS)
    if failure:
        sys.exit(f"error: {failure}")


def ignoring_closed_loop_callbacks(default_hook):
    """sys.unraisablehook that drops `RuntimeError('Event loop is closed')` and passes anything else on.
    When a background checkpoint write fails (a full disk), orbax closes its event loop while tensorstore still
    has writes in flight; each of them, finishing, calls back into the closed loop from a C++ thread, and
    Python would print a traceback for every one under the run's one `error:` line."""

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
            return
        default_hook(unraisable)

    return hook


def main(argv: list[str]) -> None:
    sys.unraisablehook = ignoring_closed_loop_callbacks(sys.unraisablehook)
    logging.set_verbosity(logging.INFO)
    handler = logging.get_absl_handler()
    handler.addFilter(_quiet_library_info)
    handler.setFormatter(logging_std.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    try:
        command = _command(argv)
    except app.UsageError as error:  # absl would print the whole usage text around it
        sys.exit(f"error: {error}")
    from dl4cv_jax.choices import ConfigError
    from dl4cv_jax.train.sharding import maybe_initialize_distributed

    try:
        maybe_initialize_distributed(
            FLAGS.coordinator, FLAGS.num_processes, FLAGS.process_id, FLAGS.distributed_timeout
        )
    except ConfigError as error:  # a half-described cluster: one line, before any process waits for the others
        sys.exit(f"error: {error}")
    run_mode(FLAGS.mode, command)


def _command(argv: list[str]) -> Command:
    """The flags' values as a Command, after checking that they fit together (UsageError when not)."""
    if argv[1:] and FLAGS.mode not in TAKE_ARGUMENTS:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    check_mode_flags(FLAGS.mode, {name for name in MODE_FLAGS if FLAGS[name].present})
    if FLAGS.mode == "sweep" and not FLAGS.sweep:
        raise app.UsageError("--mode=sweep needs --sweep=<file>, e.g. --sweep=experiments/optimizers.py")
    if FLAGS.mode in TASK_MODES and not FLAGS.pred:
        raise app.UsageError(f"--mode={FLAGS.mode} needs --pred=<predictions> (and --gt=<ground truth>)")
    if FLAGS.mode == "compare_models" and not FLAGS.data_dir:
        raise app.UsageError("--mode=compare_models needs --data_dir=<folder of class folders>")
    return Command(
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
        gt=FLAGS.gt,
        pred=FLAGS.pred,
        num_classes=FLAGS.num_classes,
        ignore_index=FLAGS.ignore_index,
    )


if __name__ == "__main__":
    configure_process(restart=True)  # PRNG, XLA:CPU flag, allocator: see dl4cv_jax/process.py
    app.run(main, flags_parser=parse_flags)
