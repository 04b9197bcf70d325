"""Neuron parameters: threshold, decay, bias and reset of the Loihi LIF that replaces a float
neuron (decay_input=False form)::

    float:   H = V·(1 − d) + X,  S = [H ≥ θ]
    integer: u = a << 6 (du = 4095),  Δv = Δa / 64
             v = trunc0(v·(4096 − dv) / 4096) + u + bias,  S = [v > vth << 6]
    dv = round(4096·d)   vth = floor((θ/Δv − 1) / 64)   bias = (X0 + V_r·d)/Δv as mantissa << exp

The rounding rules are :mod:`spikec.loihi`'s (:func:`~spikec.loihi.decay_to_dv`,
:func:`~spikec.loihi.vth_at_most`, :func:`~spikec.loihi.split_bias`).
"""

from __future__ import annotations

import numpy as np
import torch

from spikec import ir, loihi
from spikec.errors import UnsupportedError
from spikec.runtime.float_interpreter import FLOAT_KERNELS

from ..base import PassReport, where
from .bounds import real_decay
from .domains import DOMAIN_OPS, Domains, describe
from .report import NeuronReport


def _carried(graph: ir.Graph, dom: Domains, value: str, synapse_constant, pad_values, strict: bool) -> torch.Tensor:
    """A per-synapse constant (``synapse_constant(node)``: per output channel, or None) carried
    through the domain's sums, reshapes, pools and scalings to ``value``, as the float model
    computes it, [T, 1, *features] float64; pads add their value where ``pad_values(pad)``, else 0.
    ``strict``: refuse a max pool over a constant that varies inside a channel (the max of the
    constant is then not the constant of the max)."""
    types = graph.types
    memo: dict[str, torch.Tensor] = {}

    def ev(v: str) -> torch.Tensor:
        if v in memo:
            return memo[v]
        n = graph.producer(v)
        tv = types[v]
        if isinstance(n, (ir.ConvNode, ir.LinearNode)):
            out = torch.zeros((tv.time, 1, *tv.features), dtype=torch.float64)
            c = synapse_constant(n)
            if c is not None:
                b = torch.from_numpy(np.asarray(c, dtype=np.float64))
                out = out + (b.reshape(-1, *([1] * (len(tv.features) - 1))) if isinstance(n, ir.ConvNode) else b)
        elif v in dom and isinstance(n, ir.AddConstantNode):  # its constant stays an explicit integer addend
            out = ev(n.inputs[0]) if n.inputs[0] in dom else torch.zeros((tv.time, 1, *tv.features), dtype=torch.float64)
        elif v in dom and isinstance(n, DOMAIN_OPS):
            if isinstance(n, ir.MaxPoolNode):
                inner = ev(n.inputs[0])
                per_channel = inner.flatten(3) if inner.dim() > 3 else inner
                if strict and inner.dim() > 3 and not torch.allclose(per_channel, per_channel[..., :1].expand_as(per_channel)):
                    raise UnsupportedError(f"quantize: max pool {where(n)} over a bias that varies inside a channel")
                out = FLOAT_KERNELS[type(n)](n, inner.float()).double()
            else:
                ins = [ev(i).float() if types[i].kind is ir.Kind.REAL else torch.zeros((types[i].time, 1, *types[i].features))
                       for i in n.inputs]
                op = n.replace(value=0.0) if isinstance(n, ir.PadNode) and not pad_values(n) else n
                out = FLOAT_KERNELS[type(n)](op, *ins).double()
        else:
            out = torch.zeros((tv.time, 1, *tv.features), dtype=torch.float64)
        memo[v] = out
        return out

    return ev(value)


def constant_input(graph: ir.Graph, dom: Domains, value: str, explicit=frozenset()) -> np.ndarray:
    """The constant part X0 of a neuron's input ``value``: the synapse biases and pad values carried
    through the domain's sums, reshapes and pools (one value per feature; refused if it varies over
    time), except those of the synapses and pads in ``explicit``, which stay in the integer graph."""
    x0 = _carried(graph, dom, value, lambda n: n.bias if n.bias is not None and n.name not in explicit else None,
                  lambda p: p.name not in explicit, strict=True)
    if x0.shape[0] > 1 and not torch.allclose(x0, x0[:1].expand_as(x0)):
        raise UnsupportedError(f"quantize: the constant input of {describe(graph.users(value)[0], graph)} (its synapse "
                               "biases and pad values) varies over time, which a Loihi bias cannot; add a per-step "
                               "constant instead, or keep the time axis out of that layer's features")
    return x0[0, 0].numpy()


def floor_compensation(graph: ir.Graph, dom: Domains, value: str, floors: dict[str, np.ndarray]) -> np.ndarray:
    """The expected error of a neuron's input current ``value`` (real units, per feature, <= 0) from
    the floors of the synapses with negative weight exponents in its domain: ``floors[synapse]`` is
    that synapse's mean floor error per output channel (:func:`.weights.expected_floor_error` times
    Δout), carried like the biases (:func:`constant_input`) through the domain's sums, reshapes,
    pools and positive scalings to the neuron (a sum over N positions adds N of them; a pad adds
    none).  The neuron's bias adds its negation back (:func:`quantize_neuron`): the current error
    becomes zero-mean where the remainders are uniform.

    Algebra.  A floored synapse output is ``q = ⌊acc / 2^k⌋ = acc / 2^k − r / 2^k`` with r the
    remainder in [0, 2^k); in real units its error is ``−(r / 2^k)·Δout`` in ``[−s·Δout, 0]``, of
    mean ``−(s/2)·Δout`` when r is uniform over its values (the assumption).  The domain's operations
    between the synapses and the neuron are linear with non-negative coefficients (sums, reshapes,
    slices, pads, sum / average pools, positive scalings: the quantizer holds the exponent at 0
    where a negation or a feature sum follows the synapse) or a max pool (monotone: the max of
    floored values is the floor of the max, one remainder again), so the current's floor error is
    the carried sum of the synapses' errors, of mean ``μ`` = this function's value.  The bias
    ``(X0 − μ)/Δv`` then makes ``E[X̂ − X] = 0`` up to the bias rounding.  Where the constant varies
    over the steps (a per-step domain), the mean over the steps is taken; a max pool over channels
    whose floor means vary inside a window takes their max (approximate, not refused: it is a
    mean, not a bound)."""
    if not floors:
        shape = graph.types[value].features
        return np.zeros(shape)
    mu = _carried(graph, dom, value, lambda n: floors.get(n.name), lambda p: False, strict=False)
    return mu.mean(dim=0)[0].numpy()


def quantize_neuron(n, a: str, da: float, x0: np.ndarray, xb: float, vb: float,
                    report: PassReport) -> tuple[ir.LoihiNeuronNode, NeuronReport]:
    """The Loihi LIF of the float neuron ``n`` reading the integer current ``a`` in units ``da``;
    ``x0``: its constant input (real), ``xb`` / ``vb``: bounds on |X| and |V|."""
    dvv = da / float(1 << loihi.CURRENT_SHIFT)
    d = real_decay(n)
    dv = loihi.decay_to_dv(d)
    theta = float(n.v_threshold)
    vth = loihi.vth_at_most(theta / dvv)
    if vth >= loihi.VTH_LIMIT:
        raise UnsupportedError(f"quantize: threshold of {where(n)} does not fit 17 bits at scale {dvv:.3g}")
    if theta > 0 and loihi.first_spiking_v(vth) * dvv > 2 * theta:
        # the scale holds the input current's range in the 24-bit state; the threshold is below one unit of it
        raise UnsupportedError(
            f"module '{n.source or n.name}': its input current can reach {xb / theta:.3g} times its threshold, beyond "
            f"what Loihi 2's 24-bit membrane spans (2^23): the threshold falls below one unit; lower the weights "
            f"before this neuron, raise its threshold, or narrow the inputs (--input-range, --calib)")
    # H = V − (V − V_r)·d + X = V·(1 − d) + (V_r·d + X): a non-zero reset value adds a constant
    bias_int = (x0 + (n.v_reset or 0.0) * d) / dvv
    mant, bexp, sat = loihi.split_bias(bias_int)
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
    q = ir.LoihiNeuronNode(n.name, (a,), n.source, du=loihi.MEMORYLESS_DU, dv=dv, vth=vth, bias_mant=mant_v,
                           bias_exp=exp_v, reset=reset, reset_value=rv, v_init=int(round(n.v_init / dvv)))
    theta_int = loihi.first_spiking_v(vth) * dvv
    bias_real = loihi.bias_value(np.broadcast_to(mant, np.shape(bias_int)), np.broadcast_to(bexp, np.shape(bias_int)))
    bias_error = float(np.max(np.abs(bias_int - bias_real))) * dvv if np.size(bias_int) else 0.0
    rep = NeuronReport(n.name, n.source, dvv, vth, theta, theta_int, dv, d, sat,
                       vb / dvv / loihi.U_MAX, (1 << loihi.CURRENT_SHIFT) * xb / da / loihi.U_MAX,
                       bias_error=bias_error, membrane_bound=float(vb), input_bound=float(xb))
    report.did(where(n), f"vth {vth} (θ {theta:.6g} -> {theta_int:.6g}), dv {dv}"
                         + (f", {sat} biases saturated" if sat else ""))
    if abs(dv / loihi.DECAY_UNITY - d) > 1e-12:
        report.skip(where(n), f"approximation: decay {d:.6g} realised as dv/4096 = {dv / loihi.DECAY_UNITY:.6g}")
    return q, rep
