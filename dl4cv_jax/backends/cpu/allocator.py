"""jemalloc for CPU runs: `process.configure_process(restart=True)` (main.py, the benchmarks) restarts the
process under it where the machine has it.

Why: XLA:CPU allocates a step's temporaries afresh at every execution, in buffers of tens to hundreds of MB. glibc's
malloc serves such sizes with mmap and returns them with munmap, so every step faults the same memory in again, and the
kernel zeroes every page: for a ResNet-20 float32 step on a small CPU, a sizeable share of the step's CPU time went to
page faults. glibc's tunables do not fix it: its thread arenas mmap anything above 64 MB whatever the thresholds say,
and with one arena for all threads the faults go but the step is no faster. jemalloc, with `oversize_threshold:0` so
that large allocations are cached like the others, keeps the pages, and the faults and their kernel time all but vanish.
jemalloc still returned freed pages to the kernel after its decay time (10 s) had passed, and in some processes that
struck buffers every step: such a process faulted many times more often and ran clearly slower than others running the
same step. `dirty_decay_ms:-1` and `muzzy_decay_ms:-1` keep freed pages for the life of the process (its resident memory
stays at its peak, as a training process's does anyway), and processes then ran alike. The figures, and the speed-ups,
are in benchmarks/RESULTS.md.

The allocator must be in place before the process starts (LD_PRELOAD), so `restart_under_jemalloc` runs the
same command line again, once, in a new process image (`os.execv`): the restarted process finds jemalloc already
preloaded and carries on. Nothing happens on machines with an accelerator plugin, where jemalloc is not
installed (`ctypes.util.find_library`), or when LD_PRELOAD already names it.
"""

import ctypes.util
import os
import sys
from collections.abc import Mapping

from dl4cv_jax.backends.cpu.xla_flags import cpu_only

# Large allocations go through the cached arenas too (by default jemalloc frees those at once), and freed pages
# are never handed back to the kernel, so no step faults them in again.
JEMALLOC_CONF = "oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"


def jemalloc_preloaded(environ: Mapping[str, str]) -> bool:
    """Whether LD_PRELOAD in `environ` already names a jemalloc library."""
    return "jemalloc" in environ.get("LD_PRELOAD", "")


def jemalloc_environment(
    environ: Mapping[str, str], library: str | None, cpu_only_machine: bool
) -> dict[str, str] | None:
    """The environment to restart with (LD_PRELOAD with `library` first, MALLOC_CONF unless the user set one),
    or None to carry on as is: an accelerator machine, no jemalloc, or one already preloaded."""
    if not cpu_only_machine or library is None or jemalloc_preloaded(environ):
        return None
    environment = dict(environ)
    environment["LD_PRELOAD"] = ":".join(filter(None, [library, environ.get("LD_PRELOAD", "")]))
    environment.setdefault("MALLOC_CONF", JEMALLOC_CONF)
    return environment


def restart_under_jemalloc() -> None:
    """Replaces this process with the same command line under jemalloc, where `jemalloc_environment` says so;
    otherwise returns. Call it first thing in a `__main__` block, before any work is done."""
    library = ctypes.util.find_library("jemalloc")
    environment = jemalloc_environment(os.environ, library, cpu_only())
    if environment is None:
        return
    print(f"dl4cv_jax: restarting under {library} (XLA:CPU's buffers stay mapped)", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(sys.executable, sys.orig_argv, environment)
