"""The three commands of the evaluation script: eval, predict and compare (what main.py's modes call).

Each loads what it needs from the workdir, computes, and (on the chief process only) writes its files.
"""

import pathlib
from collections.abc import Sequence
from typing import Any

import jax
from absl import logging

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data.dataset import SPLITS
from dl4cv_jax.evaluate import curves, inference, metrics, plots, predict, report, restore, speed
from dl4cv_jax.tensorboard_writer import open_writer
from dl4cv_jax.train.run_files import write_json


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
    outputs = inference.split_outputs(run.trainer, run.state, split)
    scores = metrics.classification_metrics(
        outputs["label"], outputs["prediction"], outputs["probabilities"], outputs["loss"]
    )
    timing = speed.measure_speed(run.trainer, run.state, min_seconds=speed_seconds) if speed_seconds > 0 else {}
    result = report.build_report(
        scores,
        run.data.class_names,
        split=split,
        checkpoint=run.checkpoint,
        checkpoint_step=run.step,
        speed=timing,
        tta=run.config.eval_tta,
    )
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
        _write_eval_files(run, split, folder, outputs, scores, result)
    return result


def _write_eval_files(
    run: restore.RestoredRun,
    split: str,
    folder: str,
    outputs: dict[str, Any],
    scores: dict[str, Any],
    result: dict[str, Any],
) -> None:
    """report.json/.md, predictions.csv and the confusion PNGs in workdir/eval/<folder>/, PNGs to TensorBoard."""
    out, names = run.workdir / "eval" / folder, run.data.class_names
    report.write_report(out, result, f"Evaluation of {run.workdir.name}")
    report.write_predictions_csv(
        out / "predictions.csv",
        split_ids(run.data, split),
        outputs["label"],
        outputs["prediction"],
        outputs["probabilities"],
        names,
    )
    subtitle = f"{run.workdir.name}, {split} split ({result['num_examples']:,} examples), step {run.step}"
    pictures = plots.write_confusion_pngs(scores["confusion_matrix"], names, out, subtitle)
    _write_tensorboard(run.workdir, folder, run.step, pictures)
    logging.info("wrote %s", out)


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
    run = restore.load_run(workdir, checkpoint, with_data=False, tta=tta)
    pixels = predict.load_images(paths, run.data.image_shape, run.config.data.resize_method)
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
