"""main.py on a machine without TensorFlow (and without clu), as GPU images often are: a folder of JPEGs trains
with the device pipeline, evaluates and predicts; TensorBoard still gets the scalars; the tf.data pipeline says
what to change."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

BLOCK_TENSORFLOW = (
    "import runpy, sys\n"
    "sys.path.insert(0, '.')\n"
    "for name in ('tensorflow', 'tensorflow_datasets', 'clu'):\n"
    "    sys.modules[name] = None  # any import of these now raises ImportError\n"
    "sys.argv = ['main.py', *sys.argv[1:]]\n"
    "runpy.run_path('main.py', run_name='__main__')\n"
)


def main_without_tensorflow(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-c", BLOCK_TENSORFLOW, *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """Three classes of 16x16 JPEGs told apart by their dominant colour, 40 per class."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    for k, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for i in range(40):
            pixels = rng.integers(0, 120, (16, 16, 3))
            pixels[..., k] += 120
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def scalar_events(workdir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util.tensor_util import make_ndarray

    events = EventAccumulator(str(workdir))
    events.Reload()
    return {
        tag: [(e.step, float(make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]
        for tag in events.Tags()["tensors"]
    }


def test_folder_run_trains_evaluates_and_predicts_without_tensorflow(jpeg_folder, tmp_path):
    workdir = tmp_path / "run"
    common = [f"--config.data.dir={jpeg_folder}", "--config.data.source=folder", "--config.data.image_size=0"]
    train = main_without_tensorflow(
        "--config=configs/digits_cnn.py",
        f"--workdir={workdir}",
        *common,
        "--config.data.pipeline=device",
        "--config.num_epochs=3",
        "--config.model.width=8",
        "--config.batch_size=32",
        "--config.data.augment=('flip', 'crop(2)')",
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert "through tensorboard.summary.Writer" in train.stderr  # the fallback writer was the one used
    history = [line.split(",") for line in (workdir / "history.csv").read_text().splitlines()]
    header, rows = history[0], history[1:]
    assert len(rows) == 3
    tested = json.loads((workdir / "test_metrics.json").read_text())
    assert tested["accuracy"] > 0.8  # three classes: chance is 1/3

    # TensorBoard has what history.csv has, from the framework-free writer.
    scalars = scalar_events(workdir)
    for field in ("train_loss", "val_accuracy", "learning_rate"):
        column = header.index(field)
        expected = [(int(row[header.index("step")]), float(row[column])) for row in rows]
        assert [s for s, _ in scalars[field]] == [s for s, _ in expected]
        np.testing.assert_allclose([v for _, v in scalars[field]], [v for _, v in expected], rtol=1e-5)

    evaluated = main_without_tensorflow("--mode=eval", f"--workdir={workdir}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    report = json.loads((workdir / "eval" / "test" / "report.json").read_text())
    assert report["accuracy"] == pytest.approx(tested["accuracy"])

    images = [str(jpeg_folder / "red" / "000.jpg"), str(jpeg_folder / "blue" / "001.jpg")]
    predicted = main_without_tensorflow("--mode=predict", f"--workdir={workdir}", "--images", *images)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    saved = json.loads(next((workdir / "predictions").glob("*.json")).read_text())
    assert [item["path"] for item in saved["images"]] == images


def test_tf_data_pipeline_without_tensorflow_names_the_fix(jpeg_folder, tmp_path):
    result = main_without_tensorflow(
        "--config=configs/digits_cnn.py", f"--workdir={tmp_path}", "--config.data.pipeline=tfdata"
    )
    assert result.returncode != 0
    assert "config.data.pipeline='tfdata' needs TensorFlow" in result.stderr
    assert "data.pipeline='device'" in result.stderr
    assert not (tmp_path / "checkpoints").exists()
