"""The on-device pipeline gives the tf.data pipeline's batches, needs no TensorFlow, and trains the same model."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import device, eval_batches, load_data, train_batches
from dl4cv_jax.data.dataset import ArraySplit
from dl4cv_jax.train.sharding import make_mesh
from tests.conftest import REPO
from tests.data.conftest import array_data, data_config


@pytest.fixture(scope="module")
def digits():
    return load_data(data_config(batch_size=64))


@pytest.mark.parametrize(
    "augment", [(), ("crop(2)", "flip"), ("crop(3,constant)", "vflip", "cutout(3)"), ("crop(2)", "flip", "mixup(0.3)")]
)
def test_same_batches_as_tf_data(digits, augment):
    config = data_config(batch_size=64, data__augment=augment)
    mesh = make_mesh()
    for epoch in (0, 3):
        host, on_device = (
            list(train_batches(digits, config, epoch)),
            list(device.train_batches(digits, config, epoch, mesh)),
        )
        assert len(host) == len(on_device) > 0
        for a, b in zip(host, on_device, strict=True):
            np.testing.assert_array_equal(a["image"], np.asarray(b["image"]))
            np.testing.assert_allclose(a["label"], np.asarray(b["label"]), atol=1e-6)
    for a, b in zip(eval_batches(digits, "val", config), device.eval_batches(digits, "val", config, mesh), strict=True):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(a[key], np.asarray(b[key]))


def test_shared_statistics_flip_half_and_crop_offsets_uniform():
    n, padding = 2000, 2
    images = np.zeros((n, 5, 5, 1), np.uint8)
    images[:, 2, 2] = 255  # one bright pixel in the centre: where it lands gives the crop offset
    images[:, 0, 0] = 1  # a corner marker: which corner it lands near tells a flip
    data = array_data(ArraySplit(images, np.arange(n, dtype=np.int32) % 2))
    config = data_config(batch_size=100, data__augment=(f"crop({padding},constant)", "flip"))
    batches = np.concatenate([np.asarray(b["image"]) for b in device.train_batches(data, config, 0, make_mesh())])
    ys, xs = np.nonzero(batches[..., 0] == 255)[1:]
    shifts = np.stack([ys, xs], 1) - 2
    assert set(np.unique(shifts)) == set(range(-padding, padding + 1))  # every offset occurs
    counts = np.unique(shifts[:, 0], return_counts=True)[1]
    assert counts.min() > 0.8 * n / 5 and counts.max() < 1.2 * n / 5  # uniform over the 5 offsets
    flipped = []
    for image in batches[..., 0]:
        marker = np.nonzero(image == 1)
        if len(marker[1]):  # visible: left of the bright pixel unless flipped
            flipped.append(marker[1][0] > np.nonzero(image == 255)[1][0])
    assert len(flipped) > n / 3 and 0.45 < np.mean(flipped) < 0.55  # about half are flipped


def test_unsupported_augmentations_and_streamed_splits_fail_clearly(digits):
    with pytest.raises(ConfigError, match=r"\['rotate'\], which data\.pipeline='device' does not run; .*crop, flip"):
        next(device.train_batches(digits, data_config(data__augment=("rotate",)), 0, make_mesh()))
    with pytest.raises(ConfigError, match=r"config\.data\.pipeline='fast' is not supported; .*device, tfdata"):
        load_data(data_config(data__pipeline="fast"))


def test_device_path_runs_without_tensorflow():
    script = (
        "import sys; sys.modules['tensorflow'] = None\n"  # any import of tensorflow now fails
        "from tests.data.conftest import data_config\n"
        "from dl4cv_jax.data import load_data, device\n"
        "from dl4cv_jax.train.sharding import make_mesh\n"
        "config = data_config(batch_size=64, data__pipeline='device', data__augment=('crop(2)', 'flip', 'cutout(3)'))\n"
        "data = load_data(config)\n"
        "batch = next(device.train_batches(data, config, 0, make_mesh()))\n"
        "assert batch['image'].shape == (64, 8, 8, 1)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_training_on_device_equals_training_through_tf_data(digits):
    import dataclasses

    from dl4cv_jax.train.loop import build_trainer

    config_overrides = {"batch_size": 64, "data__augment": ("crop(2)", "flip", "cutmix")}
    config = data_config(**config_overrides)
    trainer, initial = build_trainer(config, digits)
    final = {}
    for pipeline in ("tfdata", "device"):  # one trainer, one compiled step: only the batches' source differs
        run = dataclasses.replace(trainer, config=data_config(**config_overrides, data__pipeline=pipeline))
        state = jax.tree.map(lambda x: x.copy(), initial)  # the step donates its input state
        for batch in run.train_batches(epoch=1):
            state, metrics = run.train_step(state, batch)
        final[pipeline] = (jax.device_get(state.params), float(metrics["loss"]))
    assert final["device"][1] == final["tfdata"][1]
    for a, b in zip(jax.tree.leaves(final["device"][0]), jax.tree.leaves(final["tfdata"][0]), strict=True):
        np.testing.assert_array_equal(a, b)
