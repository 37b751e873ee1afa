"""--mode=preview writes a PNG grid of the training images as the model sees them, with readable labels."""

import numpy as np
from PIL import Image

from dl4cv_jax.data.preview import label_text, training_images, write_preview
from dl4cv_jax.data.sources import load_data
from tests.data.conftest import data_config


def test_preview_png_is_written(tmp_path):
    config = data_config(batch_size=16, data__augment=("crop(1)", "flip", "mixup(0.4)"))
    path = write_preview(config, tmp_path, rows=2, cols=4)
    assert path == tmp_path / "augmentations.png"
    with Image.open(path) as image:
        assert image.size[0] > 400 and image.size[1] > 200


def test_preview_images_are_the_pipeline_batches():
    config = data_config(batch_size=16, data__augment=("crop(1)", "flip"))
    data = load_data(config)
    images, labels = training_images(data, config, 20)  # more than one batch
    assert images.shape == (20, 8, 8, 1) and labels.shape == (20,)
    from dl4cv_jax.data.pipeline import train_batches

    first = next(iter(train_batches(data, config, 0)))
    np.testing.assert_array_equal(images[:16], first["image"])


def test_label_text_for_ids_one_hot_and_mixed_targets():
    names = ("cat", "dog", "emu")
    assert label_text(np.int32(1), names) == "dog"
    assert label_text(np.array([0.0, 0.0, 1.0]), names) == "emu"
    assert label_text(np.array([0.3, 0.0, 0.7]), names) == "emu 0.70 / cat 0.30"
