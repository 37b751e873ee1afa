"""The three commands of the evaluation script: eval, predict and compare (what main.py's modes call).

Each loads what it needs from the workdir, computes, and (on the chief process only) writes its files.
`evaluate_split` and `write_evaluation` are eval's two halves, shared with `--mode=compare_models`
(compare_models.py), so both score and report a model with the same code.
"""

import dataclasses
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.dataset import SPLITS
from dl4cv_jax.evaluate import curves, inference, metrics, plots, predict, report, restore, speed
from dl4cv_jax.tensorboard_writer import open_writer
from dl4cv_jax.train.loop import Trainer
from dl4cv_jax.train.run_files import write_json
from dl4cv_jax.train.state import TrainState


def split_ids(data: Any, split: str) -> list[str]:
    """The file path of each example where the split has them (folder sources), else `split:index`."""
    paths = getattr(data.split(split), "paths", None)
    if paths is not None and len(paths) == data.num_examples(split):
        return [str(p) for p in paths]
    return [f"{split}:{i}" for i in range(data.num_examples(split))]


def output_folder(split: str, tta: Sequence[str] | None, trained_tta: Sequence[str]) -> str:
    """workdir/eval/<this>: the split, plus `_tta=<views>` (`_tta=none`) when --tta differs from the views the
    run was trained to evaluate with, so a report with other views never overwrites the run's own."""
    if tta is None or tuple(tta) == tuple(trained_tta):
        return split
    return f"{split}_tta={'+'.join(tta) or 'none'}"


def _write_tensorboard(workdir: pathlib.Path, folder: str, step: int, pictures: dict[str, Any]) -> None:
    """The confusion-matrix pictures as TensorBoard images next to the run's scalars (tag eval_<folder>/...)."""
    writer = open_writer(workdir)
    writer.write_images(step, {f"eval_{folder}/{name}": pixels[None] for name, pixels in pictures.items()})
    writer.close()


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One model scored on one split: every example's outputs, the figures, and report.json's content."""

    outputs: dict[str, np.ndarray]  # label, prediction, probabilities, loss (inference.split_outputs)
    scores: dict[str, Any]  # metrics.classification_metrics, confusion matrix included
    report: dict[str, Any]  # report.build_report


def evaluate_split(
    trainer: Trainer,
    state: TrainState,
    split: str,
    *,
    checkpoint: str,
    checkpoint_step: int,
    speed_seconds: float = 2.0,
    split_label: str | None = None,
) -> Evaluation:
    """Scores the trainer's model on every example of `split` and times it: what `--mode=eval` reports and
    `--mode=compare_models` tabulates, computed in one place.

    `speed_seconds` as in `run_eval` (0: not timed), at the trainer's evaluation batch. `split_label` names the
    split in the report (default `split`), e.g. the folder a comparison read.
    """
    outputs = inference.split_outputs(trainer, state, split)
    scores = metrics.classification_metrics(
        outputs["label"], outputs["prediction"], outputs["probabilities"], outputs["loss"]
    )
    timing = speed.measure_speed(trainer, state, min_seconds=speed_seconds) if speed_seconds > 0 else {}
    result = report.build_report(
        scores,
        trainer.data.class_names,
        split=split_label or split,
        checkpoint=checkpoint,
        checkpoint_step=checkpoint_step,
        speed=timing,
        tta=trainer.config.eval_tta,
    )
    return Evaluation(outputs, scores, result)


def write_evaluation(
    out: pathlib.Path,
    evaluation: Evaluation,
    ids: Sequence[str],
    title: str,
    subtitle: str,
    picture_classes: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """report.json/.md, predictions.csv, confusion_matrix.png and confusion_matrix_normalized.png in `out`;
    returns the two pictures' pixels.

    `picture_classes` limits the pictures (not the report) to those classes, e.g. the few of a 1,000-class model
    that a folder holds or that it predicted; None draws every class.
    """
    names = evaluation.report["class_names"]
    outputs = evaluation.outputs
    report.write_report(out, evaluation.report, title)
    report.write_predictions_csv(
        out / "predictions.csv", ids, outputs["label"], outputs["prediction"], outputs["probabilities"], names
    )
    confusion = np.asarray(evaluation.scores["confusion_matrix"])
    if picture_classes is not None:
        keep = np.asarray(picture_classes, dtype=int)
        confusion, names = confusion[np.ix_(keep, keep)], [names[k] for k in keep]
    return plots.write_confusion_pngs(confusion, names, out, subtitle)


def run_eval(
    workdir: str | pathlib.Path,
    split: str = "test",
    checkpoint: str = "best",
    speed_seconds: float = 2.0,
    tta: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Evaluates a checkpoint of `workdir` on `split` and writes `workdir/eval/<split>/`; returns the report.

    report.json, report.md, predictions.csv, confusion_matrix.png, confusion_matrix_normalized.png, and the two
    pictures in TensorBoard. `speed_seconds` is the time spent timing batched inference (half as much at batch 1);
    0 skips the timing (the speed fields are then null). `tta` (--tta) replaces the test-time augmentation views
    of the run's config.eval_tta, () for none; the report then goes to `eval/<split>_tta=<views>/`.
    """
    if split not in SPLITS:
        raise ConfigError(f"--split={split!r} is not valid; choose one of: {', '.join(SPLITS)}")
    workdir = pathlib.Path(workdir)
    folder = output_folder(split, tta, restore.load_run_config(workdir).eval_tta)
    run = restore.load_run(workdir, checkpoint, tta=tta)
    if run.data.num_examples(split) == 0:
        raise ConfigError(f"--split={split}: that split of {workdir} is empty (see data.val_fraction/test_fraction)")
    evaluation = evaluate_split(
        run.trainer, run.state, split, checkpoint=run.checkpoint, checkpoint_step=run.step, speed_seconds=speed_seconds
    )
    result = evaluation.report
    logging.info(
        "eval %s (%s checkpoint, step %d): accuracy %.4f, f1_macro %.4f, loss %.4f on %d examples; %s img/s",
        split,
        run.checkpoint,
        run.step,
        result["accuracy"],
        result["f1_macro"],
        result["loss"],
        result["num_examples"],
        f"{result['images_per_second']:.0f}" if result["images_per_second"] else "(not timed)",
    )
    if jax.process_index() == 0:
        out = run.workdir / "eval" / folder
        subtitle = f"{run.workdir.name}, {split} split ({result['num_examples']:,} examples), step {run.step}"
        ids = split_ids(run.data, split)
        pictures = write_evaluation(out, evaluation, ids, f"Evaluation of {run.workdir.name}", subtitle)
        _write_tensorboard(run.workdir, folder, run.step, pictures)
        logging.info("wrote %s", out)
    return result


def run_predict(
    workdir: str | pathlib.Path,
    images: Sequence[str],
    checkpoint: str = "best",
    top_k: int = 5,
    tta: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Top-k classes of each image; prints them and writes `workdir/predictions/<name>.json`; returns that JSON.

    Needs only the workdir (config.json, data_info.json, checkpoints), never the training data. `tta` as in
    `run_eval`; the JSON records the views used.
    """
    if top_k < 1:
        raise ConfigError(f"--top_k={top_k} must be >= 1")
    workdir = pathlib.Path(workdir)
    paths = predict.list_images(images)
    # Every image is decoded before the model is built and compiled, so a bad file fails in a second.
    config = restore.load_run_config(workdir)
    restore.resolve_checkpoint(workdir, checkpoint)
    info = restore.load_data_info(workdir, config)
    pixels = predict.load_images(paths, info.image_shape, config.data.resize_method, config.data.resize_shorter)
    run = restore.load_run(workdir, checkpoint, with_data=False, tta=tta, data=info)
    outputs = inference.image_outputs(run.trainer, run.state, pixels)
    ranked = predict.top_k(outputs["probabilities"], run.data.class_names, top_k)
    result = {
        "workdir": str(workdir),
        "checkpoint": run.checkpoint,
        "checkpoint_step": run.step,
        "tta": list(run.config.eval_tta),
        "images": [{"path": str(p), "top_k": r} for p, r in zip(paths, ranked, strict=True)],
    }
    if jax.process_index() == 0:
        for path, r in zip(paths, ranked, strict=True):
            print(predict.format_line(path, r))
        out = workdir / "predictions" / f"{predict.output_name(list(images))}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
        logging.info("wrote %s", out)
    return result


def run_compare(workdirs: Sequence[str], output: str | pathlib.Path | None = None) -> pathlib.Path:
    """Overlays the validation curves of several training workdirs in one PNG (default compare.png)."""
    path = curves.write_compare(workdirs, output or "compare.png")
    logging.info("wrote %s", path)
    return path
