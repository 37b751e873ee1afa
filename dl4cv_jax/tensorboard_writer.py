"""The TensorBoard writer: clu's where TensorFlow is installed, TensorBoard's own framework-free one elsewhere.

clu's `metric_writers` package imports TensorFlow as soon as it is imported, but GPU machines often have jax and
no TensorFlow, and the device input pipeline (`data.pipeline=device`) needs none. A run there must not fail for
want of event files, so without TensorFlow (or without clu) the scalars go through `tensorboard.summary.Writer`,
which needs only numpy; TensorBoard reads both the same way. Images (eval's confusion matrices) need TensorFlow's
encoder and are skipped there, with a log line; their PNG files are written either way.
"""

import pathlib
from collections.abc import Mapping
from typing import Any

from absl import logging


class ScalarWriter:
    """A clu-style metric writer (write_scalars, write_images, flush, close) over `tensorboard.summary.Writer`."""

    def __init__(self, logdir: str | pathlib.Path):
        from tensorboard.summary import Writer

        self._writer = Writer(str(logdir))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(value), step=int(step))

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        logging.info("TensorBoard images %s not written: they need TensorFlow (the PNG files are)", sorted(images))

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_writer(logdir: str | pathlib.Path, asynchronous: bool = False) -> Any:
    """A metric writer into `logdir`; `asynchronous` writes on a background thread (clu's writer only)."""
    try:
        from clu import metric_writers
    except ImportError as error:  # clu imports TensorFlow, or clu itself is missing
        logging.info("TensorBoard scalars through tensorboard.summary.Writer (no TensorFlow/clu: %s)", error)
        return ScalarWriter(logdir)
    writer = metric_writers.SummaryWriter(str(logdir))
    return metric_writers.AsyncWriter(writer) if asynchronous else writer
