"""merge_scale_into_threshold: constant positive scales in front of a neuron move into its threshold.

Algebra.  Between spikes a neuron's dynamics are linear in (V, X, V_r), and its spike condition and
resets are homogeneous, so the membrane map V' = k·V (k > 0) turns a neuron into another one of
the same family: with threshold k·θ, reset value k·V_r and initial membrane k·v_init, fed k·X, it
has membrane k·V throughout and spikes at the same steps::

    H = V + (X − (V − V_r))/τ  (LIF, decay_input)        H' = k·H
    H = V − (V − V_r)/τ + X    (LIF)                     S = [H ≥ θ] = [H' ≥ k·θ]
    H = V + X                  (IF)                      hard reset: V' = k·V_r;  soft: V' = H' − S·k·θ

(PLIF: 1/τ is the leak rate q.)  The pass uses the map twice:

* a scale c > 0 in front of a neuron (k = 1/c): the neuron reads X instead of c·X, with threshold
  θ/c, reset V_r/c, initial membrane v_init/c;
* ``decay_input`` LIF (spikingjelly's default), k = τ (PLIF: 1/q): k·(X/τ) = X, so
  H' = V' − (V' − k·V_r)/τ + X, the input-unscaled (decay_input=False) LIF with threshold k·θ,
  reset k·V_r and initial membrane k·v_init: the 1/τ input scale that neuromorphic cores do not have
  is gone.

Exactness condition: exact in real arithmetic whenever k > 0.  The pass does not fire for c ≤ 0 (it
would flip the inequality), for a scale with other users, and for a per-channel c bound for a
per-channel threshold when the reset value or initial membrane is ≠ 0 (each is one number per layer):
it says so.

Scales that act before the neuron through positively homogeneous operations also move:
(cA)B = c(AB) for matmuls (Spikformer's ``(q @ kᵀ) * 0.125 @ v``), reshapes, permutes, slices, sums,
max / average pooling, and bias-free linear maps.  A token / time *mean* in front of a neuron is a
sum times 1/N: it becomes a sum and 1/N moves into the threshold (exact).

Per-channel factors (arrays) move into a per-channel threshold, or, with
``per_layer_threshold=True`` (a target with one threshold per layer, like Lava's LIF), into the
producing conv / linear's weights and bias (W' = c·W, b' = c·b, also exact; the neuron is unchanged).

Float32 note: a power-of-two k (0.125, τ = 2, a PLIF rate of 0.5) scales every parameter exactly;
other factors round them, and the decay_input form adds X after the leak instead of before, so a
membrane can move by an ulp and flip a spike sitting on the threshold (reported by the pipeline check).
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


def _per_channel_blocked(n: NeuronNode) -> Optional[str]:
    """Why a per-channel membrane map cannot apply to ``n`` (its reset value and initial membrane
    are one number per layer), or None."""
    if n.v_reset not in (None, 0.0):
        return f"a per-channel factor would need a per-channel reset value (hard reset to {n.v_reset:g})"
    if n.v_init != 0.0:
        return f"a per-channel factor would need a per-channel initial membrane ({n.v_init:g})"
    return None


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


def _scale_membrane(neuron: NeuronNode, k: Union[float, np.ndarray]) -> NeuronNode:
    """The neuron whose membrane is k·V (module docstring): threshold, reset value and initial
    membrane times k.  An array ``k`` needs :func:`_per_channel_blocked` to be None."""
    th = np.asarray(neuron.v_threshold, dtype=np.float64) * k
    th = float(th) if th.ndim == 0 else th.astype(np.float32)
    if isinstance(k, np.ndarray):
        return neuron.replace(v_threshold=th)
    v_reset = None if neuron.v_reset is None else float(neuron.v_reset * k)
    return neuron.replace(v_threshold=th, v_reset=v_reset, v_init=float(neuron.v_init * k))


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
            blocked = _per_channel_blocked(neuron)
            if blocked:
                report.skip(where(cand), blocked)
                continue
        nodes[neuron.name] = _scale_membrane(neuron, 1.0 / c)
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
            k = (1.0 / n.leak_rate) if n.leak_rate is not None else n.tau
            nodes[name] = _scale_membrane(n, k).replace(decay_input=False)
            report.did(where(n), f"decay_input 1/tau merged: membrane x{k:.6g}, now {nodes[name].summary()}")

    out = substitute([nodes[n.name] for n in graph.nodes], mapping, drop)
    return PassResult(graph.rewrite(out), report)
