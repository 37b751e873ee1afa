"""Converts a PyTorch checkpoint to safetensors, recording the preprocessing the weights expect:

    python -m dl4cv_jax.pretrained.to_safetensors IN.pth OUT.safetensors [--preprocessing=imagenet]

Why: a `.pth` file is a pickle only torch can read, and records nothing about its inputs. The `.safetensors` file
holds the same tensors under the same keys (less a `module.` prefix), readable without torch (a GPU image with jax
only), and, with --preprocessing, the preset's mean/std/size in its metadata (`dl4cv.preprocessing`), which a run
with config.model.pretrained=OUT then uses (preprocessing.py). Floating tensors are stored as float32, as the loader
reads them anyway. IN may be a .safetensors file too, to add or change the recorded preprocessing.
"""

import argparse
import pathlib
import sys

import numpy as np

from dl4cv_jax.choices import ConfigError
from dl4cv_jax.pretrained import preprocessing
from dl4cv_jax.pretrained.state_dict import SAFETENSORS_SUFFIX, read_state_dict


def convert_file(source: str | pathlib.Path, target: str | pathlib.Path, preset_name: str = "") -> int:
    """Writes `source`'s tensors to the safetensors file `target` with preset `preset_name` recorded ('' keeps what
    `source` records, if anything); returns the tensor count. ConfigError naming the file or preset when it cannot."""
    source, target = pathlib.Path(source).expanduser(), pathlib.Path(target).expanduser()
    if not source.is_file():
        raise ConfigError(f"{source}: no such file")
    if target.suffix != SAFETENSORS_SUFFIX:
        raise ConfigError(f"{target}: the output name must end in {SAFETENSORS_SUFFIX}")
    if target.resolve() == source.resolve():
        raise ConfigError(f"{target}: the output must be another file than the input")
    if preset_name and preset_name not in preprocessing.PRESETS:  # before any reading
        choices = ", ".join(sorted(preprocessing.PRESETS))
        raise ConfigError(f"--preprocessing={preset_name!r} is not a preset; choose one of: {choices}")
    fields = preprocessing.preset(preset_name) if preset_name else None
    arrays, metadata = read_state_dict(source)
    metadata = dict(metadata) | (preprocessing.to_metadata(fields) if fields else {})
    from safetensors.numpy import save_file

    tmp = target.with_name(target.name + ".tmp")
    save_file({key: np.ascontiguousarray(value) for key, value in arrays.items()}, str(tmp), metadata=metadata)
    tmp.replace(target)
    return len(arrays)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (0, or 1 with one line on stderr)."""
    parser = _Parser(prog="python -m dl4cv_jax.pretrained.to_safetensors", description=__doc__.splitlines()[0])
    parser.add_argument("input", help="PyTorch checkpoint (.pth/.pt/.th/.bin) or .safetensors file")
    parser.add_argument("output", help="the .safetensors file to write")
    parser.add_argument(
        "--preprocessing", default="", help=f"preset to record: {', '.join(sorted(preprocessing.PRESETS))}"
    )
    args = parser.parse_args(argv)
    try:
        count = convert_file(args.input, args.output, args.preprocessing)
    except ConfigError as error:
        print(f"to_safetensors: {error}", file=sys.stderr)
        return 1
    recorded = preprocessing.recorded_preprocessing(args.output)
    print(f"wrote {args.output}: {count} tensors, preprocessing recorded: {recorded or 'none'}")
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"to_safetensors: {message} (usage: {self.prog} IN OUT.safetensors [--preprocessing=NAME])\n")


if __name__ == "__main__":
    sys.exit(main())
