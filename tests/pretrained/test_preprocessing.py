"""Preprocessing that travels with the weights: resolution order, the safetensors record, the warning, the run files.

Order under test: a field the user set > the preset (data.preprocessing) > what the weight file records > defaults.
"""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained import preprocessing
from dl4cv_jax.pretrained.preprocessing import apply_preprocessing, resolve_preprocessing
from dl4cv_jax.pretrained.state_dict import read_state_dict
from dl4cv_jax.pretrained.to_safetensors import main as to_safetensors
from tests.conftest import REPO, tiny_digits_config

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def data_fields(config) -> tuple:
    return tuple(config.data.mean), tuple(config.data.std), config.data.image_size, config.data.resize_shorter


@pytest.fixture(scope="module")
def torch_file(tmp_path_factory):
    """A checkpoint as DataParallel training saves it: wrapped, `module.`-prefixed, with an int64 counter."""
    torch = pytest.importorskip("torch")
    path = tmp_path_factory.mktemp("weights") / "net.pth"
    generator = torch.Generator().manual_seed(0)
    state = {
        "module.conv.weight": torch.randn(4, 3, 3, 3, generator=generator),
        "module.bn.num_batches_tracked": torch.tensor(7),
    }
    torch.save({"state_dict": state, "best_prec1": 91.0}, path)
    return path


@pytest.fixture(scope="module")
def recorded_file(torch_file):
    """torch_file converted with the imagenet_stats preset recorded."""
    out = torch_file.with_name("net_stats.safetensors")
    assert to_safetensors([str(torch_file), str(out), "--preprocessing=imagenet_stats"]) == 0
    return out


def test_preset_fills_every_unset_field():
    config = tiny_digits_config(data__preprocessing="imagenet")
    resolved = resolve_preprocessing(config)
    assert data_fields(resolved.config) == (IMAGENET_MEAN, IMAGENET_STD, 224, 256)
    assert resolved.source == "preset 'imagenet' (config.data.preprocessing)"
    assert data_fields(config) == ((), (), 0, 0), "the caller's config must not change"


def test_user_fields_win_over_the_preset():
    config = tiny_digits_config(data__preprocessing="imagenet", data__mean=(0.5, 0.5, 0.5), data__image_size=160)
    resolved = resolve_preprocessing(config)
    # std from the preset; the preset's shorter side keeps its 256/224 ratio to the user's size: 160*256//224.
    assert data_fields(resolved.config) == ((0.5, 0.5, 0.5), IMAGENET_STD, 160, 182)
    assert resolved.source.endswith("the config's own data.mean, data.image_size")
    both = tiny_digits_config(data__preprocessing="imagenet", data__image_size=160, data__resize_shorter=170)
    assert data_fields(apply_preprocessing(both))[2:] == (160, 170)


def test_nothing_stated_keeps_the_defaults(caplog):
    config = tiny_digits_config()
    with caplog.at_level(logging.INFO):
        resolved = resolve_preprocessing(config)
    assert data_fields(resolved.config) == ((), (), 0, 0) and resolved.source == "defaults"
    assert [r for r in caplog.records if "preprocessing:" in r.getMessage()], "no line saying what is used"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unknown_preset_is_one_config_error():
    with pytest.raises(ConfigError, match=r"config\.data\.preprocessing='imagent'.*imagenet, imagenet_stats"):
        apply_preprocessing(tiny_digits_config(data__preprocessing="imagent"))


def test_to_safetensors_round_trip(torch_file, recorded_file):
    before, _ = read_state_dict(torch_file)
    after, metadata = read_state_dict(recorded_file)
    assert sorted(after) == ["bn.num_batches_tracked", "conv.weight"]  # module. removed, keys otherwise unchanged
    for key in before:
        assert after[key].dtype == before[key].dtype
        np.testing.assert_array_equal(after[key], before[key])
    assert json.loads(metadata[preprocessing.METADATA_KEY]) == {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    # The file's record is used when nothing is stated; a preset stated by the user wins over it.
    config = tiny_digits_config(model__pretrained=str(recorded_file))
    resolved = resolve_preprocessing(config)
    assert data_fields(resolved.config) == (IMAGENET_MEAN, IMAGENET_STD, 0, 0)
    assert resolved.source == "net_stats.safetensors (recorded in the file)"
    config.data.preprocessing = "imagenet"
    assert data_fields(apply_preprocessing(config)) == (IMAGENET_MEAN, IMAGENET_STD, 224, 256)


def test_to_safetensors_rerecords_a_safetensors_file(recorded_file, tmp_path):
    out = tmp_path / "again.safetensors"
    assert to_safetensors([str(recorded_file), str(out), "--preprocessing=imagenet"]) == 0
    assert preprocessing.recorded_preprocessing(out) == preprocessing.PRESETS["imagenet"]


def test_to_safetensors_bad_input_is_one_line(torch_file, tmp_path, capsys):
    assert to_safetensors([str(torch_file), str(tmp_path / "x.safetensors"), "--preprocessing=cifar"]) != 0
    assert to_safetensors([str(torch_file), str(tmp_path / "x.pth")]) != 0
    with pytest.raises(SystemExit) as stop:
        to_safetensors([str(torch_file)])
    assert stop.value.code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "cifar" in lines[0] and ".safetensors" in lines[1] and "OUT" in lines[2]
    assert not (tmp_path / "x.safetensors").exists()
    # As a command: a missing file gives one line and a failing status, no traceback.
    done = subprocess.run(
        [sys.executable, "-m", "dl4cv_jax.pretrained.to_safetensors", str(tmp_path / "nope.pth"), str(tmp_path / "o")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [f"to_safetensors: {tmp_path / 'nope.pth'}: no such file"]


def test_malformed_record_is_a_config_error(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "bad.safetensors"
    save_file({"w": np.zeros(2, np.float32)}, str(path), metadata={preprocessing.METADATA_KEY: '{"mean": "red"}'})
    with pytest.raises(ConfigError, match="bad.safetensors.*mean='red'"):
        apply_preprocessing(tiny_digits_config(model__pretrained=str(path)))


def test_warns_once_when_weights_record_nothing(torch_file, caplog):
    def warnings(**overrides) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.INFO):
            apply_preprocessing(tiny_digits_config(model__pretrained=str(torch_file), **overrides))
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]

    (warning,) = warnings()
    assert "net.pth" in warning and "--config.data.preprocessing=imagenet" in warning
    assert warnings(data__preprocessing="imagenet_stats") == []
    assert warnings(data__mean=(0.5,) * 3, data__std=(0.25,) * 3) == []
    assert len(warnings(data__mean=(0.5,) * 3)) == 1  # std would still be measured on the new data


def test_tiny_run_records_its_preprocessing(tmp_path):
    from dl4cv_jax.train.loop import train_and_evaluate
    from dl4cv_jax.train.run_files import load_run_config

    # An MLP on the device pipeline: the least compiling; the preprocessing path is the same for every model.
    config = tiny_digits_config(num_epochs=1, batch_size=32, model__name="mlp", model__hidden_sizes=(8,))
    config.data.pipeline = "device"
    config.data.source, config.data.synthetic_shape, config.data.synthetic_examples = "synthetic", (40, 44, 3), 64
    config.data.preprocessing, config.data.image_size, config.data.resize_shorter = "imagenet_stats", 16, 18
    train_and_evaluate(config, tmp_path, show_progress=False)

    info = json.loads((tmp_path / "data_info.json").read_text())
    assert info["image_shape"] == [16, 16, 3] and info["resize_shorter"] == 18
    assert info["mean"] == pytest.approx(IMAGENET_MEAN) and info["std"] == pytest.approx(IMAGENET_STD)
    assert info["preprocessing"] == (
        "preset 'imagenet_stats' (config.data.preprocessing); the config's own data.image_size, data.resize_shorter"
    )
    # eval and predict read the run's config back: the resolved values, not the unset ones.
    restored = load_run_config(tmp_path)
    assert data_fields(restored) == (IMAGENET_MEAN, IMAGENET_STD, 16, 18)
