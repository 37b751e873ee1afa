"""Parameter tables of the augmentations, in numpy: warp transforms and boxes, shared by both pipelines.

No TensorFlow here: the on-device pipeline (`device.py`) draws the same tables as the tf.data one.
"""

import numpy as np

FILL_MODES = ("reflect", "constant", "nearest", "wrap")  # outside the image: mirror, zeros, edge pixel, tile


def centred(matrices: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [n, 8] projective transforms for ImageProjectiveTransformV3 from [n, 2, 2] linear maps.

    Each 2x2 map sends an output pixel's (x, y), taken relative to the image centre, to the input pixel it
    samples; the centre is ((W - 1) / 2, (H - 1) / 2), so a quarter turn of a square image is exactly np.rot90.
    """
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    shift = centre - np.einsum("nij,j->ni", matrices, centre)
    a, b = matrices[:, 0], matrices[:, 1]
    zeros = np.zeros((len(matrices), 2))
    return np.concatenate([a, shift[:, :1], b, shift[:, 1:], zeros], axis=1).astype(np.float32)


def rotation_matrices(degrees: np.ndarray) -> np.ndarray:
    """[n, 2, 2] maps that rotate an image counter-clockwise (as displayed, y down) by `degrees`."""
    theta = np.deg2rad(np.asarray(degrees, np.float64))
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def zoom_matrices(scales: np.ndarray) -> np.ndarray:
    """[n, 2, 2] maps that magnify by `scales` about the centre (> 1 zooms in, < 1 zooms out, 1 is identity)."""
    inverse = 1.0 / np.asarray(scales, np.float64)
    zeros = np.zeros_like(inverse)
    return np.stack([np.stack([inverse, zeros], -1), np.stack([zeros, inverse], -1)], -2)


def shear_matrices(degrees: np.ndarray) -> np.ndarray:
    """[n, 2, 2] horizontal shears: row y moves by tan(angle) * (y - centre) pixels."""
    t = np.tan(np.deg2rad(np.asarray(degrees, np.float64)))
    ones, zeros = np.ones_like(t), np.zeros_like(t)
    return np.stack([np.stack([ones, -t], -1), np.stack([zeros, ones], -1)], -2)


def translation_transforms(shifts: np.ndarray) -> np.ndarray:
    """float32 [n, 8] transforms moving each image by its (dy, dx) row of `shifts` (pixels; + is down/right)."""
    n = len(shifts)
    eye = np.tile([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], (n, 1))
    eye[:, 2], eye[:, 5] = -shifts[:, 1], -shifts[:, 0]
    return eye.astype(np.float32)


def clipped_boxes(centres: np.ndarray, box_h: np.ndarray, box_w: np.ndarray, height: int, width: int) -> np.ndarray:
    """int32 [n, 4] (y0, x0, y1, x1) boxes of the given sizes around integer centres, clipped to the image."""
    y0 = np.clip(centres[:, 0] - box_h // 2, 0, height)
    x0 = np.clip(centres[:, 1] - box_w // 2, 0, width)
    y1 = np.clip(centres[:, 0] - box_h // 2 + box_h, 0, height)
    x1 = np.clip(centres[:, 1] - box_w // 2 + box_w, 0, width)
    return np.stack([y0, x0, y1, x1], axis=1).astype(np.int32)


def cutmix_box_sides(lams: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Box sides that cover a fraction 1 - lambda of the image (Yun et al. 2019), rounded to pixels."""
    side = np.sqrt(1.0 - np.asarray(lams, np.float64))
    return np.round(side * height).astype(np.int64), np.round(side * width).astype(np.int64)
