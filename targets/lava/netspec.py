"""From the quantized IR to a Lava network description (pure numpy / scipy; no lava import).

The quantized graph is cut into *stages* that become Lava processes:

* the input source (8-bit graded values of the quantized input, one frame per step);
* neuron layers (``loihi_lif``): Lava ``LIF`` / ``LIFReset``, or :class:`procs.ResetLIF` for soft /
  value reset;
* operations Lava has no process for: AND masks, addressed accumulation, max pooling;
* the host tail: everything after the last stage that only leads to the outputs (e.g. the classifier
  on spike counts), run on the host with intref's kernels on the spikes read from Lava.

Everything between stages is linear integer algebra (synapses, sums of synapse outputs into one
neuron, reshapes, permutes, slices, token sums, sum pools, zero padding, power-of-two shifts) and is
*folded* into connection matrices: every stage input is a sum of terms ``M · producer`` with an
integer matrix ``M`` and one weight exponent, each term one Lava ``Dense`` / ``Sparse`` /
``DelaySparse`` connection (or, for a pure index selection into a custom process, a gather inside
the process).  A term whose weights leave Lava's 8-bit range after folding, or whose floor shift
(negative exponent) would be followed by a sum, is refused with the node named.

Timing: each connection adds one step.  Every stage's inputs are balanced to the same latency with
synaptic delays (``DelaySparse``) or, for direct inputs of custom processes, delay relays; the
network computes exactly the intref function, stage outputs shifted by the stage's depth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from spikec import ir
from spikec.errors import UnsupportedError
from spikec.ir.index_maps import broadcast_matrix, conv_matrix, linear_matrix, op_matrix

from ..intref.kernels import lava_effective_weights

STAGE_TYPES = (ir.LoihiNeuronNode, ir.AndNode, ir.AddressedAccumulationNode, ir.MaxPoolNode)
_FOLDABLE = (ir.SynapseNode, ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode,
             ir.AvgPoolNode, ir.PadNode, ir.ShiftNode, ir.RepeatTimeNode)


@dataclass
class Term:
    """``matrix · producer`` scaled by ``2^exp`` (Lava weight exponent)."""

    producer: str
    matrix: sp.csr_matrix  # [n_value, n_producer] integer
    exp: int = 0
    synapse: Optional[str] = None  # the synapse node on this path (at most one)
    floored: bool = False  # a negative exponent was applied (no sums may follow)

    def is_gather(self) -> bool:
        m = self.matrix
        return self.exp == 0 and self.synapse is None and m.nnz == m.shape[0] and np.all(m.data == 1) \
            and np.all(np.diff(m.indptr) == 1)


@dataclass
class Connection:
    """One Lava connection process: ``a = (W · s) << exp`` into a stage input port."""

    name: str
    src: str
    dst: str
    port: int
    weights: sp.csr_matrix
    exp: int
    sign_mode: str
    graded: bool
    delay: int = 0


@dataclass
class Stage:
    name: str
    kind: str  # source | lif | reset_lif | and | addressed_acc | maxpool
    node: Optional[ir.Node]
    size: int
    depth: int = 0
    inputs: list = field(default_factory=list)  # per port: list[Connection | ("gather", src, idx, relay)]
    graded: bool = False  # output is a graded integer (not a 0/1 spike)


@dataclass
class NetSpec:
    graph: ir.Graph
    T: int
    source: str
    stages: dict[str, Stage]
    connections: list[Connection]
    host_nodes: list[str]  # nodes evaluated on the host after the network
    recorded: list[str]  # stage outputs read back (all of them)

    @property
    def latency(self) -> int:
        return max(s.depth for s in self.stages.values())


# ------------------------------------------------------------------------------------------------
# matrices of the linear integer operations (index maps: :mod:`spikec.ir.index_maps`)
# ------------------------------------------------------------------------------------------------


def synapse_matrix(n: ir.SynapseNode, in_t: ir.TensorType, out_t: ir.TensorType) -> sp.csr_matrix:
    w = np.asarray(n.weight, np.int64)
    if n.layout == "conv":
        return conv_matrix(w, in_t.features, n.stride, n.padding, n.dilation, n.groups, out_t.features)
    return linear_matrix(w, in_t.features)


def _foldable_matrix(n: ir.Node, in_t: ir.TensorType, out_t: ir.TensorType) -> sp.csr_matrix:
    """The index map of a data-movement / summing node between stages, or the reason Lava cannot fold it."""
    if isinstance(n, ir.ReduceNode) and (n.over_time or n.reduce != "sum"):
        raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) over time / not a sum cannot be folded")
    if isinstance(n, ir.PadNode) and (isinstance(n.value, np.ndarray) or n.value != 0):
        raise UnsupportedError(f"lava: padding {n.name} ({n.source}) with a non-zero value cannot be folded")
    return op_matrix(n, in_t, out_t)


# ------------------------------------------------------------------------------------------------
# linearisation of stage inputs
# ------------------------------------------------------------------------------------------------


def _linearize(graph: ir.Graph, value: str, stages: set[str], source: str, memo: dict) -> list[Term]:
    if value in memo:
        return memo[value]
    n = graph.producer(value)
    t = graph.types[value]
    if value in stages or value == source:
        terms = [Term(value, sp.identity(t.numel, dtype=np.int64, format="csr"))]
    elif isinstance(n, ir.SynapseNode):
        if n.bias is not None:
            raise UnsupportedError(f"lava: synapse {n.name} ({n.source}) has a bias but feeds the network")
        inner = _linearize(graph, n.inputs[0], stages, source, memo)
        w = synapse_matrix(n, graph.types[n.inputs[0]], t)
        terms = []
        for tm in inner:
            if tm.synapse is not None:
                raise UnsupportedError(f"lava: synapses {tm.synapse} and {n.name} in a row cannot be folded")
            terms.append(Term(tm.producer, (w @ tm.matrix).tocsr(), tm.exp + n.weight_exp, n.name,
                              tm.floored or n.weight_exp < 0))
    elif isinstance(n, ir.AddNode):
        terms = _linearize(graph, n.inputs[0], stages, source, memo) + _linearize(graph, n.inputs[1], stages, source, memo)
    elif isinstance(n, ir.ShiftNode):
        terms = [Term(tm.producer, tm.matrix, tm.exp + n.shift, tm.synapse, tm.floored or n.shift < 0)
                 for tm in _linearize(graph, n.inputs[0], stages, source, memo)]
    elif isinstance(n, _FOLDABLE):
        m = _foldable_matrix(n, graph.types[n.inputs[0]], t)
        sums = isinstance(n, (ir.ReduceNode, ir.AvgPoolNode))
        terms = []
        for tm in _linearize(graph, n.inputs[0], stages, source, memo):
            if sums and tm.floored:
                raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) sums values that a negative weight "
                                       "exponent already floored; Lava applies the exponent after the sum")
            terms.append(Term(tm.producer, (m @ tm.matrix).tocsr(), tm.exp, tm.synapse, tm.floored))
    else:
        raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) has no Lava form between stages")
    memo[value] = terms
    return terms


def _sign_mode(w: sp.csr_matrix) -> str:
    if w.nnz == 0 or w.data.min() >= 0:
        return "exc"
    if w.data.max() <= 0:
        return "inh"
    return "mixed"


def build_netspec(graph: ir.Graph) -> NetSpec:
    """Cut a quantized graph into Lava stages and connections (see module docstring)."""
    graph.validate()
    qin = [n for n in graph.nodes if isinstance(n, ir.QuantizeInputNode)]
    if len(qin) != 1:
        raise UnsupportedError("lava: expected one quantized input")
    source = qin[0].name
    T = max(graph.types[n.name].time for n in graph.nodes)
    stage_names = [n.name for n in graph.nodes if isinstance(n, STAGE_TYPES)]
    stage_set = set(stage_names)

    # host tail: nodes not on any path into a stage
    feeds_stage: set[str] = set()
    for name in stage_names:
        stack = list(graph[name].inputs)
        while stack:
            v = stack.pop()
            if v in feeds_stage or v in stage_set or v == source:
                continue
            feeds_stage.add(v)
            stack.extend(graph[v].inputs)
    host = [n.name for n in graph.nodes if n.name not in stage_set and n.name not in feeds_stage
            and n.name != source and not isinstance(n, ir.InputNode)]

    stages: dict[str, Stage] = {source: Stage(source, "source", qin[0], graph.types[source].numel, 0, graded=True)}
    connections: list[Connection] = []
    memo: dict = {}
    for name in stage_names:
        n = graph[name]
        kind = {ir.AndNode: "and", ir.AddressedAccumulationNode: "addressed_acc", ir.MaxPoolNode: "maxpool"}.get(type(n))
        if isinstance(n, ir.LoihiNeuronNode):
            kind = "lif" if n.reset == "zero" and n.v_init == 0 else "reset_lif"
        st = Stage(name, kind, n, graph.types[name].numel, graded=kind in ("addressed_acc",) or
                   (kind == "maxpool" and graph.types[name].kind is not ir.Kind.SPIKE))
        ports = [list(n.inputs)] if isinstance(n, ir.LoihiNeuronNode) else [[i] for i in n.inputs]
        port_terms = []
        for values in ports:
            terms = [tm for v in values for tm in _linearize(graph, v, stage_set, source, memo)]
            if kind == "and":  # an AND broadcasts its operands to the output shape: fold that selection in
                b = broadcast_matrix(graph.types[values[0]].features, graph.types[name].features)
                terms = [Term(tm.producer, (b @ tm.matrix).tocsr(), tm.exp, tm.synapse, tm.floored) for tm in terms]
            port_terms.append(terms)
        # depth: connections add one step; gathers into custom processes add none
        arrivals = []
        for p, terms in enumerate(port_terms):
            for tm in terms:
                direct = kind != "lif" and kind != "reset_lif" and len(terms) == 1 and tm.is_gather()
                arrivals.append((p, tm, direct, stages[tm.producer].depth + (0 if direct else 1)))
        depth = max(a[3] for a in arrivals)
        st.depth = depth
        for p, tm, direct, arrive in arrivals:
            delay = depth - arrive
            if direct:
                idx = tm.matrix.indices.astype(np.int64)
                st.inputs.append(("gather", p, tm.producer, idx, delay))
                continue
            w = tm.matrix.tocsr()
            w.sum_duplicates()
            mode = _sign_mode(w)
            dense = w.toarray()
            if not np.array_equal(lava_effective_weights(dense, mode) if w.nnz else dense, dense):
                raise UnsupportedError(
                    f"lava: the connection {tm.producer} -> {name} (through {tm.synapse or 'data movement'}) has weights "
                    f"outside Lava's 8-bit {mode} range after folding (e.g. sums of weights); max |w| {np.abs(w.data).max()}")
            if delay > 62:
                raise UnsupportedError(f"lava: balancing {tm.producer} -> {name} needs a delay of {delay} > 62 steps")
            conn = Connection(f"{tm.producer}->{name}#{len(connections)}", tm.producer, name, p, w, tm.exp, mode,
                              graded=stages[tm.producer].graded, delay=delay)
            connections.append(conn)
            st.inputs.append(conn)
        stages[name] = st
    # every stage output is read back: the host recomputes the rest (e.g. the classifier) from them
    return NetSpec(graph, T, source, stages, connections, host, list(stage_names))
