"""cleanup: remove no-op data movement, fuse reshape / permute chains, fold the classifier's means
into its weights, and drop dead nodes.

Rewrites (all exact):

* reshape to the same features, identity permute, full-range slice, scale by 1  ->  removed;
* reshape(reshape(x))  ->  reshape(x);   permute_q(permute_p(x))  ->  permute_{p∘q}(x);
* Linear(mean_N(x)) = (W / N) · sum_N(x) + b: a mean over tokens and / or time whose only path
  leads (through further means) to a linear layer becomes a sum, and the linear's weight is divided
  by the product of the reduced sizes.  Integer targets then see integer sums of spikes.
  (W / N is one float rounding of W; outputs move by ~1 ulp relative.)
* dead-code elimination.
"""

from __future__ import annotations

import numpy as np

from spikec.ir import (
    Graph,
    LinearNode,
    Node,
    PermuteNode,
    ReduceNode,
    ReshapeNode,
    ScaleNode,
    SliceNode,
    dead_code_elimination,
)

from .base import PassReport, PassResult, sole_user, substitute, where

NAME = "cleanup"


def _is_noop(n: Node, graph: Graph) -> bool:
    t_in = graph.types[n.inputs[0]] if n.inputs else None
    if isinstance(n, ReshapeNode):
        return tuple(n.features) == t_in.features
    if isinstance(n, PermuteNode):
        return tuple(n.perm) == tuple(range(len(n.perm)))
    if isinstance(n, SliceNode):
        return n.start == 0 and n.stop == t_in.features[n.axis]
    if isinstance(n, ScaleNode):
        return not isinstance(n.factor, np.ndarray) and float(n.factor) == 1.0
    return False


def cleanup(graph: Graph, max_rounds: int = 10) -> PassResult:
    """Apply the rewrites until none fires (fusing can create no-ops and vice versa)."""
    report = PassReport(NAME)
    for _ in range(max_rounds):
        before = report.fired
        graph = _round(graph, report)
        if report.fired == before:
            break
    return PassResult(graph, report)


def _round(graph: Graph, report: PassReport) -> Graph:
    nodes = {n.name: n for n in graph.nodes}
    mapping: dict[str, str] = {}
    drop: set[str] = set()

    # 1. no-ops
    for n in graph.nodes:
        if _is_noop(n, graph):
            mapping[n.name] = n.inputs[0]
            drop.add(n.name)
            report.did(where(n), f"removed no-op {n.op}")

    def source_of(v: str) -> str:
        while v in mapping:
            v = mapping[v]
        return v

    # 2. chains of reshapes / permutes (inner node used only by the outer one)
    for n in graph.nodes:
        if n.name in drop or not isinstance(n, (ReshapeNode, PermuteNode)):
            continue
        inner = nodes.get(source_of(n.inputs[0]))
        if inner is None or inner.name in drop or type(inner) is not type(n):
            continue
        if len(graph.users(inner.name)) != 1:
            continue
        if isinstance(n, ReshapeNode):
            nodes[n.name] = n.replace(inputs=inner.inputs)
        else:
            nodes[n.name] = n.replace(inputs=inner.inputs, perm=tuple(inner.perm[q] for q in n.perm))
        drop.add(inner.name)
        report.did(where(n), f"fused with {inner.op} {inner.name}")

    # 3. classifier means into the linear's weights
    for n in graph.nodes:
        if not (isinstance(n, ReduceNode) and n.reduce == "mean") or n.name in drop:
            continue
        chain, cur = [n], n
        while True:
            u = sole_user(graph, cur.name)
            if isinstance(u, ReduceNode) and u.reduce == "mean":
                chain.append(u)
                cur = u
                continue
            break
        if not isinstance(u, LinearNode):
            continue
        if any(c.name in drop or nodes[c.name].reduce != "mean" for c in chain):
            continue
        count = 1
        for c in chain:
            t = graph.types[c.inputs[0]]
            count *= int(np.prod([t.features[a] for a in c.axes])) * (t.time if c.over_time else 1)
        lin = nodes[u.name]
        nodes[u.name] = lin.replace(weight=(lin.weight.astype(np.float64) / count).astype(lin.weight.dtype))
        for c in chain:
            nodes[c.name] = nodes[c.name].replace(reduce="sum")
        report.did(where(u), f"1/{count} of {len(chain)} mean(s) folded into the weights")

    out = substitute([nodes[n.name] for n in graph.nodes], mapping, drop)
    live = dead_code_elimination(out)
    for n in out:
        if n not in live:
            report.did(where(n), "removed dead node")
    return graph.rewrite(live)
