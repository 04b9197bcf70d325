"""The synthetic event dataset (spikec/synthetic_events.py): shapes, determinism, balance, and the
property that makes it a test of time: the classes differ only in the order of the steps."""

import numpy as np

from spikec.data import load_dataset
from spikec.synthetic_events import PROGRAMS_4, PROGRAMS_8, events


def test_shapes_values_balance_and_determinism():
    x, y = events("train", 8, 200)
    assert x.shape == (200, 8, 2, 16, 16) and x.dtype == np.float32 and set(np.unique(x)) <= {0.0, 1.0}
    assert np.bincount(y, minlength=10).tolist() == [20] * 10
    x2, y2 = events("train", 8, 200)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    xt, _ = events("test", 8, 200)
    assert not np.array_equal(x, xt)
    xs, ys = load_dataset("events")
    assert xs.shape == (8, 1000, 2, 16, 16) and ys.shape == (1000,)


def test_classes_are_orders_of_the_same_points():
    """Every class visits each path point exactly once (a permutation of the steps), so the frames
    summed over time have one distribution for all classes."""
    for programs, T in ((PROGRAMS_8, 8), (PROGRAMS_4, 4)):
        assert programs.shape == (10, T) and len({tuple(p) for p in programs}) == 10
        assert all(sorted(p) == list(range(T)) for p in programs)
