"""The integer semantics of a *region*: a connected set of quantized IR nodes that no stock Lava
process runs (integer kernels, products of two real values, added constants, concatenations, time
mixing, 3-d convolutions, and the linear nodes between them), evaluated by one custom Lava process
(:class:`~.procs.process.IntRegion`) on numpy arrays.  numpy only at run time: it executes in
Lava's forked process-model workers, where torch's thread pools must not be used.

Values are int64 arrays ``[t, 1, *features]`` (time, a batch of one sample, features): intref's
layout, so every kernel here is intref's (:data:`spikec.targets.intref.executor.INT_KERNELS`) on
numpy.  The arithmetic has one home each:

* integer layer norm, softmax, sigmoid, GELU, ReLU: :func:`spikec.targets.intref.executor.integer_kernel`
  itself (its input saturation, then :mod:`spikec.integer_approx`), called with numpy arrays;
* synapses: ``acc = Σ (w << max(e, 0)) · x`` exactly (:func:`spikec.ir.index_maps.conv_apply` /
  :func:`~spikec.ir.index_maps.linear_apply`: int64, or float64 GEMM where a bound proves it exact),
  then ``acc >> −e`` (floor) for e < 0, then ``+ bias``: intref's ``_synapse``;
* shifts: :func:`spikec.loihi.floor_shift`; integer multiples: :func:`~spikec.targets.intref.executor.integer_factor`;
* products, sums, added constants (``x + constant[τ]``; intref ignores ``alpha``, the quantizer
  folded it), concatenation and the data movement: int64 numpy, exact below 2^63 as intref's int64.

Time.  A *per-step* region evaluates its nodes on one step (``t = 1``) of one sample: an added
per-step constant uses row τ (the sample's step), a repeat over time of a one-step value is the
identity (the value is streamed every step).  A *buffered* region (one with time mixing:
time-to-features, features-to-time, sums over time) evaluates on the sample's T steps at once, as
intref does (:func:`evaluate` with ``step=None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from spikec import ir, loihi
from spikec.ir.index_maps import conv_apply, linear_apply

from ..intref.executor import integer_factor, integer_kernel

TIME_MIXING = (ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)
MAX_PORTS = 64  # input and output ports of one region process (procs.process.IntRegion)


def mixes_time(n: ir.Node) -> bool:
    """Whether ``n``'s output step depends on other steps of its input (a buffered region runs it)."""
    return isinstance(n, TIME_MIXING) or isinstance(n, ir.ReduceNode) and n.over_time


@dataclass(frozen=True)
class Context:
    """What a kernel needs beyond its inputs: the value types, T, and the sample step ``step`` a
    per-step evaluation computes (None: all T steps at once)."""

    types: dict
    T: int
    step: Optional[int]


def _align(x: np.ndarray, nfeat: int) -> np.ndarray:
    """Singleton feature axes inserted after [t, B] (intref's ``align_features``)."""
    missing = nfeat - (x.ndim - 2)
    return x if missing <= 0 else x.reshape(*x.shape[:2], *([1] * missing), *x.shape[2:])


def _binary(a: np.ndarray, b: np.ndarray, op) -> np.ndarray:
    nf = max(a.ndim, b.ndim) - 2
    return op(_align(a, nf), _align(b, nf))


def _per_sample(x: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` on every [*features] slice of ``x`` [t, B, *features] (intref's ``merge_time``)."""
    t, b = x.shape[:2]
    out = np.stack([fn(z) for z in x.reshape(t * b, *x.shape[2:])])
    return out.reshape(t, b, *out.shape[1:])


def _synapse(n: ir.SynapseNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    """intref's synapse: ``(Σ (w << max(e, 0)) · x) >> max(−e, 0)`` (floor) ``+ bias``."""
    w = loihi.floor_shift(np.asarray(n.weight, np.int64), max(n.weight_exp, 0))
    if n.layout == "conv":
        out_spatial = ctx.types[n.name].features[1:]
        out = _per_sample(x, lambda z: conv_apply(z, w, n.stride, n.padding, n.dilation, n.groups, out_spatial))
    else:
        out = linear_apply(x, w)
    if n.weight_exp < 0:
        out = loihi.floor_shift(out, n.weight_exp)
    if n.bias is not None:
        b = np.asarray(n.bias, np.int64)
        out = out + (b.reshape(-1, *([1] * (w.ndim - 2))) if n.layout == "conv" else b)
    return out


def _add_constant(n: ir.AddConstantNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    """``x + constant[τ]``: row τ of a per-step constant when one step is evaluated (intref's
    ``constant_addend`` broadcasting: [t, 1, *aligned features])."""
    c = np.asarray(n.constant, np.int64)
    if ctx.step is not None and c.shape[0] > 1:
        c = c[ctx.step:ctx.step + 1]
    c = c.reshape(c.shape[0], 1, *([1] * (x.ndim - 1 - c.ndim)), *c.shape[1:])
    return x + c


def _reduce(n: ir.ReduceNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    if n.reduce != "sum":
        raise ValueError(f"integer reduce '{n.name}' must be a sum, is a {n.reduce}")
    axes = tuple(([0] if n.over_time else []) + [a % (x.ndim - 2) + 2 for a in n.axes])
    y = x.sum(axis=axes, keepdims=n.keepdim)
    return y[None] if n.over_time and not n.keepdim else y


def _sum_pool(n: ir.AvgPoolNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    if n.divisor_override != 1 or n.ceil_mode:
        raise ValueError(f"integer pooling '{n.name}' must be a sum pool (divisor 1, no ceil mode)")
    c = x.shape[2]
    ones = np.ones((c, 1, *n.kernel), np.int64)
    out_spatial = ctx.types[n.name].features[1:]
    return _per_sample(x, lambda z: conv_apply(z, ones, n.stride, n.padding, (1,) * len(n.kernel), c, out_spatial))


def _pad(n: ir.PadNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    """Padding of the spatial axes with ``value`` (a scalar or one per channel); a negative pad crops
    (``torch.nn.functional.pad``, as intref)."""
    lead = x.ndim - len(n.pads)
    x = x[(slice(None),) * lead + tuple(slice(max(-lo, 0), x.shape[lead + i] - max(-hi, 0))
                                        for i, (lo, hi) in enumerate(n.pads))]
    widths = [(0, 0)] * lead + [(max(lo, 0), max(hi, 0)) for lo, hi in n.pads]
    out = np.pad(x, widths)
    if isinstance(n.value, np.ndarray) or n.value != 0:
        v = np.broadcast_to(np.asarray(n.value, np.int64), (x.shape[2],)).reshape(1, 1, -1, *([1] * (x.ndim - 3)))
        inner = np.pad(np.ones(x.shape, bool), widths)
        out = np.where(inner, out, v)
    return out


def _repeat_time(n: ir.RepeatTimeNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    """A one-step value repeated over time: the identity on one streamed step; ``n.time`` copies
    along time when all steps are evaluated (intref's ``repeat_time``)."""
    if ctx.step is not None:
        if ctx.types[n.inputs[0]].time != 1:
            raise ValueError(f"repeat over time '{n.name}' of a {ctx.types[n.inputs[0]].time}-step value per step")
        return x
    return np.tile(x, (n.time,) + (1,) * (x.ndim - 1))


def _slice(n: ir.SliceNode, x: np.ndarray, ctx: Context) -> np.ndarray:
    sl = [slice(None)] * x.ndim
    sl[n.axis + 2] = slice(n.start, n.stop)
    return x[tuple(sl)]


def _i64(x) -> np.ndarray:
    return np.asarray(x, np.int64)


KERNELS: dict[type, Callable] = {
    ir.IntegerKernelNode: lambda n, x, ctx: integer_kernel(n, x),
    ir.SynapseNode: _synapse,
    ir.AddConstantNode: _add_constant,
    ir.MulNode: lambda n, a, b, ctx: _binary(_i64(a), _i64(b), np.multiply),
    ir.MatMulNode: lambda n, a, b, ctx: np.matmul(_i64(a), _i64(b)),
    ir.AddNode: lambda n, a, b, ctx: _binary(_i64(a), _i64(b), np.add),
    ir.ShiftNode: lambda n, x, ctx: loihi.floor_shift(_i64(x), n.shift),
    ir.ScaleNode: lambda n, x, ctx: _i64(x) * integer_factor(n),
    ir.ConcatNode: lambda n, *xs: np.concatenate([_i64(x) for x in xs[:-1]], axis=n.axis + 2),
    ir.TimeToFeaturesNode: lambda n, x, ctx: np.moveaxis(x, 0, n.axis + 1)[None],
    ir.FeaturesToTimeNode: lambda n, x, ctx: np.moveaxis(x[0], n.axis + 1, 0),
    ir.ReduceNode: _reduce,
    ir.AvgPoolNode: _sum_pool,
    ir.PadNode: _pad,
    ir.RepeatTimeNode: _repeat_time,
    ir.ReshapeNode: lambda n, x, ctx: x.reshape(*x.shape[:2], *n.features),
    ir.PermuteNode: lambda n, x, ctx: x.transpose(0, 1, *[p + 2 for p in n.perm]),
    ir.SliceNode: _slice,
}


def runs(n: ir.Node) -> bool:
    """Whether a region can evaluate ``n``."""
    return type(n) in KERNELS


def evaluate(nodes: list[ir.Node], values: dict[str, np.ndarray], ctx: Context,
             keep: Optional[set] = None) -> dict[str, np.ndarray]:
    """Every node of ``nodes`` (a region, in graph order) from ``values`` (its input values,
    ``[t, 1, *features]``); returns ``values`` extended by the nodes' values (int64).  With ``keep``
    (the region's outputs), a value is dropped after its last reader in the region and only the
    ``keep`` values come back: the working set is the widest cut of the region
    (:func:`~.resources.region_working_bytes`), not all its values."""
    env = {k: _i64(v) for k, v in values.items()}
    dead_after = ir.last_reads(nodes) if keep is not None else {}
    for n in nodes:
        env[n.name] = _i64(KERNELS[type(n)](n, *[env[i] for i in n.inputs], ctx))
        for i in dead_after.get(n.name, ()):
            if i not in keep:
                env.pop(i)
    return env if keep is None else {v: env[v] for v in keep}
