"""Synapse weights: integer Lava mantissas and one exponent per output channel.

``w_lava = round(w·Δin / (Δout·2^e))`` on the sign mode's mantissa grid
(:func:`spikec.loihi.weight_mantissas`: EXC [0, 255], INH [−255, 0], MIXED even values in
[−254, 254]); each output channel's exponent is the one of {e_max, e_max − 1, e_max − 2} (e_max:
the smallest with no clipping of that channel, :func:`spikec.loihi.min_weight_exp`) with the least
squared error, since a finer step may pay for clipping a few outliers, and at most
:data:`CHANNEL_EXP_SPREAD` below the synapse's highest.  Loihi has one exponent per connection, so
the channels of each exponent are a connection of their own
(:meth:`~spikec.ir.SynapseNode.channel_groups`): the price of a channel of small weights (a small
batch-norm gain folded in) keeping its mantissa bits is one more connection into the same neurons.

A negative exponent floors: the integer synapse computes ``⌊Σ w·x / 2^−e⌋`` once, an error in
``[−s, 0]`` units of Δout (:func:`floor_span`), of mean ``−s/2`` for uniform remainders, which the
neurons it feeds take back in their bias (:func:`expected_floor_error`, :mod:`.neurons`).  Lava floors per
connection, after everything folded into it, so the exponent is held at 0 (exact on every target,
fewer mantissa bits) where Lava would fold something across that floor: a feature sum or a negation
after the synapse (:func:`folded_before_floor`), or a sum before it, whose terms (each with its
integer multiple) become connections of their own (:func:`summed_before`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from spikec import ir, loihi

from ..base import PassReport, where
from .domains import DOMAIN_OPS, Scales, signed_factor
from .kernels import MATERIALISED_OPS
from .report import SynapseReport

CHANNEL_EXP_SPREAD = 8  # a channel's exponent is at most this far below the synapse's highest one


def _channel_exponents(rows: np.ndarray, mode: str, bits: int, floor: np.ndarray):
    """Per row of real weights (``rows`` [C, K], every row non-zero): (mantissas, exponents, fraction
    of the row clipped) on the row's own exponent, the one of {e_max, e_max − 1, e_max − 2} (at least
    ``floor`` of the row, int64 or −huge) with the least squared error (the first on ties)."""
    e_max = np.array([loihi.min_weight_exp(float(p), mode, bits) for p in np.abs(rows).max(1)], np.int64)
    best_err, best = None, None
    for k in range(3):
        e = np.maximum(e_max - k, floor)  # below the floor: the floor (a repeat of another candidate)
        scaled = rows / 2.0 ** e[:, None]
        q, clipped = loihi.weight_mantissas(scaled, mode, bits, axis=1)
        err = np.sum((q - scaled) ** 2, axis=1) * 4.0 ** e  # in the same (unscaled) units
        if best is None:
            best_err, best = err, [q, e, clipped]
            continue
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = [np.where(better[:, None], q, best[0]), np.where(better, e, best[1]), np.where(better, clipped, best[2])]
    return best


def quantize_weights(w: np.ndarray, factor: float, bits: int = loihi.WEIGHT_BITS, min_exp: Optional[int] = None):
    """Integer Lava weights for real weights ``w`` scaled by ``factor`` (= Δin/Δout), one exponent
    *per output channel* (axis 0; one sign mode for all, the mode of ``w``): the channels of each
    exponent are a Loihi connection of their own (:meth:`~spikec.ir.SynapseNode.channel_groups`), so
    a channel of small weights (e.g. a small batch-norm gain folded in) keeps its mantissa bits.  Returns
    (weights int32 at the lowest exponent, that exponent, the sign mode of all of ``w``, fraction
    clipped, relative rms error, per-channel exponents or None when they are all equal).
    ``min_exp`` bounds every exponent from below (0 where a sum or a negation follows the synapse,
    or it reads a sum: a negative exponent floors each synapse output, and Lava can only floor after
    what it folds into a connection, :func:`folded_before_floor`, :func:`summed_before`)."""
    ws = w.astype(np.float64) * factor
    mode = loihi.sign_mode(ws)
    if float(np.abs(ws).max(initial=0.0)) == 0:
        return np.zeros(w.shape, np.int32), 0, mode, 0.0, 0.0, None
    rows = ws.reshape(ws.shape[0], -1)
    live = np.abs(rows).max(1) > 0
    mants, exps, clipped = np.zeros_like(rows), np.zeros(len(rows), np.int64), np.zeros(len(rows))
    floor = np.full(int(live.sum()), np.iinfo(np.int64).min // 2 if min_exp is None else min_exp, np.int64)
    mants[live], exps[live], clipped[live] = _channel_exponents(rows[live], mode, bits, floor)
    lowest = int(exps[live].max()) - CHANNEL_EXP_SPREAD
    low = live & (exps < lowest)  # nearly silent channels: the coarser exponent keeps the integers bounded
    if low.any():
        floor = np.full(int(low.sum()), lowest if min_exp is None else max(lowest, min_exp), np.int64)
        mants[low], exps[low], clipped[low] = _channel_exponents(rows[low], mode, bits, floor)
    live &= np.any(mants != 0, axis=1)  # a channel rounded to zero needs no exponent (nor a connection)
    e = int(exps[live].min()) if live.any() else int(exps.max())  # all rounded away (a held exponent)
    exps[~live] = e
    err = float(np.sqrt(np.mean((mants * 2.0 ** exps[:, None] - rows) ** 2)) / np.sqrt(np.mean(rows ** 2)))
    q = (mants * 2.0 ** (exps - e)[:, None]).reshape(w.shape)
    return (q.astype(np.int32), e, mode, float(clipped.mean()), err,
            None if np.all(exps == e) else exps)


def floor_span(mantissas: np.ndarray, exp: int) -> np.ndarray:
    """Per output channel (axis 0 of ``mantissas``), the width s of the floor error of the synapse
    output ``⌊acc / 2^k⌋`` (k = −exp > 0), in units of Δout: the input integers x are integers, so
    ``acc = Σ w·x`` is a multiple of 2^g, g the trailing zero bits all the channel's mantissas share
    (g >= 1 for MIXED, whose mantissas are even); the remainder ``acc mod 2^k`` is then one of
    0, 2^g, ..., 2^k − 2^g and ``⌊acc / 2^k⌋ − acc / 2^k ∈ [−s, 0]`` with ``s = 1 − 2^(g − k)``
    (0 when g >= k: exact).  All 0 for exp >= 0 (a left shift: exact)."""
    m = np.abs(np.asarray(mantissas, dtype=np.int64)).reshape(np.shape(mantissas)[0], -1)
    k = -int(exp)
    if k <= 0:
        return np.zeros(m.shape[0])
    bits = np.bitwise_or.reduce(m, axis=1) if m.shape[1] else np.zeros(m.shape[0], np.int64)
    low = bits & -bits  # the lowest set bit: 2^g (0 for an all-zero channel)
    g = np.where(low > 0, np.log2(np.maximum(low, 1)), k)
    return 1.0 - 2.0 ** (np.minimum(g, k) - k)


def expected_floor_error(mantissas: np.ndarray, exp: int) -> np.ndarray:
    """Per output channel, the mean floor error of the synapse output in units of Δout:
    ``−s/2`` (:func:`floor_span`), *assuming the remainder acc mod 2^k is uniform over the multiples
    of 2^g below 2^k* (the mean of r / 2^k over r = 0, 2^g, ..., 2^k − 2^g is (1 − 2^(g − k)) / 2).
    That holds for sums of many terms of varied integers; it overstates the mean error of outputs
    whose sum is often exactly 0 (e.g. a small receptive field over rarely spiking inputs)."""
    return -0.5 * floor_span(mantissas, exp)


def folded_before_floor(graph: ir.Graph, value: str) -> bool:
    """Does an operation that Lava folds into the connection weights, before the exponent's floor,
    follow ``value`` on a path to a neuron or an output: a feature sum (reduce / sum pool) or a
    negation (a scaling by a negative constant)?  Lava's connections end at neurons, outputs and max
    pools (a stage of its own: its input connections floor first).  Paths into the inputs of
    synapses, products and integer kernels (:mod:`.kernels`) do not count: those read one
    materialised integer at its own scale.  (Integer targets floor each synapse output where it is; Lava's connection computes
    ``(Σ w·s) >> −e`` after folding, so only an exponent >= 0 is exact there.)"""
    stack, seen = [(value, False)], set()
    while stack:
        v, folded = stack.pop()
        for u in graph.users(v):
            if isinstance(u, (ir.NeuronNode, ir.OutputNode, ir.MaxPoolNode)):  # Lava's connection ends there
                if folded:
                    return True
                continue
            if (u.name, folded) in seen or isinstance(u, (ir.ConvNode, ir.LinearNode) + MATERIALISED_OPS):
                continue
            seen.add((u.name, folded))
            stack.append((u.name, folded or isinstance(u, (ir.ReduceNode, ir.AvgPoolNode))
                          or (isinstance(u, ir.ScaleNode) and signed_factor(u, graph) < 0)))
    return False


def summed_before(graph: ir.Graph, value: str) -> bool:
    """Is ``value`` (a synapse's input) a sum, through data movement, pools, reductions and constant
    scalings?  Lava reads each term of a sum through a connection of its own (each with its integer
    multiple folded in), and each connection floors its part for a negative exponent, where the
    integer synapse floors the whole sum once: only an exponent >= 0 is exact there."""
    stack, seen = [value], set()
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        n = graph.producer(v)
        if isinstance(n, ir.AddNode):
            return True
        if isinstance(n, DOMAIN_OPS) and not isinstance(n, ir.MaxPoolNode):
            stack.extend(n.inputs)
    return False


def quantize_synapse(graph: ir.Graph, n, q_input: str, scales: Scales, report: PassReport) -> tuple[ir.SynapseNode, SynapseReport]:
    """The integer synapse of a conv / linear node ``n`` reading the integer value ``q_input``."""
    d_in = scales.delta(n.inputs[0])
    d_out = scales.delta(n.name)
    materialised_input = n.inputs[0] in scales.dom  # a synapse-derived value, one integer at its scale: no per-term floors
    hold = ("a sum or a negation follows" if folded_before_floor(graph, n.name)
            else "it reads a sum" if not materialised_input and summed_before(graph, n.inputs[0]) else None)
    w, e, mode, clipped, err, channel_exp = quantize_weights(n.weight, d_in / d_out, min_exp=0 if hold else None)
    if hold and e == 0 and quantize_weights(n.weight, d_in / d_out)[1] < 0:
        report.skip(where(n), f"approximation: weight exponent held at 0 ({hold}: Lava would floor each part "
                              "apart for a negative exponent) -> fewer mantissa bits")
    bias = None
    if n.bias is not None and (not scales.feeds_neurons(n.name) or scales.materialised(n.name)):  # else: neurons' bias
        bias = np.round(n.bias.astype(np.float64) / d_out).astype(np.int64)
    common = dict(weight=w, weight_exp=e, sign_mode=mode, bias=bias, channel_exp=channel_exp)
    if isinstance(n, ir.ConvNode):
        s = ir.SynapseNode(n.name, (q_input,), n.source, layout="conv", stride=n.stride,
                           padding=n.padding, dilation=n.dilation, groups=n.groups, **common)
    else:
        s = ir.SynapseNode(n.name, (q_input,), n.source, layout="linear", **common)
    srep = SynapseReport(n.name, n.source, mode, e, d_in, d_out, clipped, err,
                         None if channel_exp is None else tuple(int(v) for v in channel_exp), s.connections())
    exps = f"exp {e}" if channel_exp is None else f"exp {srep.exponents} per channel ({srep.connections} connections)"
    report.did(where(n), f"{mode} weights, {exps}, rms rounding error {err:.2%}" + (f", {clipped:.2%} clipped" if clipped else ""))
    return s, srep
