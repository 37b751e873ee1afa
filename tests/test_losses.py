"""Losses against independent references (numpy formulas, scikit-learn), on random logits and labels."""

import numpy as np
import pytest
from sklearn.metrics import hinge_loss, log_loss

from configs.default import get_config
from dl4cv_jax import losses
from dl4cv_jax.choices import ConfigError

B, C = 16, 5


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(B, C)).astype(np.float32)
    labels = rng.integers(0, C, size=B)
    return logits, labels


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _loss(name, smoothing=0.0):
    config = get_config()
    config.loss, config.label_smoothing = name, smoothing
    return losses.make_loss(config)


def test_softmax_cross_entropy_matches_sklearn_log_loss(data):
    logits, labels = data
    per_example = np.asarray(_loss("softmax_cross_entropy")(logits, labels))
    assert per_example.shape == (B,)
    expected = log_loss(labels, _softmax(logits.astype(np.float64)), labels=range(C))
    np.testing.assert_allclose(per_example.mean(), expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(losses.LOSSES.keys() - {"sigmoid_binary_cross_entropy"}))
def test_integer_labels_equal_one_hot(data, name):
    logits, labels = data
    loss = _loss(name)
    np.testing.assert_allclose(loss(logits, labels), loss(logits, np.eye(C)[labels]), rtol=1e-6, atol=1e-7)


def test_label_smoothing_closed_form(data):
    logits, labels = data
    a = 0.1
    targets = np.eye(C)[labels] * (1 - a) + a / C
    log_p = np.log(_softmax(logits.astype(np.float64)))
    expected = -(targets * log_p).sum(-1)
    np.testing.assert_allclose(_loss("softmax_cross_entropy", a)(logits, labels), expected, rtol=1e-5)


def test_soft_labels_cross_entropy(data):
    logits, _ = data
    targets = _softmax(np.random.default_rng(1).normal(size=(B, C)))
    expected = -(targets * np.log(_softmax(logits.astype(np.float64)))).sum(-1)
    np.testing.assert_allclose(_loss("softmax_cross_entropy")(logits, targets), expected, rtol=1e-5)


def test_sigmoid_bce_one_logit_matches_sklearn():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=2.0, size=(B, 1)).astype(np.float32)
    labels = rng.integers(0, 2, size=B)
    loss = _loss("sigmoid_binary_cross_entropy")
    per_example = np.asarray(loss(logits, labels))
    assert per_example.shape == (B,)
    p = 1 / (1 + np.exp(-logits[:, 0].astype(np.float64)))
    np.testing.assert_allclose(per_example.mean(), log_loss(labels, p, labels=[0, 1]), rtol=1e-5)
    np.testing.assert_allclose(loss(logits, np.eye(2)[labels]), per_example, rtol=1e-6)
    smoothed = np.asarray(_loss("sigmoid_binary_cross_entropy", 0.2)(logits, labels))
    y = labels * 0.8 + 0.1
    np.testing.assert_allclose(smoothed, -(y * np.log(p) + (1 - y) * np.log(1 - p)), rtol=1e-5)


def test_multiclass_hinge_matches_sklearn(data):
    logits, labels = data
    per_example = np.asarray(_loss("multiclass_hinge")(logits, labels))
    expected = hinge_loss(labels, logits.astype(np.float64), labels=range(C))
    np.testing.assert_allclose(per_example.mean(), expected, rtol=1e-5)


def test_probability_losses_match_numpy(data):
    logits, labels = data
    p, y = _softmax(logits.astype(np.float64)), np.eye(C)[labels]
    kl = (y * (np.log(np.where(y > 0, y, 1)) - np.log(p))).sum(-1)
    expected = {
        "poisson": (p - y * np.log(p)).mean(-1),
        "kl_divergence": kl,
        "mse": ((p - y) ** 2).mean(-1),
        "mae": np.abs(p - y).mean(-1),
    }
    for name, reference in expected.items():
        np.testing.assert_allclose(_loss(name)(logits, labels), reference, rtol=1e-5, atol=1e-6, err_msg=name)


def test_kl_divergence_with_soft_targets(data):
    logits, _ = data
    q = _softmax(np.random.default_rng(3).normal(size=(B, C)))
    expected = (q * (np.log(q) - np.log(_softmax(logits.astype(np.float64))))).sum(-1)
    np.testing.assert_allclose(_loss("kl_divergence")(logits, q), expected, rtol=1e-5)


def test_num_outputs():
    assert losses.num_outputs("softmax_cross_entropy", 10) == 10
    assert losses.num_outputs("sigmoid_binary_cross_entropy", 2) == 1
    with pytest.raises(ConfigError, match=r"config\.loss=.*2 classes"):
        losses.num_outputs("sigmoid_binary_cross_entropy", 3)


def test_predict_classes_and_probabilities(data):
    logits, _ = data
    np.testing.assert_array_equal(losses.predict_classes("mse", logits), logits.argmax(-1))
    np.testing.assert_allclose(losses.class_probabilities("mse", logits), _softmax(logits), rtol=1e-5)
    one = np.array([[-1.0], [0.5], [3.0]], np.float32)
    np.testing.assert_array_equal(losses.predict_classes("sigmoid_binary_cross_entropy", one), [0, 1, 1])
    probs = np.asarray(losses.class_probabilities("sigmoid_binary_cross_entropy", one))
    p = 1 / (1 + np.exp(-one[:, 0]))
    np.testing.assert_allclose(probs, np.stack([1 - p, p], -1), rtol=1e-6)


def test_bad_values_name_the_key():
    with pytest.raises(ConfigError, match=r"config\.loss='focal'.*softmax_cross_entropy"):
        _loss("focal")
    with pytest.raises(ConfigError, match=r"config\.label_smoothing=1\.5"):
        _loss("softmax_cross_entropy", 1.5)
    with pytest.raises(ConfigError, match=r"config\.label_smoothing=0\.1 applies only.*softmax_cross_entropy"):
        _loss("mse", 0.1)
