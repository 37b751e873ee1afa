"""Checkpoints written before the models moved to plain Flax layers restore, and give the same logits.

tests/fixtures/checkpoints_3e5e978/ holds best checkpoints of one-epoch digits runs written by the code at commit
3e5e978, where every model built the library's own conv, BatchNorm and pool layers (see
tests/fixtures/make_checkpoints_3e5e978.py), with the logits that code computed for 16 test images. Today's
models build Flax's layers, or the CPU backend's with the same variables; either must restore those checkpoints
(Orbax refuses a tree that differs) and reproduce those logits.
"""

import pathlib
import shutil

import jax
import numpy as np
import pytest

from dl4cv_jax.evaluate.restore import load_data_info, restore_state
from dl4cv_jax.train import steps
from dl4cv_jax.train.loop import build_trainer, eval_options
from dl4cv_jax.train.run_files import load_run_config

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "checkpoints_3e5e978"


@pytest.mark.parametrize("backend", ["xla", "cpu"])
@pytest.mark.parametrize("model", ["cnn", "lenet", "resnet20"])
def test_a_checkpoint_from_before_the_move_restores_with_the_same_logits(model, backend, tmp_path):
    workdir = tmp_path / model
    shutil.copytree(FIXTURES / model, workdir)  # Orbax may write next to what it reads; the fixture stays clean
    config = load_run_config(workdir)
    assert config.model.name == model and "backend" not in (workdir / "config.json").read_text()
    config.backend = backend
    trainer, state = build_trainer(config, load_data_info(workdir, config))
    restored, kind, step = restore_state(workdir, state, "best")
    assert (kind, step) == ("best", 4)
    expected = np.load(workdir / "expected_logits.npz")
    batch = {"image": expected["image"], "label": np.zeros(len(expected["image"]), np.int32)}
    options = eval_options(config, trainer.data)
    logits = jax.jit(lambda s, b: steps.eval_logits(s, b, **options))(restored, batch)
    np.testing.assert_allclose(logits, expected["logits"], rtol=1e-5, atol=1e-5)
    # The restore did something: freshly initialised weights give other logits.
    fresh = jax.jit(lambda s, b: steps.eval_logits(s, b, **options))(state, batch)
    assert np.abs(np.asarray(fresh) - expected["logits"]).max() > 1e-2
