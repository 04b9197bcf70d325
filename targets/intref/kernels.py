"""Integer kernels of the integer reference target.

Values between operations are integer tensors ``[T, B, *features]``: uint8 for spike trains
(0 / 1), int32 where a bound proves every value fits, int64 otherwise.  Three kinds of kernel:

* element-wise operations (shifts, AND, sums, max pooling) in integer arithmetic, in the narrowest
  integer dtype that holds the result;
* products of integers (synapse accumulation, addressed accumulation, sum pooling), exact by a
  bound.  Every product and every partial sum of output ``o`` is an integer of magnitude at most
  ``peak(x) · Σ_j |w[o, j]|``, so at most ``bound = peak(x) · l1`` with ``l1`` the largest L1 norm of
  one output's weights (:class:`Weights`; ``peak(x) · peak(w) · fan-in`` when both operands are
  values).  In order of preference:

  - 8-bit operands (spikes and small counts times Loihi's 8-bit weight mantissas) and
    ``bound < 2^24``: the CPU's int8 kernels, u8 × s8 summed in int32 (:mod:`.int8`, with the
    conditions under which they are exact);
  - ``bound < 2^24`` (``< 2^53``): torch's float32 (float64) convolution / GEMM, since float32
    (float64) represents every integer below 2^24 (2^53) exactly, so any summation order, blocking
    or FMA gives the exact integer;
  - otherwise int64 kernels (slower, same result; a test compares all three).

  Results come back as int32 when ``bound < 2^31``: no float value leaves a kernel;
* the Loihi LIF recurrence (:func:`lif_run`), the steps of :func:`spikec.loihi.lif_step`.  With a
  memoryless current (du = 4095, ``u = a << 6``) the current side of a step does not depend on the
  state, so ``u`` and ``u + bias`` are computed for all T steps at once (one pass, like the
  synapses); only the membrane ``v`` is stepped, in place.  Bounds decide what each step skips: the
  24-bit wrap of u when ``|a << 6|`` stays below 2^23, the saturation of v when the worst-case
  membrane stays within ±(2^23 − 1) (:func:`v_peak`), int64 state when no product needs it.
  :func:`lif_steps` is the step-by-step int64 reference the fast path is tested against.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from spikec import loihi
from spikec.loihi import U_MAX, V_LIMIT  # noqa: F401  (re-exported: 24-bit state limits)
from spikec.runtime.execute import scan_time

from . import int8

EXACT_F32 = 1 << 24
EXACT_F64 = 1 << 53
INT32_LIMIT = 1 << 31  # |x| < 2^31: int32 holds it


INT_DTYPES = (torch.int64, torch.int32, torch.uint8)  # uint8: spike trains (0 / 1)


def _check_int(*xs: torch.Tensor) -> None:
    for x in xs:
        if x.dtype not in INT_DTYPES:
            raise TypeError(f"integer datapath received a {x.dtype} tensor")


def memory_order(x: torch.Tensor) -> list[int]:
    """The dims of ``x`` from the outermost in memory to the innermost (e.g. channels last)."""
    return sorted(range(x.dim()), key=lambda d: (-x.stride(d), d))


def in_memory_order(x: torch.Tensor) -> torch.Tensor:
    """``x`` permuted so that it is contiguous when it is dense (e.g. a channels-last convolution
    output): reductions over it then read memory in order (torch's are ~10x slower otherwise)."""
    if x.is_contiguous():
        return x
    y = x.permute(memory_order(x))
    return y if y.is_contiguous() else x


def layout_like(b: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``b`` (broadcast over the leading dims of ``x``, same trailing shape) stored in the memory
    order of ``x``'s trailing dims, so that ``x + b`` runs on dense, aligned memory."""
    lead = x.dim() - b.dim()
    order = [d - lead for d in memory_order(x) if d >= lead]
    if b.dim() == 0 or order == sorted(order) or b.stride() != b.contiguous().stride():
        return b
    inverse = sorted(range(len(order)), key=order.__getitem__)
    return b.permute(order).contiguous().permute(inverse)


def bounds(x: torch.Tensor) -> tuple[int, int]:
    """(min, max) of an integer tensor, (0, 0) when empty: one pass."""
    if x.numel() == 0:
        return 0, 0
    x = in_memory_order(x)
    if x.dtype == torch.uint8:
        return 0, int(x.max())
    lo, hi = torch.aminmax(x)
    return int(lo), int(hi)


def peak(x: torch.Tensor) -> int:
    """``max |x|`` of an integer tensor (0 when empty)."""
    lo, hi = bounds(x)
    return max(-lo, hi)


def narrow_dtype(bound: int) -> torch.dtype:
    """int32 for integers of magnitude at most ``bound`` < 2^31, else int64."""
    return torch.int32 if bound < INT32_LIMIT else torch.int64


def _exact_dtype(bound: int) -> Optional[torch.dtype]:
    """The cheapest float dtype in which integers of magnitude <= ``bound`` (every partial sum of a
    product) are exact, or None (use int64)."""
    if bound < EXACT_F32:
        return torch.float32
    if bound < EXACT_F64:
        return torch.float64
    return None


class Weights:
    """Integer weights ``[out, ...]`` prepared once for exact products: the int64 values, ``l1`` (the
    largest L1 norm of one output's weights: ``|partial sum| <= peak(x) · l1``), their int8 form
    (:func:`.int8.split`, None when they have none) and float copies, made on first use."""

    def __init__(self, w: torch.Tensor):
        _check_int(w)
        self.int = w.to(torch.int64)
        self.l1 = int(self.int.abs().reshape(w.shape[0], -1).sum(1).max()) if w.numel() else 0
        self._copies: dict[torch.dtype, torch.Tensor] = {torch.int64: self.int}
        self._int8: list = []

    @property
    def int8_form(self) -> Optional[int8.Int8Weights]:
        if not self._int8:
            self._int8.append(int8.split(self.int))
        return self._int8[0]

    def as_dtype(self, dt: Optional[torch.dtype]) -> torch.Tensor:
        dt = dt or torch.int64
        w = self._copies.get(dt)
        if w is None:
            w = self._copies[dt] = self.int.to(dt)
        return w


def _product(fn, x: torch.Tensor, w: torch.Tensor, bound: int) -> torch.Tensor:
    """``fn(x, w)`` exactly: in the float dtype the bound allows (int64 otherwise), result int32 / int64."""
    dt = _exact_dtype(bound)
    out = narrow_dtype(bound)
    if dt is None:
        return fn(x.to(torch.int64), w.to(torch.int64)).to(out)
    return fn(x.to(dt), w.to(dt)).to(out)


def _weighted(x: torch.Tensor, w: Weights, on_int8, on_float) -> torch.Tensor:
    """A product of the value ``x`` with prepared weights: on the int8 kernels where they are exact
    (:mod:`.int8`: 8-bit operands, ``bound < 2^24``), else :func:`_product`."""
    lo, hi = bounds(x)
    bound = max(-lo, hi) * w.l1
    dt = _exact_dtype(bound)
    if dt is torch.float32 and x.numel() and int8.usable(lo, hi, w.int8_form):
        y = on_int8(x, w.int8_form)
        if y is not None:
            return y.to(torch.int32)
    return _product(on_float, x, w.as_dtype(dt), bound)


def exact_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer ``torch.matmul(a, b)`` of two values (exact; int32 when the bound allows)."""
    _check_int(a, b)
    return _product(torch.matmul, a, b, peak(a) * peak(b) * max(a.shape[-1], 1))


def exact_linear(x: torch.Tensor, w: torch.Tensor | Weights) -> torch.Tensor:
    """Integer ``x @ wᵀ`` on the last axis, ``w`` ``[out, in]`` (exact)."""
    _check_int(x)
    w = w if isinstance(w, Weights) else Weights(w)
    return _weighted(x, w, int8.linear, lambda a, b: torch.matmul(a, b.t()))


def exact_conv(x: torch.Tensor, w: torch.Tensor | Weights, stride, padding, dilation, groups) -> torch.Tensor:
    """Integer convolution of ``x`` [N, C, *spatial] with ``w`` (zero padding, exact)."""
    _check_int(x)
    w = w if isinstance(w, Weights) else Weights(w)
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[w.int.dim()]
    on_int8 = (lambda a, b: int8.conv(a, b, stride, padding, dilation, groups)) if w.int.dim() < 5 else (lambda a, b: None)
    return _weighted(x, w, on_int8, lambda a, b: fn(a, b, None, stride, padding, dilation, groups))


def max_pool(x: torch.Tensor, kernel, stride, padding, dilation, ceil_mode) -> torch.Tensor:
    """Integer max pooling in the value's own dtype (padding never wins: it is the dtype's minimum)."""
    _check_int(x)
    if x.element_size() == 1:
        x = x.contiguous()  # torch 2.13's 8-bit max pool refuses channels-last tensors (e.g. int8 conv outputs)
    if x.dim() == 3:  # torch 2.13 has no integer max_pool1d: a 2-d pool over a height of 1
        y = F.max_pool2d(x.unsqueeze(-2), [1, *kernel], [1, *stride], [0, *padding], [1, *dilation], ceil_mode)
        return y.squeeze(-2)
    return F.max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)


def sum_pool(x: torch.Tensor, kernel, stride, padding, ceil_mode) -> torch.Tensor:
    """Integer sum pooling (zero padding): a depthwise convolution with a kernel of ones."""
    _check_int(x)
    c = x.shape[1]
    ones = torch.ones((c, 1, *kernel), dtype=torch.int64)
    if ceil_mode:
        raise NotImplementedError("sum pooling with ceil_mode")
    return exact_conv(x, ones, stride, padding, [1] * len(kernel), c)


def shift(x: torch.Tensor, k: int, fresh: bool = False) -> torch.Tensor:
    """``x << k`` for k >= 0 (computed in int64), ``x >> -k`` (arithmetic, floor; dtype kept, uint8
    widened to int32).  ``fresh``: ``x`` is the caller's own int32 / int64 tensor, shifted right in place."""
    _check_int(x)
    if k >= 0:
        return loihi.floor_shift(x.to(torch.int64), k)
    if fresh and x.dtype != torch.uint8:
        return x.bitwise_right_shift_(-k)  # loihi.floor_shift, in place
    return loihi.floor_shift(x.to(torch.int32) if x.dtype == torch.uint8 else x, k)


trunc_decay = loihi.trunc0_decay  # sign(p) · (|p| >> 12), p = x · factor; keeps int32 / int64


def v_peak(drive_peak: int, dv: int, v_init: int, reset_value: int, steps: int) -> int:
    """A bound on ``|v|`` before saturation over ``steps`` LIF steps whose drive ``u + bias`` stays
    within ±``drive_peak``: ``b_0 = |v_init|``, ``b_t = ⌊b_{t−1} · (4096 − dv) / 4096⌋ + drive_peak``
    (trunc0 never grows a magnitude), and a reset never leaves ``[−b_t, b_t] ∪ {reset_value}`` (zero:
    0; soft: ``v − (vth << 6) − 1`` with ``v > vth << 6 >= 0`` lies in [0, v)).  When it stays within
    ±(2^23 − 1), :func:`spikec.loihi.saturate_v` is the identity at every step."""
    factor = loihi.v_decay_factor(dv)
    b = worst = abs(v_init)
    for _ in range(steps):
        b = ((b * factor) >> loihi.DECAY_SHIFT) + drive_peak
        worst = max(worst, b)
        if worst > V_LIMIT:
            break
        b = max(b, abs(reset_value))
    return worst


def _pow2(f: int) -> bool:
    return f in (0, loihi.DECAY_UNITY) or f & (f - 1) == 0


def lif_run(a: torch.Tensor, du: int, dv: int, vth: int, bias: torch.Tensor, reset: str, reset_value: int,
            v_init: int, record: bool = False, a_bounds: Optional[tuple[int, int]] = None):
    """Loihi 2 LIF over ``a`` [T, B, *features] (integer input currents): :func:`spikec.loihi.lif_step`
    once per step.  ``a_bounds``: (min, max) of ``a`` when the caller has it (saves a pass).

    Returns spikes (uint8 0/1) and, if ``record``, the v and u sequences (int64, after reset)."""
    _check_int(a, bias)
    if du == loihi.MEMORYLESS_DU and a.shape[0]:
        return _lif_memoryless(a, a_bounds if a_bounds is not None else bounds(a), dv, vth, bias, reset, reset_value,
                               v_init, record)
    return lif_steps(a, du, dv, vth, bias, reset, reset_value, v_init, record)


def lif_steps(a: torch.Tensor, du: int, dv: int, vth: int, bias: torch.Tensor, reset: str, reset_value: int,
              v_init: int, record: bool = False):
    """:func:`lif_run` as :func:`spikec.loihi.lif_step` states it, in int64, one call per step (any du):
    the reference the memoryless fast path is tested against."""
    a = a.to(torch.int64)
    bias = bias.to(torch.int64)

    def step(state, a_t):
        u, v, s = loihi.lif_step(*state, a_t, du=du, dv=dv, vth=vth, bias=bias, reset=reset, reset_value=reset_value)
        return (u, v), s, (v, u)

    spikes, trace = scan_time(step, a, (torch.zeros_like(a[0]), torch.full_like(a[0], v_init)), record=record)
    out = spikes.to(torch.uint8)
    return (out, trace[0], trace[1]) if record else out


def _lif_memoryless(a, a_bounds, dv, vth, bias, reset, reset_value, v_init, record):
    """:func:`lif_run` for du = 4095.  ``u = wrap(a << 6)`` and the drive ``u + bias`` for all steps at
    once; then per step, in the drive's own buffer (which becomes the v sequence)::

        v[t] = saturate(drive[t] + trunc0_decay(v[t − 1]))     (v[−1] = v_init)
        s[t] = v[t] > vth << 6;  v[t] = reset(v[t], s[t])"""
    lo, hi = a_bounds
    shift = loihi.CURRENT_SHIFT
    bias_peak = peak(bias)
    factor = loihi.v_decay_factor(dv)
    wraps = (hi << shift) > U_MAX or (lo << shift) <= -U_MAX
    # one wrap per step: a current beyond ±2^24 still leaves |u| above 2^23 (Lava's int32 differs there anyway)
    u_peak = max(U_MAX, (hi << shift) - loihi.U_MODULUS, -(lo << shift) - loihi.U_MODULUS) if wraps else max(-lo, hi) << shift
    drive_peak = u_peak + bias_peak
    # int32 state: every sum below 2^31 and a power-of-two decay (trunc0_decay shifts: no wide product)
    dt = torch.int32 if drive_peak + V_LIMIT < INT32_LIMIT and _pow2(factor) else torch.int64
    u = None
    if wraps:  # the 24-bit wrap, applied to every step's u at once
        u = loihi.wrap_u(a.to(torch.int64) << shift)
        v = u.to(dt, copy=True)
    elif record or not bias_peak:
        u = a.to(dt) << shift
        v = u.clone() if record else u
    else:  # (a << 6) + bias in one pass: a times 2^6 is a << 6 (|a << 6| <= 2^23)
        v = torch.add(layout_like(bias.to(dt), a), a.to(dt), alpha=1 << shift)
    if bias_peak and u is not None:
        v += layout_like(bias.to(dt), v)  # the drive u + bias, in a fresh buffer: v is computed in it
    saturates = v_peak(drive_peak, dv, v_init, reset_value, a.shape[0]) > V_LIMIT
    th = loihi.threshold(vth)
    spikes = torch.empty_like(v, dtype=torch.bool)  # same memory layout as v
    for t in range(v.shape[0]):
        vt = v[t]
        if t:
            vt += loihi.trunc0_decay(v[t - 1], factor)
        elif v_init:
            vt += int(loihi.trunc0_decay(v_init, factor))
        if saturates:
            vt.copy_(loihi.saturate_v(vt))
        s = torch.gt(vt, th, out=spikes[t])
        if reset == "zero":  # loihi.reset_v's zero reset, as an in-place product: v = 0 where s
            vt.mul_(s.logical_not())
        else:
            vt.copy_(loihi.reset_v(vt, s, reset, vth, reset_value))
    out = spikes.view(torch.uint8)
    return (out, v.to(torch.int64), u.to(torch.int64)) if record else out


lava_sign_mode = loihi.sign_mode  # Lava's determine_sign_mode: EXC if min >= 0, INH if max <= 0, else MIXED
lava_effective_weights = loihi.effective_weights  # the weights Lava's fixed_pt Dense actually uses
