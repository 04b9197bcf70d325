"""The integer kernels of :mod:`spikec.integer_approx` as ONNX integer graphs, step by step the same
integers (each kernel is a deterministic function of int64 inputs; this writes its algebra in ONNX
ops, with the floors ONNX lacks built from its truncating ``Div``):

* ``a >> k`` for a constant k: :meth:`_Builder.floor_shift`; ``a << k``: a multiplication by 2^k;
* ``a // b`` with b > 0 (a of either sign): truncated quotient minus one where the remainder is negative;
* ``y >> z`` with a tensor z in 0..31 (exp's range reduction, y >= 0): a division by 2^z gathered from a
  table;
* the integer square root: Newton's integer iteration ``y <- (y + x // y) >> 1`` from y = 2^32 > √x
  (x < 2^63), whose iterates never fall below floor(√x) and, from above, at least halve their excess
  per step while y > 2√x and then converge quadratically: 40 steps end at floor(√x) or one above, and
  the last correction (``y > x // y``) leaves the floor square root, the same unique integer as
  :func:`spikec.integer_approx.isqrt` (integers only: the ONNX datapath has no float after the input).
"""

from __future__ import annotations

import numpy as np

from spikec import integer_approx as A
from spikec import ir


def _floordiv(b, x: str, d: str) -> str:
    """floor(x / d) for int64 x and d > 0."""
    q = b.op("Div", [x, d])
    r = b.op("Sub", [x, b.op("Mul", [q, d])])
    return b.op("Sub", [q, b.op("Cast", [b.op("Less", [r, b.const(0)])], to=b.onnx.TensorProto.INT64)])


def _min(b, x: str, hi: int) -> str:
    return b.op("Min", [x, b.const(hi)])


def _where(b, cond: str, x: str, y: str) -> str:
    return b.op("Where", [cond, x, y])


def _exp_of_magnitude(b, v: str, plan: A.ExpPlan) -> str:
    """:func:`spikec.integer_approx._exp_of_magnitude` (v >= 0; every operand non-negative)."""
    v = _min(b, v, plan.input_limit)
    u = _min(b, b.floor_shift(b.op("Mul", [v, b.const(plan.multiplier)]), -plan.shift), A._EXP_ARGUMENT_CAP)
    z = b.op("Div", [u, b.const(A._LN2)])
    r = b.op("Sub", [u, b.op("Mul", [z, b.const(A._LN2)])])
    d = b.op("Sub", [b.const(A._EXP_B), r])
    sq = b.floor_shift(b.op("Mul", [d, d]), -A.EXP_FRAC_BITS)
    poly = b.op("Add", [b.floor_shift(b.op("Mul", [b.const(A._EXP_A), sq]), -A.EXP_FRAC_BITS), b.const(A._EXP_C)])
    powers = b.const([1 << k for k in range(A._EXP_SHIFT_CAP + 1)])
    return b.op("Div", [poly, b.op("Gather", [powers, z], axis=0)])


ISQRT_STEPS = 40  # Newton steps from 2^32 (module docstring): enough for every x < 2^63


def _isqrt(b, x: str) -> str:
    """floor(√x) for 0 <= x < 2^63, in integers only (module docstring)."""
    i64 = b.onnx.TensorProto.INT64
    v = b.op("Max", [x, b.const(1)])
    y = b.op("Add", [b.op("Mul", [v, b.const(0)]), b.const(1 << 32)])
    for _ in range(ISQRT_STEPS):
        y = b.op("Div", [b.op("Add", [y, b.op("Div", [v, y])]), b.const(2)])
    return b.op("Sub", [y, b.op("Cast", [b.op("Greater", [y, b.op("Div", [x, y])])], to=i64)])


def emit(b, n: ir.IntegerKernelNode, x: str, nfeat: int) -> str:
    """The ONNX ops of integer kernel ``n`` on one step's int64 tensor ``x`` [B, *features] (its input
    saturated first, as intref does)."""
    limit = (1 << n.input_bits) - 1
    x = b.op("Max", [b.op("Min", [x, b.const(limit)]), b.const(-limit)])
    if n.kernel == "relu":
        return b.op("Max", [x, b.const(0)])
    plan = n.plan()
    if n.kernel == "sigmoid":
        lim = plan.exp.input_limit
        e = _exp_of_magnitude(b, b.op("Abs", [b.op("Max", [b.op("Min", [x, b.const(lim)]), b.const(-lim)])]), plan.exp)
        den = b.op("Add", [e, b.const(A.EXP_ONE)])
        k = plan.output_bits
        pos = b.op("Div", [b.op("Add", [b.floor_shift(den, -1), b.const(A.EXP_ONE << k)]), den])
        return _where(b, b.op("Less", [x, b.const(0)]), b.op("Sub", [b.const(1 << k), pos]), pos)
    if n.kernel == "softmax":
        axis = n.axis % nfeat + 1
        e = _exp_of_magnitude(b, b.op("Sub", [b.op("ReduceMax", [x], axes=[axis], keepdims=1), x]), plan.exp)
        s = b.op("ReduceSum", [e, b.const([axis])], keepdims=1)
        return b.op("Div", [b.op("Add", [b.floor_shift(e, plan.output_bits), b.floor_shift(s, -1)]), s])
    if n.kernel == "gelu":
        c = b.op("Max", [b.op("Min", [x, b.const(plan.saturation)]), b.const(-plan.saturation)])
        w = _min(b, b.floor_shift(b.op("Mul", [b.op("Abs", [c]), b.const(plan.multiplier)]), -plan.shift), A._ERF_CLIP)
        d = b.op("Sub", [b.const(A._ERF_CLIP), w])
        sq = b.floor_shift(b.op("Mul", [d, d]), -A.GELU_FRAC_BITS)
        magnitude = b.op("Sub", [b.const(A._ERF_ONE), b.floor_shift(b.op("Mul", [b.const(A._ERF_A), sq]), -A.GELU_FRAC_BITS)])
        one_plus = _where(b, b.op("Less", [c, b.const(0)]), b.op("Sub", [b.const(A._ERF_ONE), magnitude]),
                          b.op("Add", [b.const(A._ERF_ONE), magnitude]))
        half = b.floor_shift(b.op("Add", [b.op("Mul", [c, one_plus]), b.const(A._ERF_ONE)]), -(A.GELU_FRAC_BITS + 1))
        return _where(b, b.op("Greater", [x, b.const(plan.saturation)]), x, half)
    # layer norm over the flattened last normalized_ndim axes
    k = n.normalized_ndim
    shape = b.op("Shape", [x])
    rows = b.op("Reshape", [x, b.op("Concat", [b.op("Slice", [shape, b.const([0]), b.const([nfeat + 1 - k])]),
                                                b.const([-1])], axis=0)])
    count, m, frac = b.const(plan.row_length), plan.mean_shift, A.LAYER_NORM_FRAC_BITS
    mean = _floordiv(b, b.floor_shift(b.op("ReduceSum", [rows, b.const([-1])], keepdims=1), m), count)
    centred = b.op("Sub", [b.floor_shift(rows, m), mean])
    variance = _floordiv(b, b.op("ReduceSum", [b.op("Mul", [centred, centred]), b.const([-1])], keepdims=1), count)
    std = _isqrt(b, b.op("Add", [variance, b.const(plan.eps_units)]))
    normalised = _floordiv(b, b.floor_shift(centred, frac), std)
    affine = b.op("Add", [b.op("Mul", [normalised, b.const(list(plan.gamma_int))]), b.const(list(plan.offset_int))])
    return b.op("Reshape", [b.floor_shift(affine, -(frac + plan.affine_shift)), shape])


def output_range(n: ir.IntegerKernelNode, lo: int, hi: int) -> tuple[int, int]:
    """Sound integer bounds of the kernel's output for inputs in [lo, hi] (the ConvInteger digit
    decomposition downstream relies on them)."""
    if n.kernel in ("sigmoid", "softmax"):
        return 0, 1 << n.output_bits
    limit = (1 << n.input_bits) - 1
    lo, hi = max(lo, -limit), min(hi, limit)
    if n.kernel == "relu":
        return 0, max(hi, 0)
    if n.kernel == "gelu":  # x·Φ(x) in [max(x, -0.17), max(x, 0)], plus the kernel's error (< 0.02 + S/2)
        return (max(lo, -(int(np.ceil(0.25 / n.scale_in)) + 1)) if lo < 0 else 0), max(hi, 0)
    rows = int(np.prod(n.gamma.shape))  # |normalised| <= sqrt(3N) (integer_approx.layer_norm)
    peak = (float(np.abs(n.gamma).max()) * np.sqrt(3 * rows) + float(np.abs(n.beta).max())) / n.output_scale
    return -(int(np.ceil(peak)) + 2), int(np.ceil(peak)) + 2
