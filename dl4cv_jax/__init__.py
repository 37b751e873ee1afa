"""dl4cv_jax: image classification in JAX/Flax, from one config file to a trained, evaluated model.

Importing the package fixes one process-wide JAX setting, `jax_threefry_partitionable=False`: with the
partitionable threefry (JAX's default since 0.5) XLA:CPU needs ~15 s to compile the random initialisers of a
small CNN, against ~2 s with the classic one. The two give different random bits for the same seed, but each
gives the same bits on 1 or N devices; fixing it here gives "seed s" one meaning on every platform.
"""

import jax

jax.config.update("jax_threefry_partitionable", False)
