"""The shared execution helpers: time-invariant values computed once per step, not once per time step."""

import torch

from spikec.runtime.execute import merge_time, repeat_time


def test_repeat_time_is_a_view_for_one_step_values():
    x = torch.arange(6).reshape(1, 2, 3)
    r = repeat_time(x, 4)
    assert r.shape == (4, 2, 3) and r.stride(0) == 0 and r.data_ptr() == x.data_ptr()
    assert torch.equal(r, x.repeat(4, 1, 1))
    seq = torch.arange(12).reshape(2, 2, 3)  # T = 2: tiled, as torch's repeat does
    assert torch.equal(repeat_time(seq, 3), seq.repeat(3, 1, 1))


def test_merge_time_computes_a_repeated_value_once():
    g = torch.Generator().manual_seed(0)
    x = repeat_time(torch.randint(-3, 4, (1, 3, 2, 5, 5), generator=g).float(), 4)
    w = torch.randint(-3, 4, (6, 2, 3, 3), generator=g).float()  # integers: exact in any summation order
    seen = []

    def conv(z):
        seen.append(z.shape[0])
        return torch.nn.functional.conv2d(z, w, padding=1)

    y = merge_time(x, conv)
    assert seen == [3], "one step's batch, not T·B"
    assert y.shape == (4, 3, 6, 5, 5) and y.stride(0) == 0
    assert torch.equal(y, merge_time(x.contiguous(), lambda z: torch.nn.functional.conv2d(z, w, padding=1)))
