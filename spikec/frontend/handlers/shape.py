"""Operations that move data without computing: views and reshapes, permutations, repeats over
time, slices / splits / chunks / selects, and padding (constant, and the BN-aware channel pad of
:mod:`spikec.frontend.bn_pad`)."""

from __future__ import annotations

import numpy as np

from ... import ir
from .. import layouts
from .base import Act, handles, op_name


@handles("aten.transpose", "aten.permute", "aten.t")
def _permute(c, x, *dims):
    """A permutation: of the features (an IR permute), of the batch among them (layout only), or of
    the time axis out of the front (time mixing, :mod:`spikec.frontend.layouts`)."""
    x = c.act(x)
    nd = len(layouts.torch_axes(c, x))
    if op_name(c.cur) == "aten.t":
        if nd < 2:  # .t() of a 1-d tensor is the tensor
            return x
        dims = (1, 0)
    if op_name(c.cur) == "aten.transpose":
        d0, d1 = (int(d) % nd for d in dims)
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    else:
        perm = [int(d) % nd for d in (dims[0] if len(dims) == 1 else dims)]
    if perm == list(range(nd)):
        return x
    return layouts.permute(c, x, perm)


@handles("aten.cat", "aten.concat")
def _cat(c, tensors, dim=0):
    xs = [c.act(v) for v in tensors]
    if len(xs) == 1:  # torch.cat([x]) is x
        return xs[0]
    xs = [layouts.time_major(c, v) for v in xs] if any(not layouts.same_layout(c, xs[0], v) for v in xs) else xs
    if any(not layouts.same_layout(c, xs[0], v) or len(layouts.torch_axes(c, v)) != len(layouts.torch_axes(c, xs[0]))
           for v in xs):
        raise c.unsupported("a concatenation of tensors with different time layouts")
    x = xs[0]
    ax = c.need_feature_axis(x, int(dim), "a concatenation")
    return x.like(c.emit(ir.ConcatNode, [v.value for v in xs], axis=ax))


@handles("aten.flatten", "aten.unflatten", "aten.view", "aten.reshape", "aten._unsafe_view",
         "aten.squeeze", "aten.unsqueeze", "aten.expand")
def _shape_op(c, x, *args):
    x = c.act(x)
    if op_name(c.cur) == "aten.expand" and tuple(c.cur.args[0].meta["val"].shape) != c.out_shape():
        raise c.unsupported("expand that broadcasts an activation")
    return layouts.reshape(c, x, c.out_shape())


@handles("aten.repeat")
def _repeat(c, x, repeats):
    x = c.act(x)
    t = c.t(x)
    reps = [int(r) for r in repeats]
    if x.layout == "split" and not x.batch_with and t.time == 1 and len(reps) == len(t.features) + 2 and all(r == 1 for r in reps[1:]):
        return Act(c.emit(ir.RepeatTimeNode, [x.value], time=reps[0]), "split")
    raise c.unsupported(f"repeat{tuple(reps)} (only repeating a single frame over time, [T, 1, 1, ...])")


def _slices(c, x: Act, dim, sizes) -> list[Act]:
    ax = c.need_feature_axis(x, int(dim), "a split")
    outs, start = [], 0
    for s in sizes:
        outs.append(x.like(c.emit(ir.SliceNode, [x.value], axis=ax, start=start, stop=start + s)))
        start += s
    return outs


@handles("aten.chunk")
def _chunk(c, x, chunks, dim=0):
    x = c.act(x)
    n = c.t(x).features[c.need_feature_axis(x, int(dim), "a chunk")]
    size = -(-n // int(chunks))
    sizes = [min(size, n - i) for i in range(0, n, size)]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.split", "aten.split_with_sizes")
def _split(c, x, split, dim=0):
    x = c.act(x)
    n = c.t(x).features[c.need_feature_axis(x, int(dim), "a split")]
    if isinstance(split, int):
        sizes = [min(split, n - i) for i in range(0, n, split)]
    else:
        sizes = [int(s) for s in split]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.select")
def _select(c, x, dim, index):
    """One index of a feature axis, the axis dropped (``qkv[0]``: a feature in front of the batch)."""
    x = c.act(x)
    ax = c.need_feature_axis(x, int(dim), "a select")
    return _take(c, x, ax, int(index) % c.t(x).features[ax])


@handles("aten.unbind")
def _unbind(c, x, dim=0):
    """Every index of a feature axis (``q, k, v = qkv.unbind(0)``)."""
    x = c.act(x)
    ax = c.need_feature_axis(x, int(dim), "an unbind")
    return tuple(_take(c, x, ax, i) for i in range(c.t(x).features[ax]))


def _take(c, x: Act, ax: int, i: int) -> Act:
    feats = c.t(x).features
    s = c.emit(ir.SliceNode, [x.value], axis=ax, start=i, stop=i + 1)
    return Act(c.emit(ir.ReshapeNode, [s], features=feats[:ax] + feats[ax + 1:]), x.layout,
               batch_at=x.batch_at - (ax < x.batch_at), batch_with=x.batch_with)


@handles("aten.slice")
def _slice(c, x, dim=0, start=None, end=None, step=1):
    x = c.act(x)
    if tuple(c.cur.args[0].meta["val"].shape) == c.out_shape() and step == 1:  # x[:, ...]: every index
        return x
    t = c.t(x)
    ax = c.need_feature_axis(x, int(dim), "a slice")
    if step != 1:
        raise c.unsupported("a strided slice")
    n = t.features[ax]
    lo, hi, _ = slice(start, end).indices(n)
    if lo == 0 and hi == n:
        return x
    return x.like(c.emit(ir.SliceNode, [x.value], axis=ax, start=lo, stop=hi))


@handles("spikec.channel_pad")
def _channel_pad(c, x, pad, values):
    x = c.act(x)
    if x.layout != "merged" or x.batch_at or x.batch_with or len(c.t(x).features) != 3:
        raise c.unsupported("BN-aware padding of a tensor that is not [T*B, C, H, W]")
    p = int(pad)
    return Act(c.emit(ir.PadNode, [x.value], primary=True, pads=((p, p), (p, p)),
                      value=c.const(values).astype(np.float32)), "merged")


@handles("aten.pad", "aten.constant_pad_nd")
def _pad(c, x, pad, *rest):
    x = c.act(x)
    mode = rest[0] if rest and isinstance(rest[0], str) else "constant"
    value = next((r for r in rest if isinstance(r, (int, float))), 0.0) if rest else 0.0
    if mode != "constant":
        raise c.unsupported(f"padding mode {mode!r} (only constant padding)")
    if value is None:
        value = 0.0
    layouts.need_plain(c, x, "padding")
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    nd = len(t.features) + lead
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]  # last axis first
    first_axis = nd - len(pairs)
    if first_axis < lead + 1:
        raise c.unsupported("padding the channel, batch or time axis")
    n_spatial = len(t.features) - 1
    pads = [(0, 0)] * n_spatial
    for k, pr in enumerate(pairs):
        pads[n_spatial - 1 - k] = pr
    return x.like(c.emit(ir.PadNode, [x.value], pads=tuple(pads), value=float(value)))
