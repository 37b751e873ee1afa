"""Preprocessing that travels with pretrained weights: the mean/std, input size and resize policy they expect.

Weights fed other statistics or squashed images still run, and lose accuracy without a word: an ImageNet
ResNet wants ImageNet's mean/std on a 224x224 centre crop of an image whose shorter side was resized to 256, not
statistics measured on the new data set. So a run resolves its preprocessing once, where it starts, field by field
(data.mean, data.std, data.image_size, data.resize_shorter):
1. a value the user set (anything but the field's "unset" value: () for mean/std, 0 for the sizes) wins;
2. else the preset named by config.data.preprocessing, or, when that is '', what the weight file records
   (safetensors metadata key `dl4cv.preprocessing`, JSON, written by `python -m dl4cv_jax.pretrained.to_safetensors`);
3. else the default: mean/std measured on the training images, the source's own size.
The resolved values are written into the config, so config.json (and through it eval and predict) reuse them.
"""

import json
import pathlib
from collections.abc import Mapping
from typing import Any, NamedTuple

import ml_collections
from absl import logging

from dl4cv_jax.choices import ConfigError

METADATA_KEY = "dl4cv.preprocessing"
FIELDS = ("mean", "std", "image_size", "resize_shorter")
UNSET: dict[str, Any] = {"mean": (), "std": (), "image_size": 0, "resize_shorter": 0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS: dict[str, dict[str, Any]] = {
    # torchvision's and timm's ImageNet evaluation: Resize(256) + CenterCrop(224), then these statistics.
    "imagenet": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "image_size": 224, "resize_shorter": 256},
    # ImageNet's statistics at the source's own size, as the CIFAR ResNets of akamaster/pytorch_resnet_cifar10 use.
    "imagenet_stats": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
    # torchvision's GoogLeNet weights were trained with `transform_input=True`, which turns ImageNet-normalised
    # inputs into (x - 0.5) / 0.5: the same as normalising with these statistics (our googlenet keeps the flag off).
    "inception": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 224, "resize_shorter": 256},
}


class Resolved(NamedTuple):
    """The config with its preprocessing filled in, and where the values came from (for logs and data_info.json)."""

    config: ml_collections.ConfigDict
    source: str


def preset(name: str) -> dict[str, Any]:
    """The fields of preset `name`; ConfigError naming config.data.preprocessing and the presets otherwise."""
    if name not in PRESETS:
        raise ConfigError(
            f"config.data.preprocessing={name!r} is not a preset; choose one of: {', '.join(sorted(PRESETS))}"
        )
    return dict(PRESETS[name])


def to_metadata(fields: Mapping[str, Any]) -> dict[str, str]:
    """The safetensors metadata entry recording `fields` (a subset of FIELDS)."""
    return {METADATA_KEY: json.dumps({key: fields[key] for key in FIELDS if key in fields})}


def parse_recorded(text: str, where: str) -> dict[str, Any]:
    """The fields of a `dl4cv.preprocessing` metadata value; ConfigError naming `where` when it is malformed."""
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{where}: metadata {METADATA_KEY!r} is not JSON ({error})") from None
    if not isinstance(fields, dict) or set(fields) - set(FIELDS):
        raise ConfigError(f"{where}: metadata {METADATA_KEY!r} must be a JSON object with keys among {FIELDS}")
    for key in ("mean", "std"):
        value = fields.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, int | float) for v in value)):
            raise ConfigError(f"{where}: metadata {METADATA_KEY!r} has {key}={value!r}, not a list of numbers")
        if key in fields:
            fields[key] = tuple(float(v) for v in value)
    for key in ("image_size", "resize_shorter"):
        if not (isinstance(fields.get(key, 0), int) and fields.get(key, 0) >= 0):
            raise ConfigError(f"{where}: metadata {METADATA_KEY!r} has {key}={fields[key]!r}, not an integer >= 0")
    return fields


def recorded_preprocessing(path: str | pathlib.Path) -> dict[str, Any] | None:
    """The preprocessing a weight file records, None where it records none (PyTorch files never do) or the file
    is missing (loading it reports that, with where to get it). Reads the safetensors header only."""
    path = pathlib.Path(path).expanduser()
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    from safetensors import safe_open

    where = f"config.model.pretrained={str(path)!r}"
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
    except Exception as error:  # the package raises its own types for truncated or foreign files
        raise ConfigError(f"{where} is not a readable safetensors file: {error}") from None
    return parse_recorded(metadata[METADATA_KEY], where) if METADATA_KEY in metadata else None


def resolve_preprocessing(config: ml_collections.ConfigDict) -> Resolved:
    """A copy of `config` with data.mean/std/image_size/resize_shorter resolved (see the module docstring), and
    where they came from; logs one line saying so, and warns when pretrained weights would get measured statistics.

    When the user sets data.image_size alone, a preset's resize_shorter keeps its ratio to the preset's size
    (timm's crop_pct: 160 with `imagenet` resizes to 182, 160 * 256 // 224), so the crop frames the same content.
    """
    config = config.copy_and_resolve_references()
    data, pretrained = config.data, config.model.get("pretrained", "")
    name = data.get("preprocessing", "")
    user = [key for key in FIELDS if _value(data, key) != UNSET[key]]
    given, origin = {}, ""
    if name:
        given, origin = preset(name), f"preset {name!r} (config.data.preprocessing)"
    elif pretrained and (recorded := recorded_preprocessing(pretrained)) is not None:
        given, origin = recorded, f"{pathlib.Path(pretrained).name} (recorded in the file)"
    if "image_size" in user and "resize_shorter" not in user:
        given = _keep_crop_ratio(given, _value(data, "image_size"))
    for key in FIELDS:
        if key not in user and key in given:
            data[key] = given[key]
    parts = [origin] if origin and set(given) - set(user) else []
    parts += [f"the config's own {', '.join('data.' + key for key in user)}"] if user else []
    source = "; ".join(parts) or "defaults"
    logging.info("preprocessing: %s (from %s)", describe(data), source)
    if pretrained and not origin and not {"mean", "std"} <= set(user) and pathlib.Path(pretrained).is_file():
        logging.warning(
            "config.model.pretrained=%r records no preprocessing and none is stated: its weights will see mean/std "
            "measured on this data set, likely not the statistics they were trained with. State it, e.g. "
            "--config.data.preprocessing=imagenet (ImageNet weights) or imagenet_stats (statistics only), or record "
            "it in the file: python -m dl4cv_jax.pretrained.to_safetensors IN OUT.safetensors --preprocessing=NAME",
            pretrained,
        )
    return Resolved(config, source)


def apply_preprocessing(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose data fields (mean, std, image size, resize policy) are those the pretrained weights
    expect, unless the user set them: `resolve_preprocessing(config).config`."""
    return resolve_preprocessing(config).config


def describe(data: ml_collections.ConfigDict) -> str:
    """One phrase for the data section's preprocessing, e.g. 'mean (0.485, ...), std (...), shorter side 256, centre
    224x224 crop'."""
    mean, std = tuple(data.mean), tuple(data.std)
    stats = [f"mean {mean}" if mean else "mean measured", f"std {std}" if std else "std measured"]
    size, shorter = data.image_size, data.get("resize_shorter", 0)
    if shorter:
        resize = f"shorter side to {shorter}, centre {size}x{size} crop"
    else:
        resize = f"resized to {size}x{size}" if size else "size kept"
    return ", ".join([*stats, resize])


def _keep_crop_ratio(given: dict[str, Any], image_size: int) -> dict[str, Any]:
    """`given` with its resize_shorter scaled to the user's image_size, as resize_shorter / image_size was."""
    if given.get("resize_shorter") and given.get("image_size"):
        return given | {"resize_shorter": image_size * given["resize_shorter"] // given["image_size"]}
    return given


def _value(data: ml_collections.ConfigDict, key: str) -> Any:
    value = data.get(key, UNSET[key])
    return tuple(value) if isinstance(value, list | tuple) else value
