"""Folder source: the flat layout, every image mode, resize methods, corrupt files, file paths and class errors."""

import io

import numpy as np
import pytest
from PIL import Image

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.data.dataset import ArraySplit, FileSplit
from tests.data.conftest import data_config
from tests.data.test_folder import CLASSES, folder_config, write_image, write_split

NO_CARVING = dict(data__val_fraction=0.0, data__test_fraction=0.0)


def write_flat(root, per_class: int, size=(8, 8)) -> None:
    """root/<class>/<i>.png: the layout without train/val/test folders."""
    rng = np.random.default_rng(0)
    for name in CLASSES:
        for i in range(per_class):
            write_image(root / name / f"{i:03d}.png", rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def test_flat_layout_is_one_pool_carved_60_20_20(tmp_path):
    write_flat(tmp_path, 10)
    data = load_data(folder_config(tmp_path))
    assert data.class_names == CLASSES
    assert [data.num_examples(s) for s in ("train", "val", "test")] == [18, 6, 6]
    for split in ("train", "val", "test"):
        assert np.bincount(data.split(split).labels, minlength=3).tolist() == [data.num_examples(split) // 3] * 3


def test_paths_are_kept_aligned_with_labels_and_images(tmp_path):
    write_flat(tmp_path, 5)
    data = load_data(folder_config(tmp_path))
    for split in ("train", "val", "test"):
        held = data.split(split)
        assert isinstance(held, ArraySplit) and held.paths.dtype.kind == "U" and len(held.paths) == held.size
        for path, label, image in zip(held.paths, held.labels, held.images, strict=True):
            assert f"/{CLASSES[label]}/" in path
            np.testing.assert_array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    digits = load_data(data_config())
    assert digits.split("train").paths is None


MODES = [("1", "PNG"), ("LA", "PNG"), ("P", "BMP"), ("1", "BMP"), ("L", "BMP"), ("CMYK", "JPEG"), ("L", "GIF")]


@pytest.mark.parametrize(("mode", "fmt"), MODES, ids=[f"{m}-{f}" for m, f in MODES])
def test_every_mode_decodes_like_pil(tmp_path, mode, fmt):
    rgb = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    path = tmp_path / "train" / "cat" / f"x.{fmt.lower()}"
    path.parent.mkdir(parents=True)
    Image.fromarray(rgb).convert(mode).save(path, format=fmt)
    write_image(tmp_path / "train" / "dog" / "0.png", rgb)
    data = load_data(folder_config(tmp_path, data__channels=3, **NO_CARVING))
    expected = np.asarray(Image.open(path).convert("RGB")).astype(int)
    tolerance = 2 if fmt == "JPEG" else 0  # CMYK -> RGB rounding differs by a level or two
    assert np.abs(data.split("train").images[0].astype(int) - expected).max() <= tolerance


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path):
    levels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000
    write_image(tmp_path / "train" / "cat" / "deep.png", levels)
    write_image(tmp_path / "train" / "dog" / "0.png", np.zeros((8, 8), np.uint8))
    data = load_data(folder_config(tmp_path, **NO_CARVING))
    assert data.image_shape == (8, 8, 1)
    assert np.abs(data.split("train").images[0, ..., 0].astype(int) - levels // 257).max() <= 1


def test_resize_method_is_configurable(tmp_path):
    small = np.random.default_rng(3).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    write_image(tmp_path / "train" / "cat" / "0.png", small)
    write_image(tmp_path / "train" / "dog" / "0.png", small)
    nearest = load_data(folder_config(tmp_path, data__image_size=8, data__resize_method="nearest", **NO_CARVING))
    np.testing.assert_array_equal(nearest.split("train").images[0], small.repeat(2, axis=0).repeat(2, axis=1))
    bilinear = load_data(folder_config(tmp_path, data__image_size=8, **NO_CARVING))
    assert not np.array_equal(bilinear.split("train").images[0], nearest.split("train").images[0])
    with pytest.raises(ConfigError, match=r"config\.data\.resize_method='cubic' is not supported; .*bicubic"):
        load_data(folder_config(tmp_path, data__resize_method="cubic"))


def break_files(root):
    """One garbage file and one truncated JPEG among the images; returns their paths."""
    garbage = root / "train" / "dog" / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(jpeg, "JPEG")
    truncated = root / "train" / "emu" / "truncated.jpg"
    truncated.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    return garbage, truncated


def test_truncated_image_stops_with_its_name(tmp_path):
    write_split(tmp_path, "train", 5)
    (tmp_path / "train" / "emu" / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 40)
    with pytest.raises(ConfigError, match=r"cannot decode image file .*truncated\.jpg"):
        load_data(folder_config(tmp_path, **NO_CARVING))


@pytest.mark.parametrize("in_memory", [True, False])
def test_skip_corrupt_skips_and_counts(tmp_path, in_memory):
    write_split(tmp_path, "train", 10)
    bad = break_files(tmp_path)
    config = folder_config(tmp_path, data__skip_corrupt=True, data__max_in_memory_mb=2048 if in_memory else 0)
    data = load_data(config)
    assert sorted(data.skipped) == sorted(str(p) for p in bad)
    assert sum(data.num_examples(s) for s in ("train", "val", "test")) == 30
    assert "2 corrupt files skipped" in data.describe()
    assert isinstance(data.split("train"), ArraySplit if in_memory else FileSplit)
    assert not set(data.split("train").paths) & set(data.skipped)


def test_skip_corrupt_also_when_the_first_file_is_bad(tmp_path):
    write_split(tmp_path, "train", 4)
    (tmp_path / "train" / "cat" / "000.png").write_bytes(b"garbage")
    data = load_data(folder_config(tmp_path, data__skip_corrupt=True, **NO_CARVING))
    assert data.image_shape == (8, 8, 3) and data.num_examples("train") == 11


def test_class_errors(tmp_path):
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    write_image(tmp_path / "empty" / "train" / "dog" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"has classes without images in train/: \['cat'\]"):
        load_data(folder_config(tmp_path / "empty"))
    write_image(tmp_path / "single" / "cat" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"has a single class in it \('cat'\); need >= 2"):
        load_data(folder_config(tmp_path / "single"))


def test_a_class_missing_from_a_split_is_an_error(tmp_path):
    write_split(tmp_path / "test_lacks", "train", 5)
    write_image(tmp_path / "test_lacks" / "test" / "cat" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match=r"has classes without images in test/: \['dog', 'emu'\]"):
        load_data(folder_config(tmp_path / "test_lacks"))
    write_split(tmp_path / "too_few", "train", 2)  # 2 per class cannot fill train, val and test
    with pytest.raises(ConfigError, match=r"the (val|test) split has no images of classes"):
        load_data(folder_config(tmp_path / "too_few"))
