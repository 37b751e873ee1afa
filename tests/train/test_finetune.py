"""Fine-tuning (train/finetune.py): frozen parameters and BatchNorm statistics stay bit-identical through training,
a frozen BatchNorm normalises with its running statistics, learning-rate multipliers scale updates exactly."""

import functools
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dl4cv_jax import optim, schedules
from dl4cv_jax.backends.cpu.layers import cpu_layers
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.models import create_model
from dl4cv_jax.models.layers import FLAX_LAYERS
from dl4cv_jax.train import finetune
from dl4cv_jax.train.checkpoints import LATEST, CheckpointStore
from dl4cv_jax.train.finetune import param_path
from dl4cv_jax.train.loop import build_trainer, train_and_evaluate
from tests.conftest import tiny_digits_config


def _flat(tree):
    return {param_path(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _changed(before, after):
    """Paths whose arrays differ in any bit, and paths that are bit-identical."""
    a, b = _flat(before), _flat(after)
    assert a.keys() == b.keys()
    changed = {k for k in a if not np.array_equal(a[k], b[k])}
    return changed, a.keys() - changed


def _train(config, epochs):
    """`epochs` epochs of `config` with the trainer's own steps; returns the (host) state before and after."""
    trainer, state = build_trainer(config, load_data(config))
    before = jax.device_get((state.params, state.batch_stats))
    for epoch in range(epochs):
        for batch in trainer.train_batches(epoch):
            state, _ = trainer.train_step(state, batch)
    return before, jax.device_get((state.params, state.batch_stats))


def test_frozen_block_is_bit_identical_after_training_and_checkpointing(tmp_path):
    # Momentum and L2 weight decay on: a leaky freeze (a non-zero update, a BatchNorm that updates its
    # statistics) would move these parameters by at least one bit in 2 epochs.
    config = tiny_digits_config(num_epochs=2, optimizer__weight_decay=5e-3)
    config.finetune.freeze = "^(conv|norm)1_"  # the first block: two convs and their BatchNorms
    initial = jax.device_get(build_trainer(config, load_data(config))[1])
    train_and_evaluate(config, tmp_path, show_progress=False)
    store = CheckpointStore(tmp_path)
    trained, _ = store.restore(LATEST, initial)
    store.close()

    params_changed, params_kept = _changed(initial.params, trained.params)
    assert params_kept == {
        "conv1_1/kernel",
        "conv1_2/kernel",
        *(f"norm1_{i}/{p}" for i in (1, 2) for p in ("scale", "bias")),
    }
    assert params_changed == {k for k in _flat(initial.params) if k.startswith(("conv2", "norm2", "fc"))}
    stats_changed, stats_kept = _changed(initial.batch_stats, trained.batch_stats)
    assert stats_kept == {f"norm1_{i}/{s}" for i in (1, 2) for s in ("mean", "var")}
    assert stats_changed == {f"norm2_{i}/{s}" for i in (1, 2) for s in ("mean", "var")}


@pytest.mark.parametrize("optimizer", ["nesterov", "adamw"])
def test_full_freeze_but_the_head_changes_only_the_head(optimizer, caplog):
    # adamw: decoupled weight decay, added after the optimizer, must not reach frozen parameters either.
    # Gradient accumulation (optax.MultiSteps around the partition) must not leak them.
    config = tiny_digits_config(optimizer__name=optimizer, optimizer__weight_decay=0.05, grad_accum_steps=2)
    config.finetune.freeze = "^(?!fc/)"
    config.finetune.lr_mults = (("^fc/", 2.0),)
    with caplog.at_level(logging.INFO, logger="absl"):
        (params0, stats0), (params1, stats1) = _train(config, epochs=1)
    params_changed, _ = _changed(params0, params1)
    assert params_changed == {"fc/kernel", "fc/bias"}
    assert _changed(stats0, stats1)[0] == set()
    # What is frozen is logged once, when the trainer is built.
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("finetune.")] == [
        "finetune.freeze='^(?!fc/)': 4,200 of 4,370 parameters frozen, 170 trainable; "
        "4 of 4 BatchNorm layers keep their running statistics",
        "finetune.lr_mults (parameters per rule, the rest x1): '^fc/' x2: 170",
    ]


@pytest.mark.parametrize("layers", [FLAX_LAYERS, cpu_layers()], ids=["flax", "cpu"])
def test_frozen_batch_norm_uses_its_running_statistics_in_training(layers):
    model_config = tiny_digits_config().model
    x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1)) * 2.0 + 0.5
    init = jax.jit(functools.partial(create_model(model_config, 10, layers).init, train=False))
    variables = init(jax.random.key(1), x)
    # Running statistics far from any batch's, so batch statistics and running ones give different outputs.
    stats = jax.tree.map(lambda s: s * 0.5 + 0.3, variables["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": stats}

    def run(freeze):
        model = create_model(model_config, 10, finetune.freeze_batch_norm(layers, freeze))
        train, updated = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(variables, x)
        return train, jax.jit(functools.partial(model.apply, train=False))(variables, x), updated["batch_stats"]

    train, evaluation, updated = run("^(?!fc/)")  # every BatchNorm frozen
    np.testing.assert_array_equal(train, evaluation)
    assert _changed(stats, updated)[0] == set()

    # A BatchNorm is frozen whole when its scale or its bias is: the statistics go with the affine parameters.
    train, evaluation, updated = run("^norm1_1/scale$")  # one BatchNorm frozen; the others normalise by the batch
    assert not np.allclose(train, evaluation)
    assert _changed(stats, updated)[0] == {
        f"norm{b}_{i}/{s}" for b, i in ((1, 2), (2, 1), (2, 2)) for s in ("mean", "var")
    }


def test_nothing_to_freeze_leaves_layers_and_optimizer_as_they_were():
    config = tiny_digits_config()
    tx = optax.sgd(0.1)
    assert finetune.finetune_optimizer(tx, config.finetune) is tx  # old checkpoints keep their optimizer state
    assert finetune.freeze_batch_norm(FLAX_LAYERS, "") is FLAX_LAYERS
    # Built twice, the frozen layers compare equal: a model's `layers` is a static field of the jitted step.
    assert finetune.freeze_batch_norm(cpu_layers(), "^a") == finetune.freeze_batch_norm(cpu_layers(), "^a")


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), jnp.float32), params)


PARAMS = {
    "conv1": {"kernel": jnp.full((3, 3, 1, 4), 0.5)},
    "norm1": {"scale": jnp.ones(4), "bias": jnp.zeros(4)},
    "fc": {"kernel": jnp.full((4, 10), -0.25), "bias": jnp.zeros(10)},
}


def _updates(tx, steps=3):
    """The updates of `steps` calls with fixed gradients and parameters (so runs differ only by `tx`)."""
    state, out, update = tx.init(PARAMS), [], jax.jit(tx.update)
    for step in range(steps):
        updates, state = update(_grads(PARAMS, step), state, PARAMS)
        out.append(_flat(updates))
    return out


def _optimizer(name, lr_mults=(), freeze="", weight_decay=0.0):
    config = tiny_digits_config(optimizer__name=name, optimizer__weight_decay=weight_decay, schedule__name="constant")
    config.optimizer.learning_rate = 0.1
    config.finetune.lr_mults, config.finetune.freeze = lr_mults, freeze
    plain = optim.make_optimizer(config, schedules.make_schedule(config, 10, 1))
    return plain, finetune.finetune_optimizer(plain, config.finetune)


def test_lr_multipliers_scale_the_updates_of_plain_sgd():
    # sgd: an lr multiplier m is plain optax sgd at m x lr, step after step: exactly for a power of 2, to
    # rounding for 0.1 (XLA may fold lr x m into one constant, or not).
    _, tx = _optimizer("sgd", lr_mults=(("^fc/", 1.0), ("^conv", 0.25), ("^norm1/scale", 0.1)))
    mine = _updates(tx)
    for lr_mult, names in ((0.25, ("conv1/kernel",)), (1.0, ("fc/kernel", "fc/bias", "norm1/bias"))):
        reference = _updates(optax.sgd(0.1 * lr_mult))
        for ours, theirs in zip(mine, reference, strict=True):
            for name in names:
                np.testing.assert_array_equal(ours[name], theirs[name])
    for ours, theirs in zip(mine, _updates(optax.sgd(0.1 * 0.1)), strict=True):
        np.testing.assert_allclose(ours["norm1/scale"], theirs["norm1/scale"], rtol=1e-6)


@pytest.mark.parametrize("name", ["momentum", "adamw"])
def test_lr_multipliers_scale_the_whole_update_including_decay(name):
    # With momentum and weight decay (L2 for momentum, decoupled for adamw) the multiplier scales the update the
    # optimizer would make at 1x, at every step; the first match wins and unmatched parameters stay at 1x.
    # A power of 2, so the comparison is exact whichever way XLA associates the products.
    plain, scaled = _optimizer(name, lr_mults=(("^fc/", 1.0), ("^(conv|fc)", 0.25)), weight_decay=0.01)
    for ours, reference in zip(_updates(scaled), _updates(plain), strict=True):
        np.testing.assert_array_equal(ours["conv1/kernel"], reference["conv1/kernel"] * np.float32(0.25))
        for unscaled in ("fc/kernel", "fc/bias", "norm1/scale", "norm1/bias"):
            np.testing.assert_array_equal(ours[unscaled], reference[unscaled])
    # And against optax itself: momentum SGD at 0.25 x lr, L2 decay added to the gradient first.
    if name == "momentum":
        sgd = optax.chain(optax.add_decayed_weights(0.01), optax.sgd(0.025, momentum=0.9))
        for ours, reference in zip(_updates(scaled), _updates(sgd), strict=True):
            np.testing.assert_allclose(ours["conv1/kernel"], reference["conv1/kernel"], rtol=1e-6)


def test_frozen_parameters_get_zero_updates_and_no_optimizer_state():
    _, tx = _optimizer("momentum", freeze="^(conv|norm)", lr_mults=((".*", 3.0),), weight_decay=0.01)
    for updates in _updates(tx):
        for name in ("conv1/kernel", "norm1/scale", "norm1/bias"):
            np.testing.assert_array_equal(updates[name], 0.0)
        assert np.abs(updates["fc/kernel"]).min() > 0
    momentum = jax.tree.leaves(tx.init(PARAMS))
    assert sorted(leaf.size for leaf in momentum if hasattr(leaf, "size") and leaf.ndim) == [10, 40]  # fc only


@pytest.mark.parametrize(
    "freeze, lr_mults, message",
    [
        ("(", (), r"config.finetune.freeze='\(' is not a valid regex"),
        ("^layer1/", (), r"config.finetune.freeze: '\^layer1/' matches no parameter; the paths look like: conv1/ke"),
        (".*", (), r"config.finetune.freeze='.\*' freezes every parameter"),
        ("", (("[", 0.1),), r"config.finetune.lr_mults='\[' is not a valid regex"),
        ("", (("^head/", 0.1),), r"config.finetune.lr_mults: '\^head/' matches no parameter; .*fc/kernel"),
        ("", (("^fc/",),), r"config.finetune.lr_mults=.* must be \(\(regex, multiplier\), \.\.\.\)"),
        ("", ((".*", -1.0),), r"config.finetune.lr_mults=.* has a negative multiplier for '.\*'"),
    ],
)
def test_bad_patterns_fail_with_one_config_line(freeze, lr_mults, message):
    with pytest.raises(ConfigError, match=message) as error:
        _optimizer("sgd", lr_mults=lr_mults, freeze=freeze)[1].init(PARAMS)
    assert "\n" not in str(error.value)


def test_build_trainer_refuses_a_pattern_that_matches_nothing():
    config = tiny_digits_config(finetune__freeze="^layer1_0/")
    with pytest.raises(ConfigError, match=r"config.finetune.freeze: '\^layer1_0/' matches no parameter; the paths"):
        build_trainer(config, load_data(config))
