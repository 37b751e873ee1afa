"""Weight files are read the way PyTorch users save them, and bad files fail with one line naming the file."""

import numpy as np
import pytest
from safetensors.numpy import save_file

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained.state_dict import read_state_dict

torch = pytest.importorskip("torch")

ARRAYS = {"conv1.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), "fc.bias": np.ones(3, np.float32)}


def _tensors(prefix: str = "") -> dict:
    return {prefix + key: torch.from_numpy(value) for key, value in ARRAYS.items()}


def _assert_arrays(arrays: dict) -> None:
    assert sorted(arrays) == sorted(ARRAYS)
    for key, value in ARRAYS.items():
        np.testing.assert_array_equal(arrays[key], value)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda t: t,  # a bare state_dict
        lambda t: {"state_dict": t, "best_prec1": 91.7},  # akamaster's checkpoints
        lambda t: {"model": t, "epoch": 3},  # timm / torchvision reference scripts
    ],
)
@pytest.mark.parametrize("suffix", [".pth", ".pt", ".th"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_torch_checkpoints_in_every_usual_wrapping(tmp_path, wrap, suffix, prefix):
    path = tmp_path / f"weights{suffix}"
    torch.save(wrap(_tensors(prefix)), path)
    arrays, metadata = read_state_dict(path)
    _assert_arrays(arrays)
    assert metadata == {}


def test_safetensors_with_metadata(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file(ARRAYS, str(path), metadata={"dl4cv.preprocessing": '{"mean": [0.5]}'})
    arrays, metadata = read_state_dict(path)
    _assert_arrays(arrays)
    assert metadata == {"dl4cv.preprocessing": '{"mean": [0.5]}'}


def test_missing_file_says_nothing_is_downloaded(tmp_path):
    with pytest.raises(ConfigError, match=r"resnet50\.pth.*no such file.*never downloaded"):
        read_state_dict(tmp_path / "resnet50.pth")


def test_bad_files_name_the_file(tmp_path):
    (tmp_path / "w.npz").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"w\.npz.*choose one of: \.pth"):
        read_state_dict(tmp_path / "w.npz")
    (tmp_path / "w.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match=r"w\.safetensors.*not a readable safetensors"):
        read_state_dict(tmp_path / "w.safetensors")
    (tmp_path / "w.pth").write_bytes(b"truncated")
    with pytest.raises(ConfigError, match=r"w\.pth.*could not be read"):
        read_state_dict(tmp_path / "w.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match=r"list\.pth.*holds a list, not a state_dict"):
        read_state_dict(tmp_path / "list.pth")
