"""Bad files fail at once with one line naming the file (or folder) and what is accepted, exit status 1, no
traceback, and a workdir that existed before is left exactly as it was: image folders (empty, one class, a
zero-byte, unreadable or 20,000 x 20,000 image, a folder named like an image), eval and predict on workdirs
without the checkpoint asked for, and --images that hold no image. Each calls what main.py calls
(`main.run_mode`) in-process; the command line and the config: tests/test_bad_input.py.
"""

import os
import shutil

import pytest

from dl4cv_jax.train.loop import train_and_evaluate
from tests.bad_input_checks import (
    assert_one_line,
    exit_line,
    image_folder,
    snapshot,
    write_huge_png,
    write_images,
)
from tests.conftest import tiny_digits_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A digits workdir trained for one epoch (checkpoints best and latest at its last step), shared by the cases."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    train_and_evaluate(tiny_digits_config(num_epochs=1), workdir, show_progress=False)
    return workdir


def last_step(workdir) -> int:
    return max(int(p.name) for p in (workdir / "checkpoints" / "latest").iterdir() if p.name.isdigit())


@pytest.fixture
def untouched(trained):
    """The trained workdir, checked after the test to be byte for byte what it was before."""
    before = snapshot(trained)
    yield trained
    assert snapshot(trained) == before, "a failed command changed the workdir"


@pytest.fixture
def no_checkpoints(trained, tmp_path):
    """A workdir with the trained run's config.json and data_info.json but no checkpoints (e.g. killed early)."""
    workdir = tmp_path / "no_checkpoints"
    workdir.mkdir()
    for name in ("config.json", "data_info.json"):
        shutil.copy(trained / name, workdir / name)
    before = snapshot(workdir)
    yield workdir
    assert snapshot(workdir) == before


def folder_line(tmp_path, root, **overrides) -> str:
    """The line `--mode=train` prints for a folder source at `root`; checks that nothing was written."""
    config = tiny_digits_config(data__source="folder", data__dir=str(root), **overrides)
    workdir = tmp_path / "run"
    line = exit_line("train", config=config, workdir=workdir)
    assert not workdir.exists(), "nothing is written for data that cannot be read"
    return line


# --- Image folders (data.source=folder) -----------------------------------------------------------------------


def test_empty_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    line = folder_line(tmp_path, tmp_path / "data")
    assert_one_line(line, f"config.data.dir='{tmp_path / 'data'}' has no class folders", "<class>/<images>")


def test_folder_with_one_class(tmp_path):
    root = image_folder(tmp_path / "data", {"cat": 4})
    line = folder_line(tmp_path, root)
    assert_one_line(line, f"config.data.dir='{root}' has a single class in it ('cat'); need >= 2")


def test_zero_byte_image(tmp_path):
    root = image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    empty = root / "cat" / "0.png"
    empty.write_bytes(b"")
    line = folder_line(tmp_path, root)
    assert_one_line(line, f"config.data.dir: cannot decode image file {empty}", "(the file is empty: 0 bytes)")


def test_folder_named_like_an_image(tmp_path):
    root = image_folder(tmp_path / "data", {"dog": 3})
    (root / "cat" / "cat.jpg").mkdir(parents=True)  # the only "image" of class cat is a folder
    line = folder_line(tmp_path, root)
    expected = f"config.data.dir='{root}' has classes without images in it: ['cat']"
    assert_one_line(line, expected, "(image files: .jpg, .jpeg, .png, .bmp, .gif)")


def test_unreadable_image_file(tmp_path, monkeypatch):
    """We run as root, where chmod does not stop reads: the reader itself refuses the file, as the OS would."""
    import tensorflow as tf

    root = image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    locked = str(root / "cat" / "0.png")
    read_file = tf.io.read_file

    def refuse(path, *args, **kwargs):
        if tf.executing_eagerly() and tf.constant(path).numpy().decode() == locked:  # the probe of the first file
            raise tf.errors.PermissionDeniedError(None, None, f"{locked}; Permission denied")  # TensorFlow's words
        return read_file(path, *args, **kwargs)

    monkeypatch.setattr(tf.io, "read_file", refuse)
    line = folder_line(tmp_path, root)
    assert_one_line(line, f"config.data.dir: cannot decode image file {locked} (Permission denied)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode (the in-process case runs)")
def test_unreadable_image_file_by_its_mode(tmp_path):
    root = image_folder(tmp_path / "data", {"cat": 3, "dog": 3})
    locked = root / "cat" / "0.png"
    locked.chmod(0)
    line = folder_line(tmp_path, root)
    assert_one_line(line, f"cannot decode image file {locked}", "Permission denied")


def test_twenty_thousand_pixels_square_image(tmp_path):
    root = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    huge = write_huge_png(root / "cat" / "0.png", 20_000)  # the first file, which fixes the images' shape
    line = folder_line(tmp_path, root)
    expected = f"config.data.dir: {huge} is too large to decode (400,000,000 pixels; the limit is 89,478,485"
    assert_one_line(line, expected, "downscale it")


def test_large_image_later_in_the_folder(tmp_path):
    """Past the first file, the images are decoded in parallel batches: the header check runs there too."""
    root = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    large = write_huge_png(root / "dog" / "9_large.png", 9_500)  # 90,250,000 pixels: just above the limit
    line = folder_line(tmp_path, root, data__image_size=8)
    expected = f"config.data.dir: {large} is too large to decode (9500x9500 = 90,250,000 pixels; the limit is"
    assert_one_line(line, expected)


def test_large_image_read_without_tensorflow(tmp_path, monkeypatch):
    """The PIL decoder (machines without TensorFlow) refuses it from the header as well, before decoding it."""
    from dl4cv_jax.data import image_decoder

    monkeypatch.setattr(image_decoder, "tensorflow_installed", lambda: False)
    root = image_folder(tmp_path / "data", {"cat": 5, "dog": 5})
    large = write_huge_png(root / "dog" / "9_large.png", 9_500)
    line = folder_line(tmp_path, root, data__image_size=8, data__pipeline="device")
    assert_one_line(line, f"config.data.dir: {large} is too large to decode (9500x9500 = 90,250,000 pixels")


# --- eval and predict on workdirs -------------------------------------------------------------------------------


def test_checkpoint_step_that_does_not_exist(untouched):
    line = exit_line("eval", workdir=untouched, checkpoint="999")
    expected = f"--checkpoint=999: no checkpoint at that step in {untouched / 'checkpoints'}"
    step = last_step(untouched)
    assert_one_line(line, expected, f"(found best: {step}; latest: {step})")


def test_checkpoint_that_is_not_a_step(untouched):
    line = exit_line("eval", workdir=untouched, checkpoint="bestest")
    assert_one_line(line, "--checkpoint='bestest' is not valid; choose best, latest or a step number")


def test_eval_of_an_unknown_split(untouched):
    line = exit_line("eval", workdir=untouched, split="validation")
    assert_one_line(line, "--split='validation' is not valid; choose one of: train, val, test")


def test_eval_on_a_workdir_without_checkpoints(no_checkpoints):
    line = exit_line("eval", workdir=no_checkpoints)
    assert_one_line(line, f"--checkpoint=best: {no_checkpoints / 'checkpoints' / 'best'} holds no checkpoint")


def test_predict_on_a_workdir_without_checkpoints(no_checkpoints, tmp_path):
    images = write_images(tmp_path / "images", 1)
    line = exit_line("predict", workdir=no_checkpoints, images=tuple(map(str, images)))
    assert_one_line(line, "holds no checkpoint", "(found best: none; latest: none)")


def test_eval_on_a_folder_that_is_not_a_run(tmp_path):
    line = exit_line("eval", workdir=tmp_path)
    assert_one_line(line, f"--workdir={tmp_path} has no config.json; pass the workdir of a training run")


def test_predict_with_no_images_found(untouched, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "notes.txt").write_text("no images here\n")
    line = exit_line("predict", workdir=untouched, images=(str(tmp_path / "photos"),))
    assert_one_line(line, f"--images={tmp_path / 'photos'}: no image files found", ".jpg, .jpeg, .png")


def test_predict_on_a_file_that_is_not_an_image(untouched, tmp_path):
    notes = tmp_path / "notes.png"
    notes.write_text("not a picture\n")
    line = exit_line("predict", workdir=untouched, images=(str(notes),))
    assert_one_line(line, f"--images: cannot decode {notes} as an image (JPEG, PNG, BMP or GIF)")


def test_predict_on_a_huge_image(untouched, tmp_path):
    huge = write_huge_png(tmp_path / "huge.png", 20_000)
    line = exit_line("predict", workdir=untouched, images=(str(huge),))
    assert_one_line(line, f"--images: {huge} is too large to decode (400,000,000 pixels")


def test_training_again_with_another_config(untouched):
    config = tiny_digits_config(num_epochs=1, optimizer__name="adam")
    line = exit_line("train", config=config, workdir=untouched)
    expected = f"--workdir={untouched} holds a run with a different config (optimizer.name: 'nesterov' -> 'adam')"
    assert_one_line(line, expected, "pass a new --workdir, or the same config to resume")
