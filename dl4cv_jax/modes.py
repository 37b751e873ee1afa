"""What each `main.py --mode=<name>` does, as one small function per mode in `MODES`.

main.py reads the flags and hands their values over as one `Command`; nothing here reads absl flags, so a mode
runs the same from a notebook: `MODES["eval"](Command(workdir=pathlib.Path("runs/digits_cnn")))`.
A mode returns None when it succeeded, or a one-line reason the run failed although nothing raised (a sweep with
unfinished trials, a reproduction that differs); main.py prints it as `error: <reason>` and exits with status 1.
The library modules are imported inside each mode, so importing this one loads no jax: main.py imports it before
`configure_process(restart=True)` may re-execute the process.
"""

import dataclasses
import pathlib
from collections.abc import Callable, Mapping
from typing import Any

from absl import logging
from ml_collections import ConfigDict


def default_workdir(path: str) -> pathlib.Path:
    """runs/<file name without .py> (of the config, or of the sweep), so each has its own place by default."""
    return pathlib.Path("runs") / pathlib.Path(path).stem


def new_or_run_folder(workdir: pathlib.Path) -> pathlib.Path:
    """`workdir`, checked before anything is read: ConfigError when it is an existing file, where a mode that
    writes a folder of results would otherwise fail half-way with an OSError."""
    if workdir.exists() and not workdir.is_dir():
        from dl4cv_jax.choices import ConfigError

        raise ConfigError(f"--workdir={workdir} is a file, not a folder; pass a new folder or a run's folder")
    return workdir


@dataclasses.dataclass(frozen=True)
class Command:
    """The command line's values, plain; each mode reads the fields it needs (see main.py's flags)."""

    config: ConfigDict | None = None  # --config with its --config.a.b=value overrides applied
    config_path: str = "configs/digits_cnn.py"  # the --config file: names the default workdir
    workdir: pathlib.Path | None = None  # --workdir; None = runs/<config file name> (sweep: <sweep file name>)
    args: tuple[str, ...] = ()  # positional arguments: compare's workdirs, predict's further images, models
    config_overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # the --config.a.b=value pairs
    split: str = "test"
    checkpoint: str = "best"
    tta: str | None = None  # None = the run's own config.eval_tta
    images: tuple[str, ...] = ()
    top_k: int = 5
    output: str | None = None
    sweep: str | None = None
    workers: int = 1
    models: tuple[str, ...] = ()  # compare_models: NAME=FILE[@preset] or workdirs (more may come as args)
    data_dir: str | None = None  # compare_models: the labelled folder, <class>/<images> (e.g. cifar10/test)
    class_map: str | None = None  # compare_models: folder class -> model class index
    batch_size: int = 128  # compare_models: evaluation batch and the images/second batch
    gt: str | None = None  # eval_<task>: the ground-truth file or folder
    pred: str | None = None  # eval_<task>: the predictions file or folder
    num_classes: int = 0  # eval_segmentation: 0 = the largest class index in the masks + 1
    ignore_index: int = 255  # eval_segmentation: ground-truth value of pixels that count nowhere

    @property
    def run_dir(self) -> pathlib.Path:
        return self.workdir or default_workdir(self.config_path)


def train(command: Command) -> None:
    """train, validate, test the best checkpoint (k-fold with --config.cv.folds=K)"""
    config, workdir = command.config, new_or_run_folder(command.run_dir)
    if config.get("vmap_seeds", 0) > 1:  # one workdir per seed: workdir/seed=<s>
        from dl4cv_jax.vmap_seeds import train_vmapped

        train_vmapped(config, workdir)
    elif config.cv.folds > 1:  # k-fold cross-validation: one run per fold in workdir/fold_K
        from dl4cv_jax.cross_validation import run_cross_validation

        run_cross_validation(config, workdir)
    else:
        from dl4cv_jax.train.loop import train_and_evaluate

        train_and_evaluate(config, workdir)


def evaluate(command: Command) -> None:
    """report on a split of a trained workdir"""
    from dl4cv_jax.evaluate.cli import run_eval
    from dl4cv_jax.train.tta import parse_tta_flag

    run_eval(command.run_dir, command.split, command.checkpoint, tta=parse_tta_flag(command.tta))


def predict(command: Command) -> None:
    """classify --images"""
    from dl4cv_jax.evaluate.cli import run_predict
    from dl4cv_jax.train.tta import parse_tta_flag

    # `--images a.jpg b.jpg dir/`: absl gives the first to the flag, the others arrive as arguments.
    images = [*command.images, *command.args]
    run_predict(command.run_dir, images, command.checkpoint, command.top_k, parse_tta_flag(command.tta))


def compare(command: Command) -> None:
    """overlay the curves of the workdirs given as arguments"""
    from dl4cv_jax.evaluate.cli import run_compare

    run_compare(list(command.args), command.output)


def compare_models(command: Command) -> None:
    """score models (NAME=FILE weight files or workdirs) on one labelled --data_dir, side by side"""
    from configs import default
    from dl4cv_jax.evaluate.compare_models import compare_models as run_comparison

    run_comparison(
        [*command.models, *command.args],
        command.data_dir,
        new_or_run_folder(command.workdir or pathlib.Path("runs/compare_models")),
        base_config=default.get_config(),  # a weight file's model: today's defaults + the file's preprocessing
        class_map=command.class_map,
        checkpoint=command.checkpoint,
        batch_size=command.batch_size,
    )


def preview(command: Command) -> None:
    """augmented training images (workdir/augmentations.png)"""
    from dl4cv_jax.data.preview import write_preview

    logging.info("wrote %s", write_preview(command.config, new_or_run_folder(command.run_dir)))


def sweep(command: Command) -> str | None:
    """run --sweep (its trials in workdir/<trial>, default runs/<sweep file name>)"""
    from dl4cv_jax.sweep import load_sweep, run_sweep
    from dl4cv_jax.sweep.runner import array_task

    sweep_dir = new_or_run_folder(command.workdir or default_workdir(command.sweep))
    results = run_sweep(load_sweep(command.sweep), sweep_dir, command.workers, command.config_overrides, array_task())
    unfinished = [r["name"] for r in results if r["status"] != "done"]
    if unfinished:
        return f"{len(unfinished)} of {len(results)} trials did not finish; see {sweep_dir}/results.md"
    return None


def reproduce(command: Command) -> str | None:
    """re-run a workdir's config"""
    from dl4cv_jax.reproduce import reproduce as reproduce_run

    report = reproduce_run(command.run_dir)
    return None if report["matches"] else f"the reproduction differs; see {report['reproduction']}/reproduce.json"


def lr_find(command: Command) -> None:
    """learning-rate range test"""
    from dl4cv_jax.lr_find import lr_find as find

    find(command.config, new_or_run_folder(command.run_dir))


def _task_mode(task: str, doc: str) -> Callable[[Command], None]:
    """eval_<task>: score --pred against --gt from files (dl4cv_jax/evaluate/task_reports.py) into --workdir
    (default runs/eval_<task>)."""

    def mode(command: Command) -> None:
        from dl4cv_jax.evaluate import task_reports

        out = new_or_run_folder(command.workdir or pathlib.Path(f"runs/eval_{task}"))
        if task == "segmentation":
            task_reports.run_eval_segmentation(command.gt, command.pred, out, command.num_classes, command.ignore_index)
        else:
            getattr(task_reports, f"run_eval_{task}")(command.gt, command.pred, out)

    mode.__doc__ = doc
    return mode


eval_detection = _task_mode("detection", "COCO box AP/AR of --pred (results JSON) against --gt (instances JSON)")
eval_segmentation = _task_mode("segmentation", "IoU, precision, recall, F1 of --pred against --gt (PNG mask folders)")
eval_tracking = _task_mode("tracking", "HOTA, MOTA, IDF1 of --pred against --gt (MOTChallenge text files)")
eval_regression = _task_mode("regression", "MSE, MAE, R2 of --pred (CSV: target,prediction; or id,prediction + --gt)")


MODES: dict[str, Callable[[Command], str | None]] = {
    "train": train,
    "eval": evaluate,
    "predict": predict,
    "compare": compare,
    "compare_models": compare_models,
    "preview": preview,
    "sweep": sweep,
    "reproduce": reproduce,
    "lr_find": lr_find,
    "eval_detection": eval_detection,
    "eval_segmentation": eval_segmentation,
    "eval_tracking": eval_tracking,
    "eval_regression": eval_regression,
}
