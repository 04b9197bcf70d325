"""copy_linear_inputs_per_consumer: every reader of a real-valued linear value gets its own copy of
the synapses and sums that compute it (integer targets), so that its fixed-point scale is its own.

    c_j( L(W_1·s_1 + b_1, …, W_k·s_k + b_k) )  =  c_j( L_j(W_1^(j)·s_1 + b_1, …, W_k^(j)·s_k + b_k) )

``L`` is the tree between synapses and the value's readers: sums (residual adds), data movement
(reshape / permute / slice / pad / concatenation / repeat over time / time moved into the features
and back), sum / mean reductions, average pools, constant
scalings and max pools of real values; its leaves are conv / linear layers ``W_i`` (over integer
values: spikes, counts, the quantized input) and the integer values it reads directly.  A
*consumer* ``c_j`` is any other operation reading a real value of such a tree: a neuron layer (its
input current), a host output.  ``L_j`` and ``W_i^(j)`` are fresh copies of the same operations
with the same parameters, so the float model computes bit for bit the same values (the same float32
operations in the same order).

A max pool of real values is not linear, but it commutes with a positive scale
(max(Δ·q) = Δ·max(q)), so it keeps its input's scale; it must be materialised (intref computes
it, Lava runs it as a stage of its own).  It is copied with the tree: each consumer's copy is
materialised at that consumer's scale, never at the scale of a stream with a far larger range
(Spike-Driven Transformer's patch embedding ends in conv → BN → max pool, the first term of the
membrane-shortcut stream).

Why.  In fixed point a linear tree holds one scale: all its synapses write, and its sums add, in the
same units.  A membrane shortcut (Spike-Driven Transformer: a real-valued residual stream read by
the first neuron of every branch and by the head) made the whole stream one tree, whose worst
reader's range coarsened every neuron reading it (weights rounded to zero, thresholds of 2 realised
as 1.016).  With a private tree per reader the quantizer gives each neuron layer's input current its
own scale, from its own threshold and range, and each connection into it (each synapse copy) its own
weight exponent: Loihi has per-connection exponents with 8-bit mantissas, and every integer target
floors per synapse and then sums, as Lava does per connection.  Lava already linearises each neuron
input into one connection per synapse on its path, so the copies add no connections there; intref
and ONNX compute each copy (more multiply-accumulates, and more weights in the integer graph).

Exactness condition: the copies are the same operations, so the pass is exact in float32.  It leaves
(report.skip, with the reason) a conv / linear reading a real value: the quantizer materialises that
value at one scale for it (intref; Lava needs a neuron in between).
"""

from __future__ import annotations

from spikec import ir

from .base import NameSource, PassReport, PassResult, where

NAME = "copy_linear_inputs_per_consumer"

# the operations between synapses and their consumers that keep one scale (the quantizer's
# "domain" operations: linear ones, and the max pool, which commutes with a positive scale)
TREE_OPS = (ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode, ir.AvgPoolNode, ir.PadNode,
            ir.ScaleNode, ir.RepeatTimeNode, ir.MaxPoolNode, ir.ConcatNode, ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)
SYNAPSES = (ir.ConvNode, ir.LinearNode)


def _is_tree_value(graph: ir.Graph, v: str) -> bool:
    """A real value computed by a synapse or a linear tree operation (one a consumer may copy)."""
    n = graph.producer(v)
    return graph.types[v].kind is ir.Kind.REAL and isinstance(n, TREE_OPS + SYNAPSES)


def _tree(graph: ir.Graph, v: str, out: dict[str, ir.Node]) -> None:
    """The tree nodes under the real value ``v`` (synapses are leaves: their inputs are not copied)."""
    if v in out or not _is_tree_value(graph, v):
        return
    n = graph.producer(v)
    out[v] = n
    if isinstance(n, TREE_OPS):
        for i in n.inputs:
            _tree(graph, i, out)


def copy_linear_inputs_per_consumer(graph: ir.Graph) -> PassResult:
    report = PassReport(NAME)
    names = NameSource(graph)
    order = {n.name: k for k, n in enumerate(graph.nodes)}
    claimed: dict[str, str] = {}  # tree node -> the consumer that keeps the original
    inserts: dict[str, list[ir.Node]] = {}  # consumer name -> copies to insert before it
    rewired: dict[str, ir.Node] = {}  # consumer name -> the consumer reading its copies
    for c in graph.nodes:
        if isinstance(c, TREE_OPS):
            continue
        ins = [i for i in c.inputs if _is_tree_value(graph, i)]
        if not ins:
            continue
        if isinstance(c, SYNAPSES):
            report.skip(where(c), "reads a real value: a synapse reads it materialised at one scale (no copies)")
            continue
        tree: dict[str, ir.Node] = {}
        for i in ins:
            _tree(graph, i, tree)
        # a node is copied if another consumer keeps it, or if it reads a copied node; the rest of
        # the tree is this consumer's alone and stays as it is
        copied: dict[str, bool] = {}

        def needs_copy(v: str, tree=tree, copied=copied) -> bool:  # bound now: called within this iteration
            if v not in copied:
                copied[v] = False  # (a tree is acyclic; this only guards the recursion)
                n = tree[v]
                ins_copied = [needs_copy(i) for i in n.inputs if i in tree] if isinstance(n, TREE_OPS) else []
                copied[v] = v in claimed or any(ins_copied)
            return copied[v]

        for v in tree:
            needs_copy(v)
        for v in tree:
            if not copied[v]:
                claimed[v] = c.name
        if not any(copied.values()):
            continue
        copy_of: dict[str, str] = {v: names(f"{v}->{c.name}") for v in tree if copied[v]}
        copies = []
        for v in sorted(copy_of, key=order.__getitem__):
            n = tree[v]
            copies.append(n.replace(name=copy_of[v], inputs=tuple(copy_of.get(i, i) for i in n.inputs)))
        inserts[c.name] = copies
        rewired[c.name] = c.replace(inputs=tuple(copy_of.get(i, i) for i in c.inputs))
        syn = sum(isinstance(tree[v], SYNAPSES) for v in copy_of)
        report.did(where(c), f"own copy of {syn} synapse(s) and {len(copy_of) - syn} sum / data-movement / max-pool "
                             "op(s) it shared with other readers (its own fixed-point scale and weight exponents)")
    if not rewired:
        return PassResult(graph, report)
    nodes: list[ir.Node] = []
    for n in graph.nodes:
        nodes += inserts.get(n.name, [])
        nodes.append(rewired.get(n.name, n))
    return PassResult(graph.rewrite(nodes), report)  # originals no longer read die in cleanup
