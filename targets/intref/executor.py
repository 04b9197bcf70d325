"""The integer reference executor: runs a quantized IR graph with integer-only semantics.

The float input is quantized on the host by the graph's QuantizeInputNode (the boundary); from there
on every value is an integer tensor ``[T, B, *features]`` (uint8 spike trains, int32 / int64
otherwise: :mod:`.kernels`), vectorised over time, batch and neurons, and time-stepped only inside
neuron layers (the only state).  Recurrences are Lava's fixed_pt models (:mod:`.kernels`); outputs
are integers, with the DequantizeNode scale to read them as reals.  Weights and biases are prepared
once per (immutable) node.  The loop over the graph is the float interpreter's
(:func:`spikec.runtime.execute.execute`); this module is the integer kernel table
:data:`INT_KERNELS` and the Loihi neuron step.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Callable, Collection, Optional, Union

import numpy as np
import torch

from spikec import integer_approx as A
from spikec import ir, loihi
from spikec.array_backend import clip, is_torch
from spikec.errors import SpikecError
from spikec.runtime.execute import align_features, execute, merge_time, repeat_time
from spikec.runtime.float_interpreter import FLOAT_KERNELS, constant_addend

from . import kernels as K
from .fusion import fuse_exact_synapse_copies


@dataclass
class IntRunResult:
    outputs: list[torch.Tensor]  # integer outputs, source-model layout
    scales: list[float]  # real value = integer * scale
    values: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)  # name -> (v, u)
    # neuron layer -> input currents with |a| >= 2^25, where Lava's int32 `a << 6` overflows (Lava
    # then differs from intref); worst-case quantization bounds exclude it, narrow --calib data may not
    overflows: dict[str, int] = field(default_factory=dict)
    # teacher-forced run: each forced node's own computed value (its users got the teacher's)
    taught: dict[str, torch.Tensor] = field(default_factory=dict)

    def overflow_lines(self) -> list[str]:
        return overflow_lines(self.overflows)

    def real_outputs(self) -> list[torch.Tensor]:
        """Dequantized outputs (outside the integer datapath)."""
        return [o.to(torch.float64) * s for o, s in zip(self.outputs, self.scales)]


def overflow_lines(overflows: dict[str, int]) -> list[str]:
    """Warnings for neuron layers whose input currents left the range where intref equals Lava."""
    return [f"WARNING: {name}: {count} input currents reach 2^25, where Lava's fixed_pt LIF overflows int32 "
            "(a << 6); Lava and Loihi differ from intref there. The inputs exceed the quantization bounds: "
            "recompile with --calib data that covers them, or with worst-case bounds (no --calib)"
            for name, count in overflows.items()]


def clipped_input_lines(graph: ir.Graph, x) -> list[str]:
    """A warning if input values fall beyond the compiled input range (clipped to the end levels),
    e.g. 0..255 images for a model compiled with the default range 0,1."""
    q = next((n for n in graph.nodes if isinstance(n, ir.QuantizeInputNode)), None)
    if q is None:
        return []
    xs = torch.as_tensor(np.asarray(x, np.float32))
    lo, hi = q.bounds
    levels = _input_levels(q, xs)
    out = int(((levels < lo) | (levels > hi)).sum())
    if not out:
        return []
    return [f"WARNING: {out} of {xs.numel()} input values lie outside the compiled input range "
            f"[{lo * q.scale:.6g}, {hi * q.scale:.6g}] and are clipped to its ends (recompile with --input-range "
            "matching the data, or rescale the data)"]


def _i64(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int64))


_PREPARED: "weakref.WeakKeyDictionary[ir.Node, object]" = weakref.WeakKeyDictionary()


_FUSED: "weakref.WeakKeyDictionary[ir.Graph, dict]" = weakref.WeakKeyDictionary()


def _fused(graph: ir.Graph, keep: frozenset) -> ir.Graph:
    """:func:`.fusion.fuse_exact_synapse_copies` of ``graph``, made once per graph object and ``keep``
    (its nodes keep their prepared weights from run to run)."""
    per_graph = _FUSED.setdefault(graph, {})
    if keep not in per_graph:
        per_graph[keep] = fuse_exact_synapse_copies(graph, keep)
    return per_graph[keep]


def _prepared(n: ir.Node, build: Callable[[ir.Node], object]):
    """``build(n)``, made once per (immutable) node object: weights and biases as tensors."""
    p = _PREPARED.get(n)
    if p is None:
        p = _PREPARED[n] = build(n)
    return p


@dataclass(frozen=True)
class _Synapse:
    weights: K.Weights  # weight << weight_exp when weight_exp >= 0 (the same integers as acc << exp)
    right_shift: int  # weight_exp < 0: acc >> -weight_exp (floor), after the sum
    bias: Optional[torch.Tensor]  # host outputs only, shaped for the layout


def _build_synapse(n: ir.SynapseNode) -> _Synapse:
    w = _i64(n.weight)
    bias = None
    if n.bias is not None:
        bias = _i64(n.bias)
        if n.layout == "conv":
            bias = bias.reshape(-1, *([1] * (w.dim() - 2)))
    return _Synapse(K.Weights(loihi.floor_shift(w, max(n.weight_exp, 0))), min(n.weight_exp, 0), bias)


def _synapse(n: ir.SynapseNode, x: torch.Tensor) -> torch.Tensor:
    p = _prepared(n, _build_synapse)

    def per_step(z: torch.Tensor) -> torch.Tensor:
        if n.layout == "conv":
            out = K.exact_conv(z, p.weights, list(n.stride), list(n.padding), list(n.dilation), n.groups)
        else:
            out = K.exact_linear(z, p.weights)
        if p.right_shift:
            out = K.shift(out, p.right_shift, fresh=True)
        return out if p.bias is None else out + p.bias

    return merge_time(x, per_step)


def _neuron_bias(n: ir.LoihiNeuronNode) -> torch.Tensor:
    """``bias_mant << bias_exp`` as a tensor over the features (a zero scalar when all zero)."""
    if not np.any(np.asarray(n.bias_mant)):
        return torch.zeros((), dtype=torch.int64)
    b = _i64(loihi.bias_value(n.bias_mant, n.bias_exp))
    return b.to(K.narrow_dtype(K.peak(b)))


def _neuron(n: ir.LoihiNeuronNode, *ins: torch.Tensor, record=False, overflows: Optional[dict] = None):
    a = ins[0]
    for x in ins[1:]:
        a = a.to(torch.int64) + x
    lo, hi = K.bounds(a)
    if overflows is not None and max(-lo, hi) >= loihi.A_INT32_LIMIT:
        overflows[n.name] = int((a.abs() >= loihi.A_INT32_LIMIT).sum())  # Lava's int32 `a << 6` overflows there
    bias = _prepared(n, _neuron_bias)
    bias = torch.broadcast_to(bias, a.shape[2:]) if bias.dim() else bias
    return K.lif_run(a, n.du, n.dv, n.vth, bias, n.reset, n.reset_value, n.v_init, record=record, a_bounds=(lo, hi))


def _input_levels(n: ir.QuantizeInputNode, x: torch.Tensor) -> torch.Tensor:
    """``floor(x / scale + 1/2)`` in float64, before clipping; NaN (no level) is refused."""
    if torch.isnan(x).any():
        raise SpikecError(f"--input contains {int(torch.isnan(x).sum())} NaN values: the 8-bit input quantization "
                          "has no level for them (clean the data)")
    return loihi.input_levels(x, n.scale)


def quantize_input(n: ir.QuantizeInputNode, x: torch.Tensor) -> torch.Tensor:
    """The host boundary: float input -> integers (the only float arithmetic of a run)."""
    lo, hi = n.bounds
    return _input_levels(n, x).clamp(lo, hi).to(torch.int64)


def _reduce(n: ir.ReduceNode, x: torch.Tensor) -> torch.Tensor:
    if n.reduce != "sum":
        raise SpikecError(f"integer reduce '{n.name}' must be a sum, is a {n.reduce}")
    dims = ([0] if n.over_time else []) + [a % (x.dim() - 2) + 2 for a in n.axes]
    y = torch.sum(x, dim=dims, keepdim=n.keepdim)
    return y.unsqueeze(0) if n.over_time and not n.keepdim else y


def _avgpool(n: ir.AvgPoolNode, x):
    if n.divisor_override != 1:
        raise SpikecError(f"integer pooling '{n.name}' must be a sum pool (divisor 1)")
    return merge_time(x, lambda z: K.sum_pool(z, list(n.kernel), list(n.stride), list(n.padding), n.ceil_mode))


def integer_factor(n: ir.ScaleNode) -> int:
    """The integer a scale node of the integer graph multiplies by (the quantizer's integer
    negations and multiples); refused for anything else."""
    f = np.asarray(n.factor, dtype=np.float64)
    if n.mode != "mul" or f.size != 1 or not np.isfinite(f).all() or float(f.flat[0]) != round(float(f.flat[0])):
        raise SpikecError(f"integer scale '{n.name}' must multiply by one integer, is {n.summary()}")
    return int(f.flat[0])


def _pad(n: ir.PadNode, x):
    def f(z):
        flat = [p for lo_hi in reversed(n.pads) for p in lo_hi]
        out = torch.nn.functional.pad(z, flat, value=0)
        if isinstance(n.value, np.ndarray) or n.value != 0:
            v = _i64(np.broadcast_to(np.asarray(n.value), (z.shape[1],))).reshape(1, -1, *([1] * (z.dim() - 2)))
            mask = torch.ones_like(z, dtype=torch.bool)
            mask = torch.nn.functional.pad(mask, flat, value=False)
            out = torch.where(mask, out, v.expand_as(out))
        return out
    return merge_time(x, f)


def integer_kernel(n: ir.IntegerKernelNode, x):
    """:mod:`spikec.integer_approx`'s kernel on the integers, its input saturated at ±(2^input_bits − 1)
    (a value beyond its bound), layer norm over its flattened normalised axes.  ``x`` ``[T, B, *features]``
    is a torch tensor (intref) or a numpy array (the Lava region processes, :mod:`spikec.targets.lava.region`):
    the same integers either way (:mod:`spikec.integer_approx` dispatches on the argument's type)."""
    limit = (1 << n.input_bits) - 1
    q = clip(x.to(torch.int64) if is_torch(x) else np.asarray(x, np.int64), -limit, limit)
    if n.kernel == "relu":
        return A.relu(q)
    if n.kernel == "softmax":
        return A.softmax(q, n.plan(), axis=n.axis % (q.ndim - 2) + 2)
    if n.kernel == "layer_norm":
        k = n.normalized_ndim
        return A.layer_norm(q.reshape(*q.shape[:q.ndim - k], -1), n.plan()).reshape(q.shape)
    return (A.sigmoid if n.kernel == "sigmoid" else A.gelu)(q, n.plan())


def _product(n, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The product of two integer values (elementwise, or a matmul over the last two feature axes) in int64."""
    if isinstance(n, ir.MatMulNode):
        return torch.matmul(a.to(torch.int64), b.to(torch.int64))
    return _binary(a.to(torch.int64), b.to(torch.int64), torch.mul)


INT_KERNELS: dict[type, Callable] = {
    ir.QuantizeInputNode: quantize_input,
    ir.IntegerKernelNode: integer_kernel,
    ir.AddConstantNode: lambda n, x: x.to(torch.int64) + constant_addend(n, x),
    ir.TimeToFeaturesNode: FLOAT_KERNELS[ir.TimeToFeaturesNode],  # data movement: the same on integers
    ir.FeaturesToTimeNode: FLOAT_KERNELS[ir.FeaturesToTimeNode],
    ir.ConcatNode: lambda n, *xs: torch.cat([x.to(torch.int64) for x in xs], dim=n.axis + 2),
    ir.DelayNode: FLOAT_KERNELS[ir.DelayNode],
    ir.MulNode: _product,
    ir.MatMulNode: _product,
    ir.SynapseNode: _synapse,
    ir.ShiftNode: lambda n, x: K.shift(x, n.shift),
    ir.ScaleNode: lambda n, x: x.to(torch.int64) * integer_factor(n),
    ir.AddNode: lambda n, a, b: _binary(a, b, _add),
    ir.AndNode: lambda n, a, b: _binary(a, b, torch.bitwise_and),
    ir.AddressedAccumulationNode: lambda n, a, b: _binary(a, b, K.exact_matmul),
    ir.ReduceNode: _reduce,
    ir.MaxPoolNode: lambda n, x: merge_time(x, lambda z: K.max_pool(z, list(n.kernel), list(n.stride), list(n.padding),
                                                                     list(n.dilation), n.ceil_mode)),
    ir.AvgPoolNode: _avgpool,
    ir.PadNode: _pad,
    ir.RepeatTimeNode: lambda n, x: repeat_time(x, n.time),
    ir.ReshapeNode: lambda n, x: x.reshape(*x.shape[:2], *n.features),
    ir.PermuteNode: lambda n, x: x.permute(0, 1, *[p + 2 for p in n.perm]),
    ir.SliceNode: lambda n, x: x.narrow(n.axis + 2, n.start, n.stop - n.start),
    ir.DequantizeNode: lambda n, x: x,
    ir.OutputNode: lambda n, x: x,
}


def check_integer_graph(graph: ir.Graph) -> None:
    """Refuse graphs with operations that have no integer semantics here."""
    bad = [n for n in graph.nodes if not isinstance(n, ir.InputNode) and type(n) not in INT_KERNELS
           and not isinstance(n, ir.LoihiNeuronNode)]
    if bad:
        raise SpikecError("not an integer graph: " + ", ".join(f"{n.name} ({n.op})" for n in bad[:5])
                          + " have no integer semantics; run the quantize pass first")


def _check_integer_value(n: ir.Node, value: torch.Tensor) -> None:
    if value.dtype not in K.INT_DTYPES:
        raise SpikecError(f"internal error: {n.name} produced {value.dtype}")


def run_int(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray], record: bool = False,
            overrides: Optional[dict[str, torch.Tensor]] = None,
            teacher: Optional[dict[str, torch.Tensor]] = None, *, keep: Collection[str] = (),
            membranes: bool = True) -> IntRunResult:
    """Execute a quantized graph on float input ``x`` (quantized by the graph's input node).

    ``record`` keeps every node's value and, with ``membranes``, every neuron layer's (v, u) traces;
    without it only the values of the nodes named in ``keep`` outlive their last user (a run's memory
    is then its widest cut plus those values, not the whole graph's).

    ``overrides`` replaces the values of the named nodes (e.g. stage outputs read back from Lava):
    everything downstream is computed from them.  ``teacher`` (e.g. the float model's spikes of
    every Loihi neuron layer, by name) computes each named node as usual, keeps that value in
    ``result.taught`` (with ``record``, its membranes in ``result.membranes``) and feeds its users
    the teacher's value: every layer's local integer behaviour, free of upstream cascades."""
    check_integer_graph(graph)
    if not record and teacher is None and overrides is None:  # only the outputs and ``keep`` are seen
        graph = _fused(graph, frozenset(keep))
    overflows: dict[str, int] = {}

    def neuron(n: ir.LoihiNeuronNode, *ins: torch.Tensor) -> torch.Tensor:
        return _neuron(n, *ins, overflows=overflows)

    def neuron_with_membrane(n: ir.LoihiNeuronNode, *ins: torch.Tensor):
        spikes, v, u = _neuron(n, *ins, record=True, overflows=overflows)
        return spikes, (v, u)

    run = execute(graph, x, {**INT_KERNELS, ir.LoihiNeuronNode: neuron}, record=record,
                  neurons={ir.LoihiNeuronNode: neuron_with_membrane} if membranes else None, overrides=overrides,
                  teacher=teacher, check=_check_integer_value, executor="the integer executor", keep=keep)
    scales = []
    for o in graph.outputs:
        src = graph.producer(o.inputs[0])
        scales.append(src.scale if isinstance(src, ir.DequantizeNode) else 1.0)
    return IntRunResult([out.to(torch.int64) for out in run.outputs], scales, run.values, run.membranes, overflows,
                        run.taught)


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Integer sum, int32 when both operands are spike trains / int32 values whose peaks prove it fits."""
    narrow = (torch.uint8, torch.int32)
    if a.dtype in narrow and b.dtype in narrow and K.peak(a) + K.peak(b) < K.INT32_LIMIT:
        return torch.add(a.to(torch.int32), b)
    return a.to(torch.int64) + b


def _binary(a: torch.Tensor, b: torch.Tensor, op) -> torch.Tensor:
    """``op`` on two [T, B, *features] values whose features broadcast (aligned from the right)."""
    nf = max(a.dim(), b.dim()) - 2
    return op(align_features(a, nf), align_features(b, nf))
