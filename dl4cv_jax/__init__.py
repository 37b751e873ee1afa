"""dl4cv_jax: image classification in JAX/Flax, from one config file to a trained, evaluated model.

Importing the package fixes one process-wide JAX setting, `jax_threefry_partitionable=False`: with the
partitionable threefry (JAX's default since 0.5) XLA:CPU needs ~15 s to compile the random initialisers of a
small CNN, against ~2 s with the classic one. The two give different random bits for the same seed, but each
gives the same bits on 1 or N devices; fixing it here gives "seed s" one meaning on every platform.

The package itself does not import jax: where jax is not loaded yet, the setting goes into the environment
variable jax reads when it loads (and child processes inherit). So `main.py` can restart itself under jemalloc
(`cpu_allocator.py`) before paying for a jax import it would throw away (1.2 s per run on the 2-core CPU).
"""

import os
import sys

if "jax" in sys.modules:
    sys.modules["jax"].config.update("jax_threefry_partitionable", False)
else:
    os.environ["JAX_THREEFRY_PARTITIONABLE"] = "false"
