"""fold_batchnorm: conv / linear followed by inference batch norm becomes one conv / linear.

Algebra (per output channel o, σ_o = sqrt(var_o + eps))::

    BN(W x + b) = γ (W x + b − μ) / σ + β = (W γ/σ) x + ((b − μ) γ/σ + β)
    W'[o] = W[o] · γ_o / σ_o        b'[o] = (b_o − μ_o) · γ_o / σ_o + β_o       (b = 0 if absent)

Exact in real arithmetic.  In float32 the folded layer rounds differently (one multiply-add
instead of conv then normalise), so values move by a few ulps; spikes whose membrane sits within
that distance of the threshold can flip — the pipeline check reports each one with its margin.

Fires when the BN reads a conv / linear that has no other user, and the BN's channel axis is the
producer's output-channel axis (feature 0 for conv; the last feature axis for linear).  Batch norm
over a time-merged batch (``[T*B, C, ...]``, what ``SeqToANNContainer`` produces) is the same per-step
operation in the IR, so it folds the same way.
"""

from __future__ import annotations

import numpy as np

from spikec.ir import BatchNormNode, ConvNode, Graph, LinearNode

from .base import PassReport, PassResult, sole_user, substitute, where

NAME = "fold_batchnorm"


def fold_batchnorm(graph: Graph) -> PassResult:
    """Fold until no BN folds any more (a BN after a BN folds in the second round)."""
    report = PassReport(NAME)
    while True:
        fired = report.fired
        graph = _fold_once(graph, report)
        if report.fired == fired:
            return PassResult(graph, report)


def _fold_once(graph: Graph, report: PassReport) -> Graph:
    skipped_before = len(report.not_applied)
    replace: dict[str, object] = {}
    mapping: dict[str, str] = {}
    drop: set[str] = set()
    for bn in graph.nodes:
        if not isinstance(bn, BatchNormNode):
            continue
        prod = graph.producer(bn.inputs[0])
        if not isinstance(prod, (ConvNode, LinearNode)):
            report.skip(where(bn), f"input comes from a {prod.op}, not a conv / linear")
            continue
        if sole_user(graph, prod.name) is not bn:
            report.skip(where(bn), f"the {prod.op} {prod.name} has other users")
            continue
        out_axis = 0 if isinstance(prod, ConvNode) else len(graph.types[prod.name].features) - 1
        if bn.axis != out_axis:
            report.skip(where(bn), f"normalises feature axis {bn.axis}, not the {prod.op}'s output axis {out_axis}")
            continue
        w64 = prod.weight.astype(np.float64)
        mean, var = bn.mean.astype(np.float64), bn.var.astype(np.float64)
        gamma = np.ones_like(mean) if bn.weight is None else bn.weight.astype(np.float64)
        beta = np.zeros_like(mean) if bn.bias is None else bn.bias.astype(np.float64)
        b = np.zeros_like(mean) if prod.bias is None else prod.bias.astype(np.float64)
        k = gamma / np.sqrt(var + bn.eps)
        new_w = (w64 * k.reshape(-1, *([1] * (w64.ndim - 1)))).astype(prod.weight.dtype)
        new_b = ((b - mean) * k + beta).astype(prod.weight.dtype)
        replace[prod.name] = prod.replace(weight=new_w, bias=new_b)
        mapping[bn.name] = prod.name  # readers of the BN now read the folded layer
        drop.add(bn.name)
        report.did(where(prod), f"folded {bn.name}")
    if drop:  # another round follows: only its reasons for not firing are final
        del report.not_applied[skipped_before:]
    nodes = substitute([replace.get(n.name, n) for n in graph.nodes], mapping, drop)
    return graph.rewrite(nodes)
