"""TensorFlow as this package uses it: for input pipelines only, on the CPU, deterministic.

Import `tf` from here rather than `tensorflow` directly, so that TensorFlow never claims GPU memory that JAX
needs (TensorFlow grabs every visible GPU at start-up otherwise).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TensorFlow's INFO lines out of the training log

import tensorflow as tf  # noqa: E402


def _hide_gpus_from_tensorflow() -> None:
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        # TensorFlow was initialised before this module was imported; its devices can no longer change.
        pass


_hide_gpus_from_tensorflow()

AUTOTUNE = tf.data.AUTOTUNE


def deterministic_options() -> tf.data.Options:
    """tf.data options under which parallel maps still yield elements in input order.

    Augmentations draw from stateless ops keyed by the example index, so their results do not depend on thread
    scheduling either; together this makes every batch a pure function of (seed, epoch).
    """
    options = tf.data.Options()
    options.deterministic = True
    return options
