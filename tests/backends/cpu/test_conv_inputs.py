"""`backends.cpu.conv.KEEP_CONV_INPUTS`: the same values and gradients, a different compiled program on XLA:CPU."""

import jax
import jax.numpy as jnp
import numpy as np

from dl4cv_jax.backends.cpu import conv, fusion_barrier
from dl4cv_jax.data import load_data
from dl4cv_jax.train.loop import build_trainer
from tests.conftest import tiny_digits_config


def test_the_never_taken_branch_would_show_as_nans():
    x = jnp.arange(6.0).reshape(2, 3)
    assert bool(fusion_barrier.always_true(x)) and bool(fusion_barrier.always_true(jnp.full(3, jnp.nan)))
    np.testing.assert_array_equal(fusion_barrier.kept_as_buffer(x, jnp.asarray(True)), x)
    assert np.isnan(np.asarray(fusion_barrier.kept_as_buffer(x, jnp.asarray(False)))).all()


def _two_steps(keep: bool, monkeypatch):
    # A ResNet-20 (identity shortcuts: where XLA:CPU's recomputation chains) on 8x8 digits, 2 steps, CPU backend.
    monkeypatch.setattr(conv, "KEEP_CONV_INPUTS", keep)  # read while tracing: each build traces anew
    config = tiny_digits_config(model__name="resnet20", batch_size=16, backend="cpu")
    trainer, state = build_trainer(config, load_data(config))
    initial = jax.device_get(state.params)
    batches = list(trainer.train_batches(0))[:2]
    compiled = trainer.train_step.lower(state, batches[0]).compile()
    losses = []
    for batch in batches:
        state, metrics = compiled(state, batch)
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses, compiled.as_text(), initial


def test_kept_conv_inputs_train_exactly_like_the_plain_step(monkeypatch):
    # XLA's convolutions (oneDNN's passes are custom calls, which XLA never fuses into; test_onednn_conv.py
    # counts no conditional there).
    monkeypatch.setattr(conv, "USE_ONEDNN", False)
    plain, plain_losses, plain_hlo, initial = _two_steps(False, monkeypatch)
    kept, kept_losses, kept_hlo, _ = _two_steps(True, monkeypatch)
    # The point: every conv input (ResNet-20 has 19 convs) is the result of a conditional that XLA kept after
    # optimisation; if XLA ever learns to fold the predicate, this fails and the speed-up is gone.
    # (The plain step has one of its own: the grey digits' stem runs as a tap sum, conv.py.)
    added = kept_hlo.count(" conditional(") - plain_hlo.count(" conditional(")
    assert added >= 19, added
    np.testing.assert_allclose(kept_losses, plain_losses, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(kept.params), jax.tree.leaves(plain.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    for a, b in zip(jax.tree.leaves(kept.batch_stats), jax.tree.leaves(plain.batch_stats), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert not np.allclose(jax.tree.leaves(kept.params)[0], jax.tree.leaves(initial)[0])  # it did train
