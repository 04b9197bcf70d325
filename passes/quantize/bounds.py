"""Ranges: max |value| of every value and max |membrane| of every neuron, worst-case (interval
arithmetic over the weights, the input range and T: guaranteed, the default) or measured on
calibration data (``--calib``).

Calibrated bounds are the 99.99th percentile (:data:`CALIB_PERCENTILE`) of |value| over every
element (positions, time steps, samples) of each value, per layer, and of |H| per neuron layer: not
the maximum, so that one outlier in the calibration data does not coarsen a layer's scale.  The
quantizer keeps the usual headroom above the bound (|a| <= 2^16 where u wraps at 2^17, |v| <= 2^22
where it saturates at 2^23, and the power-of-two rounding of Δ), so values up to 2-4x the bound are
still exact; beyond that the integer model does what Loihi does (u wraps, v saturates), on every
integer target alike.  :meth:`Calibration.saturation` counts, per layer, the calibration values above
the bound and those the chosen scale wraps or saturates; the quantization report prints them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from spikec import ir, loihi
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
        elif isinstance(n, ir.ConcatNode):
            b[n.name] = max(ins)
        elif isinstance(n, ir.AddConstantNode):
            b[n.name] = ins[0] + abs(n.alpha) * float(np.abs(n.constant).max())
        elif isinstance(n, ir.SoftmaxNode) or (isinstance(n, ir.ActivationNode) and n.function == "sigmoid"):
            b[n.name] = 1.0
        elif isinstance(n, ir.ActivationNode):  # relu: |x|; gelu: x·Φ(x) is within [−0.17, |x|]
            b[n.name] = ins[0] if n.function == "relu" else max(ins[0], 0.17)
        elif isinstance(n, ir.LayerNormNode):  # a normalised row of N values has |x̂| <= sqrt(N − 1)
            count = int(np.prod(types[n.inputs[0]].features[-n.normalized_ndim:]))
            gamma = 1.0 if n.weight is None else float(np.abs(n.weight).max())
            beta = 0.0 if n.bias is None else float(np.abs(n.bias).max())
            b[n.name] = gamma * max(count - 1, 1) ** 0.5 + beta
        elif isinstance(n, ir.BatchNormNode):
            k = np.abs(n.weight if n.weight is not None else 1.0) / np.sqrt(n.var + n.eps)
            b[n.name] = float((k * (ins[0] + np.abs(n.mean))).max() + (np.abs(n.bias).max() if n.bias is not None else 0))
        else:  # data movement, pooling, repeat, output
            b[n.name] = ins[0] if ins else 0.0
    return b


CALIB_PERCENTILE = 99.99  # calibrated bounds: this percentile of |value| per layer (module docstring)


def percentile_abs(x: torch.Tensor, q: float) -> float:
    """The ``q``-th percentile of |x| over all its elements (linear interpolation, as numpy's):
    a bound that a few outliers in the calibration data do not coarsen."""
    a = x.detach().abs().reshape(-1).double()
    if a.numel() == 0:
        return 0.0
    if q >= 100.0:
        return float(a.max())
    return float(np.percentile(a.numpy(), q))


@dataclass
class Calibration:
    """Bounds measured on calibration data.  ``bound``: per value, the ``percentile``-th percentile
    of |value| (× ``margin``); ``membrane``: per neuron, the same of |H|.  ``currents`` /
    ``membranes``: each neuron layer's measured input currents X and membranes H (float model), kept
    to count what the chosen scales saturate (:meth:`saturation`)."""

    bound: dict[str, float]
    membrane: dict[str, float]
    percentile: float
    currents: dict[str, torch.Tensor] = field(default_factory=dict)
    membranes: dict[str, torch.Tensor] = field(default_factory=dict)

    def saturation(self, neuron: str, delta_a: float) -> tuple[int, int, int]:
        """(measured values beyond the calibrated bound, currents that leave u's 24-bit range and
        would wrap (|X| >= 2^17·Δa: u = a << 6 reaches 2^23), membranes beyond v's saturation
        (|H| > (2^23 − 1)·Δv)) of one neuron layer at input scale ``delta_a``: what Loihi, and
        every integer target, would clip or wrap on the calibration data itself."""
        x, h = self.currents.get(neuron), self.membranes.get(neuron)
        if x is None:
            return 0, 0, 0
        ax = x.abs().double()
        beyond = int((ax > self.bound.get(f"{neuron}::in", float("inf"))).sum())
        wraps = int((ax >= (loihi.U_MAX >> loihi.CURRENT_SHIFT) * delta_a).sum())
        dvv = delta_a / (1 << loihi.CURRENT_SHIFT)
        sat = int((h.abs().double() > loihi.V_LIMIT * dvv).sum()) if h is not None else 0
        return beyond, wraps, sat


def measured_bounds(graph: ir.Graph, calib: torch.Tensor, margin: float = 1.0,
                    percentile: float = CALIB_PERCENTILE) -> Calibration:
    """Per value the ``percentile``-th percentile of |value|, and per neuron of |H|, on the
    calibration data (times ``margin``); spikes and ANDs are 1."""
    r = run_float(graph, calib, record=True)
    vals = {k: percentile_abs(v, percentile) * margin for k, v in r.values.items()}
    currents: dict[str, torch.Tensor] = {}
    for n in graph.nodes:
        if isinstance(n, (ir.NeuronNode, ir.AndNode)):
            vals[n.name] = 1.0
        if isinstance(n, ir.NeuronNode):
            currents[n.name] = r.values[n.inputs[0]]
            vals[f"{n.name}::in"] = vals[n.inputs[0]]
    membranes = {k: percentile_abs(h, percentile) * margin for k, h in r.membranes.items()}
    return Calibration(vals, membranes, percentile, currents, dict(r.membranes))


def membrane_bound(n, time: int, input_bound: float, measured: dict[str, float]) -> float:
    """max |V| of neuron ``n``: measured, or the input bound summed over the steps the leak keeps
    (T for IF, min(T, 1/d) otherwise) plus the threshold; never below |θ| and |V_reset|."""
    d = real_decay(n)
    steps = time if d <= 0 else min(time, 1.0 / d)
    vb = measured.get(n.name, steps * input_bound + abs(float(n.v_threshold)))
    return max(vb, abs(float(n.v_threshold)), abs(n.v_reset or 0.0))
