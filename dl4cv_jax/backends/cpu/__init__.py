"""The CPU backend: oneDNN kernels and XLA:CPU workarounds, behind the one seam of `dl4cv_jax.backends`.

Everything here exists for speed on CPUs and nothing else; models, steps and configs never import it. The trainer
asks `dl4cv_jax.backends.model_layers(config.backend)` for the layers and hands them to the model builder, and
`dl4cv_jax.process.configure_process` applies the process-level set-up (`allocator.py`, `xla_flags.py`).
docs/cpu_backend.md says what each module does and why; benchmarks/RESULTS.md has the measurements.

This file imports nothing, so that `allocator` can run before jax is loaded.
"""
