"""What every source returns before the common steps (carving, subsetting, statistics) in `sources.py`."""

import dataclasses
from collections.abc import Mapping

from dl4cv_jax.data.dataset import Split


@dataclasses.dataclass(frozen=True, eq=False)
class SourceData:
    """The splits a source has: always 'train'; 'val' and 'test' only when the source defines them.

    A missing 'val' or 'test' is carved from 'train' (stratified) by `load_data`.
    """

    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]
