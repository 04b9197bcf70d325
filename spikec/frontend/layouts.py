"""Where time and batch sit in a traced tensor: the map between an ATen tensor's axes and its IR value.

An IR value is ``[T, B, *f]`` (:mod:`spikec.ir.types`).  The model's code sees the same numbers in
another arrangement, which an :class:`~.handlers.base.Act` records:

* ``split``: ``[T, B·, *post]``: the time axis first, then the batch axis;
* ``merged``: ``[*pre, T·B·, *post]``: time merged into the batch axis (``SeqToANNContainer``), the
  batch axis possibly behind ``pre`` = the first ``batch_at`` feature axes (``qkv.permute(2, 0, ...)``
  puts the q / k / v axis in front of the batch);

where ``B·`` is the batch axis merged with the next ``batch_with`` feature axes (``reshape(B * N, T, D)``:
each token of each sample as one row, the form of attention across the T steps of a token).  The
feature axes keep their IR order in the tensor (a permutation of them is an IR
:class:`~spikec.ir.PermuteNode`); only the batch group moves among them.

Why this is exact: a row-major reshape of the tensor is the IR reshape of the features
``pre + batch_with + post`` per (step, sample) exactly when it keeps the number of elements in front
of the batch group (``prod(pre)``) and keeps time with batch; :func:`reshape` checks that.  A
feature axis that the code merges *into* the batch from the front (``[T, B, N, D] -> [T·B, N, D]``
after an attention over time) can only be time: it becomes the time axis again
(:class:`~spikec.ir.FeaturesToTimeNode`); a time axis moved behind the batch becomes a feature
(:class:`~spikec.ir.TimeToFeaturesNode`).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from .. import ir
from .handlers.base import Act

TIME, BATCH = "T", "B"  # the two axis markers of :func:`torch_axes` (feature axes are ints)

Axis = Union[int, str]


def torch_axes(c, a: Act) -> list[Axis]:
    """What each axis of the ATen tensor holds: a feature axis (its IR index), ``TIME`` (the split
    time axis) or ``BATCH`` (the batch group: batch, time merged into it if merged, and the
    ``batch_with`` features)."""
    n = len(c.t(a).features)
    lead = [TIME] if a.layout == "split" else []
    return [*range(a.batch_at), *lead, BATCH, *range(a.batch_at + a.batch_with, n)]


def axis_name(c, a: Act, ax: Axis) -> str:
    if ax == TIME:
        return "time"
    if ax != BATCH:
        return f"feature {ax}"
    what = "batch" if a.layout == "split" or c.t(a).time == 1 else "time*batch"
    return f"{what} (merged with {a.batch_with} feature axes)" if a.batch_with else what


def feature_axis(c, a: Act, dim: int) -> Axis:
    axes = torch_axes(c, a)
    return axes[int(dim) % len(axes)]


def need_feature_axis(c, a: Act, dim: int, what: str) -> int:
    ax = feature_axis(c, a, dim)
    if isinstance(ax, str):
        why = (" (a feature axis the code merged into the batch in front of it, which spikec reads as time)"
               if ax == TIME and a.time_from_feature else "")
        raise c.unsupported(f"{what} along the {axis_name(c, a, ax)} axis{why}")
    return ax


def need_trailing_features(c, a: Act, k: int, what: str) -> None:
    """The last ``k`` tensor axes must be feature axes (a linear layer, a matmul, a layer norm)."""
    tail = torch_axes(c, a)[-k:] if k else []
    bad = next((ax for ax in tail if isinstance(ax, str)), None)
    if bad is not None or len(tail) < k:
        raise c.unsupported(f"{what} over the {axis_name(c, a, bad) if bad else 'batch'} axis")


def need_plain(c, a: Act, what: str) -> None:
    """Convolutions, batch norm, pooling and padding read ``[T·B, C, ...]`` / ``[T, B, ...]``."""
    if a.batch_at or a.batch_with:
        axes = torch_axes(c, a)
        want = "expected the batch axis first" if a.batch_at else "expected the batch axis on its own"
        raise c.unsupported(f"{what} on a tensor whose axis {axes.index(BATCH)} is the "
                            f"{axis_name(c, a, BATCH)} axis ({want})")


# ------------------------------------------------------------------------------------------------
# moves of the time axis
# ------------------------------------------------------------------------------------------------


def time_into_features(c, a: Act) -> Act:
    """``[T, B·, *post]`` as a one-step value whose feature 0 is time: ``[f0=T, B·, *post]``."""
    v = c.emit(ir.TimeToFeaturesNode, [a.value], axis=0)
    return Act(v, "merged", batch_at=1, batch_with=a.batch_with)


def can_be_time(c, a: Act) -> bool:
    """A one-step ``[f0, B·, f1, ...]`` whose front feature can become the time axis again (a value
    keeps at least one feature axis)."""
    return a.layout == "merged" and c.t(a).time == 1 and a.batch_at == 1 and len(c.t(a).features) >= 2


def features_into_time(c, a: Act) -> Act:
    """``[f0, B·, *post]`` (one step) as ``[T = f0, B·, *post]``."""
    v = c.emit(ir.FeaturesToTimeNode, [a.value], axis=0)
    return Act(v, "split", batch_with=a.batch_with)


def time_major(c, a: Act) -> Act:
    """``a`` with its time axis in front where it has one in a feature (:func:`can_be_time`)."""
    return features_into_time(c, a) if can_be_time(c, a) else a


def same_layout(c, a: Act, b: Act) -> bool:
    if (a.batch_at, a.batch_with) != (b.batch_at, b.batch_with):
        return False
    return a.layout == b.layout or (c.t(a).time == 1 and c.t(b).time == 1 and not a.batch_at)


def align(c, a: Act, b: Act) -> tuple[Act, Act]:
    """Two operands of one elementwise op or matmul in the same layout: a one-step value whose front
    feature is the other's time axis becomes time-major (``x + res.permute(2, 0, 1, 3)``)."""
    if same_layout(c, a, b):
        return a, b
    return time_major(c, a), time_major(c, b)


def broadcast_result(c, a: Act, b: Act) -> Act:
    """The layout of ``a ∘ b`` (same layout, :func:`same_layout`): the operand with more tensor axes
    (a one-step ``[1, B, ...]`` against ``[B, ...]`` broadcasts to the former)."""
    return a if len(torch_axes(c, a)) >= len(torch_axes(c, b)) else b


# ------------------------------------------------------------------------------------------------
# permutations and reshapes
# ------------------------------------------------------------------------------------------------


def permute(c, a: Act, perm: list[int]) -> Act:
    """A permutation of the tensor's axes: a move of the batch group among the features (layout only),
    a permutation of the features (an IR permute), or time leaving the front (time mixing)."""
    axes = torch_axes(c, a)
    if a.layout == "split" and perm[:2] != [0, 1]:
        a = time_into_features(c, a)  # same tensor, time now feature 0 in front of the batch group
        axes = torch_axes(c, a)
    if a.layout == "split":
        fixed = list(range(a.batch_with))
        order = fixed + [axes[p] for p in perm[2:]]
        return _permuted(c, a, order, "split", 0)
    moved = [axes[p] for p in perm]
    at = moved.index(BATCH)
    group = list(range(a.batch_at, a.batch_at + a.batch_with))
    order = [f for ax in moved for f in (group if ax == BATCH else [ax])]
    return _permuted(c, a, order, "merged", at)


def _permuted(c, a: Act, order: list[int], layout: str, batch_at: int) -> Act:
    v = a.value
    if order != sorted(order):
        v = c.emit(ir.PermuteNode, [a.value], perm=tuple(order))
    return Act(v, layout, batch_at=batch_at, batch_with=a.batch_with)


def reshape(c, a: Act, shape: tuple) -> Act:
    """The layout of ``a`` reshaped (row-major) to the tensor ``shape``, and the IR reshape of its
    features; refused when the reshape would mix the batch axis with others."""
    found = _reshaped_layout(c, a, shape)
    from_feature = False
    if found is None and can_be_time(c, a):  # [T, B, ...] -> [T*B, ...]: the front feature is time
        a, from_feature = features_into_time(c, a), True
        found = _reshaped_layout(c, a, shape)
    if found is None:
        raise c.unsupported(f"a tensor of shape {shape_str(c, shape)} that mixes the batch axis with other axes (from "
                            f"{_describe(c, a)}; the batch axis merges only with time in front of it and with "
                            "feature axes behind it)")
    layout, batch_at, feats, batch_with = found
    v = a.value
    if feats != c.t(a).features:
        v = c.emit(ir.ReshapeNode, [a.value], features=feats)
    return Act(v, layout, batch_at=batch_at, batch_with=batch_with,
               time_from_feature=(from_feature or a.time_from_feature) and c.t(a).time > 1)


def _reshaped_layout(c, a: Act, shape: tuple):
    """``(layout, batch_at, features, batch_with)`` of the tensor ``shape`` holding the value of ``a``,
    or None: the batch axis is the one axis that is k times the batch (the batch is a symbol), and the
    elements in front of it must be those in front of ``a``'s batch group."""
    t = c.t(a)
    pre = math.prod(t.features[:a.batch_at])

    def concrete_but(p):
        return all(not _symbolic(e) for i, e in enumerate(shape) if i != p)

    if pre == 1 and len(shape) >= 2 and not _symbolic(shape[0]) and int(shape[0]) == t.time and concrete_but(1):
        k = c.coef(shape[1])  # split: [T, k·B, *post]
        if k is not None:
            return _group("split", 0, (), k, shape[2:])
    for p, d in enumerate(shape):  # merged: [*pre, T·k·B, *post]
        k = c.coef(d)
        if k is None or k % t.time or not concrete_but(p) or math.prod(int(e) for e in shape[:p]) != pre:
            continue
        return _group("merged", p, shape[:p], k // t.time, shape[p + 1:])
    return None


def _group(layout, p, pre, k, post):
    feats = (*(int(d) for d in pre), *((k,) if k > 1 else ()), *(int(d) for d in post))
    return layout, p, feats, 1 if k > 1 else 0


def _symbolic(d) -> bool:
    import torch

    return isinstance(d, torch.SymInt)


def shape_str(c, shape) -> str:
    """A traced shape with the batch symbol written B (``[2*B, 4, 4]``)."""
    def dim(d):
        k = c.coef(d) if _symbolic(d) else None
        return str(d) if k is None else "B" if k == 1 else f"{k}*B"
    return "[" + ", ".join(dim(d) for d in shape) + "]"


def _describe(c, a: Act) -> str:
    """The tensor's axes as the code sees them (``[T=4, B*16, 8]``)."""
    t = c.t(a)
    dims = []
    for ax in torch_axes(c, a):
        if ax == BATCH:
            lead = "T*" if a.layout == "merged" and t.time > 1 else ""
            merged = "".join(f"*{t.features[i]}" for i in range(a.batch_at, a.batch_at + a.batch_with))
            dims.append(f"{lead}B{merged}")
        elif ax == TIME:
            dims.append(f"T={t.time}")
        else:
            dims.append(str(t.features[ax]))
    return "[" + ", ".join(dims) + "]"


# ------------------------------------------------------------------------------------------------
# constants broadcast against an activation
# ------------------------------------------------------------------------------------------------


def constant_for(c, a: Act, arr: np.ndarray, what: str) -> np.ndarray:
    """A constant as torch broadcasts it against ``a``, in IR order: shape ``(t, *f)`` with
    ``t`` = 1 or T and each feature dim either the feature's size or 1.  Refused when it varies over
    the batch (or over time with time merged into the batch)."""
    axes = torch_axes(c, a)
    arr = np.asarray(arr, np.float32)
    if arr.ndim > len(axes):
        raise c.unsupported(f"{what} with more axes ({arr.ndim}) than the activation ({len(axes)})")
    arr = arr.reshape((1,) * (len(axes) - arr.ndim) + arr.shape)
    time_dim, feats = 1, [1] * len(c.t(a).features)
    for ax, d in zip(axes, arr.shape):
        if ax == TIME:
            time_dim = d
        elif ax == BATCH and d != 1:
            over = "the batch" if a.layout == "split" or c.t(a).time == 1 else "time with time merged into the batch"
            raise c.unsupported(f"{what} that varies over {over}")
        elif ax != BATCH:
            feats[ax] = d
    return arr.reshape(time_dim, *feats)
