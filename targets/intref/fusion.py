"""The per-spike-train copies of a synapse fused again where that is exact, for the executor's speed.

The integer pipeline gives a synapse over a sum of spike trains one copy per train
(``passes/distribute_over_spike_sums``: Lava reads each train through a connection of its own, and
with a negative weight exponent each connection floors its own part).  With an exponent >= 0 nothing
floors, and the integers satisfy::

    (W·a) << e  +  (W·b) << e  =  (W·(a + b)) << e          (+ the copies' biases, summed)

so the executor may compute one synapse over the summed inputs (a Spikformer's residual stream grows
by two trains a block: 9 copies before the fourth block's MLP, one synapse's work when fused).  Bit for bit
the same results: the fusion applies to a sum of two synapses with equal weights, exponent, sign mode
and indexing over inputs of one type (no broadcast: a convolution of a broadcast value is not the
broadcast of its convolution), each read by that sum only.  Copies with a negative exponent (each
floors its part), other weights or other layouts stay apart.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from spikec import ir

_INDEXING = ("layout", "weight_exp", "sign_mode", "stride", "padding", "dilation", "groups")


def _fusable(a: ir.Node, b: ir.Node) -> bool:
    return (isinstance(a, ir.SynapseNode) and isinstance(b, ir.SynapseNode) and a.weight_exp >= 0
            and all(getattr(a, f) == getattr(b, f) for f in _INDEXING)
            and a.weight.shape == b.weight.shape and np.array_equal(a.weight, b.weight))


def _bias(a: ir.SynapseNode, b: ir.SynapseNode):
    if a.bias is None or b.bias is None:
        return a.bias if b.bias is None else b.bias
    return np.asarray(a.bias, np.int64) + np.asarray(b.bias, np.int64)


def fuse_exact_synapse_copies(graph: ir.Graph, keep: Collection[str] = ()) -> ir.Graph:
    """``graph`` with every ``Add(synapse(x), synapse(y))`` of two exactly fusable copies (module
    docstring) replaced by ``synapse(Add(x, y))`` under the sum's name, repeatedly (a sum of three
    trains fuses twice).  Values named in ``keep`` are not fused away."""
    keep = set(keep)
    while True:
        types = graph.types
        fused: dict[str, list[ir.Node]] = {}
        gone: set[str] = set()
        for n in graph.nodes:
            if not isinstance(n, ir.AddNode) or len(n.inputs) != 2:
                continue
            a, b = (graph.producer(i) for i in n.inputs)
            if (a is b or not _fusable(a, b) or {a.name, b.name} & (gone | keep)
                    or types[a.inputs[0]] != types[b.inputs[0]]  # a broadcast sum: W·y is not W·broadcast(y)
                    or len(graph.users(a.name)) != 1 or len(graph.users(b.name)) != 1):
                continue
            add = ir.AddNode(f"{n.name}:inputs", (a.inputs[0], b.inputs[0]), n.source)
            fused[n.name] = [add, a.replace(name=n.name, inputs=(add.name,), bias=_bias(a, b))]
            gone |= {a.name, b.name}
        if not fused:
            return graph
        nodes = []
        for n in graph.nodes:
            if n.name in gone:
                continue
            nodes.extend(fused.get(n.name, [n]))
        graph = graph.rewrite(nodes)
