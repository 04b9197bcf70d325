"""spike_matmul_to_addressed_accumulation: products with a binary operand become additions.

Kind analysis (:mod:`spikec.ir.types`): neuron outputs are binary; so are AND, max-pool of spikes,
and reshapes / permutes / slices of binary tensors; sums of spikes are non-negative counts.

* ``A @ B`` with a binary operand becomes :class:`~spikec.ir.AddressedAccumulationNode`: for every
  active spike address, the selected row (column) of the other operand is added — no
  multiplications (Frenkel 2023; the "spike-driven matrix multiplication" of SDT v2).
* a chain ``(A @ B) @ C`` whose operands are all integer-valued is re-associated to
  ``A @ (B @ C)`` when that costs fewer accumulations (dense count n·k·m + n·m·p vs k·m·p + n·k·p),
  e.g. Q(KᵀV) vs (QKᵀ)V for N tokens and d channels per head.  Integer sums are exact in any
  order (float32 holds integers below 2^24 exactly), so this changes no value.
* a Hadamard product of two spike tensors becomes :class:`~spikec.ir.AndNode`.

A product with no binary operand stays and is reported as not spike-driven.
"""

from __future__ import annotations

from spikec.ir import AddressedAccumulationNode, AndNode, Graph, Kind, MatMulNode, MulNode

from .base import NameSource, PassReport, PassResult, sole_user, substitute, where

NAME = "spike_matmul_to_addressed_accumulation"


def _dims(graph: Graph, v: str) -> tuple[int, int]:
    f = graph.types[v].features
    return f[-2], f[-1]


def _reassociate(graph: Graph, report: PassReport) -> Graph:
    names = NameSource(graph)
    nodes = {n.name: n for n in graph.nodes}
    drop: set[str] = set()
    for m2 in graph.nodes:
        if not isinstance(m2, MatMulNode):
            continue
        for side in (0, 1):
            inner = graph.producer(m2.inputs[side])
            if not isinstance(inner, MatMulNode) or sole_user(graph, inner.name) is not m2 or inner.name in drop:
                continue
            if side == 0:  # (A B) C
                a, b, c = inner.inputs[0], inner.inputs[1], m2.inputs[1]
            else:  # A (B C)
                a, b, c = m2.inputs[0], inner.inputs[0], inner.inputs[1]
            if not all(graph.types[v].kind.is_integer for v in (a, b, c)):
                report.skip(where(m2), "re-association not tried: an operand is real-valued (not exact in floats)")
                continue
            if any(len(graph.types[v].features) != len(graph.types[m2.name].features) for v in (a, b, c)):
                continue
            (n, k), (_, m), (_, p) = _dims(graph, a), _dims(graph, b), _dims(graph, c)
            left_cost = n * k * m + n * m * p  # (AB)C
            right_cost = k * m * p + n * k * p  # A(BC)
            current, other = (left_cost, right_cost) if side == 0 else (right_cost, left_cost)
            if other >= current:
                report.skip(where(m2), f"association kept: {current} <= {other} accumulations per head")
                continue
            new_inner = names(f"{m2.name}:inner")
            if side == 0:
                nodes[inner.name] = MatMulNode(new_inner, (b, c), inner.source)
                nodes[m2.name] = m2.replace(inputs=(a, new_inner))
            else:
                nodes[inner.name] = MatMulNode(new_inner, (a, b), inner.source)
                nodes[m2.name] = m2.replace(inputs=(new_inner, c))
            report.did(where(m2), f"re-associated: {current} -> {other} accumulations per head")
            break
    return graph.rewrite(nodes.values())


def spike_matmul_to_addressed_accumulation(graph: Graph) -> PassResult:
    report = PassReport(NAME)
    graph = _reassociate(graph, report)
    types = graph.types
    out = []
    for n in graph.nodes:
        if isinstance(n, MatMulNode):
            ka, kb = types[n.inputs[0]].kind, types[n.inputs[1]].kind
            if Kind.SPIKE in (ka, kb):
                side = 0 if ka is Kind.SPIKE else 1
                out.append(AddressedAccumulationNode(n.name, n.inputs, n.source, spike_operand=side))
                report.did(where(n), f"matmul -> addressed accumulation (spikes in operand {'AB'[side]})")
                continue
            report.skip(where(n), f"not spike-driven: matmul of {ka.value} x {kb.value} (no binary operand)")
        elif isinstance(n, MulNode):
            ka, kb = types[n.inputs[0]].kind, types[n.inputs[1]].kind
            if ka is Kind.SPIKE and kb is Kind.SPIKE:
                out.append(AndNode(n.name, n.inputs, n.source))
                report.did(where(n), "Hadamard product of spikes -> AND")
                continue
            report.skip(where(n), f"not spike-driven: elementwise product of {ka.value} x {kb.value}")
        out.append(n)
    return PassResult(graph.rewrite(substitute(out, {})), report)
