"""spikec.data: the bundled held-out datasets (the README's trained table is measured on them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikec.data import SHIFTS, load_dataset, shifted
from spikec.errors import SpikecError


def test_shifted_moves_and_zero_fills_numpy_and_torch_alike():
    a = np.arange(16.0).reshape(1, 4, 4)
    down_left = shifted(a, 1, -1)
    assert np.array_equal(down_left[0, 0], np.zeros(4)) and np.array_equal(down_left[0, :, 3], np.zeros(4))
    assert np.array_equal(down_left[0, 1:, :3], a[0, :3, 1:])
    assert np.array_equal(shifted(torch.from_numpy(a), 1, -1).numpy(), down_left)
    assert np.array_equal(shifted(a, 0, 0), a) and a[0, 0, 0] == 0 and a[0, 3, 3] == 15  # input untouched


@pytest.mark.parametrize("size", [8, 32])
def test_shifted_digits_are_the_held_out_digits_at_nine_shifts(size):
    base = "digits32" if size == 32 else "digits"
    x0, y0 = load_dataset(base)
    x, y = load_dataset(f"{base}_shifted")
    n = len(y0)
    assert x.shape == (9 * n, *x0.shape[1:]) and np.array_equal(y, np.tile(y0, 9))
    centre = SHIFTS.index((0, 0))
    assert np.array_equal(x[centre * n:(centre + 1) * n], x0)
    pixel = size // 8
    i = SHIFTS.index((1, 1))  # one 8x8 pixel down and right
    assert np.array_equal(x[i * n:(i + 1) * n, ..., pixel:, pixel:], x0[..., :-pixel, :-pixel])
    assert not x[i * n:(i + 1) * n, ..., :pixel, :].any()


def test_unknown_dataset_is_refused_with_the_bundled_names():
    with pytest.raises(SpikecError, match="digits32_shifted"):
        load_dataset("mnist")
