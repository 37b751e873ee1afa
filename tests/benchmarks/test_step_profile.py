"""`benchmarks/step_profile.py`'s summary of a trace: the HLO it reads, nested events counted once, idle time."""

import re

import jax
import jax.numpy as jnp
import pytest

from benchmarks import step_profile


def test_hlo_instructions_name_kinds_shapes_and_origins():
    def f(x, y):
        return jnp.maximum(x @ y + 1.0, 0.0).sum()

    x = jnp.ones((8, 4))
    text = jax.jit(f).lower(x, x.T).compile().as_text()
    instructions = step_profile.hlo_instructions(text)
    assert instructions, "no instruction parsed"
    kinds = {kind for kind, _, _ in instructions.values()}
    assert not any(re.search(r"\.(\d+|clone)$", kind) for kind in kinds)
    assert "dot_general" in kinds  # `dot_general.0`, the matmul
    root_shapes = [shape for shape in (s for _, s, _ in instructions.values()) if shape.startswith("f32[]")]
    assert root_shapes, "the scalar sum's output type is read"
    line = '  %ffi_call.7 = f32[2,3]{1,0} custom-call(%a), custom_call_target="dl4cv_onednn_conv_forward", '
    line += 'metadata={op_name="jit(step)/conv1/ffi_call"}'
    parsed = step_profile.hlo_instructions(line + "\n  ROOT %cond.77.clone = (f32[2]{0}) conditional(%p)")
    assert parsed["ffi_call.7"] == ("dl4cv_onednn_conv_forward", "f32[2,3]{1,0}", "jit(step)/conv1/ffi_call")
    assert parsed["cond.77.clone"][0] == "cond"


def test_nested_events_count_once_and_idle_time_is_the_uncovered_span():
    events = [
        {"name": "cond", "tid": 1, "ts": 0.0, "dur": 10.0},
        {"name": "copy", "tid": 1, "ts": 2.0, "dur": 6.0},  # inside the conditional
        {"name": "ffi", "tid": 2, "ts": 5.0, "dur": 10.0},  # another thread, overlapping
        {"name": "add", "tid": 1, "ts": 20.0, "dur": 5.0},  # after a gap from 15 to 20
    ]
    assert step_profile.self_times(events) == pytest.approx([4.0, 6.0, 10.0, 5.0])
    assert step_profile.idle_microseconds(events) == pytest.approx(5.0)
