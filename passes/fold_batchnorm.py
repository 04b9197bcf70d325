"""fold_batchnorm: conv / linear followed by inference batch norm becomes one conv / linear, also when
permutes and reshapes stand between them.

Algebra (per output feature o of the conv / linear, σ_o = sqrt(var_o + eps))::

    BN(W x + b) = γ (W x + b − μ) / σ + β = (W γ/σ) x + ((b − μ) γ/σ + β)
    W'[o] = W[o] · γ_o / σ_o        b'[o] = (b_o − μ_o) · γ_o / σ_o + β_o       (b = 0 if absent)

``W[o]`` is the slice of the weight that produces output feature ``o`` (``weight[o]``: the output
channel of a conv, the output row of a linear), so the fold scales the weight along its axis 0.

Layout nodes in between.  Spikformer's published code writes its projections as
``q_bn(q_linear(x).transpose(-1, -2)).transpose(-1, -2)``: a Linear over the channels of a token-major
``[N, C]`` value, then BatchNorm1d over axis 0 of the channel-major ``[C, N]`` view.  The pass follows
the BN's input back through any chain of ``permute`` / ``reshape`` nodes to a conv / linear, carrying
the BN's channel axis backwards:

* ``permute``: output axis i *is* input axis ``perm[i]``, element for element — a permute only moves
  axes, so channel c of the BN's axis is channel c of input axis ``perm[i]``;
* ``reshape`` (row-major): output axis a of size d with row-major stride s = Π(out[a+1:]) addresses
  element ``flat`` at channel ``(flat // s) mod d``.  If the input has an axis b with ``in[b] = d``
  and Π(in[b+1:]) = s, then that input axis addresses the same flat elements by the same formula, so
  it is the same channel index; a reshape that only splits or merges *other* axes (unsqueeze,
  flatten(0, 1) of the token axes, …) keeps the channel axis whole.  Otherwise the reshape mixes the
  normalised axis with another (a ``view`` used where a ``transpose`` was meant) and the pass stops.

Neither node changes an element's value, only where it sits, and both act per time step and sample
(time and batch are not feature axes).  So if the axis reached at the producer is its output-feature
axis (axis 0 for conv; the last feature axis for linear), BN channel c scales exactly the elements
that output feature c of the conv / linear produced, and ``BN(P(L(x))) = P(L'(x))`` where P is
the layout chain, L the producer and L' the producer with W', b'.  The chain stays; the BN goes.

Exactness conditions (checked; each failure is a ``report.skip`` with its reason): (1) the BN's
channel axis maps back, through every node of the chain, to exactly the producer's output-feature
axis (no reshape mixes it with another axis, no permute brings another axis under the BN); (2)
every value from the producer to the BN (the producer's output and each layout node's output) has
the next node of the chain as its only reader — otherwise another reader would see normalised values
after the fold.  (Duplicating the producer would be exact too, but doubles the synapses; the pass
reports instead.)

Exact in real arithmetic.  In float32 the folded layer rounds differently (one multiply-add
instead of conv then normalise), so values move by a few ulps; spikes whose membrane sits within
that distance of the threshold can flip — the pipeline check reports each one with its margin.
Batch norm over a time-merged batch (``[T*B, C, ...]``, what ``SeqToANNContainer`` produces) is the
same per-step operation in the IR, so it folds the same way.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np

from spikec.ir import BatchNormNode, ConvNode, Graph, LinearNode, Node, PermuteNode, ReshapeNode

from .base import PassReport, PassResult, sole_user, substitute, where

NAME = "fold_batchnorm"

_LAYOUT = (PermuteNode, ReshapeNode)


def fold_batchnorm(graph: Graph) -> PassResult:
    """Fold until no BN folds any more (a BN after a BN folds in the second round)."""
    report = PassReport(NAME)
    while True:
        fired = report.fired
        graph = _fold_once(graph, report)
        if report.fired == fired:
            return PassResult(graph, report)


def _axis_before(graph: Graph, node: Node, axis: int) -> Optional[int]:
    """The input axis of layout node ``node`` that output axis ``axis`` is, element for element, or
    None if the node mixes that axis with another (see the module docstring)."""
    if isinstance(node, PermuteNode):
        return node.perm[axis]
    f_in, f_out = graph.types[node.inputs[0]].features, graph.types[node.name].features
    size, stride = f_out[axis], math.prod(f_out[axis + 1:])
    for b, d in enumerate(f_in):
        if d == size and math.prod(f_in[b + 1:]) == stride:
            return b
    return None


def _trace_back(graph: Graph, bn: BatchNormNode) -> Union[tuple[Node, int, list[Node]], str]:
    """Follow the BN's input through permute / reshape nodes to its producer.

    Returns ``(producer, axis of the producer's output the BN normalises, chain from producer to
    BN)`` or the reason why the BN cannot fold."""
    chain: list[Node] = []
    axis = bn.axis
    reader: Node = bn
    node = graph.producer(bn.inputs[0])
    while isinstance(node, _LAYOUT):
        if sole_user(graph, node.name) is not reader:
            return (f"the {node.op} {node.name} between the batch norm and its producer has other users, which "
                    "would see normalised values after folding (give them their own copy of the layer)")
        before = _axis_before(graph, node, axis)
        if before is None:
            f_in, f_out = graph.types[node.inputs[0]].features, graph.types[node.name].features
            return (f"the {node.op} {node.name} {list(f_in)} -> {list(f_out)} mixes the normalised axis {axis} "
                    f"(size {f_out[axis]}) with another; move the channel axis with transpose / permute, not "
                    "view / reshape")
        chain.append(node)
        axis, reader, node = before, node, graph.producer(node.inputs[0])
    via = f" through {' -> '.join(f'{n.op} {n.name}' for n in chain[::-1])}" if chain else ""
    if not isinstance(node, (ConvNode, LinearNode)):
        return f"input comes from a {node.op}{via}, not a conv / linear (only permute / reshape are looked through)"
    if sole_user(graph, node.name) is not reader:
        return (f"the {node.op} {node.name} has other users, which would see normalised values after folding "
                "(give them their own copy of the layer)")
    out_axis = 0 if isinstance(node, ConvNode) else len(graph.types[node.name].features) - 1
    if axis != out_axis:
        moved = f" (axis {axis} of the {node.op}'s output{via})" if chain else ""
        return (f"normalises feature axis {bn.axis}{moved}, not the {node.op}'s output axis {out_axis}: its "
                "channels are not the layer's output features")
    return node, axis, chain[::-1]


def _fold_once(graph: Graph, report: PassReport) -> Graph:
    skipped_before = len(report.not_applied)
    replace: dict[str, Node] = {}
    mapping: dict[str, str] = {}
    drop: set[str] = set()
    for bn in graph.nodes:
        if not isinstance(bn, BatchNormNode):
            continue
        found = _trace_back(graph, bn)
        if isinstance(found, str):
            report.skip(where(bn), found)
            continue
        prod, _, chain = found
        w64 = prod.weight.astype(np.float64)
        mean, var = bn.mean.astype(np.float64), bn.var.astype(np.float64)
        gamma = np.ones_like(mean) if bn.weight is None else bn.weight.astype(np.float64)
        beta = np.zeros_like(mean) if bn.bias is None else bn.bias.astype(np.float64)
        b = np.zeros_like(mean) if prod.bias is None else prod.bias.astype(np.float64)
        k = gamma / np.sqrt(var + bn.eps)
        new_w = (w64 * k.reshape(-1, *([1] * (w64.ndim - 1)))).astype(prod.weight.dtype)
        new_b = ((b - mean) * k + beta).astype(prod.weight.dtype)
        replace[prod.name] = prod.replace(weight=new_w, bias=new_b)
        mapping[bn.name] = bn.inputs[0]  # readers of the BN now read the (folded) layer or the chain's end
        drop.add(bn.name)
        via = f" through {' -> '.join(n.op for n in chain)}" if chain else ""
        report.did(where(prod), f"folded {bn.name}{via}")
    if drop:  # another round follows: only its reasons for not firing are final
        del report.not_applied[skipped_before:]
    nodes = substitute([replace.get(n.name, n) for n in graph.nodes], mapping, drop)
    return graph.rewrite(nodes)
