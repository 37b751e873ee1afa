"""dl4cv_jax: image classification in JAX/Flax, from one config file to a trained, evaluated model.

Importing the package (or any of its modules) changes no global state. Process-level set-up (PRNG
implementation, XLA:CPU flags, allocator) is the one explicit call `dl4cv_jax.process.configure_process()`,
which `main.py` and the trainer make.
"""
