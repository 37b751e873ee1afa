"""--mode=compare_models on a tiny folder with two models: a workdir trained one epoch on it, and a weight file
(safetensors, akamaster's ResNet-20 layout) of a randomly initialised 10-class ResNet-20 whose classes the folder's
three reach through --class_map. The table against sklearn on each predictions.csv, the file model's predictions
against a forward pass written here from PIL, the files and pictures, and the bad-input lines."""

import csv
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from PIL import Image
from safetensors.numpy import save_file
from sklearn import metrics as sk

from configs import default
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.evaluate.compare_models import compare_models
from dl4cv_jax.models import create_model
from dl4cv_jax.pretrained.layouts import LAYOUTS
from dl4cv_jax.train.loop import train_and_evaluate
from tests.conftest import REPO
from tests.evaluate.eval_checks import assert_picture

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FOLDER_CLASSES = ("cat", "dog", "ship")  # CIFAR-10 classes 3, 5 and 8
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # the "imagenet_stats" preset
RESNET20_PARAMETERS = 269_722  # He et al.'s ResNet-20 at 10 classes (STACK_NOTES.md)


def _write_folder(root: pathlib.Path, per_class: dict[str, int]) -> None:
    """16x16 PNGs per class: a class colour plus noise, so one epoch learns something."""
    rng = np.random.default_rng(0)
    for split, count in per_class.items():
        for k, name in enumerate(FOLDER_CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                base = np.full((16, 16, 3), 60, np.int64)
                base[..., k] = 200
                pixels = np.clip(base + rng.integers(-50, 50, (16, 16, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:02d}.png")


def _resnet20_file(path: pathlib.Path) -> dict:
    """A fresh 10-class ResNet-20 saved in akamaster's key names (PyTorch layouts: OIHW kernels, (out, in) dense);
    returns our variables."""
    config = default.get_config().model
    config.name = "resnet20"
    model = create_model(config, 10)
    # An "rbg" key: XLA:CPU compiles ResNet-20's initialisers in ~2 s with it, ~10 s with the default threefry.
    key = jax.random.key(7, impl="rbg")
    variables = jax.jit(lambda x: model.init(key, x, train=False))(jnp.zeros((1, 16, 16, 3)))
    layout, arrays = LAYOUTS["resnet20"], {}
    for var_path, leaf in traverse_util.flatten_dict(variables).items():
        leaf = np.asarray(leaf)
        if var_path[-1] == "kernel":
            leaf = leaf.transpose(3, 2, 0, 1) if leaf.ndim == 4 else leaf.T
        arrays[layout.source(var_path).key] = np.ascontiguousarray(leaf)
    save_file(arrays, str(path))
    return variables


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    _write_folder(root / "data", {"train": 12, "test": 6})
    config = default.get_config()
    config.data.source, config.data.dir = "folder", str(root / "data")
    config.model.name, config.model.width = "cnn", 4
    config.batch_size, config.num_epochs = 8, 1
    train_and_evaluate(config, root / "run", show_progress=False)
    variables = _resnet20_file(root / "resnet20_random.safetensors")
    (root / "cifar10_classes.txt").write_text("\n".join(CIFAR10) + "\n")
    return root, variables


@pytest.fixture(scope="module")
def compared(setup):
    root, _ = setup
    models = [f"resnet20={root / 'resnet20_random.safetensors'}@imagenet_stats", str(root / "run")]
    result = compare_models(
        models,
        str(root / "data" / "test"),
        root / "out",
        base_config=default.get_config(),
        class_map=str(root / "cifar10_classes.txt"),
        batch_size=8,
        speed_seconds=0.05,
    )
    return root, result


def _rows(path: pathlib.Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_the_table_is_sklearns_figures_of_each_models_predictions(compared):
    root, result = compared
    assert json.loads((root / "out" / "comparison.json").read_text()) == json.loads(json.dumps(result))
    assert [row["model"] for row in result["models"]] == ["resnet20", "run"]
    assert result["num_images"] == 18 and result["folder_classes"] == list(FOLDER_CLASSES)
    for row in result["models"]:
        rows = _rows(root / "out" / row["model"] / "predictions.csv")
        assert len(rows) == 18
        assert all(r["label"] == pathlib.Path(r["path_or_id"]).parent.name for r in rows)  # mapped back to names
        labels, predictions = [r["label"] for r in rows], [r["prediction"] for r in rows]
        assert row["accuracy"] == pytest.approx(sk.accuracy_score(labels, predictions), abs=1e-6)
        p, r, f, _ = sk.precision_recall_fscore_support(labels, predictions, average="macro", zero_division=0)
        assert (row["precision_macro"], row["recall_macro"], row["f1_macro"]) == pytest.approx((p, r, f), abs=1e-6)
        assert row["images_per_second"] > 0 and row["latency_ms_batch1"] > 0 and row["speed_batch_size"] == 8
    resnet, run = result["models"]
    assert (resnet["classes"], resnet["parameters"], resnet["input"]) == (10, RESNET20_PARAMETERS, "16x16x3")
    assert resnet["top5_accuracy"] is not None and run["top5_accuracy"] is None  # 10 classes vs 3
    assert run["classes"] == 3 and "best checkpoint" in run["source"]
    table = (root / "out" / "comparison.md").read_text()
    assert f"| resnet20 | resnet20 | 16x16x3 | 10 | {resnet['accuracy']:.4f} |" in table
    assert f"{RESNET20_PARAMETERS:,}" in table


def test_the_weight_files_predictions_are_a_plain_forward_pass(setup, compared):
    """PIL decode, ImageNet normalisation and our ResNet-20 with the saved variables, written out here."""
    root, variables = setup
    rows = _rows(root / "out" / "resnet20" / "predictions.csv")
    images = np.stack([np.asarray(Image.open(r["path_or_id"]).convert("RGB")) for r in rows]) / 255.0
    normalised = (images - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    config = default.get_config().model
    config.name = "resnet20"
    logits = create_model(config, 10).apply(variables, jnp.asarray(normalised, jnp.float32), train=False)
    assert [r["prediction"] for r in rows] == [CIFAR10[k] for k in np.argmax(np.asarray(logits), axis=1)]


def test_each_model_has_evals_files_and_pictures(compared):
    root, _ = compared
    for label in ("resnet20", "run"):
        out = root / "out" / label
        report = json.loads((out / "report.json").read_text())
        assert report["num_examples"] == 18 and report["split"].endswith("test")
        assert (out / "report.md").read_text().startswith(f"# {label} on ")
        for picture in ("confusion_matrix.png", "confusion_matrix_normalized.png"):
            assert_picture(out / picture)
    assert_picture(root / "out" / "comparison.png", min_side=150)


@pytest.mark.parametrize(
    ("models", "data", "class_map", "expected"),
    [
        (["run"], "data", None, r"--data_dir=.*data holds split folders; pass the one to read, one of: .*data/test"),
        (["resnet21=W"], "data", "map", r"model 'resnet21=.*': no model 'resnet21' reads weight files; choose one of"),
        (["resnet20=nowhere.th"], "data", "map", r"no such file: nowhere\.th; expected a \.pth / .*\.safetensors"),
        (["W"], "data", "map", r"a weight file needs its model, NAME=.* with NAME one of: .*resnet20"),
        (["data"], "data", "map", r"'.*data': a folder without config\.json is not a training workdir; a model is"),
        (["run"], "empty", None, r"--data_dir=.*empty: no images \(\.jpg .*\) in class folders; expected"),
        (
            ["resnet20=W@imagenet_stats"],
            "data/test",
            "short",
            r"--class_map=.*short.* no entry for .*\['ship'\]; it maps:",
        ),
        (
            ["resnet20=W@imagenet_stats"],
            "data/test",
            None,
            r"resnet20=.* has 10 classes, the folder 3; give --class_map",
        ),
        (["resnet20=W@imagenet_stat"], "data/test", "map", r"no preprocessing preset 'imagenet_stat'; choose one of: "),
        (
            ["resnet20=W"],
            "data/test",
            "map",
            r"records no preprocessing; name a preset, resnet20=.*@PRESET with PRESET",
        ),
    ],
)
def test_bad_input_names_the_culprit_and_what_is_accepted(setup, models, data, class_map, expected):
    root, _ = setup
    (root / "empty" / "cat").mkdir(parents=True, exist_ok=True)
    (root / "short.txt").write_text("cat\ndog\n")
    maps = {"map": str(root / "cifar10_classes.txt"), "short": str(root / "short.txt"), None: None}
    weights = str(root / "resnet20_random.safetensors")  # W in a spec
    specs = [m.replace("=W", f"={weights}") if "=" in m else weights if m == "W" else str(root / m) for m in models]
    with pytest.raises(ConfigError, match=expected) as error:
        compare_models(
            specs, str(root / data), root / "bad", base_config=default.get_config(), class_map=maps[class_map]
        )
    assert "\n" not in str(error.value)


def test_main_prints_one_line_and_fails(setup):
    root, _ = setup
    command = [sys.executable, "main.py", "--mode=compare_models", f"--data_dir={root / 'data'}", "resnet99=x.th"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "resnet99" in lines[0] and "resnet20" in lines[0], result.stderr[-2000:]
