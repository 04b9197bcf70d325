"""Weighted layers: convolution, linear layers and the product of two activations."""

from __future__ import annotations

from ... import ir
from .. import layouts
from .base import Act, handles, ntuple


@handles("aten.conv1d", "aten.conv2d", "aten.conv3d")
def _conv(c, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("a convolution on a [T, B, ...] tensor (expected time merged into batch)")
    layouts.need_plain(c, x, "a convolution")
    w = c.const(weight)
    if w is None:
        raise c.unsupported("a convolution with a computed (non-constant) weight")
    nd = w.ndim - 2
    dil = ntuple(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same" and all((d * (k - 1)) % 2 == 0 for d, k in zip(dil, w.shape[2:])):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dil, w.shape[2:]))
        else:
            raise c.unsupported(f"convolution padding={padding!r} with an even kernel")
    name = c.emit(ir.ConvNode, [x.value], primary=True, weight=w, bias=c.const(bias),
                  stride=ntuple(stride, nd), padding=ntuple(padding, nd), dilation=dil, groups=int(groups))
    return Act(name, "merged")


@handles("aten.linear")
def _linear(c, x, weight, bias=None):
    x = c.act(x)
    w = c.const(weight)
    if w is None:
        raise c.unsupported("a linear layer with a computed (non-constant) weight")
    if not c.t(x).features:
        raise c.unsupported("a linear layer applied to the batch axis")
    layouts.need_trailing_features(c, x, 1, "a linear layer")
    return x.like(c.emit(ir.LinearNode, [x.value], primary=True, weight=w, bias=c.const(bias)))


@handles("aten.matmul", "aten.bmm")
def _matmul(c, a, b):
    a, b = layouts.align(c, c.act(a, "left operand"), c.act(b, "right operand"))
    if not layouts.same_layout(c, a, b):
        raise c.unsupported("a matmul of tensors with different time layouts")
    for v in (a, b):
        layouts.need_trailing_features(c, v, 2, "a matmul")
    return layouts.broadcast_result(c, a, b).like(c.emit(ir.MatMulNode, [a.value, b.value]))
