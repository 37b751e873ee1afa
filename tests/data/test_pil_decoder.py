"""PIL's decoder (for machines without TensorFlow) against TensorFlow's, file format by file format."""

import numpy as np
import pytest
from PIL import Image

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import image_decoder, images, pil_images

SHAPE = (12, 10, 3)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """One small file per format and mode a folder may hold: {name: path}."""
    root = tmp_path_factory.mktemp("formats")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, SHAPE, dtype=np.uint8)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    wide = np.minimum(rgb[..., 0].astype(np.uint16) * 257 + rng.integers(0, 256, SHAPE[:2]), 65535)
    files = {
        "rgb.jpg": (Image.fromarray(rgb), {"quality": 75}),
        "gray.jpg": (Image.fromarray(rgb[..., 0]), {"quality": 75}),
        "rgba.png": (Image.fromarray(np.dstack([rgb, rgb[..., 0]]), "RGBA"), {}),
        "gray_alpha.png": (Image.fromarray(np.dstack([rgb[..., 0], rgb[..., 1]]), "LA"), {}),
        "gray.png": (Image.fromarray(rgb[..., 0]), {}),
        "gray16.png": (Image.fromarray(wide.astype(np.uint16)), {}),
        "palette.png": (palette, {}),
        "palette_transparent.png": (palette, {"transparency": 0}),
        "palette.gif": (palette, {}),
        "animated.gif": (Image.fromarray(rgb), {"save_all": True, "append_images": [Image.fromarray(255 - rgb)]}),
        "palette.bmp": (palette, {}),
        "rgb.bmp": (Image.fromarray(rgb), {}),
    }
    paths = {}
    for name, (image, options) in files.items():
        paths[name] = str(root / name)
        image.save(paths[name], **options)
    return paths


@pytest.mark.parametrize("channels", [3, 1])
def test_every_format_decodes_to_tensorflows_pixels(image_files, channels):
    shape = (*SHAPE[:2], channels)
    for name, path in image_files.items():
        assert pil_images.probe_file(path) == images.probe_file(path), name
        expected = images.read_image(path, shape, False)
        np.testing.assert_array_equal(pil_images.read_image(path, shape, False), expected, err_msg=name)


def test_batch_decoding_flags_corrupt_and_wrongly_sized_files_like_tensorflow(image_files, tmp_path):
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff not really a jpeg")
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(small)
    paths = np.array([*image_files.values(), str(corrupt), str(small)])
    got = pil_images.decode_all(paths, SHAPE, False, "bilinear")
    expected = images.decode_all(paths, SHAPE, False, "bilinear")
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert got[1].tolist() == [True] * len(image_files) + [False, True]  # readable
    assert got[2].tolist() == [True] * len(image_files) + [True, False]  # of the split's size


def test_bilinear_resizing_is_within_one_level_of_tensorflows(image_files):
    for shape in [(7, 7, 3), (20, 20, 3), (7, 7, 1)]:  # data.image_size is square
        paths = np.array([image_files["rgb.jpg"], image_files["rgba.png"], image_files["gray.png"]])
        got = pil_images.decode_all(paths, shape, True, "bilinear")[0].astype(int)
        expected = images.decode_all(paths, shape, True, "bilinear")[0].astype(int)
        assert np.abs(got - expected).max() <= 1, shape


def test_resize_methods_pil_lacks_fail_naming_the_key_and_the_choices(image_files):
    with pytest.raises(ConfigError, match=r"resize_method='area' needs TensorFlow.*choose one of: bilinear, bicubic"):
        pil_images.decode_all(np.array([image_files["rgb.jpg"]]), (5, 5, 3), True, "area")


def test_without_tensorflow_the_loader_uses_pil_and_names_bad_files(image_files, tmp_path, monkeypatch):
    monkeypatch.setattr(image_decoder, "tensorflow_installed", lambda: False)
    paths = np.array(list(image_files.values()))
    decoded = image_decoder.decode_files(paths, SHAPE, False)
    np.testing.assert_array_equal(decoded, images.decode_all(paths, SHAPE, False, "bilinear")[0])
    corrupt = tmp_path / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ConfigError, match=f"config.data.dir: cannot decode image file {corrupt}"):
        image_decoder.decode_files(np.array([*paths, str(corrupt)]), SHAPE, False)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(small)
    with pytest.raises(ConfigError, match=f"needs every image to be 12x10 .* but {small} is 5x5"):
        image_decoder.decode_files(np.array([*paths, str(small)]), SHAPE, False)
