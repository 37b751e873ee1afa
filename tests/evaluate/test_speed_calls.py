"""evaluate/speed.py's call count: by the clock on one process, fixed with several (each call is a collective,
so processes that stopped at different counts would leave one waiting for the others: eval hung on two)."""

import itertools

import numpy as np
import pytest

from dl4cv_jax.evaluate import speed


class _Result(np.ndarray):
    def block_until_ready(self):
        return self


@pytest.mark.parametrize(("processes", "expected"), [(1, 8), (2, 5)])
def test_one_process_times_by_the_clock_several_make_exactly_min_calls(monkeypatch, processes, expected):
    readings = itertools.count(0.0, 0.125)  # each timed call lasts 0.125 s: 1 s of them is 8 calls
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(readings))
    monkeypatch.setattr(speed.jax, "process_count", lambda: processes)
    calls = []

    def call():
        calls.append(1)
        return np.zeros(()).view(_Result)

    times = speed.time_calls(call, warmup=2, min_calls=5, min_seconds=1.0)
    assert (len(times), len(calls)) == (expected, expected + 2)
