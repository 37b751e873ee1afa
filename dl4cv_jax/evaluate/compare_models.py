"""`--mode=compare_models`: several models, weight files or trained workdirs, scored on one labelled folder and set
side by side (comparison.md / .json / .png, comparison_table.py), with each model's eval report in <out>/<model>/.

Every model is scored by `--mode=eval`'s own code (`cli.evaluate_split`, `cli.write_evaluation`) on the same images,
decoded at that model's input size and normalised with its statistics (a workdir's data_info.json; a weight file's
preprocessing preset or metadata, `pretrained.preprocessing`). The folder's labels are renumbered into each
model's classes:
- a workdir knows its class names: folder classes are matched by name (else through --class_map);
- a weight file knows only its class count: folder class k in sorted order is model class k (torchvision's
  ImageFolder rule, which its ImageNet weights follow), unless `--class_map` maps the folder's classes into the
  model's, e.g. 10 ImageNet synsets of 1,000. See CLASS_MAP_FORMS.
A weight file's class count is read from its classifier, never assumed: a warm start gives a head of another
size a fresh init (fine-tuning), which here would score random weights without a word.
Specs, folder, class map and weight files are all checked before the first model is built, so a typo fails fast.
"""

import collections
import copy
import dataclasses
import json
import pathlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from flax import traverse_util

from dl4cv_jax import backends
from dl4cv_jax.choices import ConfigError
from dl4cv_jax.data import load_data
from dl4cv_jax.data.dataset import Data
from dl4cv_jax.data.folder import IMAGE_EXTENSIONS, SPLIT_FOLDERS, list_class_folders, target_shape
from dl4cv_jax.data.image_decoder import tensorflow_installed
from dl4cv_jax.evaluate import cli, comparison_table, restore
from dl4cv_jax.models import create_model
from dl4cv_jax.pretrained.layouts import LAYOUTS
from dl4cv_jax.pretrained.preprocessing import PRESETS, apply_preprocessing
from dl4cv_jax.pretrained.state_dict import SAFETENSORS_SUFFIX, TORCH_SUFFIXES, read_state_dict
from dl4cv_jax.train.loop import build_trainer
from dl4cv_jax.train.state import count_parameters

WEIGHT_SUFFIXES = (*TORCH_SUFFIXES, SAFETENSORS_SUFFIX)
SPEC_FORMS = (
    "NAME=FILE or NAME=FILE@preset (a weight file read by model NAME), or a training workdir (with config.json)"
)
CLASS_MAP_FORMS = (
    "a .json file {folder class: model class index} or [model class names in order], or a text file with one "
    "model class name (e.g. wnid) per line in model order (further columns ignored, as in LOC_synset_mapping.txt)"
)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model to compare, as given on the command line."""

    text: str
    label: str  # its folder under the output and its row in the table
    path: pathlib.Path  # the weight file or the workdir
    model_name: str = ""  # weight file: the model that reads it; "" for a workdir
    preset: str = ""  # weight file: config.data.preprocessing; "" = what the file records

    @property
    def is_file(self) -> bool:
        return bool(self.model_name)


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """--class_map: folder class name -> model class index, and the model's names when the file lists them all."""

    path: str
    index: dict[str, int]
    names: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """What evaluating one model needs, worked out before any model is built."""

    spec: ModelSpec
    config: ml_collections.ConfigDict  # weight file: built here; workdir: its config.json over the defaults
    class_names: tuple[str, ...]  # the model's classes, in its output order
    label_of: np.ndarray  # [folder classes] -> model class index
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]


def parse_spec(text: str) -> ModelSpec:
    """`NAME=FILE[@preset]` or a workdir path -> ModelSpec; ConfigError naming the spec and what is accepted."""
    name, is_file, rest = text.partition("=")
    if is_file:
        file, preset = rest, ""
        head, at, tail = rest.rpartition("@")
        if at and "/" not in tail and not pathlib.Path(rest).expanduser().is_file():
            file, preset = head, tail
        if name not in LAYOUTS:
            models = ", ".join(sorted(LAYOUTS))
            raise ConfigError(f"model {text!r}: no model {name!r} reads weight files; choose one of: {models}")
        if preset and preset not in PRESETS:
            raise ConfigError(
                f"model {text!r}: no preprocessing preset {preset!r}; choose one of: {', '.join(PRESETS)}"
            )
        path = pathlib.Path(file).expanduser()
        if not path.is_file() or path.suffix not in WEIGHT_SUFFIXES:
            what = "not a weight file" if path.is_file() else "no such file"
            raise ConfigError(f"model {text!r}: {what}: {file}; expected a {' / '.join(WEIGHT_SUFFIXES)} file")
        return ModelSpec(text, name, path, name, preset)
    path = pathlib.Path(text).expanduser()
    if (path / "config.json").is_file():
        return ModelSpec(text, path.resolve().name, path)
    if path.is_file():
        hint = f"a weight file needs its model, NAME={text} with NAME one of: {', '.join(sorted(LAYOUTS))}"
    elif path.is_dir():
        hint = "a folder without config.json is not a training workdir"
    else:
        hint = "no such file or folder"
    raise ConfigError(f"model {text!r}: {hint}; a model is {SPEC_FORMS}")


def parse_specs(texts: Sequence[str]) -> list[ModelSpec]:
    """Every spec parsed; a label given twice gets _2, _3, ... so each model has its own output folder."""
    if not texts:
        raise ConfigError(f"--mode=compare_models needs models, as arguments or --models: {SPEC_FORMS}")
    specs, seen = [], collections.Counter()
    for text in texts:
        spec = parse_spec(text)
        seen[spec.label] += 1
        if seen[spec.label] > 1:
            spec = dataclasses.replace(spec, label=f"{spec.label}_{seen[spec.label]}")
        specs.append(spec)
    return specs


def read_class_map(path: str) -> ClassMap:
    """--class_map in one of CLASS_MAP_FORMS; ConfigError naming the file and the accepted formats."""
    file, where = pathlib.Path(path).expanduser(), f"--class_map={path}"
    if not file.is_file():
        raise ConfigError(f"{where}: no such file; expected {CLASS_MAP_FORMS}")
    text = file.read_text()
    if file.suffix == ".json":
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not valid JSON ({error}); expected {CLASS_MAP_FORMS}") from None
        if isinstance(loaded, dict) and all(type(v) is int and v >= 0 for v in loaded.values()):
            return ClassMap(str(path), {str(k): v for k, v in loaded.items()})
        if not (isinstance(loaded, list) and all(isinstance(v, str) for v in loaded)):
            raise ConfigError(f"{where}: expected {CLASS_MAP_FORMS}")
        names = tuple(loaded)
    else:
        names = tuple(line.split()[0] for line in text.splitlines() if line.strip() and not line.startswith("#"))
    twice = sorted(name for name, n in collections.Counter(names).items() if n > 1)
    if not names or twice:
        raise ConfigError(f"{where}: {'names given twice: ' + str(twice[:5]) if twice else 'empty'}")
    return ClassMap(str(path), {name: k for k, name in enumerate(names)}, names)


def class_folder(data_dir: str) -> tuple[pathlib.Path, tuple[str, ...], str]:
    """(--data_dir, its classes in sorted order, one image path); ConfigError unless it holds <class>/<images>."""
    folder = pathlib.Path(data_dir).expanduser()
    layout = f"expected {data_dir}/<class>/<images>"
    if not folder.is_dir():
        raise ConfigError(f"--data_dir={data_dir}: not a folder; {layout}")
    splits = [name for name in SPLIT_FOLDERS if (folder / name).is_dir()]
    if splits:
        choices = ", ".join(f"{data_dir.rstrip('/')}/{name}" for name in splits)
        raise ConfigError(f"--data_dir={data_dir} holds split folders; pass the one to read, one of: {choices}")
    classes = list_class_folders(folder)
    files = [f for names in classes.values() for f in names]
    if not files:
        raise ConfigError(f"--data_dir={data_dir}: no images ({' '.join(IMAGE_EXTENSIONS)}) in class folders; {layout}")
    empty = [name for name, names in classes.items() if not names]
    if empty or len(classes) < 2:
        problem = f"class folders without images: {empty}" if empty else "a single class folder; need >= 2"
        raise ConfigError(f"--data_dir={data_dir}: {problem}")
    return folder, tuple(classes), files[0]


def folder_labels(
    spec: ModelSpec,
    folder_classes: Sequence[str],
    class_map: ClassMap | None,
    model_classes: Sequence[str] | None = None,
    num_classes: int = 0,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """(model class index of each folder class, the model's class names); a workdir gives `model_classes`, a
    weight file only `num_classes`. ConfigError naming the classes that do not fit."""
    folder_classes = list(folder_classes)
    if model_classes is not None and set(folder_classes) <= set(model_classes):  # a workdir: by name
        return np.array([list(model_classes).index(c) for c in folder_classes]), tuple(model_classes)
    num_classes = len(model_classes) if model_classes is not None else num_classes
    if class_map is None:
        if model_classes is not None:
            others = sorted(set(folder_classes) - set(model_classes))
            raise ConfigError(
                f"model {spec.text!r}: folder classes {others[:5]} are not among its classes "
                f"({', '.join(list(model_classes)[:10])}); give --class_map ({CLASS_MAP_FORMS})"
            )
        if len(folder_classes) != num_classes:
            raise ConfigError(
                f"model {spec.text!r} has {num_classes} classes, the folder {len(folder_classes)}; give --class_map "
                f"({CLASS_MAP_FORMS})"
            )
        return np.arange(num_classes), tuple(folder_classes)
    where = f"--class_map={class_map.path}"
    missing = [c for c in folder_classes if c not in class_map.index]
    if missing:
        known = ", ".join(list(class_map.index)[:8])
        raise ConfigError(f"{where} has no entry for folder classes {missing[:5]}; it maps: {known}, ...")
    label_of = np.array([class_map.index[c] for c in folder_classes])
    if label_of.max() >= num_classes or (class_map.names and len(class_map.names) != num_classes):
        size = len(class_map.names) if class_map.names else int(label_of.max()) + 1
        raise ConfigError(f"{where} maps onto {size} classes, model {spec.text!r} has {num_classes}")
    if model_classes is not None:
        return label_of, tuple(model_classes)
    by_index = {k: name for name, k in class_map.index.items()}
    return label_of, class_map.names or tuple(by_index.get(k, f"class_{k}") for k in range(num_classes))


def file_class_count(config: ml_collections.ConfigDict, image_shape: tuple[int, int, int]) -> int:
    """How many classes a weight file's classifier has: the length of its last head bias (the family's layout
    names the head), found without building anything but the model's shapes."""
    arrays, _ = read_state_dict(config.model.pretrained)
    layout = LAYOUTS[config.model.name]
    model = create_model(config.model, 2, backends.model_layers("xla"))
    key, dummy = jax.random.key(0), jnp.zeros((1, *image_shape), jnp.float32)
    shapes = jax.eval_shape(lambda: model.init({"params": key, "dropout": key}, dummy, train=False))
    for path in reversed(list(traverse_util.flatten_dict(dict(shapes)))):
        if path[0] == "params" and path[1] in layout.head and path[-1] == "bias":
            source = layout.source(path).key
            if source in arrays:
                return int(arrays[source].shape[0])
    raise ConfigError(f"{config.model.pretrained}: no classifier bias of {config.model.name} ({layout.head}) in it")


def file_config(spec: ModelSpec, base: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The config of a weight file's model: `base` (today's defaults) with the model, the file and the
    preprocessing its weights expect (`apply_preprocessing`: the @preset, else the file's metadata)."""
    config = copy.deepcopy(base)
    config.model.name, config.model.pretrained, config.model.init_from = spec.model_name, str(spec.path), ""
    config.loss, config.eval_tta = "softmax_cross_entropy", ()
    if spec.preset:
        config.data.preprocessing = spec.preset
    config = apply_preprocessing(config)
    if not config.data.mean or not config.data.std:
        raise ConfigError(
            f"model {spec.text!r}: the file records no preprocessing; name a preset, "
            f"{spec.model_name}={spec.path}@PRESET with PRESET one of: {', '.join(PRESETS)}"
        )
    config.data.channels = config.data.channels or 3  # published weights take RGB
    return config


def plan_model(
    spec: ModelSpec,
    base: ml_collections.ConfigDict,
    folder: tuple[pathlib.Path, tuple[str, ...], str],
    class_map: ClassMap | None,
    checkpoint: str,
    batch_size: int,
) -> Plan:
    """A model's config, classes, label mapping, input shape and statistics; reads no image but one."""
    _, classes, first_image = folder
    if spec.is_file:
        config = file_config(spec, base)
        shape, _ = target_shape([first_image], config.data.channels, config.data.image_size)
        label_of, names = folder_labels(spec, classes, class_map, num_classes=file_class_count(config, shape))
        mean, std = tuple(config.data.mean), tuple(config.data.std)
    else:
        restore.resolve_checkpoint(spec.path, checkpoint)
        config = restore.load_run_config(spec.path)
        info = restore.load_data_info(spec.path, config)
        label_of, names = folder_labels(spec, classes, class_map, model_classes=info.class_names)
        shape, mean, std = info.image_shape, info.mean, info.std
        config.data.channels = shape[2]
        if target_shape([first_image], shape[2], config.data.image_size)[0] != shape:
            if shape[0] != shape[1]:
                raise ConfigError(f"model {spec.text!r} takes {shape[0]}x{shape[1]} images, {first_image} differs")
            config.data.image_size = shape[0]  # resize to the run's input size
    config.batch_size = config.eval_batch_size = batch_size
    if not tensorflow_installed():  # e.g. a GPU image: PIL decodes, the batches are made on the device
        config.data.pipeline = "device"
    return Plan(spec, config, names, label_of, tuple(shape), tuple(mean), tuple(std))


def folder_images(plan: Plan, folder: pathlib.Path, cache: dict[str, Data]) -> Data:
    """Every image of the folder in 'train', decoded for this model's input (once per distinct decoding)."""
    config = copy.deepcopy(plan.config)
    data = config.data
    data.source, data.dir, data.name = "folder", str(folder), folder.name
    data.val_fraction, data.test_fraction, data.max_train_examples = 0.0, 0.0, 0
    data.mean, data.std = plan.mean, plan.std  # given, so nothing is measured
    config.cv.folds, config.cv.fold = 0, -1
    key = json.dumps({k: v for k, v in data.to_dict().items() if k not in ("mean", "std")}, sort_keys=True, default=str)
    if key not in cache:
        cache[key] = load_data(config)
    return cache[key]


def evaluation_data(plan: Plan, images: Data) -> Data:
    """The folder's images as the 'test' split, labelled in the model's classes, described as the model sees data."""
    split = images.split("train")
    split = dataclasses.replace(split, labels=plan.label_of[split.labels].astype(np.int32))
    info = {"class_names": plan.class_names, "image_shape": images.image_shape, "mean": plan.mean, "std": plan.std}
    described = restore.data_from_info(info, plan.config)
    return dataclasses.replace(described, name=images.name, splits={**described.splits, "test": split})


def evaluate_model(
    plan: Plan, folder: pathlib.Path, out: pathlib.Path, cache: dict[str, Data], checkpoint: str, speed_seconds: float
) -> dict[str, Any]:
    """One model on the folder with eval's code; writes <out>/<label>/ and returns its comparison row."""
    spec, data = plan.spec, evaluation_data(plan, folder_images(plan, folder, cache))
    if spec.is_file:
        trainer, state = build_trainer(plan.config, data)
        weights, step, source = spec.path.name, 0, str(spec.path)
    else:
        run = restore.load_run(spec.path, checkpoint, with_data=False)
        run.config.eval_batch_size = plan.config.eval_batch_size  # the trainer's config: one batch for all
        run.config.data.pipeline = plan.config.data.pipeline
        trainer, state = dataclasses.replace(run.trainer, data=data), run.state
        weights, step = run.checkpoint, run.step
        source = f"{spec.path} ({run.checkpoint} checkpoint, step {step})"
    evaluation = cli.evaluate_split(
        trainer,
        state,
        "test",
        checkpoint=weights,
        checkpoint_step=step,
        speed_seconds=speed_seconds,
        split_label=str(folder),
    )
    result = evaluation.report
    if jax.process_index() == 0:
        seen = np.union1d(evaluation.outputs["label"], evaluation.outputs["prediction"])
        pictured = seen if data.num_classes > len(plan.label_of) else None  # a few classes of many: those only
        subtitle = f"{spec.label} on {folder.name} ({result['num_examples']:,} images)"
        title = f"{spec.label} on {folder}"
        cli.write_evaluation(out / spec.label, evaluation, cli.split_ids(data, "test"), title, subtitle, pictured)
    row = comparison_table.summary_row(spec.label, plan.config.model.name, source, data.image_shape, result)
    row["parameters"] = count_parameters(state.params)
    logging.info(
        "compare_models: %s accuracy %.4f (%d of %d), %s img/s",
        spec.label,
        result["accuracy"],
        round(result["accuracy"] * result["num_examples"]),
        result["num_examples"],
        f"{result['images_per_second']:.0f}" if result["images_per_second"] else "(not timed)",
    )
    return row


def compare_models(
    models: Sequence[str],
    data_dir: str,
    out: str | pathlib.Path,
    *,
    base_config: ml_collections.ConfigDict,
    class_map: str | None = None,
    checkpoint: str = "best",
    batch_size: int = 128,
    speed_seconds: float = 2.0,
) -> dict[str, Any]:
    """Scores every model of `models` (SPEC_FORMS) on the labelled folder `data_dir` and writes `out`/:
    comparison.md, comparison.json, comparison.png and <label>/ (eval's report files) per model.

    `base_config`: the defaults a weight file's model is built from. `batch_size`: evaluation batch and the
    batch of the images/second figure; `speed_seconds` as in `cli.run_eval` (0: not timed). Returns
    comparison.json's content.
    """
    devices = jax.device_count()
    if batch_size <= 0 or batch_size % devices:
        raise ConfigError(f"--batch_size={batch_size} must be a positive multiple of the device count ({devices})")
    specs = parse_specs(models)
    folder = class_folder(data_dir)
    mapping = read_class_map(class_map) if class_map else None
    plans = [plan_model(spec, base_config, folder, mapping, checkpoint, batch_size) for spec in specs]
    out, cache = pathlib.Path(out), {}
    rows = [evaluate_model(plan, folder[0], out, cache, checkpoint, speed_seconds) for plan in plans]
    comparison = comparison_table.comparison(rows, folder[0], folder[1], batch_size)
    if jax.process_index() == 0:
        comparison_table.write_comparison(out, comparison)
        logging.info("wrote %s", out / "comparison.md")
    return comparison
