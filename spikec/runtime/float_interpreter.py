"""Float reference executor of the IR, in torch, with the source model's exact float semantics.

Every value is held as a float32 tensor ``[T, B, *features]``.  Per-step operations that the source
model runs with time merged into the batch (conv, batch norm, pooling) run here the same way, and
everything calls the same torch kernels with the same operand order, so a traced model gives
bit-identical spikes (neuron recurrences: :mod:`spikec.runtime.neuron_dynamics`).  The loop over
the graph is :func:`spikec.runtime.execute.execute`; this module is the kernel table :data:`FLOAT_KERNELS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from .execute import align_features, delayed, execute, input_to_values, merge_time, to_output_layout  # noqa: F401 (re-exported)
from .neuron_dynamics import run_neuron_node


@dataclass
class RunResult:
    outputs: list[torch.Tensor]
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # [T, B, *f] per node (if recorded)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)  # neuron name -> H[t] (if recorded)


def _t(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _factor(f: Union[float, np.ndarray]):
    return torch.from_numpy(np.asarray(f, dtype=np.float32)) if isinstance(f, np.ndarray) else float(f)


def _conv(n: ir.ConvNode, x):
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n.spatial_dims]
    w, b = _t(n.weight), _t(n.bias)
    return merge_time(x, lambda z: fn(z, w, b, list(n.stride), list(n.padding), list(n.dilation), n.groups))


def _bn(n: ir.BatchNormNode, x):
    args = (_t(n.mean), _t(n.var), _t(n.weight), _t(n.bias), False, 0.0, n.eps)
    return merge_time(x, lambda z: F.batch_norm(z, *args))


def _maxpool(n: ir.MaxPoolNode, x):
    fn = F.max_pool1d if len(n.kernel) == 1 else F.max_pool2d
    return merge_time(x, lambda z: fn(z, list(n.kernel), list(n.stride), list(n.padding), list(n.dilation), n.ceil_mode))


def _avgpool(n: ir.AvgPoolNode, x):
    if len(n.kernel) == 1:
        return merge_time(x, lambda z: F.avg_pool1d(z, list(n.kernel), list(n.stride), list(n.padding), n.ceil_mode, n.count_include_pad))
    return merge_time(x, lambda z: F.avg_pool2d(z, list(n.kernel), list(n.stride), list(n.padding), n.ceil_mode,
                                              n.count_include_pad, n.divisor_override))


def _reduce(n: ir.ReduceNode, x):
    dims = ([0] if n.over_time else []) + [a % (x.dim() - 2) + 2 for a in n.axes]
    fn = torch.sum if n.reduce == "sum" else torch.mean
    y = fn(x, dim=dims, keepdim=n.keepdim)
    if n.over_time and not n.keepdim:
        y = y.unsqueeze(0)
    return y


def _binary(a, b, op):
    nf = max(a.dim(), b.dim()) - 2
    return op(align_features(a, nf), align_features(b, nf))


def _matmul(a, b):
    nf = max(a.dim(), b.dim()) - 2
    return torch.matmul(align_features(a, nf), align_features(b, nf))


def _addressed_acc(n: ir.AddressedAccumulationNode, a, b):
    """Same sum as the matmul (the float result is exact while partial sums stay integers below
    2**24; with real-valued operands the order of additions is torch's)."""
    return _matmul(a, b)


def pad_with_values(z: torch.Tensor, pads, value) -> torch.Tensor:
    """Constant padding of ``z`` ``[N, C, *spatial]``; ``value`` scalar or per channel.  Per-channel
    borders are written the way Meta-SpikeFormer's BNAndPadLayer writes them (pad, then assign)."""
    flat = [p for lo_hi in reversed(pads) for p in lo_hi]
    if not isinstance(value, np.ndarray):
        return F.pad(z, flat, value=float(value))
    out = F.pad(z, flat)
    v = torch.from_numpy(value.astype(np.float32)).reshape(1, -1, *([1] * (z.dim() - 2)))
    for axis, (lo, hi) in enumerate(pads, start=2):
        if lo:
            out.narrow(axis, 0, lo).copy_(v.expand_as(out.narrow(axis, 0, lo)))
        if hi:
            out.narrow(axis, out.shape[axis] - hi, hi).copy_(v.expand_as(out.narrow(axis, out.shape[axis] - hi, hi)))
    return out


def _scale(n: ir.ScaleNode, x):
    f = _factor(n.factor)
    return x * f if n.mode == "mul" else x / f


def _layer_norm(n: ir.LayerNormNode, x):
    return F.layer_norm(x, x.shape[x.dim() - n.normalized_ndim:], _t(n.weight), _t(n.bias), n.eps)


def constant_addend(n: ir.AddConstantNode, x: torch.Tensor) -> torch.Tensor:
    """``n.constant`` (t, *f) as a tensor that broadcasts against ``x`` [T, B, *features]."""
    c = torch.from_numpy(np.ascontiguousarray(n.constant))
    return c.reshape(c.shape[0], 1, *([1] * (x.dim() - 1 - c.dim())), *c.shape[1:])


def _activation(n: ir.ActivationNode, x):
    if n.function == "relu":
        return torch.relu(x)
    if n.function == "sigmoid":
        return torch.sigmoid(x)
    return F.gelu(x, approximate=n.approximate)


FLOAT_KERNELS: dict[type, Callable] = {
    ir.ConvNode: lambda n, x: _conv(n, x),
    ir.LinearNode: lambda n, x: F.linear(x, _t(n.weight), _t(n.bias)),
    ir.BatchNormNode: lambda n, x: _bn(n, x),
    ir.NeuronNode: lambda n, x: run_neuron_node(x, n),
    ir.AddNode: lambda n, a, b: _binary(a, b, torch.add),
    ir.MulNode: lambda n, a, b: _binary(a, b, torch.mul),
    ir.MatMulNode: lambda n, a, b: _matmul(a, b),
    ir.ScaleNode: lambda n, x: _scale(n, x),
    ir.ReduceNode: lambda n, x: _reduce(n, x),
    ir.MaxPoolNode: lambda n, x: _maxpool(n, x),
    ir.AvgPoolNode: lambda n, x: _avgpool(n, x),
    ir.RepeatTimeNode: lambda n, x: x.repeat(n.time, *([1] * (x.dim() - 1))),
    ir.ReshapeNode: lambda n, x: x.reshape(*x.shape[:2], *n.features),
    ir.PermuteNode: lambda n, x: x.permute(0, 1, *[p + 2 for p in n.perm]),
    ir.SliceNode: lambda n, x: x.narrow(n.axis + 2, n.start, n.stop - n.start),
    ir.OutputNode: lambda n, x: x,
    ir.PadNode: lambda n, x: merge_time(x, lambda z: pad_with_values(z, n.pads, n.value)),
    ir.AndNode: lambda n, a, b: _binary(a, b, torch.logical_and).to(a.dtype),
    ir.AddressedAccumulationNode: lambda n, a, b: _addressed_acc(n, a, b),
    ir.AddConstantNode: lambda n, x: torch.add(x, constant_addend(n, x), alpha=n.alpha),
    ir.TimeToFeaturesNode: lambda n, x: x.movedim(0, n.axis + 1).unsqueeze(0),
    ir.FeaturesToTimeNode: lambda n, x: x[0].movedim(n.axis + 1, 0),
    ir.ConcatNode: lambda n, *xs: torch.cat(xs, dim=n.axis + 2),
    ir.DelayNode: lambda n, x: delayed(x, n.steps),
    ir.LayerNormNode: lambda n, x: _layer_norm(n, x),
    ir.SoftmaxNode: lambda n, x: torch.softmax(x, n.axis % (x.dim() - 2) + 2),
    ir.ActivationNode: lambda n, x: _activation(n, x),
}


def _neuron_with_membrane(n: ir.NeuronNode, x):
    """Spikes and the pre-spike membrane ``H[t]`` of a neuron layer."""
    spikes, _, h = run_neuron_node(x, n, return_membrane=True)
    return spikes, h


def run_float(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray], record: bool = False) -> RunResult:
    """Execute ``graph`` on input ``x`` (as the source model takes it) and return its outputs in the
    source model's layout; with ``record`` also every node's value as ``[T, B, *features]``."""
    run = execute(graph, x, FLOAT_KERNELS, record=record, neurons={ir.NeuronNode: _neuron_with_membrane},
                  executor="the float interpreter")
    return RunResult(outputs=run.outputs, values=run.values, membranes=run.membranes)
