"""`models.onednn_conv`: oneDNN's convolutions as XLA custom calls equal XLA's convolution and its gradients."""

import os
import pathlib
import platform
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dl4cv_jax.backends.cpu import conv, onednn_conv
from dl4cv_jax.backends.cpu.layers import cpu_layers
from dl4cv_jax.models import create_model
from tests.conftest import tiny_digits_config

# Inputs and parameters are drawn with "rbg" keys: XLA:CPU compiles the default threefry generator for about a
# second per shape drawn, rbg in a fraction of that, and which values these are is beside the point.

_NHWC = ("NHWC", "HWIO", "NHWC")
# oneDNN's bfloat16 convolutions need AVX-512; on an AVX2 processor the CPU backend gives such layers to XLA
# (tested in test_float32_and_bfloat16_layers_take_onednn_and_other_ones_keep_xla), and these tests do not apply.
BF16_KERNELS = "avx512" in pathlib.Path("/proc/cpuinfo").read_text()
needs_bf16_kernels = pytest.mark.skipif(not BF16_KERNELS, reason="oneDNN has no bfloat16 kernels on this processor")


pytestmark = pytest.mark.skipif(
    (sys.platform, platform.machine()) != ("linux", "x86_64"), reason="the oneDNN wheels are for Linux x86-64 only"
)


def test_the_bridge_builds_and_registers_on_this_cpu():
    # A dependency (the oneDNN wheel) and g++ are all it needs: on a CPU install it must be there, not skipped.
    assert onednn_conv.available()
    assert onednn_conv.build_library().is_file()


@pytest.mark.parametrize(
    ("shape", "kernel", "strides", "pads"),
    [
        ((4, 10, 10, 16), (3, 3), (1, 1), ((1, 1), (1, 1))),  # ResNet-20's 3x3 layers
        ((3, 9, 8, 3), (3, 3), (1, 1), ((1, 1), (1, 1))),  # an RGB stem, non-square
        ((2, 14, 14, 6), (5, 5), (1, 1), ((0, 0), (0, 0))),  # LeNet's conv2
        ((2, 8, 8, 5), (3, 3), (2, 2), ((0, 1), (0, 1))),  # 'SAME' at stride 2: an asymmetric pad
        ((2, 9, 9, 4), (3, 3), (2, 2), ((1, 1), (1, 1))),  # strided, odd size
        ((2, 8, 8, 4), (1, 1), (2, 2), ((0, 0), (0, 0))),  # projection shortcut
        ((2, 9, 10, 4), (3, 2), (2, 1), ((1, 1), (0, 1))),  # a different stride and kernel size per axis
        ((2, 11, 11, 2), (2, 2), (3, 3), ((0, 2), (1, 0))),  # kernel smaller than the stride
        ((1, 15, 13, 3), (7, 7), (2, 2), ((3, 3), (3, 3))),  # ResNet-50's stem, one image
    ],
)
@pytest.mark.parametrize("macs_per_thread", [10**18, 1], ids=["one_thread", "every_thread"])
def test_value_and_both_gradients_equal_xla_convolution(shape, kernel, strides, pads, macs_per_thread, monkeypatch):
    monkeypatch.setattr(onednn_conv, "MACS_PER_THREAD", macs_per_thread)
    keys = jax.random.split(jax.random.key(0, impl="rbg"), 3)
    x = jax.random.normal(keys[0], shape)
    w = jax.random.normal(keys[1], (*kernel, shape[3], 7)) * 0.3
    y, vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC), x, w)
    g = jax.random.normal(keys[2], y.shape)
    dx, dw = vjp(g)
    np.testing.assert_allclose(jax.jit(onednn_conv.forward, static_argnums=(2, 3))(x, w, strides, pads), y, 1e-5, 1e-5)
    got_dx = jax.jit(onednn_conv.input_gradient, static_argnums=(2, 3))(g, w, strides, pads, x)
    got_dw = jax.jit(onednn_conv.kernel_gradient, static_argnums=(2, 3))(g, w, strides, pads, x)
    np.testing.assert_allclose(got_dx, dx, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_dw, dw, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("lhs", "rhs", "strides", "pads"),
    [
        ((128, 14, 14, 6), (5, 5, 6, 16), (1, 1), ((0, 0), (0, 0))),  # LeNet's conv2
        ((128, 34, 34, 16), (3, 3, 16, 16), (1, 1), ((0, 0), (0, 0))),  # ResNet-20's first stage, pre-padded
        ((8, 9, 9, 4), (3, 3, 4, 5), (2, 2), ((0, 0), (0, 0))),
    ],
)
def test_a_convolutions_multiply_adds_are_half_xlas_flop_count(lhs, rhs, strides, pads):
    # Unpadded: XLA leaves the taps that fall on padding out of its count, the rule counts every tap.
    xla = jax.jit(lambda x, w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC))
    flops = xla.lower(jnp.ones(lhs), jnp.ones(rhs)).cost_analysis()["flops"]
    out = lax.conv_general_shape_tuple(lhs, rhs, strides, pads, _NHWC)
    assert onednn_conv.multiply_adds(out, rhs) == flops / 2


def test_small_passes_ask_for_one_thread_and_large_ones_for_one_per_macs_per_thread():
    assert onednn_conv.openmp_threads(30_720_000, 20_000_000) == 1  # LeNet's conv2: on the calling thread
    assert onednn_conv.openmp_threads(0, 20_000_000) == 1
    assert onednn_conv.openmp_threads(301_989_888, 20_000_000) == 15  # the bridge clamps it to OpenMP's threads


def test_each_pass_carries_its_thread_count_to_the_bridge():
    def threads_attributes(lhs_shape, rhs_shape):
        x, w = jnp.ones(lhs_shape), jnp.ones(rhs_shape)
        f = jax.jit(lambda x, w: jnp.sum(onednn_conv.forward(x, w, (1, 1), ((1, 1), (1, 1))) ** 2))
        text = jax.jit(jax.grad(f, argnums=(0, 1))).lower(x, w).as_text()
        return [int(n) for n in re.findall(r"@dl4cv_onednn_conv_\w+\(.*threads = (\d+) : i64", text)]

    small, large = (2, 8, 8, 4), (128, 32, 32, 16)
    assert threads_attributes(small, (3, 3, 4, 4)) == [1, 1, 1]  # forward, input and kernel gradients
    assert threads_attributes(large, (3, 3, 16, 16)) == [15, 15, 15]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to tell one thread from all")
@pytest.mark.parametrize("macs_per_thread", [10**18, 1], ids=["one_thread", "every_thread"])
def test_onednn_runs_a_pass_on_the_threads_its_call_asks_for(macs_per_thread):
    # oneDNN's verbose mode (level 2: creation too) names its thread count once, when it builds its first primitive:
    # here, the pass's, inside the call (the kernel reorder built after it always runs on one thread).
    code = (
        "import jax.numpy as jnp; from dl4cv_jax.backends.cpu import onednn_conv as o; "
        f"o.MACS_PER_THREAD = {macs_per_thread}; "
        "o.forward(jnp.ones((2, 8, 8, 4)), jnp.ones((3, 3, 4, 4)), (1, 1), ((1, 1), (1, 1))).block_until_ready()"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"ONEDNN_VERBOSE": "2"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    (info,) = [line for line in result.stdout.splitlines() if "runtime:OpenMP" in line]
    expected = 1 if macs_per_thread > 1 else len(os.sched_getaffinity(0))
    assert info.endswith(f"nthr:{expected}")


def test_float32_and_bfloat16_layers_take_onednn_and_other_ones_keep_xla():
    x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 4))
    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D) == "onednn"
    assert conv.cpu_path(x, w, (2, 2), conv._FLAX_2D) == "onednn"
    assert conv.cpu_path(jnp.ones((2, 8, 8, 1)), jnp.ones((5, 5, 1, 4)), (1, 1), conv._FLAX_2D) == "tap_sum_onednn"
    # bfloat16: oneDNN's where this processor has its kernels (AVX-512), XLA's elsewhere (an AVX2 machine).
    bf16_path = conv.cpu_path(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), conv._FLAX_2D)
    assert bf16_path == ("onednn" if BF16_KERNELS else "canonical")
    assert conv.cpu_path(x.astype(jnp.bfloat16), w, (1, 1), conv._FLAX_2D) == "canonical"  # mixed types
    assert conv.cpu_path(x.astype(jnp.float16), w.astype(jnp.float16), (1, 1), conv._FLAX_2D) == "canonical"
    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D, ((-1, 1), (1, 1))) == "canonical"  # cropping: XLA's
    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D, rhs_dilation=(2, 2)) == "xla"


def test_small_convs_take_onednn_too():
    image = jnp.ones((1, 32, 32, 16))  # a ResNet-20 layer at batch 1: 2.4M multiply-adds, on one OpenMP thread
    assert conv.cpu_path(image, jnp.ones((3, 3, 16, 16)), (1, 1), conv._FLAX_2D) == "onednn"
    wide = jnp.ones((1, 32, 32, 64))
    assert conv.cpu_path(wide, jnp.ones((3, 3, 64, 64)), (8, 8), conv._FLAX_2D) == "onednn"  # a 64th of the taps


def test_kept_conv_inputs_add_a_conditional_on_xla_paths_only(monkeypatch):
    # oneDNN's passes are custom calls, which XLA never fuses into: a conditional before them would only cost a
    # copy and a dispatch (conv.KEEP_CONV_INPUTS). XLA's convolutions keep theirs.
    x, w = jnp.ones((2, 8, 8, 16)), jnp.ones((3, 3, 16, 4))

    def conditionals(use_onednn: bool) -> int:
        monkeypatch.setattr(conv, "USE_ONEDNN", use_onednn)

        def loss(x, w):
            return jnp.sum(conv.conv_general_dilated(jnp.maximum(x, 0.0), w, (1, 1), "SAME", conv._FLAX_2D))

        hlo = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile().as_text()
        return hlo.count(" conditional(")

    assert conv.cpu_path(x, w, (1, 1), conv._FLAX_2D) == "onednn"
    assert conditionals(use_onednn=True) == 0
    assert conditionals(use_onednn=False) >= 1


def _custom_calls(compiled_hlo: str) -> list[str]:
    return [
        line.split('custom_call_target="')[1].split('"')[0]
        for line in compiled_hlo.splitlines()
        if "custom_call_target=" in line
    ]


@pytest.mark.parametrize("model_name", ["lenet", "cnn"])
def test_a_models_train_gradient_runs_on_onednn_and_matches_xla(model_name, monkeypatch):
    model = create_model(tiny_digits_config(model__name=model_name).model, 10, cpu_layers())
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (4, 28, 28, 1) if model_name == "lenet" else (4, 8, 8, 1))
    labels = jnp.arange(4) % 10
    variables = model.init(jax.random.key(0, impl="rbg"), x, train=False)

    def loss(params):
        logits, _ = model.apply({**variables, "params": params}, x, train=True, mutable=["batch_stats"])
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    step = jax.jit(jax.value_and_grad(loss))
    calls = _custom_calls(step.lower(variables["params"]).compile().as_text())
    assert any(c.startswith("dl4cv_onednn_conv_kernel_gradient") for c in calls), calls
    value, grads = step(variables["params"])
    monkeypatch.setattr(conv, "USE_ONEDNN", False)  # read while tracing: a new function traces anew
    ref_value, ref_grads = jax.jit(jax.value_and_grad(loss))(variables["params"])
    np.testing.assert_allclose(value, ref_value, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _loss(conv_fn, x, w):
    return jnp.sum(jnp.sin(conv_fn(x, w, (1, 1), "SAME", dimension_numbers=conv._FLAX_2D)))


def test_gradients_are_bit_identical_from_run_to_run():
    x, w = (
        jax.random.normal(jax.random.key(1, impl="rbg"), (8, 16, 16, 16)),
        jax.random.normal(jax.random.key(2, impl="rbg"), (3, 3, 16, 8)),
    )
    grad = jax.jit(jax.grad(_loss, argnums=(1, 2)), static_argnums=0)
    first = grad(conv.conv_general_dilated, x, w)
    for _ in range(3):
        for a, b in zip(first, grad(conv.conv_general_dilated, x, w), strict=True):
            np.testing.assert_array_equal(a, b)


def test_vmapped_kernels_and_a_scan_give_the_separate_convolutions_answers():
    xs = jax.random.normal(jax.random.key(1, impl="rbg"), (3, 2, 8, 8, 4))  # 3 copies (vmap) or 3 steps (scan)
    ws = jax.random.normal(jax.random.key(2, impl="rbg"), (3, 3, 3, 4, 5))
    grad = jax.grad(_loss, argnums=(1, 2))
    expected = [jax.grad(_loss, argnums=(1, 2))(lax.conv_general_dilated, x, w) for x, w in zip(xs, ws, strict=True)]
    vmapped = jax.jit(jax.vmap(lambda x, w: grad(conv.conv_general_dilated, x, w)))(xs, ws)
    scanned = jax.jit(lambda xs, ws: lax.scan(lambda c, xw: (c, grad(conv.conv_general_dilated, *xw)), 0, (xs, ws)))
    for got in (vmapped, scanned(xs, ws)[1]):
        for i, (dx, dw) in enumerate(expected):
            np.testing.assert_allclose(got[0][i], dx, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got[1][i], dw, rtol=1e-4, atol=1e-4)


def test_a_missing_compiler_is_named_in_one_warning_and_xla_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "no-such-compiler++")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no library cached there
    with pytest.raises(onednn_conv.BuildError, match="no-such-compiler"):
        onednn_conv.build_library()
    code = "from dl4cv_jax.backends.cpu import onednn_conv as o; print(o.available())"
    env = dict(os.environ, CXX="no-such-compiler++", XDG_CACHE_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    warning = [line for line in result.stderr.splitlines() if "oneDNN unavailable" in line]
    assert len(warning) == 1 and "no-such-compiler++" in warning[0] and "config.backend='xla'" in warning[0]


def test_the_library_is_built_once_and_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = onednn_conv.build_library()
    built_at = first.stat().st_mtime_ns
    assert onednn_conv.build_library() == first and first.stat().st_mtime_ns == built_at
    assert first.parent == tmp_path / "dl4cv_jax"


@needs_bf16_kernels
def test_bfloat16_convolutions_round_like_xlas():
    # Both accumulate in float32 and round the result to bfloat16: compared with float32 on the same
    # (bf16-rounded) inputs, oneDNN's error is bf16 rounding, as large as XLA's own bf16 convolution's.
    keys = jax.random.split(jax.random.key(0, impl="rbg"), 3)
    x = jax.random.normal(keys[0], (4, 10, 10, 16)).astype(jnp.bfloat16)
    w = (jax.random.normal(keys[1], (3, 3, 16, 8)) * 0.3).astype(jnp.bfloat16)
    g = jax.random.normal(keys[2], (4, 5, 5, 8)).astype(jnp.bfloat16)
    strides, pads = (2, 2), ((1, 1), (1, 1))

    def xla(x, w):
        return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)

    exact_y, vjp = jax.vjp(xla, x.astype(jnp.float32), w.astype(jnp.float32))
    exact_dx, exact_dw = vjp(g.astype(jnp.float32))
    bf16_y, bf16_vjp = jax.vjp(xla, x, w)
    for got, xla_bf16, exact in [
        (onednn_conv.forward(x, w, strides, pads), bf16_y, exact_y),
        (onednn_conv.input_gradient(g, w, strides, pads, x), bf16_vjp(g)[0], exact_dx),
        (onednn_conv.kernel_gradient(g, w, strides, pads, x), bf16_vjp(g)[1], exact_dw),
    ]:
        assert got.dtype == jnp.bfloat16
        error = float(jnp.max(jnp.abs(got.astype(jnp.float32) - exact)))
        xla_error = float(jnp.max(jnp.abs(xla_bf16.astype(jnp.float32) - exact)))
        assert error <= 2 * xla_error + 1e-6 and error <= 2**-7 * float(jnp.max(jnp.abs(exact)))


def test_a_flax_layer_on_onednn_has_the_plain_layers_output():
    layer = nn.Conv(6, (3, 3), (2, 2), padding="SAME", conv_general_dilated=conv.conv_general_dilated)
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (2, 9, 9, 5))
    params = nn.Conv(6, (3, 3), (2, 2), padding="SAME").init(jax.random.key(0, impl="rbg"), x)
    expected = nn.Conv(6, (3, 3), (2, 2), padding="SAME").apply(params, x)
    np.testing.assert_allclose(layer.apply(params, x), expected, rtol=1e-5, atol=1e-5)


# (direction, input NHWC, kernel HWIO, strides, dtype, whether the bridge takes the direct JIT kernel there)
_KERNEL_CHOICES = [
    ("input_gradient", (128, 32, 32, 16), (3, 3, 16, 16), (1, 1), "float32", True),  # ResNet-20's layer 1
    ("input_gradient", (128, 32, 32, 16), (3, 3, 16, 32), (2, 2), "float32", True),
    ("input_gradient", (128, 32, 32, 16), (3, 3, 16, 32), (2, 2), "bfloat16", True),
    ("input_gradient", (128, 16, 16, 32), (3, 3, 32, 64), (2, 2), "bfloat16", True),
    ("input_gradient", (128, 32, 32, 16), (3, 3, 16, 16), (1, 1), "bfloat16", False),
    ("input_gradient", (128, 14, 14, 6), (5, 5, 6, 16), (1, 1), "bfloat16", True),  # LeNet's conv2
    ("input_gradient", (128, 16, 16, 32), (3, 3, 32, 32), (1, 1), "float32", False),  # 32 channels: as fast
    ("input_gradient", (128, 8, 8, 64), (3, 3, 64, 64), (1, 1), "float32", False),
    ("forward", (128, 14, 14, 6), (5, 5, 6, 16), (1, 1), "float32", True),  # LeNet's conv2
    ("forward", (128, 14, 14, 6), (5, 5, 6, 16), (1, 1), "bfloat16", True),
    ("forward", (128, 32, 32, 16), (3, 3, 16, 32), (2, 2), "float32", False),
    ("forward", (128, 8, 8, 64), (3, 3, 64, 64), (1, 1), "float32", False),
]


def _family(name: str) -> str:
    return name.split(":")[0]


@needs_bf16_kernels  # the choices below include bfloat16 passes
def test_few_channel_passes_take_the_direct_kernel_where_onednn_first_picks_a_brgemm_one():
    pads = ((1, 1), (1, 1))
    checked = 0
    for direction, lhs, rhs, strides, dtype, direct in _KERNEL_CHOICES:
        first = onednn_conv.kernel_name(direction, lhs, rhs, strides, pads, dtype, first_choice=True)
        chosen = onednn_conv.kernel_name(direction, lhs, rhs, strides, pads, dtype)
        if not first.startswith("brg"):  # a processor whose first choice is not a brgemm kernel: nothing to swap
            assert chosen == first, (direction, lhs, rhs, dtype)
            continue
        checked += 1
        if direct:
            assert _family(chosen) in ("jit", "jit_bf16"), (direction, lhs, rhs, dtype, chosen)
            assert chosen.split(":")[-1] == first.split(":")[-1]  # the same instruction set
        else:
            assert chosen == first, (direction, lhs, rhs, dtype, chosen)
    if not checked:
        pytest.skip(f"oneDNN picks no brgemm kernel on this processor ({first})")


def test_wide_convs_keep_onednns_first_kernel_and_xlas_values():
    # The direct kernels are covered by the tests above (all their convs have few channels); this one runs the
    # brgemm kernels that wide layers keep.
    keys = jax.random.split(jax.random.key(0, impl="rbg"), 3)
    x, w = jax.random.normal(keys[0], (2, 6, 6, 40)), jax.random.normal(keys[1], (3, 3, 40, 48)) * 0.1
    strides, pads = (1, 1), ((1, 1), (1, 1))
    for direction in ("forward", "input_gradient"):
        chosen = onednn_conv.kernel_name(direction, x.shape, w.shape, strides, pads)
        assert chosen == onednn_conv.kernel_name(direction, x.shape, w.shape, strides, pads, first_choice=True)
    y, vjp = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC), x, w)
    g = jax.random.normal(keys[2], y.shape)
    np.testing.assert_allclose(onednn_conv.forward(x, w, strides, pads), y, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(onednn_conv.input_gradient(g, w, strides, pads, x), vjp(g)[0], rtol=1e-4, atol=1e-4)


def test_the_kernel_switch_keeps_onednns_first_choice_and_refuses_unknown_values():
    lhs, rhs, strides, pads = (128, 32, 32, 16), (3, 3, 16, 16), (1, 1), ((1, 1), (1, 1))
    first = onednn_conv.kernel_name("input_gradient", lhs, rhs, strides, pads, first_choice=True)
    script = (
        "from dl4cv_jax.backends.cpu import onednn_conv as o; "
        f"print(o.kernel_name('input_gradient', {lhs}, {rhs}, {strides}, {pads}))"
    )
    env = {**os.environ, onednn_conv.KERNELS_SWITCH: "first"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == first
    with pytest.raises(ValueError, match="DL4CV_ONEDNN_KERNELS='fastest' is not supported; choose one of: default"):
        onednn_conv.check_kernel_switch({onednn_conv.KERNELS_SWITCH: "fastest"})
    onednn_conv.check_kernel_switch({onednn_conv.KERNELS_SWITCH: "first"})  # accepted
