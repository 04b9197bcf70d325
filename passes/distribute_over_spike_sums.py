"""distribute_over_spike_sums: W(a + b) = Wa + Wb, so that synapses see binary inputs.

A conv / linear whose input is a sum of spike tensors (Spikformer's ``x + rpe(x)`` and its integer
residual stream, SEW residuals) is split into one copy per spike term, the copies summed after the
synapses; the bias is kept on the first copy only.  Reshapes, permutes and slices between the sum
and the layer are linear and are applied to each term.  Exact in real arithmetic; in float32 the
sum is formed after the synapses instead of before (values move by ulps).

The layer does not fire, and the report says so, when a term is not binary ("graded input
remains"): e.g. the real-valued membrane shortcut of the Spike-Driven Transformer.
"""

from __future__ import annotations

from spikec.ir import AddNode, ConvNode, Graph, Kind, LinearNode, Node, PermuteNode, ReshapeNode, SliceNode

from .base import NameSource, PassReport, PassResult, where

NAME = "distribute_over_spike_sums"

_MOVEMENT = (ReshapeNode, PermuteNode, SliceNode)


def _terms(graph: Graph, v: str, chain: tuple[Node, ...] = ()) -> list[tuple[str, tuple[Node, ...]]]:
    """Leaves of the sum tree behind ``v`` with the data-movement ops to re-apply to each."""
    n = graph.producer(v)
    if isinstance(n, AddNode):
        t = graph.types
        if t[n.inputs[0]].features != t[n.inputs[1]].features:
            return [(v, chain)]
        return _terms(graph, n.inputs[0], chain) + _terms(graph, n.inputs[1], chain)
    if isinstance(n, _MOVEMENT):
        inner = _terms(graph, n.inputs[0], (n,) + chain)
        if len(inner) > 1:
            return inner
    return [(v, chain)]


def distribute_over_spike_sums(graph: Graph) -> PassResult:
    report = PassReport(NAME)
    names = NameSource(graph)
    out: list[Node] = []
    for n in graph.nodes:
        if not isinstance(n, (ConvNode, LinearNode)):
            out.append(n)
            continue
        kind = graph.types[n.inputs[0]].kind
        if kind is Kind.SPIKE:
            out.append(n)
            continue
        terms = _terms(graph, n.inputs[0])
        graded = [v for v, _ in terms if graph.types[v].kind is not Kind.SPIKE]
        if len(terms) < 2 or graded:
            why = "graded input remains: " + (
                f"input is a {kind.value} value from {graph.producer(n.inputs[0]).op}" if len(terms) < 2
                else f"non-binary term(s) {', '.join(graded)}"
            )
            report.skip(where(n), why)
            out.append(n)
            continue
        partial = None
        for i, (leaf, chain) in enumerate(terms):
            v = leaf
            for op in chain:
                moved = op.replace(name=names(f"{op.name}:t{i}"), inputs=(v,))
                out.append(moved)
                v = moved.name
            copy = n.replace(name=names(f"{n.name}:t{i}"), inputs=(v,), bias=n.bias if i == 0 else None)
            out.append(copy)
            if partial is None:
                partial = copy.name
            else:
                last = i == len(terms) - 1
                s = AddNode(n.name if last else names(f"{n.name}:sum{i}"), (partial, copy.name), n.source)
                out.append(s)
                partial = s.name
        report.did(where(n), f"distributed over {len(terms)} spike terms")
    return PassResult(graph.rewrite(out), report)
