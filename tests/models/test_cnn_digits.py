"""The default model learns scikit-learn's 8x8 digits to >= 97% test accuracy in the default 10 epochs."""

import jax
import numpy as np
import optax
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from configs.default import get_config
from dl4cv_jax.models import create_model


def digits_splits():
    digits = load_digits()
    images = (digits.images[..., None] / 16.0).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, stratify=digits.target, random_state=0
    )
    mean, std = x_train.mean(), x_train.std()
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


@pytest.mark.e2e
def test_default_cnn_learns_digits():
    config = get_config()
    x_train, y_train, x_test, y_test = digits_splits()
    model = create_model(config.model, 10)
    variables = model.init(jax.random.key(config.seed, impl="rbg"), x_train[:2], train=False)
    steps_per_epoch = len(x_train) // config.batch_size
    schedule = optax.cosine_decay_schedule(config.optimizer.learning_rate, config.num_epochs * steps_per_epoch)
    tx = optax.sgd(schedule, momentum=config.optimizer.momentum, nesterov=True)

    @jax.jit
    def train_step(params, batch_stats, opt_state, x, y):
        def loss_fn(p):
            logits, state = model.apply(
                {"params": p, "batch_stats": batch_stats}, x, train=True, mutable=["batch_stats"]
            )
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), state["batch_stats"]

        grads, batch_stats = jax.grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), batch_stats, opt_state

    params, batch_stats = variables["params"], variables["batch_stats"]
    opt_state = tx.init(params)
    order = np.random.default_rng(config.seed)
    for _ in range(config.num_epochs):
        batches = order.permutation(len(x_train))[: steps_per_epoch * config.batch_size]
        for index in batches.reshape(steps_per_epoch, config.batch_size):
            params, batch_stats, opt_state = train_step(params, batch_stats, opt_state, x_train[index], y_train[index])
    logits = model.apply({"params": params, "batch_stats": batch_stats}, x_test, train=False)
    accuracy = float((np.asarray(logits).argmax(-1) == y_test).mean())
    print(f"digits test accuracy {accuracy:.4f}")
    assert accuracy >= 0.97
