"""Augmentations against numpy references on fixed inputs, their parameter draws, and the config format."""

import numpy as np
import pytest
from matplotlib import colors
from scipy import ndimage

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import augment_ops as ops
from dl4cv_jax.data import augment_params as params
from dl4cv_jax.data.augment import augment_names, draw_tables, make_augmentations, parse_item
from dl4cv_jax.data.tf_runtime import tf
from tests.data.conftest import unique_images

LUMA = np.array([0.299, 0.587, 0.114])


def run(op, images, rows, **kwargs):
    return ops.OPS[op](tf.constant(images), tf.constant(rows), **kwargs).numpy()


def as_uint8(x):
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# --- Crops, flips, quarter turns ---------------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["reflect", "constant"])
def test_crop_matches_numpy_pad_and_slice_at_every_offset(fill):
    padding, image = 2, unique_images(1, shape=(5, 6, 2))[0]
    offsets = [(y, x) for y in range(2 * padding + 1) for x in range(2 * padding + 1)]
    out = run("crop", np.repeat(image[None], len(offsets), 0), np.array(offsets, np.int32), padding=padding, fill=fill)
    padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=fill)
    for got, (y, x) in zip(out, offsets, strict=True):
        np.testing.assert_array_equal(got, padded[y : y + 5, x : x + 6])


def test_reflect_padding_mirrors_without_repeating_the_edge():
    image = np.arange(9, dtype=np.uint8).reshape(1, 3, 3, 1)
    out = run("crop", image, np.array([[0, 0]], np.int32), padding=1)[0, ..., 0]
    np.testing.assert_array_equal(out, [[4, 3, 4], [1, 0, 1], [4, 3, 4]])


def test_flips_match_numpy_and_flipping_twice_is_identity():
    images, flips = unique_images(4), np.array([True, False, True, False])
    for op, axis in (("flip", 1), ("vflip", 0)):
        out = run(op, images, flips)
        for got, image, flipped in zip(out, images, flips, strict=True):
            np.testing.assert_array_equal(got, np.flip(image, axis=axis) if flipped else image)
        np.testing.assert_array_equal(run(op, out, flips), images)


def test_rot90_matches_numpy_for_every_quarter_turn():
    images = unique_images(4, shape=(5, 5, 3))
    out = run("rot90", images, np.arange(4, dtype=np.int32))
    for k in range(4):
        np.testing.assert_array_equal(out[k], np.rot90(images[k], k))


# --- Warps: rotation, zoom, shear, translation -------------------------------------------------------------


def warp(images, transforms, fill="reflect"):
    return run("warp", images, transforms.astype(np.float32), fill=fill)


def test_rotation_by_quarter_turns_equals_rot90():
    images = unique_images(3, shape=(7, 7, 3))
    out = warp(images, params.centred(params.rotation_matrices(np.array([90.0, 180.0, -90.0])), 7, 7))
    for got, image, k in zip(out, images, (1, 2, 3), strict=True):
        np.testing.assert_array_equal(got, np.rot90(image, k))


def test_zero_rotation_unit_zoom_zero_shear_and_zero_shift_are_identity():
    images = unique_images(4, shape=(6, 9, 3))
    transforms = np.concatenate(
        [
            params.centred(params.rotation_matrices(np.zeros(1)), 6, 9),
            params.centred(params.zoom_matrices(np.ones(1)), 6, 9),
            params.centred(params.shear_matrices(np.zeros(1)), 6, 9),
            params.translation_transforms(np.zeros((1, 2))),
        ]
    )
    np.testing.assert_array_equal(warp(images, transforms), images)


def test_integer_translation_shifts_pixels_and_fills_with_zeros():
    image = unique_images(1, shape=(6, 7, 1))[0]
    out = warp(image[None], params.translation_transforms(np.array([[2.0, -1.0]])), fill="constant")[0]
    expected = np.zeros_like(image)
    expected[2:, :-1] = image[:-2, 1:]  # moved 2 down and 1 left
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "matrices",
    [params.rotation_matrices([33.0]), params.zoom_matrices([1.4]), params.shear_matrices([20.0])],
    ids=["rotate33", "zoom1.4", "shear20"],
)
def test_warp_matches_scipy_bilinear_sampling_inside_the_image(matrices):
    image = np.random.default_rng(0).integers(0, 256, (12, 12, 1), dtype=np.uint8)
    transform = params.centred(matrices, 12, 12)[0]
    out = warp(image[None], transform[None], fill="constant")[0, ..., 0]
    ys, xs = np.mgrid[0:12, 0:12].astype(np.float64)
    src_x = transform[0] * xs + transform[1] * ys + transform[2]
    src_y = transform[3] * xs + transform[4] * ys + transform[5]
    expected = ndimage.map_coordinates(image[..., 0].astype(np.float64), [src_y, src_x], order=1)
    inside = (src_x >= 0) & (src_x <= 11) & (src_y >= 0) & (src_y <= 11)
    assert inside.sum() > 60
    assert np.abs(out[inside].astype(int) - as_uint8(expected)[inside].astype(int)).max() <= 1


def test_consecutive_warps_are_resampled_once_as_their_composition():
    images = unique_images(4, shape=(9, 9, 3))
    augs = make_augmentations(("rotate(40)", "zoom(0.3)", "crop(2)", "flip"), 2, (9, 9, 3))
    angles, scales = np.array([10.0, -25.0, 33.0, 0.0]), np.array([1.2, 0.8, 1.0, 1.3])
    tables = [
        params.centred(params.rotation_matrices(angles), 9, 9),
        params.centred(params.zoom_matrices(scales), 9, 9),
        np.array([[0, 4], [2, 2], [1, 3], [4, 0]], np.int32),
        np.array([True, False, True, False]),
    ]
    got = ops.apply_augmentations(augs, [tf.constant(t) for t in tables], tf.constant(images), tf.range(4)).numpy()
    rotated = params.rotation_matrices(angles)
    combined = params.centred(np.einsum("nij,njk->nik", rotated, params.zoom_matrices(scales)), 9, 9)
    warped = warp(images, combined)
    expected = run("flip", run("crop", warped, tables[2], padding=2, fill="reflect"), tables[3])
    assert np.abs(got.astype(int) - expected).max() <= 1  # float32 composition vs float64


def test_zoom_in_by_two_magnifies_the_centre():
    image = np.zeros((9, 9, 1), np.uint8)
    image[3:6, 3:6] = 200  # a 3x3 square in the middle
    out = warp(image[None], params.centred(params.zoom_matrices([2.0]), 9, 9), fill="constant")[0, ..., 0]
    assert (out == 200).sum() == 25  # sources in the square's [3, 5] x [3, 5]: outputs [2, 6] x [2, 6]
    assert out[4, 4] == 200 and out[0, 0] == 0


# --- Colour, noise, cutout ---------------------------------------------------------------------------------


def test_brightness_and_contrast_match_numpy():
    images = unique_images(2, shape=(4, 5, 3))
    deltas = np.array([0.1, -0.3], np.float32)
    np.testing.assert_array_equal(
        run("brightness", images, deltas), as_uint8(images + 255.0 * deltas[:, None, None, None])
    )
    factors = np.array([0.5, 1.7], np.float32)
    x = images.astype(np.float64)
    mean = x.mean(axis=(1, 2), keepdims=True)
    expected = as_uint8(mean + factors[:, None, None, None] * (x - mean))
    assert np.abs(run("contrast", images, factors).astype(int) - expected).max() <= 1


def test_saturation_zero_is_gray_one_is_identity():
    images = unique_images(2, shape=(4, 5, 3))
    out = run("saturation", images, np.array([0.0, 1.0], np.float32))
    gray = as_uint8(images[0].astype(np.float64) @ LUMA)
    assert np.abs(out[0].astype(int) - gray[..., None]).max() <= 1
    np.testing.assert_array_equal(out[1], images[1])


def test_hue_shift_matches_matplotlib_hsv_and_a_full_turn_is_identity():
    images = unique_images(3, shape=(4, 5, 3))
    shifts = np.array([0.1, -0.25, 1.0], np.float32)
    out = run("hue", images, shifts)
    for got, image, shift in zip(out, images, shifts, strict=True):
        hsv = colors.rgb_to_hsv(image / 255.0)
        hsv[..., 0] = np.mod(hsv[..., 0] + shift, 1.0)
        assert np.abs(got.astype(int) - as_uint8(colors.hsv_to_rgb(hsv) * 255.0)).max() <= 1
    assert np.abs(out[2].astype(int) - images[2]).max() <= 1


def test_noise_is_per_example_and_has_the_asked_std():
    images = np.full((3, 32, 32, 1), 128, np.uint8)
    seeds = np.array([[1, 2], [3, 4], [1, 2]], np.int64)
    out = run("noise", images, seeds, std=0.05).astype(float)
    np.testing.assert_array_equal(out[0], out[2])  # same seed, same noise, whatever else is in the batch
    assert not np.array_equal(out[0], out[1])
    assert abs(out.std() - 0.05 * 255) < 1.0 and abs(out.mean() - 128) < 1.0
    np.testing.assert_array_equal(run("noise", images, seeds, std=0.0), images)


def test_cutout_area_is_the_clipped_square():
    images = np.full((3, 10, 12, 3), 255, np.uint8)
    boxes = params.clipped_boxes(np.array([[5, 6], [0, 0], [9, 11]]), np.full(3, 4), np.full(3, 4), 10, 12)
    out = run("cutout", images, boxes, fill=0)
    zeros = (out == 0).all(axis=-1).sum(axis=(1, 2))
    np.testing.assert_array_equal(zeros, [16, 4, 9])  # inside; top-left 2x2 left; bottom-right 3x3 left
    assert (out[0, 3:7, 4:8] == 0).all()


# --- mixup and cutmix --------------------------------------------------------------------------------------


def onehot(labels, classes=3):
    return np.eye(classes, dtype=np.float32)[labels]


def test_mixup_mixes_neighbours_in_the_batch():
    images = unique_images(4, shape=(3, 3, 1))
    labels = onehot([0, 1, 2, 0])
    lams = np.array([1.0, 0.5, 0.25, 0.0], np.float32)
    x, y = ops.mixup(tf.constant(images), tf.constant(labels), tf.constant(lams))
    np.testing.assert_array_equal(x[0], images[0])  # lambda 1: itself
    np.testing.assert_array_equal(x[3], images[2])  # lambda 0: its partner (3 <-> 2)
    expected = as_uint8(0.5 * images[1].astype(np.float32) + 0.5 * images[0])
    assert np.abs(x[1].numpy().astype(int) - expected).max() <= 1
    np.testing.assert_allclose(y.numpy()[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(y.numpy()[2], [0.75, 0.0, 0.25])
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1.0)


def test_cutmix_pastes_the_partner_box_and_weights_labels_by_area():
    images = np.stack([np.full((4, 4, 1), 10), np.full((4, 4, 1), 200)]).astype(np.uint8)
    boxes = np.array([[0, 0, 2, 2], [0, 0, 0, 0]], np.int32)
    x, y = ops.cutmix(tf.constant(images), tf.constant(onehot([0, 1])), tf.constant(boxes))
    assert (x.numpy()[0, :2, :2] == 200).all() and (x.numpy()[0] == 10).sum() == 12
    np.testing.assert_array_equal(x[1], images[1])
    np.testing.assert_allclose(y.numpy(), [[0.75, 0.25, 0], [0, 1, 0]])


def test_cutmix_boxes_cover_one_minus_lambda():
    heights, widths = params.cutmix_box_sides(np.array([0.75, 0.0, 1.0]), 32, 32)
    np.testing.assert_array_equal(heights * widths, [256, 1024, 0])


# --- Parameter draws ---------------------------------------------------------------------------------------


def test_draws_depend_only_on_seed_epoch_and_position():
    augs = make_augmentations(("crop(2)", "flip", "rotate(30)", "cutout(3)"), 4, (8, 8, 1))
    first = draw_tables(augs, seed=0, epoch=0, n=500)
    for a, b in zip(first, draw_tables(augs, seed=0, epoch=0, n=500), strict=True):
        np.testing.assert_array_equal(a, b)
    for other in (draw_tables(augs, seed=0, epoch=1, n=500), draw_tables(augs, seed=1, epoch=0, n=500)):
        assert all(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))
    offsets, flips, rotations, boxes = first
    assert offsets.min() == 0 and offsets.max() == 4 and len(np.unique(offsets)) == 5
    assert 0.44 < flips.mean() < 0.56
    angles = np.degrees(np.arctan2(rotations[:, 3], rotations[:, 0]))
    assert -30 <= angles.min() < -27 and 27 < angles.max() <= 30
    assert ((boxes[:, 2] - boxes[:, 0]) <= 3).all() and (boxes[:, 2] > boxes[:, 0]).all()


def test_an_example_is_augmented_the_same_in_any_batch():
    images = unique_images(6, shape=(8, 8, 3))
    augs = make_augmentations(("crop(2)", "flip", "rotate(20)", "hue", "noise", "cutout(3)"), 4, (8, 8, 3))
    tables = [tf.constant(t) for t in draw_tables(augs, 0, 0, 6)]
    whole = ops.apply_augmentations(augs, tables, tf.constant(images), tf.range(6)).numpy()
    picked = np.array([4, 1])
    part = ops.apply_augmentations(augs, tables, tf.constant(images[picked]), tf.constant(picked)).numpy()
    np.testing.assert_array_equal(part, whole[picked])


# --- The config format -------------------------------------------------------------------------------------


def test_items_from_a_command_line_string_and_from_a_tuple():
    assert augment_names("crop(4,reflect),flip, rotate(15)") == ("crop(4,reflect)", "flip", "rotate(15)")
    assert augment_names(("crop", "flip,vflip")) == ("crop", "flip", "vflip")
    assert augment_names("") == () and augment_names(()) == ()
    assert parse_item("crop(4, constant)") == ("crop", {"padding": 4, "fill": "constant"})
    assert parse_item("rotate(fill=wrap, degrees=45)") == ("rotate", {"degrees": 45.0, "fill": "wrap"})
    assert parse_item("cutout") == ("cutout", {"size": 8, "fill": 0})


def test_crop_without_padding_uses_data_crop_padding():
    (crop,) = make_augmentations(("crop",), 3, (8, 8, 1))
    assert crop.args == {"padding": 3, "fill": "reflect"}


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("blur", "config.data.augment='blur' is not supported; choose one of: brightness, contrast, crop, cutmix"),
        ("rotate(abc)", "degrees='abc', which is not float; accepted: rotate(degrees=15.0, fill='reflect')"),
        ("rotate(200)", "needs 0 <= degrees <= 180; accepted: rotate("),
        ("crop(4, mirror)", "fill='mirror'; fill is one of reflect, constant"),
        ("crop(size=3)", "unexpected keyword argument 'size'"),
        ("flip(0.5, 1)", "too many positional arguments"),
        ("zoom(fraction=0.1, 2)", "positional parameter after a keyword one"),
        ("crop(4.5)", "padding='4.5', which is not int"),
        ("saturation", "needs RGB images, these have 1 channel(s)"),
        ("cutout(20)", "needs 1 <= size <= 8"),
        ("rot(", "is not of the form name or name(parameters)"),
    ],
)
def test_bad_items_name_the_item_and_what_is_accepted(item, expected):
    with pytest.raises(ConfigError) as error:
        make_augmentations((item,), 4, (8, 8, 1), num_classes=10)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_mixing_must_come_last_and_needs_classes():
    with pytest.raises(ConfigError, match=r"'mixup' must come after every per-example augmentation"):
        make_augmentations(("mixup", "flip"), 4, (8, 8, 1), num_classes=10)
    assert len(make_augmentations(("flip", "mixup", "cutmix"), 4, (8, 8, 1), num_classes=10)) == 3
    with pytest.raises(ConfigError, match=r"'cutmix' needs the number of classes"):
        make_augmentations(("cutmix",), 4, (8, 8, 1))


def test_padding_too_large_for_reflect_padding_names_crop_padding():
    with pytest.raises(ConfigError, match=r"config\.data\.crop_padding=8 .*8x8"):
        make_augmentations(("crop",), 8, (8, 8, 1))
    make_augmentations(("flip", "crop(8, constant)"), 8, (8, 8, 1))  # zeros can pad by any amount
