"""quantize: map the float IR onto Loihi 2 fixed point (the integer IR that intref and Lava run).

Representation.  Every value becomes an integer tensor q with a real scale Δ (value ≈ q·Δ):

* spikes, counts, ANDs, addressed accumulations of integers: exact, Δ = 1;
* the analog model input: 8-bit graded values, Δx = input range / 255 (QuantizeInputNode);
* synapse outputs (conv / linear): integer weights and a weight exponent chosen so the output
  lands in the units Δa its consumer needs;
* sums / reshapes / slices / max pools / sum pools / token sums feeding a neuron keep one Δ
  ("domain"): all synapses and neurons connected through such operations share it.

Neurons (decay_input=False form, produced by merge_scale_into_threshold) become Lava LIF neurons::

    float:   H = V·(1 − d) + X,  S = [H ≥ θ]          (d = 1/τ, leak_rate for PLIF, 0 for IF)
    integer: u = a << 6 (du = 4095: memoryless current, a = X / Δa),  Δv = Δa / 64
             v = trunc0(v·(4096 − dv) / 4096) + u + bias,  S = [v > vth << 6]
    dv = round(4096·d)   vth = floor((θ/Δv − 1) / 64)   bias = X0/Δv as 13-bit mantissa << exp (0..7)

where X0 is the constant part of the input current (the synapse biases carried through the
domain's sums and reshapes).  Spiking at v ≥ 64·vth + 1 represents θ from below within 64·Δv, so a
float membrane exactly on the threshold (frequent for integer counts) still fires.

Weights (per synapse): w_lava = w·Δin / (Δout·2^e), rounded, with the exponent e (of the smallest
that fits every weight and the two below it) that gives the least squared error (rounding plus
clipping of outliers).  Mantissa ranges:
sign mode EXC [0, 255] if all w ≥ 0, INH [−255, 0] if all w ≤ 0, else MIXED: even values in
[−254, 254] (Lava drops the LSB of 8-bit MIXED weights, so the quantizer emits even weights).
The output current is (Σ w_lava·in) << e (>> −e, floor, for e < 0).

Scales Δa are powers of two chosen from bounds on |X| and |V| so that |a| ≤ 2^16 and |v| ≤ 2^22
(half of Lava's 24-bit range) and the biases fit the 13-bit mantissa with exponent ≤ 7.  Bounds are
worst-case (interval arithmetic over the weights, input range and T) unless calibration data is
given, in which case measured maxima × ``calib_margin`` are used (tighter, finer Δ; other inputs
could then saturate v or wrap u — the report shows the headroom).

Every approximation is reported per layer: weight rounding / clipping, decay (dv/4096 vs d),
threshold placement, bias rounding / saturation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from spikec import ir
from spikec.errors import UnsupportedError
from spikec.runtime.float_interpreter import _KERNELS as FLOAT_KERNELS
from spikec.runtime.float_interpreter import run_float

from .base import NameSource, PassReport, PassResult, where

NAME = "quantize"

# operations that keep one scale between synapse outputs and their neuron ("domain" ops)
_TREE = (ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode, ir.MaxPoolNode, ir.AvgPoolNode,
         ir.PadNode, ir.ScaleNode, ir.RepeatTimeNode)
A_BITS = 16  # |a| <= 2^16 (u = a << 6 within 2^22)
V_BITS = 22  # |v| <= 2^22
OUT_BITS = 30  # host-side outputs: int32 with headroom
BIAS_MANT = 4095
BIAS_EXP_MAX = 7


@dataclass
class SynapseReport:
    name: str
    source: str
    sign_mode: str
    weight_exp: int
    delta_in: float
    delta_out: float
    clipped: float  # fraction of weights clipped to the mantissa range
    rel_error: float  # rms weight rounding error / rms weight


@dataclass
class NeuronReport:
    name: str
    source: str
    delta_v: float
    vth: int
    threshold: float
    threshold_int: float  # (64·vth + 1)·Δv: the real threshold the integer neuron implements
    dv: int
    decay: float
    bias_saturated: int
    headroom_v: float  # bound on |v| / 2^23
    headroom_u: float  # bound on |u| / 2^23


@dataclass
class QuantReport:
    input_scale: float = 1.0
    synapses: list[SynapseReport] = field(default_factory=list)
    neurons: list[NeuronReport] = field(default_factory=list)
    calibrated: bool = False

    def lines(self) -> list[str]:
        out = [f"input: 8-bit, scale {self.input_scale:.6g}; bounds: {'calibrated' if self.calibrated else 'worst-case'}"]
        out.append(f"{'synapse':44s} {'mode':5s} {'exp':>4s} {'clip%':>6s} {'w err':>7s}")
        for s in self.synapses:
            out.append(f"{s.name[:44]:44s} {s.sign_mode:5s} {s.weight_exp:4d} {100 * s.clipped:6.2f} {s.rel_error:7.4f}")
        out.append(f"{'neuron':44s} {'vth':>7s} {'dv':>5s} {'theta':>8s} {'theta_q':>9s} {'|v|/max':>8s} {'|u|/max':>8s}")
        for n in self.neurons:
            out.append(f"{n.name[:44]:44s} {n.vth:7d} {n.dv:5d} {n.threshold:8.4g} {n.threshold_int:9.5g} "
                       f"{n.headroom_v:8.3f} {n.headroom_u:8.3f}" + (f"  bias saturated x{n.bias_saturated}" if n.bias_saturated else ""))
        return out + self.warnings()

    def warnings(self) -> list[str]:
        """Layers whose quantization is too coarse to trust: weights that mostly round away
        (relative error >= 0.25) or thresholds off by more than 10 %.  Typically one value with a
        far larger range (e.g. a sum over many tokens) shares its scale with the layers named."""
        out = [f"WARNING: synapse {s.name} ({s.source}): weights quantized with relative error {s.rel_error:.2f}"
               for s in self.synapses if s.rel_error >= 0.25]
        out += [f"WARNING: neuron {n.name} ({n.source}): threshold {n.threshold:.4g} realised as {n.threshold_int:.4g}"
                for n in self.neurons if abs(n.threshold_int - n.threshold) > 0.1 * abs(n.threshold)]
        if out:
            out.append("WARNING: the integer model will disagree with the float model in these layers; they share a "
                       "fixed-point scale with a value of far larger range (see the |v|/max column); verify with "
                       "spikec verify, try --calib with representative inputs")
        return out


# ------------------------------------------------------------------------------------------------
# bounds
# ------------------------------------------------------------------------------------------------


def _reduced_count(graph: ir.Graph, n) -> int:
    t = graph.types[n.inputs[0]]
    return int(np.prod([t.features[a] for a in n.axes] or [1])) * (t.time if n.over_time else 1)


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
            b[n.name] = ins[0] * (_reduced_count(graph, n) if n.reduce == "sum" else 1)
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


# ------------------------------------------------------------------------------------------------
# domains: union-find with relative factors (Δ_v = Δ_root · r_v)
# ------------------------------------------------------------------------------------------------


class _Domains:
    def __init__(self):
        self.parent: dict[str, str] = {}
        self.ratio: dict[str, float] = {}

    def add(self, v: str, parent: Optional[str] = None, ratio: float = 1.0):
        if parent is None:
            self.parent[v], self.ratio[v] = v, 1.0
        else:
            root, r = self.find(parent)
            self.parent[v], self.ratio[v] = root, r * ratio

    def __contains__(self, v):
        return v in self.parent

    def find(self, v: str) -> tuple[str, float]:
        r = 1.0
        while self.parent[v] != v:
            r *= self.ratio[v]
            v = self.parent[v]
        return v, r

    def union(self, a: str, b: str) -> bool:
        """Require Δ_a = Δ_b; False if that contradicts earlier constraints."""
        ra, fa = self.find(a)
        rb, fb = self.find(b)
        if ra == rb:
            return math.isclose(fa, fb, rel_tol=1e-12)
        # Δ_rb · fb = Δ_ra · fa  →  Δ_rb = Δ_ra · fa / fb
        self.parent[rb], self.ratio[rb] = ra, fa / fb
        return True


def _pow2_ceil(x: float) -> float:
    return 2.0 ** math.ceil(math.log2(x)) if x > 0 else 1.0


def _log2_exact(x: float) -> Optional[int]:
    if x <= 0:
        return None
    k = round(math.log2(x))
    return k if math.isclose(2.0 ** k, x, rel_tol=1e-12) else None


# ------------------------------------------------------------------------------------------------
# the pass
# ------------------------------------------------------------------------------------------------


def _quantize_weights(w: np.ndarray, factor: float, bits: int = 8, min_exp: Optional[int] = None):
    """Integer Lava weights for real weights ``w`` scaled by ``factor`` (= Δin/Δout).
    ``min_exp`` bounds the exponent from below (0 where a sum follows the synapse: a negative
    exponent floors each synapse output, and Lava can only floor after folded sums)."""
    ws = w.astype(np.float64) * factor
    if np.all(ws >= 0):
        mode, wmax, step = "exc", (1 << bits) - 1, 1
    elif np.all(ws <= 0):
        mode, wmax, step = "inh", (1 << bits) - 1, 1
    else:
        mode, wmax, step = "mixed", (1 << bits) - 2, 2
    peak = float(np.abs(ws).max())
    if peak == 0:
        return np.zeros(w.shape, np.int32), 0, mode, 0.0, 0.0
    e_max = math.ceil(math.log2(peak / wmax))  # smallest exponent with no clipping
    best = None
    candidates = [e for e in (e_max, e_max - 1, e_max - 2) if min_exp is None or e >= min_exp] or [min_exp]
    for e in candidates:  # a finer step may pay for clipping a few outliers
        scaled = ws / 2.0 ** e
        q = np.round(scaled / step) * step
        clipped = float(np.mean(np.abs(q) > wmax))
        q = np.clip(q, -wmax if mode != "exc" else 0, wmax if mode != "inh" else 0)
        sq_err = float(np.sum((q - scaled) ** 2) * 4.0 ** e)  # error in the same (unscaled) units
        if best is None or sq_err < best[0]:
            best = (sq_err, q, e, clipped, scaled)
    _, q, e, clipped, scaled = best
    rms = float(np.sqrt(np.mean(scaled ** 2))) or 1.0
    err = float(np.sqrt(np.mean((q - scaled) ** 2))) / rms
    return q.astype(np.int32), int(e), mode, clipped, err


def _bias_to_mant_exp(b: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer biases as mantissa (|m| <= 4095) << exponent (0..7); returns (mant, exp, saturated)."""
    b = np.asarray(b, dtype=np.float64)
    mag = np.abs(b)
    exp = np.where(mag > BIAS_MANT, np.ceil(np.log2(np.maximum(mag, 1) / BIAS_MANT)), 0).astype(np.int64)
    saturated = int(np.sum(exp > BIAS_EXP_MAX))
    exp = np.clip(exp, 0, BIAS_EXP_MAX)
    mant = np.clip(np.round(b / 2.0 ** exp), -BIAS_MANT, BIAS_MANT).astype(np.int64)
    return mant, exp, saturated


def _summed_downstream(graph: ir.Graph, value: str) -> bool:
    """Does a feature sum (reduce / sum pool) follow ``value`` before the next neuron or output?"""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        for u in graph.users(v):
            if u.name in seen or isinstance(u, (ir.NeuronNode, ir.OutputNode, ir.ConvNode, ir.LinearNode)):
                continue
            if isinstance(u, (ir.ReduceNode, ir.AvgPoolNode)):
                return True
            seen.add(u.name)
            stack.append(u.name)
    return False


def quantize(graph: ir.Graph, calib: Optional[torch.Tensor] = None, input_range: Sequence[float] = (0.0, 1.0),
             calib_margin: float = 1.25) -> PassResult:
    report = PassReport(NAME)
    qrep = QuantReport(calibrated=calib is not None)
    types = graph.types
    names = NameSource(graph)

    for n in graph.nodes:
        if isinstance(n, ir.BatchNormNode):
            raise UnsupportedError(f"quantize: batch norm {where(n)} is still in the graph (fold_batchnorm could not fold it); "
                                   "integer targets need it folded into a conv / linear")
        if isinstance(n, ir.MatMulNode) or (isinstance(n, ir.MulNode)):
            raise UnsupportedError(f"quantize: {n.op} {where(n)} multiplies two activations and no operand is binary; "
                                   "integer targets support spike-driven products only")
        if isinstance(n, ir.NeuronNode):
            if n.decay_input and n.model == "LIF":
                raise UnsupportedError(f"quantize: neuron {where(n)} still scales its input by 1/tau "
                                       "(decay_input=True); run merge_scale_into_threshold first")
            if isinstance(n.v_threshold, np.ndarray):
                raise UnsupportedError(f"quantize: neuron {where(n)} has per-channel thresholds; Loihi LIF has one "
                                       "threshold per layer: merge the scale into the weights (per_layer_threshold)")

    lo, hi = float(input_range[0]), float(input_range[1])
    input_max = max(abs(lo), abs(hi))
    signed = lo < 0
    x_scale = input_max / (127.0 if signed else 255.0)
    qrep.input_scale = x_scale

    if calib is not None:
        bound, membrane_bound = measured_bounds(graph, calib, calib_margin)
    else:
        bound, membrane_bound = worst_case_bounds(graph, input_max), {}

    # ---- fixed scales (exact values) and domains (synapse-derived values) ---------------------
    fixed: dict[str, float] = {}
    dom = _Domains()
    for n in graph.nodes:
        t = types[n.name]
        if isinstance(n, ir.InputNode):
            fixed[n.name] = x_scale
            continue
        if isinstance(n, (ir.ConvNode, ir.LinearNode)):
            dom.add(n.name)
            continue
        if t.kind is not ir.Kind.REAL and not isinstance(n, _TREE):
            fixed[n.name] = 1.0
            continue
        if isinstance(n, ir.OutputNode):
            continue
        if not isinstance(n, _TREE):
            raise UnsupportedError(f"quantize: {n.op} {where(n)} has no integer form here")
        ratio = 1.0
        if isinstance(n, ir.ReduceNode) and n.reduce == "mean":
            ratio = 1.0 / _reduced_count(graph, n)
        elif isinstance(n, ir.AvgPoolNode):
            if n.divisor_override not in (None, 1) or (any(n.padding) and not n.count_include_pad) or n.ceil_mode:
                raise UnsupportedError(f"quantize: average pool {where(n)} with a position-dependent divisor")
            ratio = 1.0 / (n.divisor_override or int(np.prod(n.kernel)))
        elif isinstance(n, ir.ScaleNode):
            if isinstance(n.factor, np.ndarray) or float(n.factor) <= 0:
                raise UnsupportedError(f"quantize: scale {where(n)} by a non-positive or per-channel factor")
            ratio = float(n.factor) if n.mode == "mul" else 1.0 / float(n.factor)
        elif isinstance(n, ir.MaxPoolNode) and t.kind is ir.Kind.REAL:
            pass
        var_ins = [i for i in n.inputs if i in dom]
        if not var_ins:  # a value computed exactly from integers (e.g. mean / avg-pool of spikes)
            f = [fixed[i] for i in n.inputs]
            if isinstance(n, ir.AddNode) and not math.isclose(f[0], f[1], rel_tol=1e-12):
                fixed[n.name] = min(f)  # the coarser operand is shifted (power-of-two ratio checked at emission)
            else:
                fixed[n.name] = f[0] * ratio
            continue
        dom.add(n.name, var_ins[0], ratio)
        for other in var_ins[1:]:
            if not dom.union(var_ins[0], other):
                raise UnsupportedError(f"quantize: {where(n)} adds values whose scales cannot agree")

    # ---- consumers: neurons (units Δa) and host outputs ----------------------------------------
    neuron_in: dict[str, str] = {}
    needs: dict[str, list] = {}  # domain root -> constraints (kind, Δ lower bound relative to root)
    for n in graph.nodes:
        if isinstance(n, ir.NeuronNode):
            x = n.inputs[0]
            neuron_in[n.name] = x
            T = types[x].time
            xb = bound.get(x, 0.0)
            d = 0.0 if n.model == "IF" else (n.leak_rate if n.leak_rate is not None else 1.0 / n.tau)
            steps = T if d <= 0 else min(T, 1.0 / d)
            vb = membrane_bound.get(n.name, steps * xb + abs(float(n.v_threshold)))
            vb = max(vb, abs(float(n.v_threshold)), abs(n.v_reset or 0.0))
            if x in dom:
                root, r = dom.find(x)
                needs.setdefault(root, []).append((n, r, xb, vb))
            else:
                needs.setdefault(("neuron", n.name), []).append((n, 1.0, xb, vb))

    # constant part X0 of every neuron's input (synapse biases carried through the domain ops)
    def x0_of(value: str) -> np.ndarray:
        memo: dict[str, torch.Tensor] = {}

        def ev(v: str) -> torch.Tensor:
            if v in memo:
                return memo[v]
            n = graph.producer(v)
            tv = types[v]
            if isinstance(n, (ir.ConvNode, ir.LinearNode)):
                out = torch.zeros((tv.time, 1, *tv.features), dtype=torch.float64)
                if n.bias is not None:
                    b = torch.from_numpy(n.bias.astype(np.float64))
                    out = out + (b.reshape(-1, *([1] * (len(tv.features) - 1))) if isinstance(n, ir.ConvNode) else b)
            elif v in dom and isinstance(n, _TREE):
                if isinstance(n, ir.MaxPoolNode):
                    inner = ev(n.inputs[0])
                    per_channel = inner.flatten(3) if inner.dim() > 3 else inner
                    if inner.dim() > 3 and not torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel)):
                        raise UnsupportedError(f"quantize: max pool {where(n)} over a bias that varies inside a channel")
                    out = FLOAT_KERNELS[type(n)](n, inner.float()).double()
                else:
                    ins = [ev(i).float() if types[i].kind is ir.Kind.REAL else torch.zeros((types[i].time, 1, *types[i].features))
                           for i in n.inputs]
                    out = FLOAT_KERNELS[type(n)](n, *ins).double()
            else:
                out = torch.zeros((tv.time, 1, *tv.features), dtype=torch.float64)
            memo[v] = out
            return out

        x0 = ev(value)
        if x0.shape[0] > 1 and not torch.allclose(x0, x0[:1].expand_as(x0)):
            raise UnsupportedError(f"quantize: the constant input of the neuron reading {value} varies over time")
        return x0[0, 0].numpy()

    x0 = {name: x0_of(x) for name, x in neuron_in.items()}

    # ---- choose Δ per domain -----------------------------------------------------------------------
    delta_root: dict = {}
    for key, cons in needs.items():
        lower = 0.0
        for n, r, xb, vb in cons:
            bmax = float(np.abs(x0[n.name]).max()) if x0[n.name].size else 0.0
            da_min = max(xb / 2 ** A_BITS, 64.0 * vb / 2 ** V_BITS, 64.0 * bmax / (BIAS_MANT * 2 ** BIAS_EXP_MAX), 1e-30)
            lower = max(lower, da_min / r)
        if isinstance(key, tuple):  # a neuron reading an exact value directly: a power-of-two multiple of its scale
            base = fixed[neuron_in[key[1]]]
            delta_root[key] = base * _pow2_ceil(lower / base)
        else:
            delta_root[key] = _pow2_ceil(lower)
    for v in list(dom.parent):
        root, _ = dom.find(v)
        if root not in delta_root:  # host-output domains
            members = [u for u in dom.parent if dom.find(u)[0] == root]
            peak = max((bound.get(u, 0.0) / dom.find(u)[1] for u in members), default=1.0)
            delta_root[root] = _pow2_ceil(max(peak, 1e-30) / 2 ** OUT_BITS)

    def delta(v: str) -> float:
        if v in fixed:
            return fixed[v]
        root, r = dom.find(v)
        return delta_root[root] * r

    # ---- emission ------------------------------------------------------------------------------------
    out_nodes: list[ir.Node] = []
    qname: dict[str, str] = {}  # float value -> integer value

    def as_units(v: str, target: float, consumer: ir.Node) -> str:
        """Integer value of ``v`` expressed in units ``target`` (exact power-of-two shift)."""
        dv_ = delta(v)
        if math.isclose(dv_, target, rel_tol=1e-9):
            return qname[v]
        k = _log2_exact(dv_ / target)
        if k is None:
            raise UnsupportedError(f"quantize: {where(consumer)} combines values with scales {dv_:.6g} and "
                                   f"{target:.6g} whose ratio is not a power of two")
        s = ir.ShiftNode(names(f"{qname[v]}:shift"), (qname[v],), consumer.source, shift=k)
        out_nodes.append(s)
        report.did(where(consumer), f"integer operand {v} shifted by {k} into the consumer's units")
        return s.name

    for n in graph.nodes:
        if isinstance(n, ir.InputNode):
            out_nodes.append(n)
            q = ir.QuantizeInputNode(names(f"{n.name}:q"), (n.name,), n.source, scale=x_scale, bits=8, signed=signed)
            out_nodes.append(q)
            qname[n.name] = q.name
        elif isinstance(n, (ir.ConvNode, ir.LinearNode)):
            d_in = delta(n.inputs[0])
            d_out = delta(n.name)
            if types[n.inputs[0]].kind is ir.Kind.REAL and n.inputs[0] in dom:
                raise UnsupportedError(f"quantize: {n.op} {where(n)} reads a real-valued synapse output with no neuron "
                                       "in between (merge the two linear layers first)")
            summed = _summed_downstream(graph, n.name)
            w, e, mode, clipped, err = _quantize_weights(n.weight, d_in / d_out, min_exp=0 if summed else None)
            if summed and e == 0 and _quantize_weights(n.weight, d_in / d_out)[1] < 0:
                report.skip(where(n), "approximation: weight exponent held at 0 (a sum follows; a negative exponent "
                                      "would floor before it) -> fewer mantissa bits")
            feeds_neurons = dom.find(n.name)[0] in needs  # then its bias moves into the neurons' bias
            bias = None
            if not feeds_neurons and n.bias is not None:
                bias = np.round(n.bias.astype(np.float64) / d_out).astype(np.int64)
            common = dict(weight=w, weight_exp=e, sign_mode=mode, bias=bias)
            if isinstance(n, ir.ConvNode):
                s = ir.SynapseNode(n.name, (qname[n.inputs[0]],), n.source, layout="conv", stride=n.stride,
                                   padding=n.padding, dilation=n.dilation, groups=n.groups, **common)
            else:
                s = ir.SynapseNode(n.name, (qname[n.inputs[0]],), n.source, layout="linear", **common)
            out_nodes.append(s)
            qname[n.name] = s.name
            qrep.synapses.append(SynapseReport(n.name, n.source, mode, e, d_in, d_out, clipped, err))
            report.did(where(n), f"{mode} weights, exp {e}, rms rounding error {err:.2%}" + (f", {clipped:.2%} clipped" if clipped else ""))
        elif isinstance(n, ir.NeuronNode):
            x = n.inputs[0]
            key = dom.find(x)[0] if x in dom else ("neuron", n.name)
            da = delta_root[key] * (dom.find(x)[1] if x in dom else 1.0)
            dvv = da / 64.0
            a = as_units(x, da, n)
            d = 0.0 if n.model == "IF" else (n.leak_rate if n.leak_rate is not None else 1.0 / n.tau)
            dv = int(round(4096 * d))
            theta = float(n.v_threshold)
            vth = max(0, math.floor((theta / dvv - 1) / 64))
            if vth >= 1 << 17:
                raise UnsupportedError(f"quantize: threshold of {where(n)} does not fit 17 bits at scale {dvv:.3g}")
            # H = V − (V − V_r)·d + X = V·(1 − d) + (V_r·d + X): a non-zero reset value adds a constant
            bias_int = (x0[n.name] + (n.v_reset or 0.0) * d) / dvv
            mant, bexp, sat = _bias_to_mant_exp(bias_int)
            if not np.any(mant):
                mant_v, exp_v = 0, 0
            elif np.all(mant == mant.flat[0]) and np.all(bexp == bexp.flat[0]):
                mant_v, exp_v = int(mant.flat[0]), int(bexp.flat[0])
            else:
                mant_v, exp_v = mant.astype(np.int32), bexp.astype(np.int32)
            if n.v_reset is None:
                reset, rv = "soft", 0
            elif n.v_reset == 0:
                reset, rv = "zero", 0
            else:
                reset, rv = "value", int(round(n.v_reset / dvv))
            q = ir.LoihiNeuronNode(n.name, (a,), n.source, du=4095, dv=dv, vth=vth, bias_mant=mant_v, bias_exp=exp_v,
                                   reset=reset, reset_value=rv, v_init=int(round(n.v_init / dvv)))
            out_nodes.append(q)
            qname[n.name] = q.name
            xb = bound.get(x, 0.0)
            vb = next(vb for m, _, _, vb in needs[key] if m is n)
            qrep.neurons.append(NeuronReport(n.name, n.source, dvv, vth, theta, (64 * vth + 1) * dvv, dv, d, sat,
                                             vb / dvv / 2 ** 23, 64 * xb / da / 2 ** 23))
            report.did(where(n), f"vth {vth} (θ {theta:.6g} -> {(64 * vth + 1) * dvv:.6g}), dv {dv}"
                                 + (f", {sat} biases saturated" if sat else ""))
            if abs(dv / 4096 - d) > 1e-12:
                report.skip(where(n), f"approximation: decay {d:.6g} realised as dv/4096 = {dv / 4096:.6g}")
        elif isinstance(n, ir.OutputNode):
            src = n.inputs[0]
            dq = ir.DequantizeNode(names(f"{n.name}:dequant"), (qname[src],), n.source, scale=delta(src))
            out_nodes.append(dq)
            out_nodes.append(n.replace(inputs=(dq.name,)))
        elif isinstance(n, _TREE) and types[n.name].kind is ir.Kind.REAL or isinstance(n, (ir.ReduceNode, ir.AvgPoolNode)):
            target = delta(n.name)
            ins = []
            for i in n.inputs:
                # inputs of a scale-changing op keep their own units; the others are aligned
                if isinstance(n, (ir.ReduceNode, ir.AvgPoolNode, ir.ScaleNode)):
                    ins.append(qname[i])
                else:
                    ins.append(as_units(i, target, n))
            if isinstance(n, ir.ScaleNode):
                qname[n.name] = ins[0]  # the factor lives in the scale Δ
                continue
            attrs = {}
            if isinstance(n, ir.ReduceNode):
                attrs["reduce"] = "sum"
            if isinstance(n, ir.AvgPoolNode):
                attrs["divisor_override"] = 1
            if isinstance(n, ir.PadNode):
                v = np.asarray(n.value, dtype=np.float64)
                attrs["value"] = 0.0 if n.inputs[0] in dom else (np.round(v / target) if v.ndim else float(np.round(v / target)))
            out_nodes.append(n.replace(inputs=tuple(ins), **attrs))
            qname[n.name] = n.name
        else:
            out_nodes.append(n.replace(inputs=tuple(qname[i] for i in n.inputs)))
            qname[n.name] = n.name

    g = graph.rewrite(out_nodes, quantization={"input_scale": x_scale, "input_range": [lo, hi], "calibrated": calib is not None})
    result = PassResult(g, report)
    result.quant = qrep  # type: ignore[attr-defined]
    return result
