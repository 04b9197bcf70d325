"""causal_time_conv_to_delays: causal convolutions over time, written as time mixing, as delayed per-step
convolutions.

Pattern: a *region* that starts where the time axis becomes a feature axis (``time_to_features``: the
T steps of ``x`` as axis ``a`` of a one-step value) and ends where that same axis becomes the time axis
again (``features_to_time``), in which every node acts on each position of axis ``a`` alone except
causal convolutions along it:

* permutations (``a`` moves), slices and concatenations along other axes, batch norms over another
  axis, sums of two region values, scalar scalings, activation functions, layer norms / linear layers
  over later axes, softmax along another axis, matmuls of the last two axes: the same operation per
  step, axes renumbered;
* a zero padding of ``a`` in front only, by ``p``, read only by convolutions whose kernel along
  ``a`` has ``k`` taps, dilation ``δ``, stride 1, no padding of their own along ``a`` and
  ``p = δ(k − 1)`` (so the output has T positions: causal).

Algebra: such a convolution is ``y[t] = Σ_j W_j · x[t − p + δj]`` with ``x = 0`` before step 0, that
is ``y[t] = Σ_{d=0}^{k−1} W_{k−1−d} · x[t − δd]``: a sum over delays ``δd`` of per-step
convolutions (the other axes' geometry; a linear layer when ``a`` was the only spatial axis) of the
delayed input (:class:`~spikec.ir.DelayNode`), the bias in the undelayed term.  Exact in real
arithmetic; in float32 the sum runs in another order (ulps).  The result is causal and per step: a
stepping target runs it with synaptic delays instead of buffering all T steps, and NIR writes it
with ``Delay`` nodes.

Did not fire: the report names the node that reads the time axis otherwise (a softmax over it, a
reshape through it, a padding at its end ...): real time mixing, left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from spikec.ir import (
    ActivationNode,
    AddNode,
    BatchNormNode,
    ConcatNode,
    ConvNode,
    DelayNode,
    FeaturesToTimeNode,
    Graph,
    LayerNormNode,
    LinearNode,
    MatMulNode,
    Node,
    PadNode,
    PermuteNode,
    ScaleNode,
    SliceNode,
    SoftmaxNode,
    TimeToFeaturesNode,
)

from .base import NameSource, PassReport, PassResult, substitute, where

NAME = "causal_time_conv_to_delays"


@dataclass(frozen=True)
class _Step:
    """A region value seen per step: ``value`` (a value of the new graph, time-stepped) holds it
    with feature axis ``axis`` (of the region value) as its time axis; ``front_pad`` zero steps
    are still to be added in front (a padding only a causal convolution may read)."""

    value: str
    axis: int
    front_pad: int = 0


class _NotPerStep(Exception):
    """The region reads its time axis otherwise: the reason, naming the node."""


class _Rewriter:
    def __init__(self, graph: Graph, names: NameSource):
        self.graph = graph
        self.types = graph.types
        self.names = names  # shared by the regions: new names never collide
        self.new: list[Node] = []
        self.delays: dict[tuple[str, int], str] = {}

    def emit(self, cls, base: str, inputs, source: str, **attrs) -> str:
        node = cls(name=self.names(base), inputs=tuple(inputs), source=source, **attrs)
        self.new.append(node)
        return node.name

    def delayed(self, value: str, steps: int, source: str) -> str:
        if steps == 0:
            return value
        key = (value, steps)
        if key not in self.delays:
            self.delays[key] = self.emit(DelayNode, f"{value}:delay{steps}", [value], source, steps=steps)
        return self.delays[key]

    # --- one region node, its inputs already per step -----------------------------------------------
    def rewrite(self, n: Node, ins: list[_Step]) -> _Step:
        if any(s.front_pad for s in ins) and not isinstance(n, ConvNode):
            raise _NotPerStep(f"{where(n)} reads a value padded in front along time (only a causal convolution may)")
        if isinstance(n, PermuteNode):
            (x,) = ins
            a = n.perm.index(x.axis)
            rest = [p - (p > x.axis) for p in n.perm if p != x.axis]
            v = x.value if rest == sorted(rest) else self.emit(PermuteNode, n.name, [x.value], n.source, perm=tuple(rest))
            return _Step(v, a)
        if isinstance(n, (SliceNode, ConcatNode, BatchNormNode)):
            a = ins[0].axis
            if any(s.axis != a for s in ins) or n.axis == a:
                raise _NotPerStep(f"{where(n)} acts along the time axis")
            return _Step(self.emit(type(n), n.name, [s.value for s in ins], n.source,
                                   **{**_fields(n), "axis": n.axis - (n.axis > a)}), a)
        if isinstance(n, AddNode):
            a, b = ins
            if a.axis != b.axis or self.types[n.inputs[0]].features != self.types[n.inputs[1]].features:
                raise _NotPerStep(f"{where(n)} adds values with their time axes apart (or broadcasts)")
            return _Step(self.emit(AddNode, n.name, [a.value, b.value], n.source), a.axis)
        if isinstance(n, ScaleNode):
            (x,) = ins
            if np.ndim(n.factor) and np.size(n.factor) != 1:
                raise _NotPerStep(f"{where(n)} scales by an array (it may vary along time)")
            return _Step(self.emit(ScaleNode, n.name, [x.value], n.source, factor=n.factor, mode=n.mode), x.axis)
        if isinstance(n, (ActivationNode, LayerNormNode, SoftmaxNode, LinearNode, MatMulNode)):
            return self.per_position(n, ins)
        if isinstance(n, PadNode):
            return self.pad(n, ins[0])
        if isinstance(n, ConvNode):
            return self.conv(n, ins[0])
        raise _NotPerStep(f"{where(n)} ({n.op}) reads the time axis")

    def per_position(self, n: Node, ins: list[_Step]) -> _Step:
        """Operations on other axes than time: elementwise, a layer norm or linear layer over the last
        axes, a softmax along another axis, a matmul of the last two axes."""
        a, nd = ins[0].axis, len(self.types[n.inputs[0]].features)
        last = {LayerNormNode: getattr(n, "normalized_ndim", 0), LinearNode: 1, MatMulNode: 2}.get(type(n), 0)
        if any(s.axis != a for s in ins) or a >= nd - last or getattr(n, "axis", None) in (a, a - nd):
            raise _NotPerStep(f"{where(n)} ({n.op}) reads the time axis")
        attrs = _fields(n)
        if isinstance(n, SoftmaxNode):
            attrs["axis"] = n.axis % nd - (n.axis % nd > a)
        return _Step(self.emit(type(n), n.name, [s.value for s in ins], n.source, **attrs), a)

    def pad(self, n: PadNode, x: _Step) -> _Step:
        if x.axis == 0:
            raise _NotPerStep(f"{where(n)} pads with time as the channel axis")
        lo, hi = n.pads[x.axis - 1]
        if hi or (lo and (np.ndim(n.value) or float(n.value) != 0.0)):
            raise _NotPerStep(f"{where(n)} pads the time axis at its end or with a non-zero value")
        rest = tuple(p for i, p in enumerate(n.pads) if i != x.axis - 1)
        v = x.value
        if any(any(p) for p in rest):
            v = self.emit(PadNode, n.name, [v], n.source, pads=rest, value=n.value)
        return _Step(v, x.axis, x.front_pad + lo)

    def conv(self, n: ConvNode, x: _Step) -> _Step:
        i = x.axis - 1  # the time axis among the spatial axes
        if i < 0:
            raise _NotPerStep(f"{where(n)} convolves with time as the channel axis")
        k, delta = n.weight.shape[2 + i], n.dilation[i]
        if n.stride[i] != 1 or n.padding[i] or x.front_pad != delta * (k - 1):
            raise _NotPerStep(f"{where(n)} is not causal along time (kernel {k}, dilation {delta}, stride "
                              f"{n.stride[i]}, padding {n.padding[i]}, front padding {x.front_pad})")
        spatial = [j for j in range(n.spatial_dims) if j != i]
        if not spatial and n.groups != 1:
            raise _NotPerStep(f"{where(n)} is a grouped convolution over time alone")
        terms = []
        for d in range(k):
            w = np.take(n.weight, k - 1 - d, axis=2 + i)
            bias = n.bias if d == 0 else None
            src = self.delayed(x.value, delta * d, n.source)
            base = n.name if k == 1 else f"{n.name}:tap{d}"
            if spatial:
                terms.append(self.emit(ConvNode, base, [src], n.source, weight=w, bias=bias,
                                       stride=tuple(n.stride[j] for j in spatial),
                                       padding=tuple(n.padding[j] for j in spatial),
                                       dilation=tuple(n.dilation[j] for j in spatial), groups=n.groups))
            else:  # a convolution over time alone: per step, a linear map of the channels
                terms.append(self.emit(LinearNode, base, [src], n.source, weight=w, bias=bias))
        total = terms[0]
        for j, t in enumerate(terms[1:], 1):
            total = self.emit(AddNode, n.name if j == k - 1 else f"{n.name}:sum{j}", [total, t], n.source)
        return _Step(total, x.axis)


def _fields(n: Node) -> dict:
    return {f.name: getattr(n, f.name) for f in fields(n) if f.name not in ("name", "inputs", "source")}


def _region(graph: Graph, start: TimeToFeaturesNode) -> tuple[list[Node], list[FeaturesToTimeNode]]:
    """The nodes that read ``start``'s value and what they make of it, up to the ``features_to_time``
    nodes that end the region, in graph order; raises :class:`_NotPerStep` when one of them also
    reads a value from outside the region."""
    inside, ends, todo = {start.name}, [], [start.name]
    while todo:
        for u in graph.users(todo.pop()):
            if u.name in inside:
                continue
            inside.add(u.name)
            if isinstance(u, FeaturesToTimeNode):
                ends.append(u)
            else:
                todo.append(u.name)
    nodes = [n for n in graph.nodes if n.name in inside and n.name != start.name]
    outside = next((n for n in nodes for i in n.inputs if i not in inside), None)
    if outside is not None:
        raise _NotPerStep(f"{where(outside)} reads a value of the time-mixed region and one from outside")
    return nodes, ends


def causal_time_conv_to_delays(graph: Graph) -> PassResult:
    report = PassReport(NAME)
    names = NameSource(graph)
    insert: dict[str, list[Node]] = {}  # start -> the nodes replacing its region
    mapping: dict[str, str] = {}
    drop: set[str] = set()
    claimed: set[str] = set()
    for start in [n for n in graph.nodes if isinstance(n, TimeToFeaturesNode)]:
        if start.name in claimed:
            continue
        try:
            nodes, ends = _region(graph, start)
            rw = _Rewriter(graph, names)
            steps = {start.name: _Step(start.inputs[0], start.axis)}
            for n in nodes:
                ins = [steps[i] for i in n.inputs]
                if isinstance(n, FeaturesToTimeNode):
                    (x,) = ins
                    if x.axis != n.axis or x.front_pad:
                        raise _NotPerStep(f"{where(n)} makes another axis the time axis")
                    steps[n.name] = x
                else:
                    steps[n.name] = rw.rewrite(n, ins)
        except _NotPerStep as e:
            report.skip(where(start), str(e))
            continue
        claimed |= {start.name, *(n.name for n in nodes)}
        insert[start.name] = rw.new
        drop |= {start.name, *(n.name for n in nodes)}
        mapping.update({e.name: steps[e.name].value for e in ends})
        convs = [n for n in nodes if isinstance(n, ConvNode)]
        taps = sum(n.weight.shape[2 + steps[n.inputs[0]].axis - 1] for n in convs)
        longest = max((k[1] for k in rw.delays), default=0)
        report.did(where(start), f"{len(convs)} causal convolution(s) over time as {taps} delayed per-step taps "
                                 f"(delays up to {longest} steps)" if longest
                   else f"{len(convs)} convolution(s) over time of kernel 1: per-step convolutions" if convs
                   else "time moved into the features and back around per-step operations only: per step")
    if not report.fired:
        return PassResult(graph, report)
    out: list[Node] = []
    for n in graph.nodes:
        if n.name in insert:
            out.extend(insert[n.name])
        out.append(n)
    nodes = substitute(out, mapping, drop)
    return PassResult(Graph(nodes, name=graph.name, metadata=dict(graph.metadata)).validate(), report)
