"""Operations that move data without computing: views and reshapes, permutations, repeats over
time, slices / splits / chunks / selects, and padding (constant, and the BN-aware channel pad of
:mod:`spikec.frontend.bn_pad`)."""

from __future__ import annotations

import math

import numpy as np

from ... import ir
from .base import Act, handles, op_name


@handles("aten.transpose", "aten.permute", "aten.t")
def _permute(c, x, *dims):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    nd = len(t.features) + lead
    if op_name(c.cur) == "aten.t":
        dims = (1, 0) if nd == 2 else ()
    if op_name(c.cur) == "aten.transpose":
        d0, d1 = (int(d) % nd for d in dims)
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    else:
        perm = [int(d) % nd for d in (dims[0] if len(dims) == 1 else dims)]
    if perm[:lead] != list(range(lead)):
        return _time_mixing_permute(c, x, perm)
    return _feature_permute(c, x, tuple(p - lead for p in perm[lead:]), x.layout)


def _feature_permute(c, x: Act, fperm: tuple[int, ...], layout: str) -> Act:
    if fperm == tuple(range(len(fperm))):
        return Act(x.value, layout)
    return Act(c.emit(ir.PermuteNode, [x.value], perm=fperm), layout)


def _time_mixing_permute(c, x: Act, perm: list[int]) -> Act:
    """A permutation that moves the time axis into the features (``[T, B, ...] -> [B, ..., T, ...]``,
    a :class:`~spikec.ir.TimeToFeaturesNode`) or a feature axis of a one-step value to the front
    (``[B, ..., T, ...] -> [T, B, ...]``, a :class:`~spikec.ir.FeaturesToTimeNode`); the batch axis
    never mixes with the others."""
    t = c.t(x)
    if x.layout == "split" and perm[0] == 1:  # [T, B, *f] -> [B, ...]: time becomes feature axis 0, then permuted
        moved = Act(c.emit(ir.TimeToFeaturesNode, [x.value], axis=0), "merged")
        # the new features are (T, *f): input axis 0 is feature 0, input axis d >= 2 is feature d - 1
        return _feature_permute(c, moved, tuple(0 if p == 0 else p - 1 for p in perm[1:]), "merged")
    if x.layout == "merged" and t.time == 1 and len(perm) >= 3 and perm[1] == 0:  # [B, *f] -> [f_k, B, ...]
        order = (perm[0] - 1, *(p - 1 for p in perm[2:]))
        front = _feature_permute(c, x, order, "merged")
        return Act(c.emit(ir.FeaturesToTimeNode, [front.value], axis=0), "split")
    raise c.unsupported(f"a permutation {perm} that moves the batch axis among the others")


@handles("aten.cat", "aten.concat")
def _cat(c, tensors, dim=0):
    xs = [c.act(v) for v in tensors]
    if len({x.layout for x in xs}) != 1:
        raise c.unsupported("a concatenation of tensors with different time layouts")
    x = xs[0]
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(c.t(x).features) + lead, "a concatenation")
    return Act(c.emit(ir.ConcatNode, [v.value for v in xs], axis=ax), x.layout)


@handles("aten.flatten", "aten.unflatten", "aten.view", "aten.reshape", "aten._unsafe_view",
         "aten.squeeze", "aten.unsqueeze", "aten.expand")
def _shape_op(c, x, *args):
    x = c.act(x)
    t = c.t(x)
    layout, feats = c.layout_of_shape(c.out_shape(), t.time)
    if op_name(c.cur) == "aten.expand" and math.prod(feats) != t.numel:
        raise c.unsupported("expand that broadcasts an activation")
    if feats == t.features:
        return Act(x.value, layout)
    return Act(c.emit(ir.ReshapeNode, [x.value], features=feats), layout)


@handles("aten.repeat")
def _repeat(c, x, repeats):
    x = c.act(x)
    t = c.t(x)
    reps = [int(r) for r in repeats]
    if x.layout == "split" and t.time == 1 and len(reps) == len(t.features) + 2 and all(r == 1 for r in reps[1:]):
        return Act(c.emit(ir.RepeatTimeNode, [x.value], time=reps[0]), "split")
    raise c.unsupported(f"repeat{tuple(reps)} (only repeating a single frame over time, [T, 1, 1, ...])")


def _slices(c, x: Act, dim, sizes) -> list[Act]:
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a split")
    outs, start = [], 0
    for s in sizes:
        outs.append(Act(c.emit(ir.SliceNode, [x.value], axis=ax, start=start, stop=start + s), x.layout))
        start += s
    return outs


@handles("aten.chunk")
def _chunk(c, x, chunks, dim=0):
    x = c.act(x)
    lead = 2 if x.layout == "split" else 1
    n = c.t(x).features[c.need_feature_axis(x, int(dim), len(c.t(x).features) + lead, "a chunk")]
    size = -(-n // int(chunks))
    sizes = [min(size, n - i) for i in range(0, n, size)]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.split", "aten.split_with_sizes")
def _split(c, x, split, dim=0):
    x = c.act(x)
    lead = 2 if x.layout == "split" else 1
    n = c.t(x).features[c.need_feature_axis(x, int(dim), len(c.t(x).features) + lead, "a split")]
    if isinstance(split, int):
        sizes = [min(split, n - i) for i in range(0, n, split)]
    else:
        sizes = [int(s) for s in split]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.select")
def _select(c, x, dim, index):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a select")
    i = int(index) % t.features[ax]
    s = c.emit(ir.SliceNode, [x.value], axis=ax, start=i, stop=i + 1)
    feats = t.features[:ax] + t.features[ax + 1:]
    return Act(c.emit(ir.ReshapeNode, [s], features=feats), x.layout)


@handles("aten.slice")
def _slice(c, x, dim=0, start=None, end=None, step=1):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a slice")
    if step != 1:
        raise c.unsupported("a strided slice")
    n = t.features[ax]
    lo, hi, _ = slice(start, end).indices(n)
    if lo == 0 and hi == n:
        return x
    return Act(c.emit(ir.SliceNode, [x.value], axis=ax, start=lo, stop=hi), x.layout)


@handles("spikec.channel_pad")
def _channel_pad(c, x, pad, values):
    x = c.act(x)
    if x.layout != "merged" or len(c.t(x).features) != 3:
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
    return Act(c.emit(ir.PadNode, [x.value], pads=tuple(pads), value=float(value)), x.layout)
