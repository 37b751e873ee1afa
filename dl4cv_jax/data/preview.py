"""`--mode=preview`: workdir/augmentations.png, a grid of training images as the model receives them.

The images come from the real input pipeline (the configured one, tf.data or device) for epoch 0, after every
augmentation and before normalisation, each titled with its label: the class name, or the two largest shares of
a mixup / cutmix target. Looking at it catches augmentations that are too strong, wrong channels or wrong labels.
"""

import pathlib

import ml_collections
import numpy as np

from dl4cv_jax.data.dataset import Data
from dl4cv_jax.data.sources import load_data


def training_images(data: Data, config: ml_collections.ConfigDict, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (or fewer) augmented training images of epoch 0 and their labels, as numpy arrays."""
    if config.data.pipeline == "device":
        from dl4cv_jax.data import device
        from dl4cv_jax.train.sharding import make_mesh

        batches = device.train_batches(data, config, 0, make_mesh())
    else:
        from dl4cv_jax.data.pipeline import train_batches

        batches = train_batches(data, config, 0)
    images, labels, seen = [], [], 0
    for batch in batches:
        images.append(np.asarray(batch["image"]))
        labels.append(np.asarray(batch["label"]))
        seen += len(images[-1])
        if seen >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def label_text(label: np.ndarray, class_names: tuple[str, ...]) -> str:
    """'cat' for a class id or a one-hot target; 'cat .62 / dog .38' for a mixed target."""
    if np.ndim(label) == 0:
        return class_names[int(label)]
    top = np.argsort(-label)[:2]
    if label[top[1]] < 0.005:  # shown as 0.00: a plain label reads better
        return class_names[int(top[0])]
    return " / ".join(f"{class_names[int(k)]} {label[k]:.2f}" for k in top)


def write_preview(
    config: ml_collections.ConfigDict, workdir: str | pathlib.Path, rows: int = 4, cols: int = 8
) -> pathlib.Path:
    """Writes workdir/augmentations.png (rows x cols augmented training images with labels); returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = load_data(config)
    images, labels = training_images(data, config, rows * cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.4), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < len(images):
            image = images[k]
            ax.imshow(
                image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=255, interpolation="nearest"
            )
            ax.set_title(label_text(labels[k], data.class_names), fontsize=7)
    augment = ", ".join(config.data.augment) or "no augmentation"
    fig.suptitle(f"{data.name}: epoch 0 training images as the model sees them ({augment})", fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(workdir) / "augmentations.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
