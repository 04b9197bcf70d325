"""Ranges: max |value| of every value and max |membrane| of every neuron, worst-case (interval
arithmetic over the weights, the input range and T) or measured on calibration data."""

from __future__ import annotations

import numpy as np
import torch

from spikec import ir
from spikec.runtime.float_interpreter import run_float


def reduced_count(graph: ir.Graph, n) -> int:
    """How many values a reduce node sums into each output."""
    t = graph.types[n.inputs[0]]
    return int(np.prod([t.features[a] for a in n.axes] or [1])) * (t.time if n.over_time else 1)


def real_decay(n) -> float:
    """The float neuron's decay per step d (H = V·(1 − d) + X): 0 for IF, leak_rate (PLIF), else 1/τ."""
    return 0.0 if n.model == "IF" else (n.leak_rate if n.leak_rate is not None else 1.0 / n.tau)


def worst_case_bounds(graph: ir.Graph, input_max: float) -> dict[str, float]:
    """max |value| of every value by interval arithmetic (guaranteed for inputs within range)."""
    b: dict[str, float] = {}
    types = graph.types
    for n in graph.nodes:
        ins = [b[i] for i in n.inputs]
        if isinstance(n, ir.InputNode):
            b[n.name] = input_max
        elif isinstance(n, (ir.NeuronNode, ir.AndNode)):
            b[n.name] = 1.0
        elif isinstance(n, (ir.ConvNode, ir.LinearNode)):
            w = np.abs(n.weight.astype(np.float64)).reshape(n.weight.shape[0], -1).sum(1)
            bias = 0.0 if n.bias is None else np.abs(n.bias).max()
            b[n.name] = float(w.max() * ins[0] + bias)
        elif isinstance(n, ir.AddNode):
            b[n.name] = ins[0] + ins[1]
        elif isinstance(n, (ir.AddressedAccumulationNode, ir.MatMulNode)):
            k = types[n.inputs[0]].features[-1]
            b[n.name] = k * ins[0] * ins[1]
        elif isinstance(n, ir.MulNode):
            b[n.name] = ins[0] * ins[1]
        elif isinstance(n, ir.ReduceNode):
            b[n.name] = ins[0] * (reduced_count(graph, n) if n.reduce == "sum" else 1)
        elif isinstance(n, ir.ScaleNode):
            b[n.name] = ins[0] * float(np.abs(np.asarray(n.factor)).max())
        elif isinstance(n, ir.PadNode):
            b[n.name] = max(ins[0], float(np.abs(np.asarray(n.value)).max()))
        elif isinstance(n, ir.BatchNormNode):
            k = np.abs(n.weight if n.weight is not None else 1.0) / np.sqrt(n.var + n.eps)
            b[n.name] = float((k * (ins[0] + np.abs(n.mean))).max() + (np.abs(n.bias).max() if n.bias is not None else 0))
        else:  # data movement, pooling, repeat, output
            b[n.name] = ins[0] if ins else 0.0
    return b


def measured_bounds(graph: ir.Graph, calib: torch.Tensor, margin: float) -> tuple[dict[str, float], dict[str, float]]:
    """max |value| and, per neuron, max |H| on calibration data (times ``margin``)."""
    r = run_float(graph, calib, record=True)
    vals = {k: float(v.abs().max()) * margin for k, v in r.values.items()}
    for n in graph.nodes:
        if isinstance(n, (ir.NeuronNode, ir.AndNode)):
            vals[n.name] = 1.0
    membranes = {k: float(h.abs().max()) * margin for k, h in r.membranes.items()}
    return vals, membranes


def membrane_bound(n, time: int, input_bound: float, measured: dict[str, float]) -> float:
    """max |V| of neuron ``n``: measured, or the input bound summed over the steps the leak keeps
    (T for IF, min(T, 1/d) otherwise) plus the threshold; never below |θ| and |V_reset|."""
    d = real_decay(n)
    steps = time if d <= 0 else min(time, 1.0 / d)
    vb = measured.get(n.name, steps * input_bound + abs(float(n.v_threshold)))
    return max(vb, abs(float(n.v_threshold)), abs(n.v_reset or 0.0))
