"""What every source returns before the common steps (carving, subsetting, statistics) in `sources.py`."""

import dataclasses
from collections.abc import Mapping

from dl4cv_jax.data.dataset import Split


@dataclasses.dataclass(frozen=True, eq=False)
class SourceData:
    """The splits a source has: always 'train'; 'val' and 'test' only when the source defines them.

    A missing 'val' or 'test' is carved from 'train' (stratified) by `load_data`. `every_class_everywhere`: a
    carved split that misses a class is an error (folders: a researcher's own, usually small, data set).
    """

    name: str
    class_names: tuple[str, ...]
    splits: Mapping[str, Split]
    every_class_everywhere: bool = False
