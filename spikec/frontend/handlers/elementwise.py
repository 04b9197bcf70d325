"""Elementwise arithmetic: sums of activations, products, and scaling by constants."""

from __future__ import annotations

import math

import numpy as np

from ... import ir
from .. import layouts
from .base import Act, Poison, handles, op_name


def _const_factor(c, x: Act, k) -> np.ndarray | float:
    """A constant multiplier as a scalar or an array over the features."""
    if isinstance(k, (int, float)):
        return float(k)
    arr = layouts.constant_for(c, x, c.const(k), "a multiplication by a constant")
    if arr.shape[0] != 1:
        raise c.unsupported("multiplication by a constant that varies over time")
    arr = arr[0]
    return float(arr.reshape(-1)[0]) if arr.size == 1 else arr


def _raise_poison(*operands) -> None:
    """An operand that could not be converted is used here: its error is the error."""
    for v in operands:
        if isinstance(v, Poison):
            raise v.error.with_traceback(None)


@handles("aten.mul")
def _mul(c, a, b):
    _raise_poison(a, b)
    if isinstance(a, Act) and isinstance(b, Act):
        a, b = layouts.align(c, a, b)
        if not layouts.same_layout(c, a, b):
            raise c.unsupported("a product of tensors with different time layouts")
        return layouts.broadcast_result(c, a, b).like(c.emit(ir.MulNode, [a.value, b.value]))
    if not isinstance(a, Act):
        a, b = b, a
    a = c.act(a)
    return a.like(c.emit(ir.ScaleNode, [a.value], factor=_const_factor(c, a, b), mode="mul"))


@handles("aten.div")
def _div(c, a, b, rounding_mode=None):
    _raise_poison(a, b)
    a = c.act(a)
    if isinstance(b, Act) or rounding_mode is not None:
        raise c.unsupported("division by an activation (or with rounding)")
    return a.like(c.emit(ir.ScaleNode, [a.value], factor=_const_factor(c, a, b), mode="div"))


@handles("aten.add", "aten.sub")
def _add(c, a, b, alpha=1):
    sub = op_name(c.cur) == "aten.sub"
    _raise_poison(a, b)
    if not (isinstance(a, Act) and isinstance(b, Act)):
        return _add_constant(c, a, b, -alpha if sub else alpha)
    a, b = layouts.align(c, a, b)
    ta, tb = c.t(a), c.t(b)
    if ta.time != tb.time:
        raise c.unsupported(f"adding values with {ta.time} and {tb.time} time steps")
    if not layouts.same_layout(c, a, b):
        raise c.unsupported("adding tensors with different time layouts")
    rhs = b.value
    k = -alpha if sub else alpha
    if k != 1:
        rhs = c.emit(ir.ScaleNode, [rhs], factor=float(k), mode="mul")
    return layouts.broadcast_result(c, a, b).like(c.emit(ir.AddNode, [a.value, rhs]))


def _add_constant(c, a, b, k) -> Act:
    """``a + k·b`` where one operand is a constant (a bias, a position embedding per step or not)."""
    if isinstance(a, Act):
        x, const, negate_x = a, b, False
    else:  # constant + k·x
        x, const, negate_x = c.act(b), a, True
    if isinstance(const, (int, float)):
        arr = np.full((1,), float(const), np.float32)
    else:
        arr = c.const(const)
        if arr is None:
            raise c.unsupported("adding a value that is neither an activation nor a constant")
        arr = arr.astype(np.float32)
    arr = layouts.constant_for(c, x, arr, "adding a constant")
    alpha = 1.0
    if negate_x:  # c + k·x: exact as (k·x) + c where k·x rounds nothing (k = ±2^j)
        if k == 0 or math.log2(abs(k)) % 1:
            raise c.unsupported(f"a constant {'minus' if k < 0 else 'plus'} {abs(k):g} times an activation (torch rounds "
                                f"c {'−' if k < 0 else '+'} α·x once); write it as c {'−' if k < 0 else '+'} (α·x)")
        x = x.like(c.emit(ir.ScaleNode, [x.value], factor=float(k), mode="mul")) if k != 1 else x
    else:
        alpha = float(k)
    return x.like(c.emit(ir.AddConstantNode, [x.value], constant=arr, alpha=alpha))


@handles("aten.rsub")
def _rsub(c, a, b, alpha=1):
    """``b − alpha·a`` with ``a`` an activation and ``b`` a constant."""
    _raise_poison(a, b)
    return _add_constant(c, b, c.act(a), -alpha)
