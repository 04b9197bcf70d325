"""merge_repconv: re-parameterise chains and parallel branches of linear convolutions into one conv.

Rules, applied until none fires (all exact in real arithmetic; float32 values move by ulps):

1. **BN-aware padding through a 1×1 conv.**  ``Pad(v) ∘ Conv1x1_A`` with the per-channel border
   value ``v = b_A`` (what A outputs for a zero input; this is Meta-SpikeFormer's BNAndPadLayer after
   its BN is folded into A) equals ``Conv1x1_A ∘ Pad(0)``: the zero-padded border maps to ``b_A``.
2. **Zero padding into the conv.**  ``Conv_P(padding p) ∘ Pad(0, q)`` = ``Conv_P(padding p + q)``
   for symmetric ``q``.
3. **Sequential composition.**  ``Conv_2 ∘ Conv_1`` (Conv_1 used only by Conv_2) is one conv when
   Conv_2 is 1×1 / stride 1 / no padding (``W = W₂ W₁``, ``b = W₂ b₁ + b₂``, Conv_1's geometry), or
   when Conv_1 is 1×1 / stride 1 / no padding / ungrouped and Conv_2 pads nothing or Conv_1 has no bias
   (``W[o,i,·] = Σ_m W₂[o,m,·] W₁[m,i]``, ``b = b₂ + Σ_m ΣW₂[o,m,·] b₁[m]``).  Linear∘Linear likewise.
   Fires when the merged weight is no larger than the two, or when it makes every synapse see spikes
   (the first layer's input is binary while the intermediate is graded: SepConv's dw → pw2).
4. **Parallel branches (RepVGG).**  ``Conv_P(x) + Conv_Q(x)`` with the same input, stride,
   dilation, groups and "same" padding is one conv: the smaller kernel is zero-padded to the larger,
   centred; weights and biases add.

Meta-SpikeFormer's RepConv (1×1 → BN with BN-aware padding → depthwise 3×3 → 1×1 → BN) becomes a
single 3×3 conv with padding 1 and a bias by rules 1, 3, 3 and 2 (after fold_batchnorm).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from spikec.ir import AddNode, ConvNode, Graph, Kind, LinearNode, Node, PadNode

from .base import PassReport, PassResult, sole_user, substitute, where

NAME = "merge_repconv"


def _dense(w: np.ndarray, groups: int) -> np.ndarray:
    """Grouped conv weight [Cout, Cin/g, *k] as a dense [Cout, Cin, *k] (block diagonal)."""
    if groups == 1:
        return w.astype(np.float64)
    cout, cin_g = w.shape[:2]
    out_g = cout // groups
    dense = np.zeros((cout, cin_g * groups, *w.shape[2:]))
    for g in range(groups):
        dense[g * out_g:(g + 1) * out_g, g * cin_g:(g + 1) * cin_g] = w[g * out_g:(g + 1) * out_g]
    return dense


def _is_pointwise(c: ConvNode) -> bool:
    return all(k == 1 for k in c.weight.shape[2:]) and all(s == 1 for s in c.stride) and all(p == 0 for p in c.padding)


def _bias(n) -> np.ndarray:
    return np.zeros(n.weight.shape[0]) if n.bias is None else n.bias.astype(np.float64)


def _compose(first: Node, second: Node) -> tuple[Optional[Node], str]:
    """second ∘ first as one node, or (None, reason)."""
    if isinstance(first, LinearNode) and isinstance(second, LinearNode):
        w = second.weight.astype(np.float64) @ first.weight.astype(np.float64)
        b = second.weight.astype(np.float64) @ _bias(first) + _bias(second)
        return first.replace(weight=w.astype(first.weight.dtype), bias=b.astype(first.weight.dtype)), ""
    if not (isinstance(first, ConvNode) and isinstance(second, ConvNode)):
        return None, "not two convs / two linears"
    if first.spatial_dims != second.spatial_dims:
        return None, "different spatial ranks"
    if _is_pointwise(second) and second.groups == 1:
        w1 = _dense(first.weight, first.groups)
        w2 = second.weight.reshape(second.weight.shape[:2]).astype(np.float64)
        w = np.tensordot(w2, w1, axes=([1], [0]))
        b = w2 @ _bias(first) + _bias(second)
        return first.replace(weight=w.astype(first.weight.dtype), bias=b.astype(first.weight.dtype), groups=1), ""
    if _is_pointwise(first) and first.groups == 1:
        if any(p != 0 for p in second.padding) and first.bias is not None and np.any(first.bias != 0):
            return None, "the 1x1 conv has a bias and the next conv pads with zeros (border would differ)"
        w1 = first.weight.reshape(first.weight.shape[:2]).astype(np.float64)
        w2 = _dense(second.weight, second.groups)
        w = np.einsum("om...,mi->oi...", w2, w1)
        b = _bias(second) + w2.sum(axis=tuple(range(2, w2.ndim))) @ _bias(first)
        return second.replace(name=first.name, inputs=first.inputs, weight=w.astype(second.weight.dtype),
                              bias=b.astype(second.weight.dtype), groups=1), ""
    return None, "neither conv is pointwise (1x1, stride 1, no padding)"


def _same_padded(c: ConvNode) -> bool:
    return all(k % 2 == 1 and p == d * (k - 1) // 2 for k, p, d in zip(c.weight.shape[2:], c.padding, c.dilation))


def _centre(w: np.ndarray, kernel: tuple[int, ...]) -> np.ndarray:
    pad = [(0, 0), (0, 0)] + [((K - k) // 2, (K - k) // 2) for k, K in zip(w.shape[2:], kernel)]
    return np.pad(w.astype(np.float64), pad)


def _one_round(graph: Graph, report: PassReport, final: bool, into_pointwise: bool = False) -> Graph:
    nodes = {n.name: n for n in graph.nodes}
    mapping: dict[str, str] = {}
    drop: set[str] = set()
    touched: set[str] = set()
    types = graph.types

    def free(*ns) -> bool:
        return not any(n.name in touched for n in ns)

    for n in graph.nodes:
        # rule 1: Pad(v) after a 1x1 conv whose bias is v
        if isinstance(n, PadNode) and isinstance(graph.producer(n.inputs[0]), ConvNode):
            a = graph.producer(n.inputs[0])
            if free(a, n) and sole_user(graph, a.name) is n and _is_pointwise(a) and np.any(np.asarray(n.value) != 0):
                v = np.broadcast_to(np.asarray(n.value, np.float64), (a.weight.shape[0],))
                if np.allclose(v, _bias(a), rtol=1e-5, atol=1e-6):
                    pad0 = n.replace(name=a.name + ":pad", inputs=a.inputs, value=0.0)
                    nodes[a.name] = a.replace(inputs=(pad0.name,))
                    nodes[pad0.name] = pad0
                    mapping[n.name] = a.name
                    drop.add(n.name)
                    touched.update({a.name, n.name})
                    report.did(where(n), f"BN-aware padding moved in front of the 1x1 conv {a.name} as zero padding")
                    continue
                if final:
                    report.skip(where(n), "pad value differs from the 1x1 conv's response to zero")
        # rule 2: zero pad into the following conv
        if isinstance(n, ConvNode) and isinstance(graph.producer(n.inputs[0]), PadNode):
            p = graph.producer(n.inputs[0])
            # a pointwise conv keeps its padding outside while it may still compose with its neighbours
            if free(p, n) and sole_user(graph, p.name) is n and not isinstance(p.value, np.ndarray) and p.value == 0.0 \
                    and all(lo == hi for lo, hi in p.pads) and (into_pointwise or not _is_pointwise(n)):
                nodes[n.name] = n.replace(inputs=p.inputs, padding=tuple(q + lo for q, (lo, _) in zip(n.padding, p.pads)))
                drop.add(p.name)
                touched.update({p.name, n.name})
                report.did(where(n), f"zero padding {p.name} absorbed into the conv")
                continue
        # rule 3: sequential composition
        if isinstance(n, (ConvNode, LinearNode)):
            first = graph.producer(n.inputs[0])
            if isinstance(first, type(n)) and free(first, n) and sole_user(graph, first.name) is n:
                merged, why = _compose(first, n)
                if merged is None:
                    if final:
                        report.skip(where(n), f"not merged with {first.name}: {why}")
                    continue
                smaller = merged.weight.size <= first.weight.size + n.weight.size
                spikes_in = types[first.inputs[0]].kind is Kind.SPIKE and types[first.name].kind is not Kind.SPIKE
                if not (smaller or spikes_in):
                    if final:
                        report.skip(where(n), f"not merged with {first.name}: the merged weight is larger "
                                              f"({merged.weight.size} > {first.weight.size + n.weight.size}) and the input is graded")
                    continue
                merged = merged.replace(name=n.name, source=n.source)
                nodes[n.name] = merged
                drop.add(first.name)
                touched.update({first.name, n.name})
                report.did(where(n), f"merged with {first.name} ({'smaller' if smaller else 'synapses now see spikes'})")
                continue
        # rule 4: parallel branches
        if isinstance(n, AddNode):
            p, q = graph.producer(n.inputs[0]), graph.producer(n.inputs[1])
            if isinstance(p, ConvNode) and isinstance(q, ConvNode) and p is not q and free(p, q, n) \
                    and p.inputs == q.inputs and sole_user(graph, p.name) is n and sole_user(graph, q.name) is n \
                    and p.stride == q.stride and p.dilation == q.dilation and p.groups == q.groups \
                    and _same_padded(p) and _same_padded(q) and p.weight.shape[:2] == q.weight.shape[:2]:
                kernel = tuple(max(a, b) for a, b in zip(p.weight.shape[2:], q.weight.shape[2:]))
                big = p if tuple(p.weight.shape[2:]) == kernel else q
                w = _centre(p.weight, kernel) + _centre(q.weight, kernel)
                b = _bias(p) + _bias(q)
                nodes[n.name] = big.replace(name=n.name, source=n.source, weight=w.astype(p.weight.dtype),
                                            bias=b.astype(p.weight.dtype))
                drop.update({p.name, q.name})
                touched.update({p.name, q.name, n.name})
                report.did(where(n), f"parallel branches {p.name} + {q.name} merged into one conv")
    return graph.rewrite(substitute([nodes[n.name] for n in graph.nodes] +
                                    [v for k, v in nodes.items() if k not in {n.name for n in graph.nodes}],
                                    mapping, drop))


def merge_repconv(graph: Graph, max_rounds: int = 20) -> PassResult:
    report = PassReport(NAME)
    for into_pointwise in (False, True):
        for _ in range(max_rounds):
            fired = report.fired
            graph = _one_round(graph, report, final=False, into_pointwise=into_pointwise)
            if report.fired == fired:
                break
    _one_round(graph, report, final=True)  # records the reasons for what is left (fires nothing new)
    return PassResult(graph, report)
