"""Class-folder source: layouts, file types, channel conversion, resizing and errors, on tiny PIL-written files."""

import pathlib

import numpy as np
import pytest
from PIL import Image

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import eval_batches, load_data, train_batches
from dl4cv_jax.data.dataset import ArraySplit, FileSplit
from tests.data.conftest import data_config

CLASSES = ("cat", "dog", "emu")


def write_image(path: pathlib.Path, array: np.ndarray, mode: str | None = None, **save_args) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path, **save_args)


def write_split(root: pathlib.Path, split: str, per_class: int, size=(8, 8), seed=0) -> dict[str, np.ndarray]:
    """Random RGB PNGs root/split/<class>/<i>.png; returns {path: pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    for name in CLASSES:
        for i in range(per_class):
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = root / split / name / f"{i:03d}.png"
            write_image(path, pixels)
            written[str(path)] = pixels
    return written


def folder_config(root: pathlib.Path, **overrides):
    return data_config(data__source="folder", data__dir=str(root), batch_size=4, **overrides)


def test_train_val_test_folders(tmp_path):
    write_split(tmp_path, "train", 5)
    write_split(tmp_path, "val", 2, seed=1)
    write_split(tmp_path, "test", 3, seed=2)
    data = load_data(folder_config(tmp_path))
    assert data.class_names == CLASSES and data.image_shape == (8, 8, 3)
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [15, 6, 9]
    assert data.name == tmp_path.name
    assert np.bincount(data.split("test").labels).tolist() == [3, 3, 3]
    assert all(isinstance(data.split(s), ArraySplit) for s in ("train", "val", "test"))


def test_pixels_and_labels_come_from_the_files(tmp_path):
    written = write_split(tmp_path, "train", 2)
    write_split(tmp_path, "test", 1)
    data = load_data(folder_config(tmp_path, data__val_fraction=0.0))
    train = data.split("train")
    expected = np.stack(list(written.values()))  # class folders in sorted order, files sorted
    np.testing.assert_array_equal(train.images, expected)
    np.testing.assert_array_equal(train.labels, [0, 0, 1, 1, 2, 2])


def test_train_only_carves_val_and_test_as_fractions_of_train(tmp_path):
    write_split(tmp_path, "train", 10)
    data = load_data(folder_config(tmp_path))
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [18, 6, 6]
    for split in ("train", "val", "test"):
        counts = np.bincount(data.split(split).labels, minlength=3)
        assert counts.max() - counts.min() == 0  # 6 / 2 / 2 of each class


def test_train_and_test_carves_only_val(tmp_path):
    write_split(tmp_path, "train", 10)
    write_split(tmp_path, "test", 1)
    data = load_data(folder_config(tmp_path, data__val_fraction=0.1))
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [27, 3, 3]
    assert sorted(data.split("val").labels) == [0, 1, 2]


def test_non_image_files_and_hidden_folders_are_ignored(tmp_path):
    write_split(tmp_path, "train", 2)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "train" / ".cache").mkdir()
    (tmp_path / "train" / "README.md").write_text("top-level file")
    write_image(tmp_path / "train" / "dog" / "UPPER.JPG", np.zeros((8, 8, 3), np.uint8))
    data = load_data(folder_config(tmp_path, data__val_fraction=0.0, data__test_fraction=0.0))
    assert data.class_names == CLASSES and data.num_examples("train") == 7


def test_every_format_and_mode_converts_to_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    folder = tmp_path / "train" / "cat"
    write_image(folder / "a_gray.png", gray)
    write_image(folder / "b_rgba.png", rgb, "RGBA")
    write_image(folder / "c_palette.png", rgb, "P")
    write_image(folder / "d_rgb.bmp", rgb)
    write_image(folder / "e_rgb.gif", rgb)
    write_image(folder / "f_rgb.jpeg", rgb, quality=95)
    write_image(tmp_path / "train" / "dog" / "0.png", rgb)
    data = load_data(folder_config(tmp_path, data__channels=3, data__val_fraction=0.0, data__test_fraction=0.0))
    images = data.split("train").images
    assert images.shape == (7, 8, 8, 3)
    np.testing.assert_array_equal(images[0], np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(images[1], rgb)  # alpha dropped
    for i, name in [(2, "c_palette.png"), (4, "e_rgb.gif")]:  # palette images: PIL's own RGB rendering
        np.testing.assert_array_equal(images[i], np.asarray(Image.open(folder / name).convert("RGB")))
    np.testing.assert_array_equal(images[3], rgb)
    pil_jpeg = np.asarray(Image.open(folder / "f_rgb.jpeg").convert("RGB")).astype(int)
    np.testing.assert_array_equal(images[5], pil_jpeg)  # same libjpeg, same accurate IDCT


def test_rgb_to_one_channel_matches_pil_luma(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    write_image(tmp_path / "train" / "cat" / "rgb.png", rgb)
    write_image(tmp_path / "train" / "dog" / "rgb.png", rgb)
    data = load_data(folder_config(tmp_path, data__channels=1, data__val_fraction=0.0, data__test_fraction=0.0))
    pil_gray = np.asarray(Image.fromarray(rgb).convert("L")).astype(int)
    assert data.image_shape == (8, 8, 1)
    assert np.abs(data.split("train").images[0, ..., 0].astype(int) - pil_gray).max() <= 1


def test_channels_zero_follows_the_first_image(tmp_path):
    write_image(tmp_path / "train" / "a" / "0.png", np.zeros((8, 8), np.uint8))
    write_image(tmp_path / "train" / "b" / "0.png", np.full((8, 8, 3), 200, np.uint8))
    data = load_data(folder_config(tmp_path, data__val_fraction=0.0, data__test_fraction=0.0))
    assert data.image_shape == (8, 8, 1)
    assert data.split("train").images[1].max() == 200  # gray of a uniform colour is that level


def test_resize_to_image_size(tmp_path):
    write_image(tmp_path / "train" / "a" / "big.png", np.full((20, 12, 3), 77, np.uint8))
    write_image(tmp_path / "train" / "a" / "small.png", np.full((5, 6, 3), 9, np.uint8))
    write_image(tmp_path / "train" / "b" / "0.png", np.full((5, 6, 3), 9, np.uint8))
    data = load_data(folder_config(tmp_path, data__image_size=7, data__val_fraction=0.0, data__test_fraction=0.0))
    images = data.split("train").images
    assert data.image_shape == (7, 7, 3) and images.shape == (3, 7, 7, 3)
    assert np.all(images[0] == 77) and np.all(images[1] == 9)  # a uniform image stays uniform


def test_images_of_another_size_name_the_file(tmp_path):
    write_image(tmp_path / "train" / "a" / "0.png", np.zeros((8, 8, 3), np.uint8))
    write_image(tmp_path / "train" / "a" / "1_odd.png", np.zeros((8, 9, 3), np.uint8))
    write_image(tmp_path / "train" / "b" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"config\.data\.image_size=0 .*1_odd\.png is 8x9"):
        load_data(folder_config(tmp_path, data__val_fraction=0.0, data__test_fraction=0.0))


def test_corrupt_file_error_names_the_file(tmp_path):
    write_split(tmp_path, "train", 5)
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(ConfigError, match=r"cannot decode image file .*broken\.png"):
        load_data(folder_config(tmp_path))


def test_missing_dir_and_layout_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.data\.dir='.*nowhere' is not a folder"):
        load_data(folder_config(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"config\.data\.dir=.*has no class folders"):
        load_data(folder_config(tmp_path / "empty"))
    write_split(tmp_path / "no_train", "val", 2)
    with pytest.raises(ConfigError, match=r"config\.data\.dir=.*has val/ but no train/"):
        load_data(folder_config(tmp_path / "no_train"))


def test_unknown_class_in_test_is_an_error(tmp_path):
    write_split(tmp_path, "train", 2)
    write_image(tmp_path / "test" / "yak" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"test/ has class folders that train/ lacks: \['yak'\]"):
        load_data(folder_config(tmp_path))


@pytest.mark.parametrize("channels", [1, 3])
def test_files_decoded_per_pass_give_the_same_batches_as_in_memory(tmp_path, channels):
    write_split(tmp_path, "train", 8)
    overrides = dict(data__augment=("crop", "flip"), data__crop_padding=2, data__image_size=6, data__channels=channels)
    in_memory = load_data(folder_config(tmp_path, **overrides))
    config = folder_config(tmp_path, **overrides)
    config.data.max_in_memory_mb = 0
    from_files = load_data(config)
    assert isinstance(from_files.split("train"), FileSplit) and "files" in from_files.describe()
    np.testing.assert_allclose(from_files.mean, in_memory.mean, atol=1e-12)
    for a, b in zip(train_batches(in_memory, config, 1), train_batches(from_files, config, 1), strict=True):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    for a, b in zip(eval_batches(in_memory, "val", config), eval_batches(from_files, "val", config), strict=True):
        for key in ("image", "label", "mask"):
            np.testing.assert_array_equal(a[key], b[key])
