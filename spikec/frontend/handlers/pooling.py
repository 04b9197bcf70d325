"""Pooling (max, average, adaptive average to size 1) and reductions (mean / sum over axes)."""

from __future__ import annotations

from ... import ir
from .. import layouts
from .base import Act, handles, ntuple, op_name


def _window(c, x, kernel, stride, what: str):
    """The pooled activation (time merged into batch), its spatial rank, the kernel and the stride
    (the kernel if not given)."""
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported(f"{what} on a [T, B, ...] tensor")
    layouts.need_plain(c, x, what)
    nd = len(c.t(x).features) - 1
    k = ntuple(kernel, nd)
    return x, nd, k, (ntuple(stride, nd) if stride not in ((), [], None) else k)


@handles("aten.max_pool1d", "aten.max_pool2d", "aten.max_pool2d_with_indices")
def _maxpool(c, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    x, nd, k, s = _window(c, x, kernel, stride, "max pooling")
    out = Act(c.emit(ir.MaxPoolNode, [x.value], primary=True, kernel=k, stride=s,
                     padding=ntuple(padding, nd), dilation=ntuple(dilation, nd), ceil_mode=bool(ceil_mode)), "merged")
    return (out, None) if "with_indices" in op_name(c.cur) else out


@handles("aten.avg_pool1d", "aten.avg_pool2d")
def _avgpool(c, x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    x, nd, k, s = _window(c, x, kernel, stride, "average pooling")
    return Act(c.emit(ir.AvgPoolNode, [x.value], primary=True, kernel=k, stride=s, padding=ntuple(padding, nd),
                      ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                      divisor_override=divisor_override), "merged")


@handles("aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d")
def _adaptive_avgpool(c, x, output_size):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("adaptive pooling on a [T, B, ...] tensor")
    layouts.need_plain(c, x, "adaptive pooling")
    if any(int(o) != 1 for o in ntuple(output_size, len(c.t(x).features) - 1)):
        raise c.unsupported(f"adaptive average pooling to {output_size} (only to size 1)")
    axes = tuple(range(1, len(c.t(x).features)))
    return Act(c.emit(ir.ReduceNode, [x.value], primary=True, reduce="mean", axes=axes, keepdim=True), "merged")


def _reduce(c, x, dims, keepdim, how):
    x = c.act(x)
    nd = len(layouts.torch_axes(c, x))
    dims = [int(d) % nd for d in ([dims] if isinstance(dims, int) else dims)]
    over_time, axes = False, []
    for d in dims:
        ax = c.feature_axis(x, d)
        if ax == "time":
            over_time = True
        elif isinstance(ax, str):
            raise c.unsupported(f"a {how} over the {ax} axis")
        else:
            axes.append(ax)
    if over_time and keepdim:
        raise c.unsupported(f"a {how} over time with keepdim=True")
    name = c.emit(ir.ReduceNode, [x.value], reduce=how, axes=tuple(axes), over_time=over_time, keepdim=bool(keepdim))
    at = x.batch_at if keepdim else x.batch_at - sum(a < x.batch_at for a in axes)
    # over time: [B·, *f], the time axis (now length 1) dropped, as in torch
    return Act(name, "merged" if over_time else x.layout, batch_at=at, batch_with=x.batch_with)


@handles("aten.mean")
def _mean(c, x, dims=None, keepdim=False, dtype=None):
    if dims is None:
        raise c.unsupported("a mean over all axes (including batch)")
    return _reduce(c, x, dims, keepdim, "mean")


@handles("aten.sum")
def _sum(c, x, dims=None, keepdim=False, dtype=None):
    if dims is None:
        raise c.unsupported("a sum over all axes (including batch)")
    return _reduce(c, x, dims, keepdim, "sum")
