"""Process-level set-up, in one explicit call: `configure_process()`. Importing dl4cv_jax changes nothing.

`main.py` calls it first thing (with `restart=True`), and the trainer calls it for library users
(`train_and_evaluate` and `build_trainer`), so a seed means the same numbers from the command line and from a
notebook. It does three things, each only where it applies. The first call decides: later calls (the trainer's,
after an entry point's own) change nothing, so a benchmark's `xla_cpu_flags=False` stays.

1. PRNG: `jax_threefry_partitionable=False`. The partitionable threefry (jax's default since 0.5) gives other
   random bits for the same key and made XLA:CPU compile a small CNN's initialisers several times slower; the
   classic one gives the same bits on 1 or N devices, so "seed s" has one meaning everywhere. It is a global jax
   setting: a notebook that calls the trainer gets it for its own jax code too (docs/reproducibility.md).
2. XLA:CPU flag (CPU-only machines, before jax starts its backends): `backends/cpu/xla_flags.py`.
3. Allocator (CPU-only machines, `restart=True` only): the process re-executes itself under jemalloc where the
   machine has it, `backends/cpu/allocator.py`. Only a program's entry point may do that, before it has done
   any work; a notebook keeps its allocator.
"""

_configured = False  # set by the first call; see the module docstring


def configure_process(*, restart: bool = False, jemalloc: bool = True, xla_cpu_flags: bool = True) -> None:
    """Applies the set-up above. `restart=True` (entry points only) may replace the process under jemalloc:
    call it before anything else. `jemalloc=False` / `xla_cpu_flags=False` leave those out (benchmarks)."""
    global _configured
    if _configured:
        return
    _configured = True
    if restart and jemalloc:
        from dl4cv_jax.backends.cpu.allocator import restart_under_jemalloc

        restart_under_jemalloc()
    if xla_cpu_flags:
        from dl4cv_jax.backends.cpu.xla_flags import apply_xla_cpu_defaults

        apply_xla_cpu_defaults()
    import jax

    jax.config.update("jax_threefry_partitionable", False)
