"""data.resize_shorter: the shorter side resized keeping the aspect ratio, then the central image_size crop.

The reference is torchvision's Resize(shorter) + CenterCrop(size) arithmetic, written out here on its own
(`int(shorter * long / short)`, offsets `int(round(excess / 2))` with Python's ties-to-even), applied with PIL
and with a full-image tf.image.resize sliced at those offsets: the code under test must land on the same pixels.
Shapes are chosen so one offset is a tie that rounds down (14.5 -> 14) and one a tie that rounds up (15.5 -> 16).
"""

import pathlib

import numpy as np
import pytest
from PIL import Image

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data, pil_images
from dl4cv_jax.data.arrays import arrays_source
from dl4cv_jax.data.image_decoder import tensorflow_installed
from dl4cv_jax.evaluate.predict import load_images
from tests.conftest import tiny_digits_config

SHORTER, SIZE = 36, 32


def torchvision_box(height: int, width: int) -> tuple[int, int, int, int]:
    """(new height, new width, top, left), as torchvision.transforms.v2 Resize(SHORTER) + CenterCrop(SIZE)."""
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = SHORTER, int(SHORTER * long / short)
    new_height, new_width = (new_long, new_short) if width <= height else (new_short, new_long)
    return new_height, new_width, int(round((new_height - SIZE) / 2.0)), int(round((new_width - SIZE) / 2.0))


def noise_image(height: int, width: int, seed: int) -> np.ndarray:
    """Pixel noise: a crop one pixel off the right place differs by tens of levels, not by rounding."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def pil_reference(image: np.ndarray) -> np.ndarray:
    new_height, new_width, top, left = torchvision_box(*image.shape[:2])
    resized = Image.fromarray(image).resize((new_width, new_height), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(resized.crop((left, top, left + SIZE, top + SIZE)))


def tf_reference(image: np.ndarray, shift: int = 0) -> np.ndarray:
    """The full image resized by tf.image.resize, sliced at the reference offsets (+ `shift` columns)."""
    import tensorflow as tf

    new_height, new_width, top, left = torchvision_box(*image.shape[:2])
    resized = tf.image.resize(image, [new_height, new_width], method="bilinear", antialias=True).numpy()
    crop = resized[top : top + SIZE, left + shift : left + shift + SIZE]
    return np.clip(np.round(crop), 0, 255).astype(np.uint8)


def test_reference_geometry_has_both_kinds_of_tie():
    # Landscape 40x68: 36x61, excess 29 across -> left 14 (14.5 rounds down); portrait 70x40: 63x36 -> top 16.
    assert torchvision_box(40, 68) == (36, 61, 2, 14)
    assert torchvision_box(70, 40) == (63, 36, 16, 2)


@pytest.mark.parametrize("shape", [(40, 68), (70, 40)])
def test_pil_decoder_crops_at_torchvision_offsets(tmp_path, shape):
    image = noise_image(*shape, seed=1)
    path = tmp_path / "image.png"
    Image.fromarray(image).save(path)
    got = pil_images.read_image(str(path), (SIZE, SIZE, 3), True, "bilinear", SHORTER)
    assert got.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(got, pil_reference(image))


@pytest.mark.skipif(not tensorflow_installed(), reason="TensorFlow not installed")
@pytest.mark.parametrize("shape", [(40, 68), (70, 40)])
def test_arrays_source_crops_at_torchvision_offsets(shape):
    images = np.stack([noise_image(*shape, seed=k) for k in range(4)])
    source = arrays_source((images, np.arange(4) % 2), image_size=SIZE, resize_shorter=SHORTER)
    got = source.splits["train"].images
    assert got.shape == (4, SIZE, SIZE, 3)
    for k in range(4):
        np.testing.assert_array_equal(got[k], tf_reference(images[k]))
        # TensorFlow's and PIL's bilinear filters agree within a level or so on the same box, and a box one
        # column off is far away: the offsets, not the filter, decide this test.
        assert np.abs(got[k].astype(int) - pil_reference(images[k])).mean() < 1.5
        assert np.abs(got[k].astype(int) - tf_reference(images[k], shift=1)).mean() > 20


@pytest.mark.skipif(not tensorflow_installed(), reason="TensorFlow not installed")
def test_folder_source_and_predict_use_the_policy(tmp_path):
    # Portrait and landscape files in one folder source, decoded in memory (the usual path) and, for predict,
    # one file at a time: both must give the torchvision crop of each file.
    originals = {}
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        for k, shape in enumerate([(40, 68), (70, 40)]):
            path = tmp_path / label / f"{k}.png"
            originals[str(path)] = noise_image(*shape, seed=len(originals))
            Image.fromarray(originals[str(path)]).save(path)
    config = tiny_digits_config()
    config.data.source, config.data.dir = "folder", str(tmp_path)
    config.data.image_size, config.data.resize_shorter = SIZE, SHORTER
    config.data.val_fraction = config.data.test_fraction = 0.0
    data = load_data(config)
    train = data.splits["train"]
    assert data.image_shape == (SIZE, SIZE, 3)
    for image, path in zip(train.images, train.paths, strict=True):
        np.testing.assert_array_equal(image, tf_reference(originals[str(path)]))
    paths = [pathlib.Path(p) for p in originals]
    predicted = load_images(paths, data.image_shape, "bilinear", resize_shorter=SHORTER)
    for image, path in zip(predicted, paths, strict=True):
        np.testing.assert_array_equal(image, tf_reference(originals[str(path)]))


@pytest.mark.skipif(not tensorflow_installed(), reason="TensorFlow not installed")
def test_synthetic_source_through_load_data():
    config = tiny_digits_config()
    config.data.source, config.data.synthetic_shape, config.data.synthetic_examples = "synthetic", (40, 68, 3), 20
    raw = load_data(config).splits["train"].images
    config.data.image_size, config.data.resize_shorter = SIZE, SHORTER
    data = load_data(config)
    assert data.image_shape == (SIZE, SIZE, 3)
    # load_data carves and reorders the same way for both, so the k-th images correspond.
    for before, after in zip(raw, data.splits["train"].images, strict=True):
        np.testing.assert_array_equal(after, tf_reference(before))


@pytest.mark.parametrize(
    ("image_size", "resize_shorter"),
    [(0, 256), (224, 200), (32, -1)],
)
def test_bad_policy_is_one_config_error(image_size, resize_shorter):
    config = tiny_digits_config()
    config.data.image_size, config.data.resize_shorter = image_size, resize_shorter
    with pytest.raises(ConfigError, match=r"config\.data\.resize_shorter=") as error:
        load_data(config)
    assert "\n" not in str(error.value)
