"""merge_scale_into_threshold: constant positive scales in front of a neuron move into its threshold.

Algebra.  A neuron's dynamics are linear in (V, X) between spikes, so for c > 0 the neuron fed with
c·X and threshold θ spikes exactly when the same neuron fed with X spikes with threshold θ/c, its
membrane being V/c throughout::

    H = V + (cX − V)/τ,  S = [H ≥ θ]   ⇔   H' = V' + (X − V')/τ,  S = [H' ≥ θ/c]    (V' = V/c)

The reset must map onto itself: hard reset to 0 (0/c = 0) or soft reset (V − Sθ → V' − Sθ/c).
A hard reset to V_r ≠ 0 would need V_r/c (Loihi resets to 0 only), and c ≤ 0 would flip the
inequality: the pass does not fire there and says so.

Scales that act before the neuron through positively homogeneous operations also move:
(cA)B = c(AB) for matmuls (Spikformer's ``(q @ kᵀ) * 0.125 @ v``), reshapes, permutes, slices, sums,
max / average pooling, and bias-free linear maps.  A token / time *mean* in front of a neuron is a
sum times 1/N: it becomes a sum and 1/N moves into the threshold (exact).

Per-channel factors (arrays) move into a per-channel threshold, or, with
``per_layer_threshold=True`` (a target with one threshold per layer, like Lava's LIF), into the
producing conv / linear's weights and bias (W' = c·W, b' = c·b, also exact).

``decay_input`` LIF (H = V + (X − V)/τ, spikingjelly's default) becomes the equivalent
input-unscaled form H' = U − U/τ + X with U = τV and θ' = τθ (PLIF: U = V/q, θ' = θ/q), removing
the 1/τ input scale that neuromorphic cores do not have.

Float32 note: a power-of-two c (0.125, 1/τ for τ = 2) changes no value at all; other factors can
move a membrane by an ulp and flip a spike sitting on the threshold (reported by the pipeline check).
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np

from spikec.ir import (
    AddressedAccumulationNode,
    AvgPoolNode,
    ConvNode,
    Graph,
    LinearNode,
    MatMulNode,
    MaxPoolNode,
    MulNode,
    NeuronNode,
    Node,
    PermuteNode,
    ReduceNode,
    ReshapeNode,
    ScaleNode,
    SliceNode,
)

from .base import PassReport, PassResult, sole_user, substitute, where

NAME = "merge_scale_into_threshold"

_HOMOGENEOUS = (MatMulNode, AddressedAccumulationNode, ReshapeNode, PermuteNode, SliceNode, MaxPoolNode,
                AvgPoolNode, ScaleNode, MulNode)


def _positively_homogeneous(n: Node) -> bool:
    if isinstance(n, _HOMOGENEOUS):
        return True
    if isinstance(n, ReduceNode):
        return True
    if isinstance(n, (ConvNode, LinearNode)) and n.bias is None:
        return True
    return False


def _reset_ok(n: NeuronNode) -> Optional[str]:
    if n.v_reset is None or n.v_reset == 0.0:
        return None
    return f"hard reset to {n.v_reset:g} != 0 (the reset value would have to scale too)"


def _find_neuron(graph: Graph, start: Node) -> tuple[Optional[NeuronNode], list[Node], str]:
    """Follow single users from ``start`` through homogeneous ops to a neuron."""
    path: list[Node] = []
    cur = start
    while True:
        users = graph.users(cur.name)
        if len(users) != 1:
            return None, path, f"{cur.name} has {len(users)} users (the scale would change them all)"
        u = users[0]
        if isinstance(u, NeuronNode):
            return u, path, ""
        if not _positively_homogeneous(u):
            return None, path, f"reaches a {u.op} ({u.name}) that is not positively homogeneous before any neuron"
        path.append(u)
        cur = u


def _factor(n: Node, graph: Graph) -> Union[float, np.ndarray]:
    if isinstance(n, ScaleNode):
        f = np.asarray(n.factor, dtype=np.float64)
        f = f if n.mode == "mul" else 1.0 / f
    else:  # mean-reduce: 1/N
        t = graph.types[n.inputs[0]]
        count = int(np.prod([t.features[a] for a in n.axes])) * (t.time if n.over_time else 1)
        f = np.float64(1.0 / count)
    return float(f) if f.ndim == 0 else f


def _scale_threshold(neuron: NeuronNode, c: Union[float, np.ndarray]) -> NeuronNode:
    th = np.asarray(neuron.v_threshold, dtype=np.float64) / c
    th = float(th) if th.ndim == 0 else th.astype(np.float32)
    return neuron.replace(v_threshold=th)


def merge_scale_into_threshold(graph: Graph, per_layer_threshold: bool = False,
                               unscale_decay_input: bool = True) -> PassResult:
    report = PassReport(NAME)
    nodes: dict[str, Node] = {n.name: n for n in graph.nodes}
    mapping: dict[str, str] = {}
    drop: set[str] = set()

    for cand in graph.nodes:
        is_scale = isinstance(cand, ScaleNode)
        is_mean = isinstance(cand, ReduceNode) and cand.reduce == "mean"
        if not (is_scale or is_mean):
            continue
        neuron, path, why = _find_neuron(graph, cand)
        if neuron is None:
            report.skip(where(cand), why)
            continue
        neuron = nodes[neuron.name]  # may already carry an earlier merge
        bad_reset = _reset_ok(neuron)
        if bad_reset:
            report.skip(where(cand), bad_reset)
            continue
        c = _factor(cand, graph)
        if np.any(np.asarray(c) <= 0):
            report.skip(where(cand), "the factor is not positive (it would flip the threshold inequality)")
            continue
        if isinstance(c, np.ndarray):
            if path:
                report.skip(where(cand), "a per-channel factor must feed the neuron directly")
                continue
            producer = graph.producer(cand.inputs[0])
            if per_layer_threshold:
                if not isinstance(producer, (ConvNode, LinearNode)) or sole_user(graph, producer.name) is not cand:
                    report.skip(where(cand), "per-layer threshold wanted, but the factor's producer is not a conv / linear used only here")
                    continue
                feats = graph.types[producer.name].features
                axis = 0 if isinstance(producer, ConvNode) else len(feats) - 1
                cf = np.broadcast_to(c, feats)
                per_out = np.moveaxis(cf, axis, 0).reshape(cf.shape[axis], -1)
                if not np.all(per_out == per_out[:, :1]):
                    report.skip(where(cand), "the factor varies along more than the output-channel axis")
                    continue
                k = per_out[:, 0]
                w = producer.weight.astype(np.float64) * k.reshape(-1, *([1] * (producer.weight.ndim - 1)))
                b = None if producer.bias is None else producer.bias.astype(np.float64) * k
                nodes[producer.name] = producer.replace(weight=w.astype(producer.weight.dtype),
                                                        bias=None if b is None else b.astype(producer.weight.dtype))
                mapping[cand.name] = cand.inputs[0]
                drop.add(cand.name)
                report.did(where(cand), f"per-channel factor moved into {producer.name}'s weights")
                continue
        nodes[neuron.name] = _scale_threshold(neuron, c)
        if is_scale:
            mapping[cand.name] = cand.inputs[0]
            drop.add(cand.name)
            what = f"x{np.asarray(c).ravel()[0]:.6g}" if np.ndim(c) == 0 else "per-channel factor"
        else:
            nodes[cand.name] = cand.replace(reduce="sum")
            what = f"mean -> sum, 1/{round(1 / float(c))}"
        report.did(where(cand), f"{what} merged into the threshold of {neuron.name} (now {nodes[neuron.name].summary()})")

    if unscale_decay_input:
        for name, n in list(nodes.items()):
            if not isinstance(n, NeuronNode) or n.model != "LIF" or not n.decay_input:
                continue
            bad = _reset_ok(n)
            if bad:
                report.skip(where(n), f"decay_input kept: {bad}")
                continue
            k = (1.0 / n.leak_rate) if n.leak_rate is not None else n.tau
            scaled = _scale_threshold(n, 1.0 / k)
            nodes[name] = scaled.replace(decay_input=False)
            report.did(where(n), f"decay_input 1/tau merged: membrane x{k:.6g}, threshold {scaled.summary().split('th=')[1].split()[0]}")

    out = substitute([nodes[n.name] for n in graph.nodes], mapping, drop)
    return PassResult(graph.rewrite(out), report)
