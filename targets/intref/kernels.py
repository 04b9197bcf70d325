"""Integer kernels of the integer reference target.

Every value between operations is an ``int64`` tensor ``[T, B, *features]``.  Two kinds of kernel:

Values between operations are integer tensors: int64 in general, uint8 for spike trains (0 / 1);
sums promote to int64.

* element-wise and state recurrences (LIF, shifts, AND, sums) are written in int64 arithmetic,
  operation for operation as Lava's fixed_pt process models compute them;
* products and pooling of integers (synapse accumulation, addressed accumulation, pooling) call
  torch's float32 / float64 convolution and GEMM kernels on the integer values, **only** when a
  bound proves the result exact: every product and partial sum is an integer of magnitude
  <= max|w| · max|x| · fan-in, and float32 (float64) represents every integer below 2^24 (2^53)
  exactly, so any summation order gives the exact integer.  Above the bounds the int64 kernels run
  instead (slower, same result; a test compares the two).  The inputs and outputs of every kernel
  are int64: no float value enters or leaves the datapath.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spikec import loihi
from spikec.loihi import U_MAX, V_LIMIT  # noqa: F401  (re-exported: 24-bit state limits)
from spikec.runtime.execute import scan_time

EXACT_F32 = 1 << 24
EXACT_F64 = 1 << 53


INT_DTYPES = (torch.int64, torch.int32, torch.uint8)  # uint8: spike trains (0 / 1)


def _check_int(*xs: torch.Tensor) -> None:
    for x in xs:
        if x.dtype not in INT_DTYPES:
            raise TypeError(f"integer datapath received a {x.dtype} tensor")


def _exact_dtype(x: torch.Tensor, w: torch.Tensor, fan_in: int):
    """The cheapest float dtype in which every partial sum of x·w is exact, or None (use int64)."""
    if x.numel() == 0 or w.numel() == 0:
        return torch.float32
    if x.dtype == torch.uint8:  # uint8 values in the datapath are spike trains: 0 / 1
        peak = 1
    else:
        lo, hi = torch.aminmax(x)
        peak = max(abs(int(lo)), abs(int(hi)))
    bound = peak * int(w.abs().max()) * max(fan_in, 1)
    if bound < EXACT_F32:
        return torch.float32
    if bound < EXACT_F64:
        return torch.float64
    return None


def exact_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer ``torch.matmul(a, b)`` (exact)."""
    _check_int(a, b)
    dt = _exact_dtype(a, b, a.shape[-1])
    if dt:
        return torch.matmul(a.to(dt), b.to(dt)).to(torch.int64)
    return torch.matmul(a.to(torch.int64), b.to(torch.int64))


def exact_conv(x: torch.Tensor, w: torch.Tensor, stride, padding, dilation, groups) -> torch.Tensor:
    """Integer convolution of ``x`` [N, C, *spatial] with ``w`` (zero padding, exact)."""
    _check_int(x, w)
    fn = F.conv1d if w.dim() == 3 else F.conv2d
    dt = _exact_dtype(x, w, w[0].numel())
    if dt:
        return fn(x.to(dt), w.to(dt), None, stride, padding, dilation, groups).to(torch.int64)
    return fn(x.to(torch.int64), w.to(torch.int64), None, stride, padding, dilation, groups)


def exact_linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Integer ``x @ wᵀ`` on the last axis (exact)."""
    return exact_matmul(x, w.t())


def max_pool(x: torch.Tensor, kernel, stride, padding, dilation, ceil_mode) -> torch.Tensor:
    """Integer max pooling (padding never wins: it is -inf); exact for |x| < 2^53."""
    _check_int(x)
    fn = F.max_pool1d if x.dim() == 3 else F.max_pool2d
    if x.numel() and int(x.abs().max()) >= EXACT_F64:
        raise OverflowError("max-pool input beyond 2^53")
    return fn(x.double(), kernel, stride, padding, dilation, ceil_mode).to(torch.int64)


def sum_pool(x: torch.Tensor, kernel, stride, padding, ceil_mode) -> torch.Tensor:
    """Integer sum pooling (zero padding): a depthwise convolution with a kernel of ones."""
    _check_int(x)
    c = x.shape[1]
    ones = torch.ones((c, 1, *kernel), dtype=torch.int64)
    if ceil_mode:
        raise NotImplementedError("sum pooling with ceil_mode")
    return exact_conv(x, ones, stride, padding, [1] * len(kernel), c)


def shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """``x << k`` for k >= 0, ``x >> -k`` (arithmetic, floor) otherwise (computed in int64)."""
    _check_int(x)
    return loihi.floor_shift(x.to(torch.int64), k)


trunc_decay = loihi.trunc0_decay  # sign(p) · (|p| >> 12), p = x · factor; keeps int32 / int64


def lif_run(a: torch.Tensor, du: int, dv: int, vth: int, bias: torch.Tensor, reset: str, reset_value: int,
            v_init: int, record: bool = False):
    """Loihi 2 LIF over ``a`` [T, B, *features] (int64 input currents): :func:`spikec.loihi.lif_step`
    once per step.

    Returns spikes (uint8 0/1) and, if ``record``, the v and u sequences (int64, after reset)."""
    _check_int(a, bias)
    memoryless = du == loihi.MEMORYLESS_DU  # u = a << 6 exactly
    if memoryless and a.numel():
        lo, hi = torch.aminmax(a << loihi.CURRENT_SHIFT)
        may_wrap = int(hi) > U_MAX or int(lo) <= -U_MAX
    else:
        may_wrap = True
    # int32 state is exact when every intermediate fits: |u|, |v| < 2^24 and no wide decay products
    # (a power-of-two dv needs none); halves the memory traffic of the step loop
    pow2 = lambda f: f in (0, loihi.DECAY_UNITY) or f & (f - 1) == 0  # noqa: E731
    if memoryless and not may_wrap and pow2(loihi.v_decay_factor(dv)) \
            and int(bias.abs().max() if bias.numel() else 0) < (1 << 24):
        a = a.to(torch.int32)
        bias = bias.to(torch.int32)

    def step(state, a_t):
        u, v, s = loihi.lif_step(*state, a_t, du=du, dv=dv, vth=vth, bias=bias, reset=reset, reset_value=reset_value,
                                 wrap=may_wrap)
        return (u, v), s, (v, u)

    spikes, trace = scan_time(step, a, (torch.zeros_like(a[0]), torch.full_like(a[0], v_init)), record=record)
    out = spikes.to(torch.uint8)
    return (out, trace[0].to(torch.int64), trace[1].to(torch.int64)) if record else out


lava_sign_mode = loihi.sign_mode  # Lava's determine_sign_mode: EXC if min >= 0, INH if max <= 0, else MIXED
lava_effective_weights = loihi.effective_weights  # the weights Lava's fixed_pt Dense actually uses
