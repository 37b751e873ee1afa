"""oneDNN's convolutions (the library PyTorch's CPU convolutions run on) inside jitted JAX programs on the CPU.

Why: XLA:CPU 0.10's convolutions are what kept ResNet-20's CPU train step below PyTorch's (benchmarks/RESULTS.md): its
kernel gradients are several times slower than oneDNN's on the same layer, its forward passes and input gradients slower
too, and no XLA flag in this jaxlib routes convolutions to oneDNN. `onednn_conv.cc` beside this file calls oneDNN's
forward, backward-data and backward-weights primitives as XLA custom calls (the XLA FFI), in Flax's layouts (NHWC
activations, HWIO kernels), in float32 or bfloat16 (oneDNN's bf16 kernels use AVX-512 BF16 where the processor has it;
XLA:CPU 0.10's bf16 convolutions do not).

The same library holds oneDNN's batch normalization (`onednn_batch_norm.cc`, called by `onednn_batch_norm.py`).
The bridge is compiled on first use with the C++ compiler (`$CXX`, else g++) against the oneDNN wheel
(`onednn-cpu-gomp`, a dependency) and jaxlib's FFI headers, and cached under ~/.cache/dl4cv_jax keyed by the
source and versions, so a fresh clone builds it once (a few seconds). Where that cannot be done (no compiler, no
wheel, another platform) `available()` says why in one warning and the layers keep XLA's convolutions.
`config.backend='xla'` does without it (and without the rest of this package).

Which oneDNN kernel runs: oneDNN's first choice, except on 32 or fewer channels, where its direct JIT kernel
measured faster than its brgemm one for some passes (`PreferDirectKernel` in the .cc; `kernel_name` says which
a layer gets). The rule is fixed, not timed at run time, so runs stay bit-identical. `DL4CV_ONEDNN_KERNELS=first`
keeps oneDNN's first choice everywhere, to compare.

How many threads: each call asks for one OpenMP thread per `MACS_PER_THREAD` multiply-adds (BatchNorm: per
`onednn_batch_norm.ELEMENTS_PER_THREAD` values), so small passes run on the XLA thread that calls them.
"""

import ctypes
import functools
import hashlib
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from absl import logging
from jax import lax

from dl4cv_jax.choices import ConfigError

KERNELS_SWITCH = "DL4CV_ONEDNN_KERNELS"
KERNEL_CHOICES = ("default", "first")  # the bridge's rule; oneDNN's first choice everywhere
DIRECTIONS = ("forward", "input_gradient", "kernel_gradient")  # the .cc's Direction, in order
SOURCE = Path(__file__).with_name("onednn_conv.cc")
# Compiled into the same library: oneDNN's batch normalization (onednn_batch_norm.py calls it); both
# include HEADER (engine, streams, scratch, plan cache), which the library's digest covers too.
SOURCES = (SOURCE, Path(__file__).with_name("onednn_batch_norm.cc"))
HEADER = Path(__file__).with_name("onednn_bridge.h")
_WHEEL, _HEADERS = "onednn-cpu-gomp", "onednn-devel-cpu-gomp"
# XLA custom-call target name -> symbol in the compiled library.
_TARGETS = {
    "dl4cv_onednn_conv_forward": "Dl4cvOnednnConvForward",
    "dl4cv_onednn_conv_input_gradient": "Dl4cvOnednnConvInputGradient",
    "dl4cv_onednn_conv_kernel_gradient": "Dl4cvOnednnConvKernelGradient",
    "dl4cv_onednn_batch_norm_forward": "Dl4cvOnednnBatchNormForward",
    "dl4cv_onednn_batch_norm_backward": "Dl4cvOnednnBatchNormBackward",
}

# One OpenMP thread per this many multiply-adds of a convolution pass, at least one, at most OMP_NUM_THREADS or
# the cores (the .cc clamps). Below twice this, a pass runs on the calling XLA thread alone: oneDNN's fork and
# join, and its threads spinning against XLA's, cost more there than a second core gives. The value sits between
# the two cases measured: LeNet's passes (15M and 31M multiply-adds) run on one thread, which made its train step
# and the digits CNN's evaluation clearly faster; ResNet-20's (57M-302M) keep both threads, as its step was slower
# with its 151M convs on one (benchmarks/RESULTS.md, "Small oneDNN passes on one thread").
MACS_PER_THREAD = 20_000_000
NHWC = ("NHWC", "HWIO", "NHWC")  # Flax's layout, the only one the bridge takes (conv.py uses it too)
Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))
Strides = tuple[int, int]


class BuildError(RuntimeError):
    """The bridge could not be compiled or loaded; the message says which part was missing."""


def _installed_file(distribution: str, suffix: str) -> Path:
    """The absolute path of the first file of an installed `distribution` whose path ends with `suffix`."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        raise BuildError(f"the Python package {distribution!r} is not installed (pip install {distribution})") from None
    for file in files:
        if str(file).endswith(suffix):
            return Path(file.locate()).resolve()
    raise BuildError(f"the package {distribution!r} has no file ending in {suffix!r}")


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dl4cv_jax"


def build_library() -> Path:
    """Compiles `SOURCES` into one library (once per source, compiler and versions; cached); returns its path."""
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        raise BuildError(f"no C++ compiler: {os.environ.get('CXX', 'g++')!r} is not on PATH (set $CXX)")
    library_dir = _installed_file(_WHEEL, "/libdnnl.so").parent
    include_dir = _installed_file(_HEADERS, "/oneapi/dnnl/dnnl.hpp").parents[2]
    versions = [importlib.metadata.version(name) for name in ("jaxlib", _WHEEL, _HEADERS)]
    sources = b"".join(path.read_bytes() for path in (*SOURCES, HEADER))
    digest = hashlib.sha256(sources + repr((compiler, versions, sys.platform)).encode()).hexdigest()[:16]
    target = _cache_dir() / f"onednn_conv-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        built = Path(scratch) / target.name
        command = [
            compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-w",
            f"-I{jax.ffi.include_dir()}", f"-I{include_dir}", *map(str, SOURCES),
            f"-L{library_dir}", "-ldnnl", "-lgomp", f"-Wl,-rpath,{library_dir}", "-o", str(built),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            first_error = next((line for line in result.stderr.splitlines() if "error" in line), result.stderr[-300:])
            raise BuildError(f"compiling {' and '.join(s.name for s in SOURCES)} failed: {first_error.strip()}")
        os.replace(built, target)  # atomic: two processes building at once both end with a whole library
    return target


def check_kernel_switch(environ: dict[str, str] | os._Environ = os.environ) -> None:
    """Refuses an unknown `DL4CV_ONEDNN_KERNELS` in one line (main.py prints it as its error), before the bridge
    would silently ignore it."""
    value = environ.get(KERNELS_SWITCH, "default")
    if value not in KERNEL_CHOICES:
        raise ConfigError(f"{KERNELS_SWITCH}={value!r} is not supported; choose one of: {', '.join(KERNEL_CHOICES)}")


@functools.cache
def _library() -> ctypes.CDLL:
    return ctypes.cdll.LoadLibrary(str(build_library()))


@functools.cache
def available() -> bool:
    """Whether oneDNN's convolutions can run here: jax's CPU platform on one device, Linux x86-64, and the bridge
    built and registered. Warns once, naming the reason, when it could have been used but failed."""
    if jax.default_backend() != "cpu" or jax.device_count() != 1:
        return False  # several devices: a custom call has no sharding rule, so XLA's convolutions stay
    if (sys.platform, platform.machine()) != ("linux", "x86_64"):
        return False  # the oneDNN wheels (pyproject.toml) exist for Linux x86-64 only
    check_kernel_switch()
    try:
        library = _library()
    except (BuildError, OSError, subprocess.TimeoutExpired) as error:
        logging.warning("oneDNN unavailable, using XLA's kernels (config.backend='xla' silences this): %s", error)
        return False
    for target, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu")
    return True


def geometry_sizes(
    lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], strides: Strides, pads: Pads
) -> ctypes.Array:
    """The bridge's `Geometry` of an NHWC x HWIO convolution as its C functions take it (15 int64, in order)."""
    out_h, out_w = lax.conv_general_shape_tuple(lhs_shape, rhs_shape, strides, pads, NHWC)[1:3]
    (n, h, w, c), (kh, kw, _, o) = lhs_shape, rhs_shape
    (pt, pb), (pl, pr) = pads
    return (ctypes.c_int64 * 15)(n, h, w, c, o, kh, kw, out_h, out_w, *strides, pt, pl, pb, pr)


def kernel_name(
    direction: str,
    lhs_shape: tuple[int, ...],
    rhs_shape: tuple[int, ...],
    strides: Strides,
    pads: Pads,
    dtype: str = "float32",
    first_choice: bool = False,
) -> str:
    """The oneDNN implementation (e.g. 'jit:avx512_core') that one pass of an NHWC x HWIO convolution runs on,
    or with `first_choice` the one oneDNN itself would pick. For tests, benchmarks and curious users."""
    if direction not in DIRECTIONS or dtype not in ("float32", "bfloat16"):
        raise ValueError(f"kernel_name({direction!r}, dtype={dtype!r}): choose {DIRECTIONS} and float32 or bfloat16")
    sizes = geometry_sizes(lhs_shape, rhs_shape, strides, pads)
    name = ctypes.create_string_buffer(128)
    function = _library().Dl4cvOnednnConvKernelName
    if function(DIRECTIONS.index(direction), sizes, dtype == "bfloat16", not first_choice, name, len(name)) != 0:
        raise ValueError(f"oneDNN has no {direction} kernel for {lhs_shape} x {rhs_shape} in {dtype}")
    return name.value.decode()


@functools.cache
def supports(lhs_shape: tuple[int, ...], rhs_shape: tuple[int, ...], strides: Strides, pads: Pads, dtype: str) -> bool:
    """Whether oneDNN has a kernel for all three passes of this convolution in `dtype` on this processor.

    Why: oneDNN's bfloat16 convolutions need AVX-512 (an AVX2-only processor has none), and its primitive is
    only created when the compiled program first runs, too late to fall back; asking here, at trace time, lets
    such a layer take XLA's convolution instead."""
    for direction in DIRECTIONS:
        try:
            kernel_name(direction, lhs_shape, rhs_shape, strides, pads, dtype)
        except ValueError:
            return False
    return True


def openmp_threads(work: int, work_per_thread: int) -> int:
    """The OpenMP threads a oneDNN call asks for: one per `work_per_thread` of its `work`, at least one (the
    bridge clamps it to the threads OpenMP has). Fixed by the shapes, so a run's sums keep their order."""
    return max(1, work // work_per_thread)


def custom_call(target: str, results: Any) -> Callable[..., Any]:
    """`jax.ffi.ffi_call` of one of the library's `_TARGETS` (registered on first use), run once per element
    under vmap; a clear error where the library is not available here."""
    if not available():  # also registers the custom calls on first use
        raise RuntimeError("oneDNN is not available here (platform, devices or build; see onednn_conv.available)")
    return jax.ffi.ffi_call(target, results, vmap_method="sequential")


def _call(
    target: str,
    result_shape: tuple[int, ...],
    first: jax.Array,
    second: jax.Array,
    strides: Strides,
    pads: Pads,
    macs: int,
):
    call = custom_call(target, jax.ShapeDtypeStruct(result_shape, first.dtype))
    padding = np.array([p for pair in pads for p in pair], np.int64)  # top, bottom, left, right
    threads = np.int64(openmp_threads(macs, MACS_PER_THREAD))
    return call(first, second, strides=np.array(strides, np.int64), padding=padding, threads=threads)


def multiply_adds(output_shape: tuple[int, ...], rhs_shape: tuple[int, ...]) -> int:
    """A convolution pass's multiply-adds: every output element sums kernel height x width x input channels."""
    return math.prod(output_shape) * math.prod(rhs_shape[:3])


# The three are linear in each operand and each one's gradient is made of the other two, so every order of
# differentiation (a gradient penalty, a Hessian-vector product) stays on oneDNN.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _forward(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
    shape = tuple(int(d) for d in lax.conv_general_shape_tuple(lhs.shape, rhs.shape, strides, pads, NHWC))
    return _call("dl4cv_onednn_conv_forward", shape, lhs, rhs, strides, pads, multiply_adds(shape, rhs.shape))


def _forward_bwd(strides: Strides, pads: Pads, operands: tuple[jax.Array, jax.Array], cotangent: jax.Array):
    lhs, rhs = operands
    return (
        _input_gradient(cotangent, rhs, strides, pads, lhs.shape),
        _kernel_gradient(lhs, cotangent, strides, pads, rhs.shape),
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _input_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs_shape: tuple[int, ...]):
    macs = multiply_adds(g.shape, rhs.shape)
    return _call("dl4cv_onednn_conv_input_gradient", lhs_shape, g, rhs, strides, pads, macs)


def _input_gradient_bwd(strides: Strides, pads: Pads, lhs_shape, operands, cotangent: jax.Array):
    g, rhs = operands  # <input_gradient(g, rhs), c> = <g, conv(c, rhs)>
    return _forward(cotangent, rhs, strides, pads), _kernel_gradient(cotangent, g, strides, pads, rhs.shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _kernel_gradient(lhs: jax.Array, g: jax.Array, strides: Strides, pads: Pads, rhs_shape: tuple[int, ...]):
    macs = multiply_adds(g.shape, rhs_shape)
    if rhs_shape[:2] == (1, 1) and strides != (1, 1):
        # oneDNN 2023.2's `jit_1x1:avx2` backward-weights kernel, which it picks for strided 1x1 convolutions (the
        # projection shortcuts) on AVX2 processors, returned wrong values on more than one thread; on one it is
        # right (tests/backends/cpu/test_onednn_conv.py, the shortcut case).
        macs = 0
    return _call("dl4cv_onednn_conv_kernel_gradient", rhs_shape, lhs, g, strides, pads, macs)


def _kernel_gradient_bwd(strides: Strides, pads: Pads, rhs_shape, operands, cotangent: jax.Array):
    lhs, g = operands  # <kernel_gradient(lhs, g), c> = <g, conv(lhs, c)>
    return _input_gradient(g, cotangent, strides, pads, lhs.shape), _forward(lhs, cotangent, strides, pads)


_forward.defvjp(lambda lhs, rhs, strides, pads: (_forward(lhs, rhs, strides, pads), (lhs, rhs)), _forward_bwd)
_input_gradient.defvjp(lambda g, rhs, *static: (_input_gradient(g, rhs, *static), (g, rhs)), _input_gradient_bwd)
_kernel_gradient.defvjp(lambda lhs, g, *static: (_kernel_gradient(lhs, g, *static), (lhs, g)), _kernel_gradient_bwd)


def forward(lhs: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
    """The convolution of NHWC `lhs` with HWIO `rhs` (both float32 or both bfloat16), like
    `lax.conv_general_dilated` (which accumulates bfloat16 in float32 too)."""
    return _forward(lhs, rhs, strides, pads)


def input_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The gradient with respect to the input `lhs` (only its shape is read), given the output gradient `g`."""
    return _input_gradient(g, rhs, strides, pads, lhs.shape)


def kernel_gradient(g: jax.Array, rhs: jax.Array, strides: Strides, pads: Pads, lhs: jax.Array) -> jax.Array:
    """The gradient with respect to the kernel `rhs` (only its shape is read), given the output gradient `g`."""
    return _kernel_gradient(lhs, g, strides, pads, rhs.shape)
