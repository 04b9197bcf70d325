"""Per-layer error bounds of the quantized model, for teacher-forced verification.

Teacher forcing (``run_int(..., teacher=float spikes)``) feeds every Loihi neuron layer the float
model's own spikes of the layers upstream, so what separates a layer's integer membrane from the
float one is only what quantization did to *that* layer: its synapses' weights, the input rounding,
its decay, bias, threshold and reset.  This module bounds that difference; a teacher-forced spike
flip whose float membrane lies farther from the threshold than the bound is not rounding: it is a
bug (:func:`spikec.verification.compare.judge_flips`).

Notation.  Float neuron (decay_input=False form, the only one the quantizer accepts)::

    H_t = (1 − d)·V_{t−1} + X_t + c          S_t = [H_t ≥ θ]          (c = d·V_r, folded into the bias)
    V_t = H_t − S_t·θ (soft) | S_t·V_r + (1 − S_t)·H_t (hard)

Integer neuron (:mod:`spikec.loihi`, du = 4095 so u_t = a_t << 6 exactly, Δv = Δa / 64)::

    h_t = trunc0(v_{t−1}·(4096 − dv) / 4096) + (a_t << 6) + bias        s_t = [h_t > 64·vth]
    v_t = h_t − s_t·(64·vth + 1) (soft) | 0 (zero) | reset_value (value)

Write λ = 1 − d, λ̂ = 1 − dv/4096, θ̂ = (64·vth + 1)·Δv (the smallest spiking membrane, real units),
ĥ_t = h_t·Δv, v̂_t = v_t·Δv, X̂_t = a_t·Δa, b̂ = bias·Δv, and the errors E_t = H_t − ĥ_t,
D_t = V_t − v̂_t.

.. math::

    E_t = λ̂·D_{t−1} + (λ − λ̂)·V_{t−1} + (X_t − X̂_t) + (c − b̂) + r_t·Δv,      |r_t| < 1 (trunc0 of v)

    |E_t| ≤ λ̂·|D_{t−1}| + δ,    δ = |d − dv/4096|·V_max + ε_X + ε_b + Δv·[dv ≠ 0] + ε_f32

    |D_t| ≤ |E_t| + ρ   while the neuron's own spikes agree with the float ones (both spike or neither):
        no spike: D = E;  zero reset: D = 0;  value reset: D = V_r − reset_value·Δv (ρ = |that|);
        soft reset: D = E − (θ − θ̂)  (ρ = |θ − θ̂|, the reset amount error per spike)

    B_0 = λ̂·ε_0 + δ,   B_t = λ̂·(B_{t−1} + ρ) + δ   (ε_0 = |v_init − round(v_init/Δv)·Δv|)
        ⇒ B_t = λ̂^t·B_0 + (δ + λ̂ρ)·(1 − λ̂^t)/(1 − λ̂)      (LIF: geometric sum)
           B_t = B_0 + t·(δ + ρ)                             (IF, dv = 0: linear in T)

    membrane bound  B = max_{t < T} B_t  ≥ |H_t − h_t·Δv|   (every t up to the neuron's first own flip)

A flip at t (float and integer on different sides of their thresholds θ and θ̂) then has
``|H_t − θ| ≤ |E_t| + |θ − θ̂| ≤ B + |θ − θ̂|``: that sum is the layer's **error bound**, reported
relative to θ.  The first flip of a neuron (per sample) outside it is unexplained; later flips of
the same neuron follow from its own earlier one (the reset diverged by ~θ) and are not judged.

The current error ε_X bounds |X_t − a_t·Δa| per feature, propagated through the optimised float
graph from the layers upstream (whose spikes are forced, error 0) to the neuron input:

* model input: ε = max(Δx/2, the rounding / clipping actually seen on the data), |x̂| ≤ x_max;
* synapse (conv / linear, integer weights w_q, exponent e, scales Δin / Δout of the quantization
  report; effective real weights w_q·2^e·Δout/Δin): per output channel o
  ``ε_o = Σ_j |w_o,j − w_q,o,j·2^e·Δout/Δin|·(M_in + ε_in) + Σ_j |w_o,j|·ε_in`` (+ ½Δout for a
  bias kept in the synapse; + the float32 dot product error n·2^−24·Σ|w|·M_in), M_in being the
  worst-case bound of the input (spikes 1, counts their bound, the analog input its range); when
  e < 0 the shifted sum is floored, a one-sided error in ``[−S_o, 0]``, ``S_o = s_o·Δout``
  (``s_o = 1 − 2^(g−k)`` < 1, :func:`spikec.passes.quantize.weights.floor_span`), kept apart from
  ε (below);
* sums, reshapes, slices, pads, pools, scalings between a synapse and the neuron: the same
  operation applied to the error bounds (sums add, max pools take the max, scales multiply);
  an operand the quantizer shifted right into coarser units (a ShiftNode with negative shift,
  or the neuron's own input shift) adds < Δ_target;
* floors (negative weight exponents, right shifts) are carried apart, as the width S of a one-sided
  error in ``[−S, 0]``, through the operations that keep its sign (sums add, pads add 0, max pools
  and data movement take each part as they take ε, sum / average pools and positive scalings scale
  it); a negation, a product or a kernel merges S into ε.  The quantizer adds the floors' mean
  C = the carried (s/2)·Δout back in the neuron's bias (NeuronReport.floor_compensation), so the
  current error lies in ``[−ε − S + C, ε + C]``: the neuron's current term is ``ε + max(S − C, C)``,
  ε + S/2 where C = S/2 (symmetric ±half the floors' width instead of one-sided S);
* spikes, ANDs and spike-count products: exact (error 0);
* products of two real values (a·b, a @ b over k terms): k·(M_a·ε_b + M_b·ε_a + ε_a·ε_b), plus one
  output unit for the floor of their rescaling;
* added constants (biases, position embeddings): + their rounding to the sum's units;
* integer kernels (:mod:`spikec.integer_approx`): L·ε_in + the kernel's own error bound, L the
  float op's largest slope (:data:`KERNEL_LIPSCHITZ`); layer norm: unbounded (∞), its slope grows as
  the row's spread shrinks, so a layer behind it is not judged.

What the bound is computed from.  The scales the quantizer chose (Δin, Δout, Δa, Δv, weight
exponents, sign modes: free design choices, read from the quantization report and the integer
nodes) and the float model; the *rounded* quantities (weight mantissas, vth, dv, du = 4095, reset
and initial values) are recomputed from the float values by the quantizer's rounding rules
(:mod:`spikec.loihi`), not read from the integer graph.  The bound is therefore the one of the model
the quantizer is specified to emit: an integer parameter off those rules (a bug, or the mutations
the tests make) is not covered, so its flips show as unexplained, and it is listed in
``LayerBound.deviations``.  The bias error is the quantizer's own account (NeuronReport.bias_error).

Assumptions (each one checked elsewhere or stated in the report):

* du = 4095 (the only value the quantizer emits, and the rule the bound assumes: the float model has
  no current state; another du shows as a deviation);
* no saturation of v and no wrap of u (the quantization bounds keep |v| ≤ 2^22, or below 2^23 with
  an eighth to spare where a threshold needs the full range; ``overflows``
  names layers whose currents leave that range) and the inputs lie within the compiled input
  range, or their measured clipping is passed in;
* V_max: the membrane bound the scales were chosen for, or the largest float |H| + θ seen on the
  data when larger (calibrated bounds are not guarantees);
* the data enter the bound through two maxima over all samples, the input rounding error
  (:func:`input_rounding_error`) and the largest |H|: ``verify`` running the samples in chunks
  (:mod:`.chunks`) takes the maxima of the chunks' and judges the flips only then, so the bound,
  and every verdict, is the one of the whole data;
* ε_f32 = 4·2^−24·(V_max + X_max) per step covers the float32 arithmetic of the float neuron;
* the bias error ε_b = max |c − b̂| is the quantizer's (NeuronReport.bias_error: rounding and
  saturation of the 13-bit mantissa), c including the floors' mean C the bias adds back, which is
  the quantizer's account too (NeuronReport.floor_compensation; any C keeps the bound valid, since
  the floors' own error lies in [−S, 0] whatever C is);
* soft reset: ρ is charged at every step (at most one spike per step).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from spikec import ir, loihi

F32_UNIT = 2.0 ** -24  # float32 unit roundoff


@dataclass
class LayerBound:
    """The error bound of one Loihi neuron layer (module docstring), per feature where it varies."""

    layer: str
    theta: float  # θ (float model)
    theta_int: float  # θ̂ = (64·vth + 1)·Δv
    delta_v: float
    membrane: np.ndarray  # B: bound on |H_t − h_t·Δv| (per feature, broadcast to the features)
    terms: dict[str, float] = field(default_factory=dict)  # the contributions (max over features)
    deviations: list[str] = field(default_factory=list)  # integer parameters off the quantization rules

    @property
    def placement(self) -> float:
        """|θ − θ̂|: the threshold placement error."""
        return abs(self.theta - self.theta_int)

    @property
    def absolute(self) -> np.ndarray:
        """The flip bound B + |θ − θ̂| (real units, per feature)."""
        return self.membrane + self.placement

    @property
    def relative(self) -> float:
        """max over features of the flip bound, relative to θ."""
        a = float(np.max(self.absolute)) if self.absolute.size else self.placement
        return a / abs(self.theta) if self.theta else float("inf")


def _zeros(features) -> torch.Tensor:
    return torch.zeros((1, 1, *features), dtype=torch.float64)


def _full(features, v: float) -> torch.Tensor:
    return torch.full((1, 1, *features), float(v), dtype=torch.float64)


def _per_channel(values: np.ndarray, n, features) -> torch.Tensor:
    """Per-output-channel values laid out over the synapse's output features (conv: axis 0;
    linear: the last axis)."""
    v = torch.from_numpy(np.asarray(values, dtype=np.float64))
    if isinstance(n, ir.ConvNode):
        v = v.reshape(-1, *([1] * (len(features) - 1)))
    return torch.broadcast_to(v, tuple(features)).reshape(1, 1, *features).clone()


def _synapse_error(n, syn: ir.SynapseNode, rep, e_in: torch.Tensor, m_in: float, features) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(ε, S, contributions) of a synapse output (module docstring), per output channel: ε the
    symmetric part, S the width of its floor (error in [−S, 0]) for a negative exponent."""
    from spikec.passes.quantize.weights import floor_span

    w = n.weight.astype(np.float64)
    factor = rep.delta_in / rep.delta_out
    step = 2.0 ** syn.channel_exps().reshape(-1, *([1] * (w.ndim - 1)))  # each channel's exponent
    mant, _ = loihi.weight_mantissas(w * factor / step, syn.sign_mode)  # the rounding rule
    w_eff = mant * step / factor
    mant = mant * step / 2.0 ** syn.weight_exp  # at the common exponent, as the synapse holds them
    off = int(np.sum(mant != syn.weight))
    axes = tuple(range(1, w.ndim))
    dw = np.abs(w - w_eff).sum(axis=axes)
    wabs = np.abs(w).sum(axis=axes)
    ein = float(e_in.max()) if e_in.numel() else 0.0
    fan_in = int(np.prod(w.shape[1:]))
    bias = np.abs(n.bias.astype(np.float64)) if n.bias is not None else 0.0
    f32 = 1.01 * fan_in * F32_UNIT * (wabs * m_in + bias)
    floor = floor_span(mant, syn.weight_exp) * rep.delta_out  # the shifted sum is floored (exp < 0)
    kept_bias = 0.0
    if syn.bias is not None and n.bias is not None:
        kept_bias = np.abs(n.bias.astype(np.float64) - syn.bias.astype(np.float64) * rep.delta_out)
    eps = dw * (m_in + ein) + wabs * ein + f32 + kept_bias + np.zeros_like(dw)
    terms = {"weights": float(np.max(dw * (m_in + ein))), "input error": float(np.max(wabs * ein)),
             "floor": float(np.max(floor)), "float32": float(np.max(f32)), "off-rule weights": off}
    return _per_channel(eps, n, features), _per_channel(floor, n, features), terms


def _shift_floor(delta_in: Optional[float], delta_target: Optional[float]) -> float:
    """Error of bringing a value in units ``delta_in`` into coarser units ``delta_target`` by an
    arithmetic right shift (floor): < Δ_target·(1 − Δin/Δtarget); 0 for finer targets (left shift)."""
    if delta_in is None or delta_target is None or delta_in >= delta_target * (1 - 1e-12):
        return 0.0
    return delta_target * (1.0 - delta_in / delta_target)


# how much an input error ε can move each kernel's float output (max |f'|; softmax: per output, over the
# ∞-norm of the input change, max_i Σ_j |∂p_i/∂x_j| = 2·p_i(1 − p_i) <= 1/2); layer norm has none
# independent of the row's spread (its derivative grows as 1/σ): its error is not bounded (∞)
KERNEL_LIPSCHITZ = {"relu": 1.0, "sigmoid": 0.25, "gelu": 1.13, "softmax": 0.5}


def current_errors(optimized: ir.Graph, quantized: ir.Graph, quant, input_error: Optional[float] = None) -> tuple[
        dict[str, torch.Tensor], dict[str, dict], dict[str, set[str]]]:
    """ε of every value of the optimised float graph under teacher forcing (neuron outputs exact),
    as float64 tensors [1, 1, *features]; the contributions of each synapse (by name); and the
    synapses upstream of each value (back to the nearest neurons).  ε bounds |error|: the
    symmetric part plus the floors' width (:func:`split_errors`)."""
    sym, floor, terms, upstream = split_errors(optimized, quantized, quant, input_error)
    return {k: sym[k] + floor[k] for k in sym}, terms, upstream


def split_errors(optimized: ir.Graph, quantized: ir.Graph, quant, input_error: Optional[float] = None) -> tuple[
        dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, dict], dict[str, set[str]]]:
    """:func:`current_errors` with each value's error in two parts, ``(ε, S, contributions, upstream)``:
    the error lies in ``[−ε − S, ε]``, ε symmetric, S the floors (negative weight exponents, right
    shifts into coarser units: one-sided, <= 0) carried through the operations that keep their sign:
    sums, data movement, pads (0 on the padded positions), max pools (max(x_i + e_i) − max(x_i)
    lies within [min e_i, max e_i]: both parts by their max), sum / average pools and positive
    scalings.  Every other operation (a negation, products, kernels) merges S into ε."""
    from spikec.passes.quantize.bounds import worst_case_bounds
    from spikec.runtime.float_interpreter import FLOAT_KERNELS, pad_with_values

    types = optimized.types
    scales = quant.scales
    syn_reps = {s.name: s for s in quant.synapses}
    kernels = {k.name: k for k in getattr(quant, "kernels", [])}
    qin = next((n for n in quantized.nodes if isinstance(n, ir.QuantizeInputNode)), None)
    x_max = max(abs(b) for b in qin.bounds) * qin.scale if qin is not None else 0.0
    m = worst_case_bounds(optimized, x_max)
    err: dict[str, torch.Tensor] = {}  # ε: the symmetric part
    flo: dict[str, torch.Tensor] = {}  # S: the one-sided floors, error in [−S, 0]
    terms: dict[str, dict] = {}
    synapse_derived: set[str] = set()  # the quantizer's scale domains: synapse outputs and what domain ops make of them
    upstream: dict[str, set[str]] = {}  # value -> the synapses whose errors reach it (up to the neurons)
    domain_ops = (ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.MaxPoolNode, ir.PadNode,
                  ir.RepeatTimeNode, ir.ConcatNode, ir.TimeToFeaturesNode, ir.FeaturesToTimeNode, ir.DelayNode)
    for n in optimized.nodes:
        f = types[n.name].features
        ins = [err[i] + flo[i] for i in n.inputs]  # the whole |error| of each input
        syms, floors = [err[i] for i in n.inputs], [flo[i] for i in n.inputs]
        upstream[n.name] = set().union(*(upstream[i] for i in n.inputs)) if n.inputs else set()
        flo[n.name] = _zeros(f)  # (merged into ε unless the branch keeps it apart)
        if isinstance(n, ir.InputNode):
            e = 0.5 * qin.scale if qin is not None else 0.0
            err[n.name] = _full(f, max(e, input_error or 0.0))
        elif isinstance(n, (ir.NeuronNode, ir.AndNode)):
            err[n.name] = _zeros(f)
            upstream[n.name] = set()
        elif isinstance(n, (ir.ConvNode, ir.LinearNode)):
            synapse_derived.add(n.name)
            upstream[n.name].add(n.name)
            syn = quantized[n.name] if n.name in quantized else None
            if not isinstance(syn, ir.SynapseNode) or n.name not in syn_reps:
                err[n.name] = _full(f, np.inf)
                continue
            err[n.name], flo[n.name], terms[n.name] = _synapse_error(n, syn, syn_reps[n.name], ins[0], m[n.inputs[0]], f)
        elif isinstance(n, (ir.AddressedAccumulationNode, ir.MatMulNode, ir.MulNode)):
            k = types[n.inputs[0]].features[-1] if not isinstance(n, ir.MulNode) else 1
            ea, eb = (float(e.max()) for e in ins)
            ma, mb = m[n.inputs[0]], m[n.inputs[1]]
            floor = scales.get(n.name, np.inf) if isinstance(n, (ir.MatMulNode, ir.MulNode)) else 0.0  # the rescaling shift
            err[n.name] = _full(f, k * (ma * eb + mb * ea + ea * eb) + floor)
        elif isinstance(n, ir.AddConstantNode):  # + the constant's rounding to the sum's units
            target = scales.get(n.name)
            c = n.alpha * n.constant.astype(np.float64)
            rounding = float(np.abs(c - np.round(c / target) * target).max()) if target else np.inf
            err[n.name] = syms[0] + rounding
            flo[n.name] = floors[0] + _shift_floor(scales.get(n.inputs[0]), target)
        elif isinstance(n, (ir.LayerNormNode, ir.SoftmaxNode, ir.ActivationNode)):
            krep = kernels.get(n.name)
            lipschitz = KERNEL_LIPSCHITZ.get(krep.kernel) if krep is not None else None
            if lipschitz is None:
                err[n.name] = _full(f, np.inf)
            else:  # + the floor of an input read shifted right into REAL_BITS (a scale coarser than its own)
                shifted_in = krep.scale_in if krep.scale_in > scales.get(n.inputs[0], krep.scale_in) * (1 + 1e-12) else 0.0
                err[n.name] = _full(f, lipschitz * (float(ins[0].max()) + shifted_in) + krep.error_bound)
        elif isinstance(n, (ir.ReduceNode, ir.AvgPoolNode, ir.ScaleNode)):  # scale-changing: operands not shifted
            def scaled(e, n=n):
                out = FLOAT_KERNELS[type(n)](n, e).abs()  # a negative scale flips an error's sign, not its size
                if isinstance(n, ir.ReduceNode) and n.over_time and n.reduce == "sum":
                    out = out * types[n.inputs[0]].time  # the per-step errors add over the T steps
                return out
            if isinstance(n, ir.ScaleNode) and np.any(np.asarray(n.factor, dtype=np.float64) < 0):
                err[n.name] = scaled(ins[0])  # a negation: the floors' side flips, merged into ε
            else:
                err[n.name], flo[n.name] = scaled(syms[0]), scaled(floors[0])
        elif isinstance(n, domain_ops):
            target = scales.get(n.name)
            real = types[n.name].kind is ir.Kind.REAL
            shifted = [e + _shift_floor(scales.get(i), target) if real else e for e, i in zip(floors, n.inputs)]
            if isinstance(n, ir.PadNode):
                v = np.asarray(n.value, dtype=np.float64)
                q_value = getattr(quantized[n.name], "value", 0.0) if n.name in quantized else 0.0
                if n.inputs[0] in synapse_derived and not np.any(q_value):
                    pad_err = 0.0  # the pad value went into the neuron's constant input (bias error)
                elif target is None:
                    pad_err = np.inf
                else:
                    pad_err = np.abs(v - np.round(v / target) * target)
                pad_err = pad_err if np.ndim(pad_err) else float(pad_err)
                err[n.name] = pad_with_values(syms[0][0], n.pads, pad_err)[None]
                flo[n.name] = pad_with_values(shifted[0][0], n.pads, 0.0)[None]
            elif isinstance(n, (ir.RepeatTimeNode, ir.DelayNode)):  # per-feature bounds hold at every step
                err[n.name], flo[n.name] = syms[0], shifted[0]
            elif isinstance(n, (ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)):  # per-feature bounds are per-step
                err[n.name], flo[n.name] = _full(f, float(syms[0].max())), _full(f, float(shifted[0].max()))
            else:  # sums add both parts; a max pool takes each part's max (its error within [min e_i, max e_i])
                err[n.name], flo[n.name] = FLOAT_KERNELS[type(n)](n, *syms), FLOAT_KERNELS[type(n)](n, *shifted)
        elif isinstance(n, ir.OutputNode):
            err[n.name], flo[n.name] = syms[0], floors[0]
        else:  # no error model for this operation (the quantizer refuses it): exact inputs only
            err[n.name] = _zeros(f) if not any(bool(e.any()) for e in ins) else _full(f, np.inf)
        if isinstance(n, (ir.ReduceNode, ir.AvgPoolNode, ir.ScaleNode) + domain_ops) and \
                any(i in synapse_derived for i in n.inputs):
            synapse_derived.add(n.name)
    return err, flo, terms, upstream


def neuron_bound(n: ir.NeuronNode, q: ir.LoihiNeuronNode, rep, eps_x: np.ndarray, delta_x: Optional[float], time: int,
                 observed_h: Optional[float] = None, upstream: Sequence[str] = (),
                 floor_x: Optional[np.ndarray] = None) -> LayerBound:
    """The bound of one layer (module docstring) from its current error ``eps_x`` (per feature):
    the symmetric part, with ``floor_x`` the floors' one-sided part (:func:`split_errors`; None: 0).
    The bias adds back the floors' mean C (``rep.floor_compensation``), so the current error lies in
    ``[−ε − S + C, ε + C]``: ``|X − X̂| <= ε + max(S − C, C)`` (ε + S when nothing is added back;
    ε + S/2 for C = S/2, the floors' mean for uniform remainders).

    The neuron parameters are the quantizer's rounding rules applied to the float neuron at the
    reported scale Δv (:func:`spikec.loihi.vth_at_most`, :func:`~spikec.loihi.decay_to_dv`, du = 4095,
    rounded reset / initial values), not the integer node's: where the node differs (a bug, or a
    mutation) the bound does not cover it and the difference is listed in ``deviations``."""
    dvv = rep.delta_v
    da = dvv * (1 << loihi.CURRENT_SHIFT)
    theta = float(n.v_threshold)
    d = rep.decay
    vth = loihi.vth_at_most(theta / dvv)
    dv = loihi.decay_to_dv(d)
    reset = "soft" if n.v_reset is None else ("zero" if n.v_reset == 0 else "value")
    rv = 0 if reset != "value" else int(round(n.v_reset / dvv))
    v_init = int(round(n.v_init / dvv))
    theta_int = loihi.first_spiking_v(vth) * dvv
    deviations = list(upstream)
    for name, rule, got in (("vth", vth, q.vth), ("dv", dv, q.dv), ("du", loihi.MEMORYLESS_DU, q.du),
                            ("reset", reset, q.reset), ("reset_value", rv, q.reset_value), ("v_init", v_init, q.v_init)):
        if rule != got:
            deviations.append(f"{n.name}: {name} {got} where the quantization rule gives {rule}")
    floor_x = (np.zeros(np.shape(eps_x)) if floor_x is None else np.asarray(floor_x, dtype=np.float64)) \
        + _shift_floor(delta_x, da)
    comp = np.asarray(getattr(rep, "floor_compensation", 0.0), dtype=np.float64)
    floor_x = np.maximum(floor_x - comp, comp)  # the floors' error in [−S + C, C]
    eps_x = np.asarray(eps_x, dtype=np.float64) + floor_x
    v_max = max(rep.membrane_bound, (observed_h + abs(theta)) if observed_h is not None else 0.0)
    lam_hat = loihi.v_decay_factor(dv) / loihi.DECAY_UNITY
    terms = {"current": float(np.max(eps_x)) if eps_x.size else 0.0,
             "floors": float(np.max(floor_x)) if floor_x.size else 0.0,
             "decay": abs(d - dv / loihi.DECAY_UNITY) * v_max,
             "bias": rep.bias_error,
             "trunc0": dvv if dv != 0 else 0.0,
             "float32": 4 * F32_UNIT * (v_max + rep.input_bound)}
    rho = {"soft": abs(theta - theta_int), "value": abs((n.v_reset or 0.0) - rv * dvv), "zero": 0.0}[reset]
    eps0 = abs(n.v_init - v_init * dvv)
    terms.update(reset=rho, init=eps0)
    delta = eps_x + terms["decay"] + terms["bias"] + terms["trunc0"] + terms["float32"]
    b = lam_hat * eps0 + delta
    worst = b
    for _ in range(1, time):
        b = lam_hat * (b + rho) + delta
        worst = np.maximum(worst, b)
    return LayerBound(n.name, theta, theta_int, dvv, np.asarray(worst, dtype=np.float64), terms, deviations)


def input_rounding_error(quantized: ir.Graph, x) -> Optional[float]:
    """max |x − x̂| over inputs ``x``: the rounding and clipping of the quantized model's input
    (None without an input quantizer).  A maximum: over shards of samples, the maximum of theirs."""
    qin = next((n for n in quantized.nodes if isinstance(n, ir.QuantizeInputNode)), None)
    if qin is None:
        return None
    xs = torch.as_tensor(np.asarray(x, np.float32))
    levels = loihi.input_levels(xs, qin.scale).clamp(*qin.bounds)
    return float((xs.double() - levels * qin.scale).abs().max()) if xs.numel() else 0.0


def layer_bounds(optimized: ir.Graph, quantized: ir.Graph, quant, x=None,
                 observed: Optional[dict[str, float]] = None, input_error: Optional[float] = None) -> dict[str, LayerBound]:
    """The error bound of every Loihi neuron layer of ``quantized`` (compiled from ``optimized``,
    ``quant`` its :class:`~spikec.passes.quantize.QuantReport`).  ``x``: the inputs the bounds will
    judge (their actual rounding / clipping enters the input error), or that error itself,
    ``input_error`` (:func:`input_rounding_error`); ``observed``: max |H| per layer seen in the float
    run (the membrane bound used is never below it)."""
    if input_error is None and x is not None:
        input_error = input_rounding_error(quantized, x)
    err, flo, syn_terms, upstream = split_errors(optimized, quantized, quant, input_error)
    reps = {r.name: r for r in quant.neurons}
    types = optimized.types
    out = {}
    for q in quantized.nodes:
        if not isinstance(q, ir.LoihiNeuronNode) or q.name not in reps or q.name not in optimized:
            continue
        n = optimized[q.name]
        x_in = n.inputs[0]
        eps, floor = err[x_in][0, 0].numpy(), flo[x_in][0, 0].numpy()
        obs = (observed or {}).get(q.name)
        off = [f"{s}: {syn_terms[s]['off-rule weights']} weights differ from the rounding rule"
               for s in sorted(upstream[x_in]) if syn_terms.get(s, {}).get("off-rule weights")]
        out[q.name] = neuron_bound(n, q, reps[q.name], eps, quant.scales.get(x_in), types[x_in].time, obs, off, floor)
    return out


def pre_spike_membrane(q: ir.LoihiNeuronNode, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The integer pre-spike membrane h_t (before the threshold and the reset) of a layer from its
    recorded post-reset v and u (``run_int(record=True).membranes``):
    ``h_t = saturate(trunc0(v_{t−1}·(4096 − dv)/4096) + u_t + bias)``, v_{−1} = v_init."""
    prev = torch.cat([torch.full_like(v[:1], q.v_init), v[:-1]])
    bias = torch.as_tensor(loihi.bias_value(q.bias_mant, q.bias_exp))
    return loihi.saturate_v(loihi.trunc0_decay(prev, loihi.v_decay_factor(q.dv)) + u + bias)
