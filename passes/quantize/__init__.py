"""quantize: map the float IR onto Loihi 2 fixed point (the integer IR that intref and Lava run).

Representation.  Every value becomes an integer tensor q with a real scale Δ (value ≈ q·Δ):

* spikes, counts, ANDs, addressed accumulations of integers: exact, Δ = 1;
* the analog model input: 8-bit graded values, Δx = input range / 255 (QuantizeInputNode);
* synapse outputs (conv / linear): integer weights and a weight exponent chosen so the output
  lands in the units Δa its consumer needs;
* sums / reshapes / slices / max pools / sum pools / token sums feeding a neuron keep one Δ
  ("domain"): all synapses and neurons connected through such operations share it;
* average pools, means and constant scalings c·x keep the integers (a sum pool, a sum, q itself)
  and move the factor into Δ: Δ/k, Δ·|c|.  A negative c is an integer negation q → −q (Δ > 0
  always): ``s − f(s)`` of spikes is the integer s + (−f(s)), exact;
* a sum of two exact values of scales a and b is taken in their common unit Δ = a/P = b/Q
  (a/b = P/Q in lowest terms), each operand multiplied by its integer: spikes plus a 3×3 average
  pool of spikes sum at Δ = 1/9, the spikes times 9, exactly.  A domain's Δ is a power of two times
  the common unit of the exact values added into it, so each enters by an integer multiple and a
  shift (:mod:`.domains`).  The integer multiples and negations are integer scale nodes (factor
  m): Lava folds them into the weights of the connections through them.

Neurons (decay_input=False form, produced by merge_scale_into_threshold) become Lava LIF neurons::

    float:   H = V·(1 − d) + X,  S = [H ≥ θ]          (d = 1/τ, leak_rate for PLIF, 0 for IF)
    integer: u = a << 6 (du = 4095: memoryless current, a = X / Δa),  Δv = Δa / 64
             v = trunc0(v·(4096 − dv) / 4096) + u + bias,  S = [v > vth << 6]
    dv = round(4096·d)   vth = floor((θ/Δv − 1) / 64)   bias = X0/Δv as 13-bit mantissa << exp (0..7)

where X0 is the constant part of the input current (the synapse biases carried through the
domain's sums and reshapes) minus μ, the mean error the floors of negative weight exponents leave in
the current (:func:`.neurons.floor_compensation`: −s/2 output units per floored synapse output for
uniform remainders, carried like the biases), so that the current error is zero-mean rather than
systematically low; every target reads the same integer bias.  Spiking at v ≥ 64·vth + 1
represents θ from below within 64·Δv, so a float membrane exactly on the threshold (frequent for
integer counts) still fires.

Weights (per synapse): w_lava = w·Δin / (Δout·2^e), rounded, with the exponent e (of the smallest
that fits every weight and the two below it) that gives the least squared error (rounding plus
clipping of outliers).  Mantissa ranges:
sign mode EXC [0, 255] if all w ≥ 0, INH [−255, 0] if all w ≤ 0, else MIXED: even values in
[−254, 254] (Lava drops the LSB of 8-bit MIXED weights, so the quantizer emits even weights).
The output current is (Σ w_lava·in) << e (>> −e, floor, for e < 0).

Scales Δa are powers of two chosen from bounds on |X| and |V| so that |a| ≤ 2^16 and |v| ≤ 2^22
(half of Lava's 24-bit range; the full range, with an eighth to spare, where a threshold needs the finer
scale and the bounds are worst-case: :mod:`.domains`) and the biases fit the 13-bit mantissa with exponent ≤ 7.  Bounds are
worst-case (interval arithmetic over the weights, input range and T) unless calibration data is
given, in which case each layer's 99.99th percentile of the measured |X| and |H| is used
(:data:`~.bounds.CALIB_PERCENTILE`; tighter, finer Δ).  Currents beyond it stay exact up to the
headroom; farther out u wraps and v saturates exactly as on Loihi, on every integer target (intref,
Lava, ONNX agree bit for bit there too).  The report counts, per layer, the calibration values above
the bound and those the scale wraps or saturates.

The scale belongs to the consumer.  A value's readers never share a linear tree: the pass
``copy_linear_inputs_per_consumer`` (run before quantize on the integer pipelines) gives every
neuron layer (and every max pool of real values, every host output) its own copy of the synapses and
sums behind its input, so each neuron's Δa comes from its own threshold and range, and each
connection into it gets its own weight exponent.

Every approximation is reported per layer: weight rounding / clipping, decay (dv/4096 vs d),
threshold placement, bias rounding / saturation.

Operations that are not spike-driven (layer norm, softmax, sigmoid, GELU, ReLU, products of two
real values) read their inputs materialised at 16 bits and run integer kernels of
:mod:`spikec.integer_approx`, each reported with its error bound (:mod:`.kernels`); added constants
(biases, per-step position embeddings) are explicit integer addends at the scale of the sum.

The Loihi 2 rules themselves (widths, rounding, the LIF step) are :mod:`spikec.loihi`'s.  One
module per job: :mod:`.bounds` (worst-case / calibrated ranges), :mod:`.domains` (which values share
a scale, and the scales), :mod:`.weights` (mantissas and exponents), :mod:`.neurons` (thresholds,
decays, biases, resets), :mod:`.kernels` (integer kernels and products), :mod:`.report` (the
per-layer :class:`QuantReport`); this module runs them.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch

from spikec import ir
from spikec.errors import UnsupportedError

from ..base import NameSource, PassReport, PassResult, where
from .bounds import CALIB_PERCENTILE, Calibration, measured_bounds, worst_case_bounds
from .domains import A_BITS, DOMAIN_OPS, OUT_BITS, V_BITS, Domains, Scales, describe, integer_multiple, signed_factor, threshold_error
from .kernels import GELU_TANH_GAP, KERNEL_OPS, LABELS, PRODUCT_OPS, REAL_BITS, integer_kernel, kernel_report
from .neurons import constant_input, floor_compensation, quantize_neuron
from .report import NeuronReport, QuantReport, SynapseReport
from .weights import expected_floor_error, quantize_synapse, quantize_weights

NAME = "quantize"

__all__ = ["A_BITS", "CALIB_PERCENTILE", "Calibration", "NAME", "OUT_BITS", "V_BITS", "Domains", "NeuronReport",
           "QuantReport", "Scales", "SynapseReport", "measured_bounds", "quantize", "quantize_weights",
           "worst_case_bounds"]


def check_quantizable(graph: ir.Graph) -> None:
    """Refuse what has no integer form here: unfolded batch norms, neurons that still scale their
    input, per-channel thresholds."""
    for n in graph.nodes:
        if isinstance(n, ir.BatchNormNode):
            raise UnsupportedError(f"quantize: batch norm {where(n)} is still in the graph (fold_batchnorm could not fold it); "
                                   "integer targets need it folded into a conv / linear")
        if isinstance(n, ir.NeuronNode):
            if n.decay_input and n.model == "LIF":
                module = f"module '{n.source}'" if n.source else f"neuron {n.name}"
                raise UnsupportedError(f"{module}: a LIF with decay_input=True scales its input by 1/tau, which Loihi's "
                                       "LIF cannot; do not skip the pass that moves 1/tau into the threshold, or use "
                                       "decay_input=False")
            if isinstance(n.v_threshold, np.ndarray):
                raise UnsupportedError(f"quantize: neuron {where(n)} has per-channel thresholds; Loihi LIF has one "
                                       "threshold per layer: merge the scale into the weights (per_layer_threshold)")


def quantize(graph: ir.Graph, calib: Optional[torch.Tensor] = None, input_range: Sequence[float] = (0.0, 1.0),
             calib_margin: float = 1.0, calib_percentile: float = CALIB_PERCENTILE) -> PassResult:
    """The integer IR of ``graph`` (module docstring); ``result.quant`` is the :class:`QuantReport`.
    ``calib``: calibration inputs; the bounds are then the ``calib_percentile``-th percentile of each
    layer's measured |value| (× ``calib_margin``) instead of worst-case."""
    report = PassReport(NAME)
    qrep = QuantReport(calibrated=calib is not None, percentile=calib_percentile if calib is not None else None)
    names = NameSource(graph)
    check_quantizable(graph)

    lo, hi = float(input_range[0]), float(input_range[1])
    input_max = max(abs(lo), abs(hi))
    signed = lo < 0
    x_scale = input_max / (127.0 if signed else 255.0)
    qrep.input_scale = x_scale

    cal = None
    if calib is not None:
        cal = measured_bounds(graph, calib, calib_margin, calib_percentile)
        bound, membrane_bound = cal.bound, cal.membrane
    else:
        bound, membrane_bound = worst_case_bounds(graph, input_max), {}

    scales = Scales(graph, x_scale, bound, membrane_bound, worst_case=calib is None)
    dom = scales.dom
    explicit = scales.explicit_constants()
    x0 = {name: constant_input(graph, dom, x, explicit) for name, x in scales.neuron_in.items()}
    scales.choose(x0)
    delta = scales.delta

    # ---- emission ------------------------------------------------------------------------------------
    out_nodes: list[ir.Node] = []
    qname: dict[str, str] = {}  # float value -> integer value
    floors: dict[str, np.ndarray] = {}  # synapse -> mean floor error of its output per channel (real units)

    def as_units(v: str, target: float, consumer: ir.Node) -> str:
        """Integer value of ``v`` expressed in units ``target``: Δ_v / target = m·2^k (m odd, the
        scales are chosen so: module docstring) becomes ``(q·m) << k`` (``>> −k``: a floor)."""
        dv_ = delta(v)
        if math.isclose(dv_, target, rel_tol=1e-9):
            return qname[v]
        mk = integer_multiple(dv_ / target)
        if mk is None:
            raise UnsupportedError(f"quantize: {describe(consumer, graph)} combines values of fixed-point scales "
                                   f"{dv_:.6g} and {target:.6g} that no integer multiple and shift relate; make the "
                                   "constant factors on its input paths ratios of small integers")
        m, k = mk
        q = qname[v]
        if m != 1:
            times = ir.ScaleNode(names(f"{q}:times{m}"), (q,), consumer.source, factor=float(m))
            out_nodes.append(times)
            q = times.name
        if k != 0:
            s = ir.ShiftNode(names(f"{qname[v]}:shift"), (q,), consumer.source, shift=k)
            out_nodes.append(s)
            q = s.name
        report.did(where(consumer), f"integer operand {v} brought into the consumer's units: "
                                    + " then ".join(([f"times {m}"] if m != 1 else []) + ([f"shifted by {k}"] if k else [])))
        return q

    for n in graph.nodes:
        if isinstance(n, ir.InputNode):
            out_nodes.append(n)
            q = ir.QuantizeInputNode(names(f"{n.name}:q"), (n.name,), n.source, scale=x_scale, bits=8, signed=signed)
            out_nodes.append(q)
            qname[n.name] = q.name
        elif isinstance(n, (ir.ConvNode, ir.LinearNode)):
            s, srep = quantize_synapse(graph, n, qname[n.inputs[0]], scales, report)
            if s.weight_exp < 0:
                floors[n.name] = expected_floor_error(s.weight, s.weight_exp) * srep.delta_out
            out_nodes.append(s)
            qname[n.name] = s.name
            qrep.synapses.append(srep)
        elif isinstance(n, ir.NeuronNode):
            x = n.inputs[0]
            key, da = scales.neuron_key(n)
            a = as_units(x, da, n)
            vb = next(vb for m, _, _, vb in scales.needs[key] if m is n)
            mu = floor_compensation(graph, dom, x, floors)  # the floors' mean current error: the bias adds it back
            q, nrep = quantize_neuron(n, a, da, x0[n.name] - mu, bound.get(x, 0.0), vb, report)
            if key in scales.full_range:
                report.did(where(n), "the full 24-bit state range (worst-case bounds with an eighth to spare), for a "
                                     "threshold within 1 %: the half range's scale realised it "
                                     f"{100 * threshold_error(scales.needs[key], 2 * scales.root_delta(key)):.2g} % off")
            if np.any(mu):
                nrep.floor_compensation = -mu
                theta = abs(float(n.v_threshold)) or 1.0
                report.did(where(n), f"bias adds back the mean floor error of its synapses' negative exponents "
                                     f"(up to {float(np.max(-mu)) / theta:.3g} θ)")
            if cal is not None:
                nrep.calib_values = int(cal.currents[n.name].numel()) if n.name in cal.currents else 0
                nrep.calib_beyond, nrep.calib_wrapped, nrep.calib_saturated = cal.saturation(n.name, da)
                if nrep.calib_wrapped or nrep.calib_saturated:
                    report.skip(where(n), f"calibration: {nrep.calib_wrapped} currents wrap u and {nrep.calib_saturated} "
                                          "membranes saturate v at the calibrated scale")
            out_nodes.append(q)
            qname[n.name] = q.name
            qrep.neurons.append(nrep)
        elif isinstance(n, ir.OutputNode):
            src = n.inputs[0]
            dq = ir.DequantizeNode(names(f"{n.name}:dequant"), (qname[src],), n.source, scale=delta(src))
            out_nodes.append(dq)
            out_nodes.append(n.replace(inputs=(dq.name,)))
        elif isinstance(n, ir.AddConstantNode):  # the constant in the sum's units, rounded (an explicit addend)
            target = delta(n.name)
            value = n.alpha * n.constant.astype(np.float64)
            c = np.round(value / target)
            out_nodes.append(n.replace(inputs=(as_units(n.inputs[0], target, n),), constant=c.astype(np.int64), alpha=1.0))
            qname[n.name] = n.name
            err = float(np.abs(c * target - value).max())
            report.did(where(n), f"constant {list(n.constant.shape)} added as integers at scale {target:.4g} "
                                 f"(rounding error <= {err:.3g})")
        elif isinstance(n, KERNEL_OPS):
            x = n.inputs[0]
            q, s_in = qname[x], scales.kernel_input_scale(x)
            if s_in > delta(x) * (1 + 1e-12):  # a value of fixed scale beyond REAL_BITS: read shifted right
                sh = ir.ShiftNode(names(f"{q}:shift"), (q,), n.source, shift=-round(math.log2(s_in / delta(x))))
                out_nodes.append(sh)
                q = sh.name
            node = integer_kernel(graph, n, q, s_in, delta(n.name))
            out_nodes.append(node)
            qname[n.name] = node.name
            try:
                krep = kernel_report(node, n.source, graph.types[x].features[node.axis] if node.kernel == "softmax" else 0)
            except ValueError as e:  # a plan refused its scales
                raise UnsupportedError(f"quantize: {describe(n, graph)} has no integer kernel at input scale "
                                       f"{s_in:.3g}: {e}") from None
            if isinstance(n, ir.ActivationNode) and n.approximate == "tanh":
                krep.note = "the float op is GELU's tanh form; the kernel approximates erf GELU (within 5e-4 of it)"
                krep.error_bound += GELU_TANH_GAP
            qrep.kernels.append(krep)
            report.did(where(n), f"integer {LABELS[node.kernel]} (spikec.integer_approx): scale {node.scale_in:.4g} -> "
                                 f"{node.output_scale:.4g}, error bound {krep.error_bound:.3g}")
        elif isinstance(n, PRODUCT_OPS):  # no binary operand: the product of the integers, rescaled
            j = round(math.log2(delta(n.name) / (delta(n.inputs[0]) * delta(n.inputs[1]))))  # the scale's 2^j (.domains)
            out_nodes.append(n.replace(inputs=tuple(qname[i] for i in n.inputs)))
            q = n.name
            if j:
                sh = ir.ShiftNode(names(f"{n.name}:shift"), (q,), n.source, shift=-j)
                out_nodes.append(sh)
                q = sh.name
            qname[n.name] = q
            report.did(where(n), f"{n.op} of two real values as the product of their integers"
                                 + (f", floored by 2^{j} into {REAL_BITS} bits" if j else " (exact)"))
        elif isinstance(n, ir.ScaleNode):  # |factor| lives in the scale Δ, its sign in the integers
            q = qname[n.inputs[0]]
            if signed_factor(n, graph) < 0:
                neg = ir.ScaleNode(names(f"{q}:negate"), (q,), n.source, factor=-1.0)
                out_nodes.append(neg)
                q = neg.name
            qname[n.name] = q
        elif isinstance(n, DOMAIN_OPS):
            target = delta(n.name)
            # inputs of a scale-changing op keep their own units; the others are aligned
            scaling = isinstance(n, (ir.ReduceNode, ir.AvgPoolNode))
            ins = [qname[i] if scaling else as_units(i, target, n) for i in n.inputs]
            attrs = {}
            if isinstance(n, ir.ReduceNode):
                attrs["reduce"] = "sum"
            if isinstance(n, ir.AvgPoolNode):
                attrs["divisor_override"] = 1
            if isinstance(n, ir.PadNode):
                v = np.asarray(n.value, dtype=np.float64)
                moved = n.inputs[0] in dom and n.name not in explicit  # into the neurons' bias (constant_input)
                attrs["value"] = 0.0 if moved else (np.round(v / target) if v.ndim else float(np.round(v / target)))
            out_nodes.append(n.replace(inputs=tuple(ins), **attrs))
            qname[n.name] = n.name
        else:
            out_nodes.append(n.replace(inputs=tuple(qname[i] for i in n.inputs)))
            qname[n.name] = n.name

    for v in graph.types:  # every float value's scale (additive report field: error bounds use it)
        if v in scales.fixed or v in dom:
            qrep.scales[v] = float(delta(v))
    g = graph.rewrite(out_nodes, quantization={"input_scale": x_scale, "input_range": [lo, hi], "calibrated": calib is not None})
    result = PassResult(g, report)
    result.quant = qrep  # type: ignore[attr-defined]
    return result
