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
# index maps of the linear integer operations (flattened, row-major features)
# ------------------------------------------------------------------------------------------------


def _select(out_from_in: np.ndarray, n_in: int) -> sp.csr_matrix:
    """Matrix with a 1 at (o, out_from_in[o]) for out_from_in[o] >= 0."""
    rows = np.nonzero(out_from_in >= 0)[0]
    return sp.csr_matrix((np.ones(len(rows), np.int64), (rows, out_from_in[rows])), shape=(len(out_from_in), n_in))


def conv_matrix(weight: np.ndarray, in_feats, stride, padding, dilation, groups, out_feats,
                dtype=np.int64) -> sp.csr_matrix:
    """Unrolled convolution: [prod(out_feats), prod(in_feats)] with the kernel entries (``dtype``)."""
    cout, cin_g = weight.shape[:2]
    k = weight.shape[2:]
    nd = len(k)
    out_sp, in_sp = out_feats[1:], in_feats[1:]
    cout_g = cout // groups
    rows, cols, vals = [], [], []
    grids = np.meshgrid(*[np.arange(o) for o in out_sp], indexing="ij")
    out_pos = [g.reshape(-1) for g in grids]
    n_out_sp = int(np.prod(out_sp))
    for co in range(cout):
        g = co // cout_g
        for ci_l in range(cin_g):
            ci = g * cin_g + ci_l
            for kk in np.ndindex(*k):
                w = weight[(co, ci_l) + kk]
                if w == 0:
                    continue
                inp = [out_pos[a] * stride[a] - padding[a] + kk[a] * dilation[a] for a in range(nd)]
                ok = np.ones(n_out_sp, bool)
                for a in range(nd):
                    ok &= (inp[a] >= 0) & (inp[a] < in_sp[a])
                in_flat = np.zeros(n_out_sp, np.int64) + ci
                for a in range(nd):
                    in_flat = in_flat * in_sp[a] + inp[a]
                out_flat = co * n_out_sp + np.arange(n_out_sp)
                rows.append(out_flat[ok])
                cols.append(in_flat[ok])
                vals.append(np.full(int(ok.sum()), w, dtype))
    if not rows:
        return sp.csr_matrix((int(np.prod(out_feats)), int(np.prod(in_feats))), dtype=dtype)
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(int(np.prod(out_feats)), int(np.prod(in_feats))))
    return m.tocsr()  # duplicates (none for a convolution) would be summed


def op_matrix(n: ir.Node, in_t: ir.TensorType, out_t: ir.TensorType) -> sp.csr_matrix:
    """The matrix of a linear data-movement / summing node (not synapses)."""
    n_in, n_out = in_t.numel, out_t.numel
    if isinstance(n, (ir.ReshapeNode, ir.RepeatTimeNode)):
        return sp.identity(n_in, dtype=np.int64, format="csr")
    if isinstance(n, ir.PermuteNode):
        return _select(np.arange(n_in).reshape(in_t.features).transpose(n.perm).reshape(-1), n_in)
    if isinstance(n, ir.SliceNode):
        idx = np.arange(n_in).reshape(in_t.features)
        sl = [slice(None)] * len(in_t.features)
        sl[n.axis] = slice(n.start, n.stop)
        return _select(idx[tuple(sl)].reshape(-1), n_in)
    if isinstance(n, ir.ReduceNode):
        if n.over_time or n.reduce != "sum":
            raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) over time / not a sum cannot be folded")
        axes = [a % len(in_t.features) for a in n.axes]
        keep = tuple(1 if i in axes else d for i, d in enumerate(in_t.features))
        out_idx = np.broadcast_to(np.arange(int(np.prod(keep))).reshape(keep), in_t.features).reshape(-1)
        return sp.csr_matrix((np.ones(n_in, np.int64), (out_idx, np.arange(n_in))), shape=(n_out, n_in))
    if isinstance(n, ir.AvgPoolNode):
        c = in_t.features[0]
        ones = np.ones((c, 1, *n.kernel), np.int64)
        return conv_matrix(ones, in_t.features, n.stride, n.padding, (1,) * len(n.kernel), c, out_t.features)
    if isinstance(n, ir.PadNode):
        if isinstance(n.value, np.ndarray) or n.value != 0:
            raise UnsupportedError(f"lava: padding {n.name} ({n.source}) with a non-zero value cannot be folded")
        out_idx = np.full(n_out, -1)
        pos = np.arange(n_out).reshape(out_t.features)
        sl = (slice(None),) + tuple(slice(lo, lo + d) for (lo, _), d in zip(n.pads, in_t.features[1:]))
        out_idx[pos[sl].reshape(-1)] = np.arange(n_in)
        return _select(out_idx, n_in)
    raise UnsupportedError(f"lava: {n.op} {n.name} is not a linear integer operation")


def synapse_matrix(n: ir.SynapseNode, in_t: ir.TensorType, out_t: ir.TensorType) -> sp.csr_matrix:
    w = np.asarray(n.weight, np.int64)
    if n.layout == "conv":
        return conv_matrix(w, in_t.features, n.stride, n.padding, n.dilation, n.groups, out_t.features)
    lead = int(np.prod(in_t.features[:-1])) if len(in_t.features) > 1 else 1
    return sp.kron(sp.identity(lead, dtype=np.int64), sp.csr_matrix(w), format="csr")


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
        m = op_matrix(n, graph.types[n.inputs[0]], t)
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


def _broadcast_matrix(in_feats, out_feats) -> sp.csr_matrix:
    """Selection matrix of numpy broadcasting from ``in_feats`` to ``out_feats``."""
    aligned = (1,) * (len(out_feats) - len(in_feats)) + tuple(in_feats)
    n_in = int(np.prod(in_feats))
    idx = np.broadcast_to(np.arange(n_in).reshape(aligned), out_feats).reshape(-1)
    return _select(idx, n_in)


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
        for p, values in enumerate(ports):
            terms = [tm for v in values for tm in _linearize(graph, v, stage_set, source, memo)]
            if kind == "and":  # an AND broadcasts its operands to the output shape: fold that selection in
                b = _broadcast_matrix(graph.types[values[0]].features, graph.types[name].features)
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
