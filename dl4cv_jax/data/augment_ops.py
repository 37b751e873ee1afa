"""The TensorFlow image operations behind the augmentations: deterministic functions of a uint8 [B, H, W, C] batch
and each example's row of a parameter table (drawn in `augment.py`), `op(images, rows, **op_args)`.

Every operation works on the whole batch at once (no per-image tf.map_fn except for noise): on small images the
per-element overhead of tf.data costs more than the arithmetic. Arithmetic is in float32 on the 0..255 scale and
each operation rounds and clips back to uint8, so operations compose like the images a person would save.
"""

from collections.abc import Callable, Sequence

from dl4cv_jax.data.tf_runtime import tf

_LUMA = (0.299, 0.587, 0.114)


def to_uint8(images: tf.Tensor) -> tf.Tensor:
    """Rounds float images on the 0..255 scale to uint8 (round half to even, then clip)."""
    return tf.cast(tf.clip_by_value(tf.round(images), 0.0, 255.0), tf.uint8)


# --- Crops and flips: pixel moves, fused into one gather ---------------------------------------------------
# A crop or a flip only moves pixels, and separably: output pixel (y, x) is input pixel (rows[y], cols[x]), -1 for
# a zero-padded border. Consecutive moves are composed on these [B, H] and [B, W] index arrays and the images are
# gathered once; in tf.data that is much faster than padding (MirrorPad is slow on uint8), cutting and reversing
# the images one move at a time (benchmarks/RESULTS.md).

Coords = tuple[tf.Tensor, tf.Tensor]


def identity_coords(images: tf.Tensor) -> Coords:
    """rows [B, H] and cols [B, W] that leave every image as it is."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    return tf.tile(tf.range(height)[None], [batch, 1]), tf.tile(tf.range(width)[None], [batch, 1])


def reflect_index(index: tf.Tensor, size: int) -> tf.Tensor:
    """Index into a mirror-padded axis (numpy's 'reflect': the edge is not repeated), valid for |overhang| < size."""
    return (size - 1) - tf.abs((size - 1) - tf.abs(index))


def _compose(previous: tf.Tensor, new: tf.Tensor) -> tf.Tensor:
    """previous[new] per example; -1 (a zero border) stays -1."""
    moved = tf.gather(previous, tf.maximum(new, 0), batch_dims=1)
    return tf.where(new < 0, -1, moved)


def crop_coords(coords: Coords, offsets: tf.Tensor, padding: int, fill: str, height: int, width: int) -> Coords:
    """`coords` followed by a crop at each (y, x) offset of the image padded by `padding` (reflect or zeros)."""
    axes = []
    for k, size in enumerate((height, width)):
        index = offsets[:, k : k + 1] - padding + tf.range(size)[None, :]
        inside = (index >= 0) & (index < size)
        axes.append(reflect_index(index, size) if fill == "reflect" else tf.where(inside, index, -1))
    return _compose(coords[0], axes[0]), _compose(coords[1], axes[1])


def flip_coords(coords: Coords, flips: tf.Tensor, axis: int) -> Coords:
    """`coords` followed by a mirror along rows (axis 0) or columns (axis 1) where `flips` is set."""
    moved = list(coords)
    moved[axis] = tf.where(flips[:, None], tf.reverse(coords[axis], axis=[1]), coords[axis])
    return moved[0], moved[1]


def gather_pixels(images: tf.Tensor, coords: Coords) -> tf.Tensor:
    """images[b, rows[b, y], cols[b, x]] in one flat gather; zero where an index is -1."""
    rows, cols = coords
    _, height, width, channels = images.shape
    batch = tf.shape(images)[0]
    flat = tf.reshape(images, [-1, channels])
    base = tf.range(batch)[:, None, None] * (height * width)
    out = tf.gather(flat, base + tf.maximum(rows, 0)[:, :, None] * width + tf.maximum(cols, 0)[:, None, :])
    inside = (rows >= 0)[:, :, None] & (cols >= 0)[:, None, :]
    return tf.where(inside[..., None], out, tf.zeros_like(out))


def pad_and_crop(images: tf.Tensor, offsets: tf.Tensor, padding: int, fill: str = "reflect") -> tf.Tensor:
    """Pads each [B, H, W, C] image by `padding` (reflect or zeros), then cuts H x W out at its (y, x) offset row.

    Reflect padding mirrors without repeating the edge pixel (numpy's mode='reflect'), so it needs padding < H, W;
    it keeps the border statistics natural where zero padding adds black frames.
    """
    _, height, width, _ = images.shape
    return gather_pixels(images, crop_coords(identity_coords(images), offsets, padding, fill, height, width))


def flip(images: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Mirrors left-right the [B, H, W, C] images whose entry of bool [B] `flips` is set."""
    return gather_pixels(images, flip_coords(identity_coords(images), flips, axis=1))


def vflip(images: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Mirrors top-bottom the images whose entry of bool [B] `flips` is set."""
    return gather_pixels(images, flip_coords(identity_coords(images), flips, axis=0))


def _move(coords: Coords, op: str, rows: tf.Tensor, height: int, width: int, **op_args) -> Coords:
    if op == "crop":
        return crop_coords(coords, rows, op_args["padding"], op_args["fill"], height, width)
    return flip_coords(coords, rows, axis=1 if op == "flip" else 0)


PIXEL_MOVES = ("crop", "flip", "vflip")


def rot90(images: tf.Tensor, turns: tf.Tensor) -> tf.Tensor:
    """Rotates each square image counter-clockwise by its int [B] number of quarter turns (np.rot90's sense)."""
    once = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[1])
    twice = tf.reverse(images, axis=[1, 2])
    thrice = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[2])
    k = turns[:, None, None, None]
    return tf.where(k == 1, once, tf.where(k == 2, twice, tf.where(k == 3, thrice, images)))


# --- Geometric warps (rotation, zoom, shear, translation) --------------------------------------------------


def warp(images: tf.Tensor, transforms: tf.Tensor, fill: str = "reflect") -> tf.Tensor:
    """Resamples each image through its [8] transform (output pixel -> input point), bilinear, in float32.

    The op itself truncates uint8 results; working in float and rounding keeps a constant image constant.
    """
    _, height, width, _ = images.shape
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=tf.cast(transforms, tf.float32),
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=tf.constant(0.0),
        interpolation="BILINEAR",
        fill_mode=fill.upper(),
    )
    return to_uint8(out)


def compose_warps(first: tf.Tensor, second: tf.Tensor) -> tf.Tensor:
    """The [B, 8] transform of warping by `first`, then by `second` (each maps output points to input points).

    Consecutive warps (rotate, zoom, shear, translate) are applied as this one transform: one resampling instead
    of several, so both faster and sharper.
    """

    def matrix(t: tf.Tensor) -> tf.Tensor:
        return tf.reshape(tf.concat([t, tf.ones_like(t[:, :1])], axis=1), [-1, 3, 3])

    product = tf.linalg.matmul(matrix(tf.cast(first, tf.float32)), matrix(tf.cast(second, tf.float32)))
    product = product / product[:, 2:3, 2:3]
    return tf.reshape(product, [-1, 9])[:, :8]


# --- Colour ------------------------------------------------------------------------------------------------


def brightness(images: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Adds each image's delta (a fraction of 255) to every pixel."""
    return to_uint8(tf.cast(images, tf.float32) + 255.0 * deltas[:, None, None, None])


def contrast(images: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """Scales each channel's deviation from that image's channel mean by the image's factor (tf.image's rule)."""
    x = tf.cast(images, tf.float32)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return to_uint8(mean + factors[:, None, None, None] * (x - mean))


def grayscale(x: tf.Tensor) -> tf.Tensor:
    """float [..., 3] RGB -> [..., 1] luma (ITU-R 601), unrounded."""
    return tf.tensordot(x, tf.constant(_LUMA), axes=1)[..., None]


def saturation(images: tf.Tensor, factors: tf.Tensor) -> tf.Tensor:
    """Blends each RGB image with its own gray version: factor 0 is gray, 1 unchanged, > 1 more colourful."""
    x = tf.cast(images, tf.float32)
    gray = grayscale(x)
    return to_uint8(gray + factors[:, None, None, None] * (x - gray))


def hue(images: tf.Tensor, shifts: tf.Tensor) -> tf.Tensor:
    """Turns each RGB image's hue by its shift (a fraction of the colour circle), keeping saturation and value."""
    hsv = tf.image.rgb_to_hsv(tf.cast(images, tf.float32) / 255.0)
    turned = tf.math.floormod(hsv[..., :1] + shifts[:, None, None, None], 1.0)
    rgb = tf.image.hsv_to_rgb(tf.concat([turned, hsv[..., 1:]], axis=-1))
    return to_uint8(rgb * 255.0)


def gaussian_noise(images: tf.Tensor, seeds: tf.Tensor, std: float) -> tf.Tensor:
    """Adds N(0, (255 std)^2) noise per pixel; each image's noise comes from its own int64 [2] seed row.

    A seed per example (not per batch) keeps an example's noise independent of the batch it lands in.
    """
    shape = images.shape[1:]
    noise = tf.map_fn(
        lambda seed: tf.random.stateless_normal(shape, seed),
        seeds,
        fn_output_signature=tf.TensorSpec(shape, tf.float32),
    )
    return to_uint8(tf.cast(images, tf.float32) + 255.0 * std * noise)


def box_mask(height: int, width: int, boxes: tf.Tensor) -> tf.Tensor:
    """bool [B, H, W, 1], True inside each example's (y0, x0, y1, x1) half-open int box row."""
    rows = tf.range(height)[None, :, None]
    cols = tf.range(width)[None, None, :]
    inside = (rows >= boxes[:, 0, None, None]) & (rows < boxes[:, 2, None, None])
    inside &= (cols >= boxes[:, 1, None, None]) & (cols < boxes[:, 3, None, None])
    return inside[..., None]


def cutout(images: tf.Tensor, boxes: tf.Tensor, fill: int) -> tf.Tensor:
    """Sets the pixels inside each example's box to `fill` (DeVries & Taylor 2017)."""
    _, height, width, _ = images.shape
    return tf.where(box_mask(height, width, boxes), tf.cast(fill, tf.uint8), images)


def mix_partner(x: tf.Tensor) -> tf.Tensor:
    """Each example's partner for mixup / cutmix: its neighbour in the epoch order (positions 2k <-> 2k + 1).

    The epoch order is random, so the partner is a random example; pairing by position keeps it the same
    however the global batch is split over processes (local batches are even, see `augment.py`).
    """
    batch = tf.shape(x)[0]
    return tf.gather(x, tf.bitwise.bitwise_xor(tf.range(batch), 1))


def mixup(images: tf.Tensor, labels: tf.Tensor, lams: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """lambda x + (1 - lambda) x_partner for images and one-hot labels (Zhang et al. 2018)."""
    lam = lams[:, None, None, None]
    mixed = lam * tf.cast(images, tf.float32) + (1.0 - lam) * tf.cast(mix_partner(images), tf.float32)
    return to_uint8(mixed), lams[:, None] * labels + (1.0 - lams[:, None]) * mix_partner(labels)


def cutmix(images: tf.Tensor, labels: tf.Tensor, boxes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Pastes the partner's pixels inside each box; labels mix by the area actually pasted (after clipping)."""
    _, height, width, _ = images.shape
    inside = box_mask(height, width, boxes)
    area = tf.cast((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), tf.float32)
    kept = 1.0 - area / float(height * width)
    mixed_labels = kept[:, None] * labels + (1.0 - kept[:, None]) * mix_partner(labels)
    return tf.where(inside, mix_partner(images), images), mixed_labels


OPS: dict[str, Callable] = {
    "crop": pad_and_crop,
    "flip": flip,
    "vflip": vflip,
    "rot90": rot90,
    "warp": warp,
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
    "hue": hue,
    "noise": gaussian_noise,
    "cutout": cutout,
    "mixup": mixup,
    "cutmix": cutmix,
}


def apply_augmentations(
    augmentations: Sequence,
    tables: Sequence[tf.Tensor],
    images: tf.Tensor,
    index: tf.Tensor,
    labels: tf.Tensor | None = None,
    num_classes: int = 0,
) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor]:
    """Applies each `augment.Augmentation` with the table rows of the batch's examples (`index`: int [B]).

    Returns the images; with `labels` given, (images, labels), the labels one-hot float [B, num_classes] when a
    mixing augmentation is in the list (soft targets) and unchanged otherwise.
    """
    _, height, width, _ = images.shape
    coords = None  # pending pixel moves, gathered in one go before the next other operation
    warp_fill, transforms = None, None  # pending warps with one fill mode, resampled in one go
    for aug, table in zip(augmentations, tables, strict=True):
        rows = tf.gather(table, index)
        if warp_fill is not None and not (aug.op == "warp" and aug.op_args["fill"] == warp_fill):
            images, warp_fill = warp(images, transforms, warp_fill), None
        if aug.op in PIXEL_MOVES:
            coords = _move(coords or identity_coords(images), aug.op, rows, height, width, **aug.op_args)
            continue
        if coords is not None:
            images, coords = gather_pixels(images, coords), None
        if aug.op == "warp":
            transforms = rows if warp_fill is None else compose_warps(transforms, rows)
            warp_fill = aug.op_args["fill"]
            continue
        if aug.mixes:
            if labels.shape.rank == 1:
                labels = tf.one_hot(labels, num_classes, dtype=tf.float32)
            images, labels = OPS[aug.op](images, labels, rows, **aug.op_args)
        else:
            images = OPS[aug.op](images, rows, **aug.op_args)
    if coords is not None:
        images = gather_pixels(images, coords)
    if warp_fill is not None:
        images = warp(images, transforms, warp_fill)
    return images if labels is None else (images, labels)
