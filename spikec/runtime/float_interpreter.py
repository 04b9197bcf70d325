"""Float reference executor of the IR, in torch, with the source model's exact float semantics.

Every value is held as a float32 tensor ``[T, B, *features]``.  Per-step operations that the source
model runs with time merged into the batch (conv, batch norm, pooling) run here the same way, and
everything calls the same torch kernels with the same operand order, so a traced model gives
bit-identical spikes (neuron recurrences: :mod:`spikec.runtime.neuron_dynamics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from .. import ir
from ..errors import ShapeError, SpikecError
from .neuron_dynamics import run_neuron_node


@dataclass
class RunResult:
    outputs: list[torch.Tensor]
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # [T, B, *f] per node (if recorded)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)  # neuron name -> H[t] (if recorded)


def _t(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _merged(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    T, B = x.shape[:2]
    y = fn(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


def _align(x: torch.Tensor, nfeat: int) -> torch.Tensor:
    """Insert singleton feature axes after [T, B] so ``x`` has ``nfeat`` feature dims."""
    missing = nfeat - (x.dim() - 2)
    if missing <= 0:
        return x
    return x.reshape(*x.shape[:2], *([1] * missing), *x.shape[2:])


def _factor(f: Union[float, np.ndarray]):
    return torch.from_numpy(np.asarray(f, dtype=np.float32)) if isinstance(f, np.ndarray) else float(f)


def _conv(n: ir.ConvNode, x):
    fn = F.conv1d if n.spatial_dims == 1 else F.conv2d
    w, b = _t(n.weight), _t(n.bias)
    return _merged(x, lambda z: fn(z, w, b, list(n.stride), list(n.padding), list(n.dilation), n.groups))


def _bn(n: ir.BatchNormNode, x):
    args = (_t(n.mean), _t(n.var), _t(n.weight), _t(n.bias), False, 0.0, n.eps)
    return _merged(x, lambda z: F.batch_norm(z, *args))


def _maxpool(n: ir.MaxPoolNode, x):
    fn = F.max_pool1d if len(n.kernel) == 1 else F.max_pool2d
    return _merged(x, lambda z: fn(z, list(n.kernel), list(n.stride), list(n.padding), list(n.dilation), n.ceil_mode))


def _avgpool(n: ir.AvgPoolNode, x):
    if len(n.kernel) == 1:
        return _merged(x, lambda z: F.avg_pool1d(z, list(n.kernel), list(n.stride), list(n.padding), n.ceil_mode, n.count_include_pad))
    return _merged(x, lambda z: F.avg_pool2d(z, list(n.kernel), list(n.stride), list(n.padding), n.ceil_mode,
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
    return op(_align(a, nf), _align(b, nf))


def _matmul(a, b):
    nf = max(a.dim(), b.dim()) - 2
    return torch.matmul(_align(a, nf), _align(b, nf))


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


_KERNELS: dict[type, Callable] = {
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
    ir.PadNode: lambda n, x: _merged(x, lambda z: pad_with_values(z, n.pads, n.value)),
    ir.AndNode: lambda n, a, b: _binary(a, b, torch.logical_and).to(a.dtype),
    ir.AddressedAccumulationNode: lambda n, a, b: _addressed_acc(n, a, b),
}


def input_to_values(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray]) -> tuple[ir.InputNode, torch.Tensor]:
    """Check ``x`` against the graph input and bring it to ``[T, B, *features]`` float32."""
    (inp,) = graph.inputs
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    feats = tuple(inp.features)
    if inp.layout == "static":
        expected = ("B", *feats)
        ok = x.dim() == len(feats) + 1 and tuple(x.shape[1:]) == feats
        xs = x.unsqueeze(0) if ok else None
    else:
        expected = (inp.time, "B", *feats)
        ok = x.dim() == len(feats) + 2 and x.shape[0] == inp.time and tuple(x.shape[2:]) == feats
        xs = x if ok else None
    if not ok:
        exp = "[" + ", ".join(map(str, expected)) + "]"
        raise ShapeError(f"input has shape {list(x.shape)}, the model expects {exp}")
    return inp, xs


def to_output_layout(node: ir.OutputNode, v: torch.Tensor) -> torch.Tensor:
    if node.layout == "merged":
        return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])
    if node.layout == "batch":
        return v[0]
    return v


def run_float(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray], record: bool = False) -> RunResult:
    """Execute ``graph`` on input ``x`` (as the source model takes it) and return its outputs in the
    source model's layout; with ``record`` also every node's value as ``[T, B, *features]``."""
    inp, xs = input_to_values(graph, x)
    env: dict[str, torch.Tensor] = {inp.name: xs}
    users_left = {n.name: len(graph.users(n.name)) for n in graph.nodes}
    membranes: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for n in graph.nodes:
            if isinstance(n, ir.InputNode):
                continue
            kernel = _KERNELS.get(type(n))
            if kernel is None:
                raise SpikecError(f"the float interpreter cannot run node '{n.name}' (op {n.op})")
            if record and isinstance(n, ir.NeuronNode):
                env[n.name], _, membranes[n.name] = run_neuron_node(env[n.inputs[0]], n, return_membrane=True)
            else:
                env[n.name] = kernel(n, *[env[i] for i in n.inputs])
            if not record:
                for i in n.inputs:
                    users_left[i] -= 1
                    if users_left[i] == 0 and not isinstance(graph[i], ir.OutputNode):
                        env.pop(i, None)
    outs = [to_output_layout(o, env[o.name]) for o in graph.outputs]
    return RunResult(outputs=outs, values=env if record else {}, membranes=membranes)
