"""--config.vmap_seeds=K: K vmapped copies equal K separate runs with the same seeds (within 1e-5)."""

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.reproduce import TIMING_COLUMNS, final_state
from dl4cv_jax.train.callbacks import read_history
from dl4cv_jax.train.checkpoints import BEST, LATEST
from dl4cv_jax.train.loop import train_and_evaluate
from dl4cv_jax.train.run_files import read_json
from dl4cv_jax.vmap_seeds import check_vmap_config, train_vmapped
from tests.conftest import tiny_digits_config

# Two copies: each must take its own seed's streams and land in its own workdir, which a swap or a shared stream
# breaks already with two; each further copy costs one more separate run to compare with.
K = 2


def _base(**overrides):
    # Dropout and crop augmentation on, so each copy's own random streams are exercised.
    return tiny_digits_config(
        num_epochs=2, model__dropout_rate=0.1, data__augment=("crop",), data__crop_padding=2, **overrides
    )


def _saved_loop_state(workdir, which):
    """The loop-state JSON saved with `which` (best or latest) checkpoint, read with Orbax alone (no model)."""
    handlers = {"loop": ocp.JsonCheckpointHandler()}
    with ocp.CheckpointManager((workdir / "checkpoints" / which).absolute(), item_handlers=handlers) as manager:
        step = manager.latest_step()
        restored = manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))
    return step, dict(restored["loop"])


def _assert_same_loop_state(vmapped, separate):
    for which in (BEST, LATEST):
        (step_v, loop_v), (step_s, loop_s) = _saved_loop_state(vmapped, which), _saved_loop_state(separate, which)
        assert step_v == step_s, which
        assert (
            set(loop_v) == set(loop_s) == {"epoch", "best_epoch", "stopped_early", "best", "early", "data", "history"}
        )
        assert [r["step"] for r in loop_v["history"]] == [r["step"] for r in loop_s["history"]], which
        for key in ("epoch", "best_epoch", "stopped_early", "data"):
            assert loop_v[key] == loop_s[key], (which, key)
        for tracker in ("best", "early"):
            assert loop_v[tracker]["patience_count"] == loop_s[tracker]["patience_count"], (which, tracker)
            np.testing.assert_allclose(loop_v[tracker]["best_metric"], loop_s[tracker]["best_metric"], atol=1e-5)


def test_vmapped_seeds_equal_separate_runs(tmp_path):
    config = _base(vmap_seeds=K)
    tests = train_vmapped(config, tmp_path / "vmapped")
    assert len(tests) == K
    for seed in range(K):
        vmapped = tmp_path / "vmapped" / f"seed={seed}"
        separate = tmp_path / f"separate{seed}"
        train_and_evaluate(_base(seed=seed), separate, show_progress=False)
        assert read_json(vmapped / "config.json") == read_json(separate / "config.json")
        rows = [read_history(w / "history.csv") for w in (vmapped, separate)]
        for row_v, row_s in zip(*rows, strict=True):
            for key in row_v:
                if key not in TIMING_COLUMNS:
                    np.testing.assert_allclose(float(row_v[key]), float(row_s[key]), atol=1e-5, err_msg=key)
        test_v, test_s = read_json(vmapped / "test_metrics.json"), read_json(separate / "test_metrics.json")
        assert (
            test_v["num_examples"] == test_s["num_examples"] and test_v["checkpoint_step"] == test_s["checkpoint_step"]
        )
        np.testing.assert_allclose(
            [test_v["loss"], test_v["accuracy"]], [test_s["loss"], test_s["accuracy"]], atol=1e-5
        )
        _assert_same_loop_state(vmapped, separate)  # so a seed's workdir resumes like the separate run's
        state_v, state_s = final_state(vmapped), final_state(separate)
        for a, b in zip(jax.tree.leaves(state_v["params"]), jax.tree.leaves(state_s["params"]), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_what_the_copies_cannot_share_is_refused():
    with pytest.raises(ConfigError, match="early_stopping.patience"):
        check_vmap_config(_base(vmap_seeds=2, early_stopping__patience=3))
    with pytest.raises(ConfigError, match="reduce_on_plateau"):
        check_vmap_config(_base(vmap_seeds=2, schedule__name="reduce_on_plateau"))
    with pytest.raises(ConfigError, match="vmap_seeds"):
        check_vmap_config(_base(vmap_seeds=1))
