"""From the quantized IR to a Lava network description (pure numpy / scipy; no lava import).

The quantized graph is cut into *stages* that become Lava processes:

* the input source (8-bit graded values of the quantized input, one frame per step);
* neuron layers (``loihi_lif``): Lava ``LIF`` / ``LIFReset``, or :class:`procs.ResetLIF` for soft /
  value reset;
* operations Lava has no process for: AND masks, addressed accumulation, max pooling;
* *regions* (:class:`Region`, one :class:`~.procs.process.IntRegion` process each): connected sets
  of nodes that are not spike-driven (integer layer norm, softmax, sigmoid, GELU, ReLU, products
  of two real values, added constants, concatenations, time mixing, 3-d convolutions over time)
  with the nodes around them that cannot fold into connections, evaluated with intref's integer
  semantics (:mod:`.region`);
* the host tail: everything after the last stage that only leads to the outputs (e.g. the classifier
  on spike counts), run on the host with intref's kernels on the spikes read from Lava.

Everything between stages is linear integer algebra (synapses, sums of synapse outputs into one
neuron, reshapes, permutes, slices, token sums, sum pools, zero padding, power-of-two shifts,
integer multiples) and is *folded* into connections: every stage input is a sum of terms ``M · producer`` with an integer
matrix ``M`` and one weight exponent, each term one Lava connection (or, for a pure index selection
into a custom process, a gather inside the process).  A term whose weights leave Lava's 8-bit range
after folding, or whose floor shift (negative exponent) would be followed by a sum, has no folded
form: it runs in a region process (below).

An integer multiple ``c·x`` (the quantizer's negations and scale alignments) is a factor of the
terms through it, folded into their weights: its sign into the weights, a power of two
``2^b`` into the exponent (``(W·2^b·s) << e = (W·s) << (e + b)``), other magnitudes as one
connection per set bit ``b`` of |c| (``c·W·s = Σ_b (±W·s) << b``, each keeping the 8-bit
mantissas) when no floor follows, else into the mantissas (``c·W``, 8-bit checked).  A multiple of a
value already floored by a negative exponent has no folded form (Lava floors after the weights): it
runs in a region process.

A synapse whose output channels have exponents of their own
(:meth:`~spikec.ir.SynapseNode.channel_groups`) is one connection per exponent, as on Loihi, except
in a :class:`~.procs.process.ConvConnection`, which applies each channel's exponent itself (one Lava
process standing for the connections of one weight-shared map; the resource report counts them).

``M`` is never unrolled when it holds a weight-shared map: a term through a synapse is kept
factored, ``M = post · K · pre``, with ``K`` the synapse's kernel (a convolution, or a linear map
applied at every leading position) and ``pre`` / ``post`` the index maps of the data movement
around it.  When ``pre`` is an injective partial selection and ``post`` a partial selection (the
reshapes, permutes, slices, zero padding and broadcasts of real models), every entry of ``M`` is
an entry of the kernel, so the 8-bit check is a check of the kernel, and the term becomes one
:class:`~.procs.process.ConvConnection` whose memory is the kernel plus two index vectors
(:class:`ConvWeights`).  Otherwise (a sum or a repetition around the kernel, or a linear layer
without shared positions, which is dense anyway) ``M`` is built as a sparse matrix and becomes a
``Dense`` / ``Sparse``; its 8-bit check runs on its stored entries (never on a dense copy).  Before
anything is unrolled, :func:`~.resources.estimate_memory` prices the network (``max_memory``).

Regions (:func:`plan_region_nodes`, :func:`group_regions`).  A region starts at every node of
:data:`REGION_SEEDS` and takes in every node on a stage-free path between two region nodes, then
the linear nodes whose inputs all are region values (a shift after a product: the region sends the
narrower value), then every stage or region input that does not fold into 8-bit connections (a
bias, a sum after a floor, weights beyond 8 bits), until all remaining inputs fold.  Region nodes
are grouped into one process per connected set with the same number of stages before them, so
no region feeds a stage that feeds it back.  A region's inputs arrive like a custom stage's
(gathers or connections, balanced); the region values that stages read are its outputs,
``"region_out"`` stages that connections start from (graded: ``num_message_bits`` 24, int32).
A region output is a T-step value (streamed one step per step) or a *one-step* value (time
mixed into the features, e.g. a residual stream kept as ``b (n t) m`` across transformer blocks):
the region sends it on each of the T output steps of its sample (held by the sender, as the source
streams a one-step input), so another region reads it across stages exactly as intref broadcasts
it (a buffering region keeps the copy of its sample's step 0, a per-step region each step's), and
a connection folding it into a T-step input adds it at every step.  What no region kernel runs, a
one-step value read by a stage that runs on one step, other step counts, or more than
:data:`MAX_PORTS` ports is refused naming the node and its module.

Timing: each connection adds one step.  Every stage's inputs are balanced to the same latency with
synaptic delays (``DelaySparse``) or, for direct inputs of custom processes, delay relays; the
network computes exactly the intref function, stage outputs shifted by the stage's depth.  A
per-step region adds no step; a buffering region (time mixing: the output exists once all T steps
of a sample have arrived) adds T − 1 (0 when its inputs are one-step values) (:attr:`Region.added_latency`, reported as
:attr:`NetSpec.time_mixing_latency` in the latency).  A one-step value sent to another region adds
no step of its own: it is balanced like any other input (its copies arrive with the receiver's
other inputs of the same sample steps), so a region reading it after a neuron stage evaluates as
soon as its T-step inputs are in (e.g. two Spikeformer blocks: 2 · (T − 1) steps of time mixing).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional, Union

import numpy as np
import scipy.sparse as sp

from spikec import ir, loihi
from spikec.errors import SpikecError, UnsupportedError
from spikec.ir.graph import topological_sort
from spikec.ir.index_maps import (
    as_gather,
    broadcast_matrix,
    conv_apply,
    conv_apply_transposed,
    conv_matrix,
    linear_apply,
    linear_matrix,
    op_matrix,
)

from ..intref.executor import integer_factor
from ..intref.kernels import lava_effective_weights
from .region import MAX_PORTS, mixes_time, runs

STAGE_TYPES = (ir.LoihiNeuronNode, ir.AndNode, ir.AddressedAccumulationNode, ir.MaxPoolNode)
_FOLDABLE = (ir.SynapseNode, ir.AddNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode, ir.ReduceNode,
             ir.AvgPoolNode, ir.PadNode, ir.ShiftNode, ir.RepeatTimeNode)


# ------------------------------------------------------------------------------------------------
# the weight-shared map of a synapse, and a connection through it (never unrolled)
# ------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class SharedMap:
    """A synapse node's map ``K`` ``[n_out, n_in]`` over flattened features, held as its kernel:
    a convolution (``layout "conv"``) or a matrix applied at every leading feature position
    (``"linear"``).  ``apply`` is ``K · x`` (exact integers), ``matrix()`` the unrolled ``K``."""

    node: ir.SynapseNode
    in_feats: tuple
    out_feats: tuple

    @property
    def layout(self) -> str:
        return self.node.layout

    @property
    def weight(self) -> np.ndarray:
        return self.node.weight

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_feats))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_feats))

    @property
    def shared(self) -> bool:
        """Whether one weight serves several synapses (a convolution, or a linear map at more than
        one position); a linear map at one position is a dense matrix."""
        return self.layout == "conv" or len(self.in_feats) > 1 and int(np.prod(self.in_feats[:-1])) > 1

    @property
    def stored(self) -> int:
        """Weights stored (each shared weight once, as netx counts a convolution)."""
        return int(np.count_nonzero(self.weight))

    def apply(self, x: np.ndarray, weight: Optional[np.ndarray] = None) -> np.ndarray:
        w = self.weight if weight is None else weight
        x = np.asarray(x).reshape(self.in_feats)
        n = self.node
        if self.layout == "conv":
            return conv_apply(x, w, n.stride, n.padding, n.dilation, n.groups, self.out_feats[1:]).reshape(-1)
        return linear_apply(x, w).reshape(-1)

    def apply_transposed(self, y: np.ndarray, weight: Optional[np.ndarray] = None) -> np.ndarray:
        w = self.weight if weight is None else weight
        y = np.asarray(y, np.int64).reshape(self.out_feats)
        n = self.node
        if self.layout == "conv":
            return conv_apply_transposed(y, w, self.in_feats[1:], n.stride, n.padding, n.dilation, n.groups).reshape(-1)
        return linear_apply(y, np.asarray(w, np.int64).T).reshape(-1)

    def matrix(self) -> sp.csr_matrix:
        return synapse_matrix(self.node, self.in_feats, self.out_feats)

    @property
    def mantissas(self) -> np.ndarray:
        """The kernel's 8-bit mantissas (:meth:`~spikec.ir.SynapseNode.mantissas`)."""
        return self.node.mantissas()

    def out_shift(self) -> Optional[np.ndarray]:
        """Per output element of ``K``, its channel's exponent above the common one (None: all 0)."""
        n = self.node
        if n.channel_exp is None:
            return None
        shift = n.channel_shift()
        if self.layout == "conv":  # [C_out, *spatial]
            return np.repeat(shift, self.n_out // len(shift))
        return np.tile(shift, self.n_out // len(shift))  # [..., C_out]

    def indicator(self) -> np.ndarray:
        return (np.asarray(self.weight) != 0).astype(np.int64)

    def times(self, k: int) -> "SharedMap":
        """The same map with every weight multiplied by the integer ``k``."""
        n = self.node
        return SharedMap(n.replace(weight=np.asarray(n.weight) * k), self.in_feats, self.out_feats)


def _gather_apply(idx: Optional[np.ndarray], x: np.ndarray) -> np.ndarray:
    if idx is None:
        return x
    return np.where(idx >= 0, x[np.maximum(idx, 0)], 0)


@dataclass(eq=False)
class ConvWeights:
    """The connection matrix ``M = post · K · pre`` ``[n_dst, n_src]`` of a term through a
    weight-shared synapse, held factored: ``pre`` gathers the kernel's input from the producer
    (``idx`` with −1 for a zero, injective), ``K`` is the :class:`SharedMap`, ``post`` gathers the
    stage input from the kernel's output (None: identity).  Every entry of ``M`` is an entry of the
    kernel.  ``nnz`` / ``row_nnz`` / ``col_nnz`` count the synapses of the unrolled ``M`` exactly,
    from the kernel's non-zero pattern (convolutions of 0/1 masks), without unrolling it."""

    core: SharedMap
    pre: Optional[np.ndarray]
    post: Optional[np.ndarray]
    n_src: int

    def __post_init__(self):
        self._rows = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.core.n_out if self.post is None else len(self.post), self.n_src)

    def row_nnz(self) -> np.ndarray:
        """Synapses per destination neuron (fan-in)."""
        if self._rows is None:
            mask = np.ones(self.core.n_in, np.int64) if self.pre is None else (self.pre >= 0).astype(np.int64)
            self._rows = _gather_apply(self.post, self.core.apply(mask, self.core.indicator()))
        return self._rows

    def col_nnz(self) -> np.ndarray:
        """Synapses per source neuron (fan-out)."""
        mult = (np.ones(self.core.n_out, np.int64) if self.post is None
                else np.bincount(self.post[self.post >= 0], minlength=self.core.n_out))
        c = self.core.apply_transposed(mult, self.core.indicator())
        if self.pre is None:
            return c
        ok = self.pre >= 0
        return np.bincount(self.pre[ok], weights=c[ok], minlength=self.n_src).astype(np.int64)

    @property
    def nnz(self) -> int:
        """Synapses of the unrolled matrix."""
        return int(self.row_nnz().sum())

    @property
    def stored(self) -> int:
        return self.core.stored

    @property
    def data(self) -> np.ndarray:
        """The distinct non-zero mantissas (what the 8-bit check and the sign mode look at)."""
        w = np.asarray(self.core.mantissas)
        return np.unique(w[w != 0]).astype(np.int64)

    def apply(self, s: np.ndarray) -> np.ndarray:
        """``M · s`` (int64, exact)."""
        return _gather_apply(self.post, self.core.apply(_gather_apply(self.pre, np.asarray(s))))

    def tocsr(self) -> sp.csr_matrix:
        """The unrolled ``M`` (tests and small cases only)."""
        m = self.core.matrix()
        if self.pre is not None:
            m = m @ _gather_matrix(self.pre, self.n_src)
        if self.post is not None:
            m = _gather_matrix(self.post, self.core.n_out) @ m
        return m.tocsr()


def _gather_matrix(idx: np.ndarray, n_in: int) -> sp.csr_matrix:
    rows = np.nonzero(idx >= 0)[0]
    return sp.csr_matrix((np.ones(len(rows), np.int64), (rows, idx[rows])), shape=(len(idx), n_in))


@dataclass(eq=False)
class Unrolled:
    """A term through a synapse that cannot stay factored (a sum or a repetition around the
    kernel, or a dense linear map): ``post · K · pre``, built as a sparse matrix only after the
    memory estimate (:func:`build_netspec`).  ``nnz`` is an upper bound until then."""

    core: SharedMap
    pre: sp.csr_matrix
    post: Optional[sp.csr_matrix]

    @property
    def shape(self) -> tuple[int, int]:
        return (self.core.n_out if self.post is None else self.post.shape[0], self.pre.shape[1])

    @property
    def stored(self) -> int:
        return self.nnz

    def row_nnz(self) -> np.ndarray:
        """Upper bound of the synapses per destination neuron."""
        q = np.diff(self.pre.tocsr().indptr).astype(np.int64)
        r = self.core.apply(q, self.core.indicator())
        if self.post is not None:
            r = (abs(self.post) != 0).astype(np.int64) @ r
        return np.asarray(r, np.int64)

    @property
    def nnz(self) -> int:
        return int(self.row_nnz().sum())

    def build(self) -> sp.csr_matrix:
        m = self.core.matrix() @ self.pre
        if self.post is not None:
            m = self.post @ m
        m = m.tocsr()
        m.sum_duplicates()
        m.eliminate_zeros()
        return m


Weights = Union[sp.csr_matrix, ConvWeights, Unrolled]


@dataclass
class Term:
    """``matrix · producer`` scaled by ``2^exp`` (Lava weight exponent).  With a ``core`` (the
    synapse's weight-shared map) the map is ``post · core · matrix`` instead, kept factored."""

    producer: str
    matrix: sp.csr_matrix  # [n_value, n_producer] integer (with a core: [core.n_in, n_producer])
    exp: int = 0
    synapse: Optional[str] = None  # the synapse node on this path (at most one)
    floored: bool = False  # a negative exponent was applied (no sums may follow)
    core: Optional[SharedMap] = None
    post: Optional[sp.csr_matrix] = None  # [n_value, core.n_out]; None: identity
    factor: int = 1  # an integer multiple of the whole term, folded into its weights by :meth:`expand`
    channel_part: bool = False  # one exponent's channels of a synapse with channel exponents (a Sparse: rows empty)

    def is_gather(self) -> bool:
        m = self.matrix
        return self.core is None and self.exp == 0 and self.synapse is None and self.factor == 1 \
            and m.nnz == m.shape[0] and np.all(m.data == 1) and np.all(np.diff(m.indptr) == 1)

    def then(self, m: sp.csr_matrix) -> "Term":
        """This term followed by the index map ``m``."""
        if self.core is None:
            return replace(self, matrix=(m @ self.matrix).tocsr())
        return replace(self, post=m if self.post is None else (m @ self.post).tocsr())

    def times(self, k: int) -> "Term":
        """This term with its weights (the kernel, or the matrix without one) multiplied by ``k``."""
        if self.core is None:
            return replace(self, matrix=(self.matrix * k).tocsr(), factor=1)
        return replace(self, core=self.core.times(k), factor=1)

    def expand(self) -> list["Term"]:
        """The term as connections' terms with the factor folded in (module docstring): the sign
        into the weights, a power of two into the exponent, other magnitudes one term per set bit
        (no floor follows) or into the weights; then, through a synapse whose channels have
        exponents of their own that will not stay factored, one term per exponent."""
        c = self.factor
        if c == 1:
            terms = [self]
        else:
            mag, sign = abs(c), (1 if c > 0 else -1)
            if mag & (mag - 1) == 0:
                terms = [replace(self.times(sign), exp=self.exp + mag.bit_length() - 1)]
            elif self.core is None or self.floored:
                terms = [self.times(c)]
            else:
                terms = [replace(self.times(sign), exp=self.exp + b) for b in range(mag.bit_length()) if mag >> b & 1]
        return [part for tm in terms for part in tm._per_channel_exponent()]

    def _per_channel_exponent(self) -> list["Term"]:
        n = None if self.core is None else self.core.node
        if n is None or n.channel_exp is None or self._gathers() is not None:
            return [self]
        return [replace(self, core=SharedMap(n.replace(weight=m, weight_exp=e, channel_exp=None), self.core.in_feats,
                                             self.core.out_feats), exp=self.exp - n.weight_exp + e, channel_part=True)
                for e, _, m in n.channel_groups()]

    def _gathers(self) -> Optional[tuple[np.ndarray, Optional[np.ndarray]]]:
        """(pre, post) index vectors when the term stays factored (a :class:`ConvWeights`), else None."""
        pre = as_gather(self.matrix)
        post = None if self.post is None else as_gather(self.post)
        injective = pre is not None and len(np.unique(pre[pre >= 0])) == int((pre >= 0).sum())
        if self.core.shared and injective and (self.post is None or post is not None):
            return pre, post
        return None

    def weights(self, n_src: int) -> Weights:
        """The connection matrix: sparse (no core), factored (:class:`ConvWeights`) or to be
        unrolled (:class:`Unrolled`)."""
        if self.core is None:
            w = self.matrix.tocsr()
            w.sum_duplicates()
            return w
        gathers = self._gathers()
        if gathers is not None:
            pre, post = gathers
            identity = len(pre) == n_src and np.array_equal(pre, np.arange(n_src))
            return ConvWeights(self.core, None if identity else pre, post, n_src)
        return Unrolled(self.core, self.matrix, self.post)


@dataclass
class Connection:
    """One Lava connection process: ``a = (W · s) << exp`` into a stage input port.  ``weights``
    is a sparse matrix (``Dense`` / ``Sparse``) or :class:`ConvWeights` (``ConvConnection``)."""

    name: str
    src: str
    dst: str
    port: int
    weights: Weights
    exp: int
    sign_mode: str
    graded: bool
    delay: int = 0
    synapse: Optional[str] = None  # the synapse node folded in (None: data movement only)
    channel_part: bool = False  # the channels of one exponent of a synapse (the other rows empty)

    def output(self, s: np.ndarray) -> np.ndarray:
        """What the connection process sends for the source vector ``s`` (one step, before its delay),
        in numpy: Lava fixed_pt ``Dense``'s ``(W · s) << exp`` (``>> −exp``: floor), a binary source
        counted as ``s != 0``; a ConvConnection floors each kernel output by its channel's exponent,
        then gathers.  The stage's input current is the sum over its connections."""
        s = np.asarray(s, np.int64)
        if not self.graded:
            s = (s != 0).astype(np.int64)
        w = self.weights
        if isinstance(w, ConvWeights):
            k = w.core
            shift = k.out_shift()
            acc = k.apply(_gather_apply(w.pre, s), k.mantissas)
            return _gather_apply(w.post, loihi.floor_shift(acc, self.exp if shift is None else self.exp + shift))
        m = w.build() if isinstance(w, Unrolled) else w
        return loihi.floor_shift(np.asarray(m @ s, np.int64), self.exp)

    @property
    def loihi_connections(self) -> int:
        """Loihi connections this one stands for: one per channel exponent in a ConvConnection."""
        w = self.weights
        return w.core.node.connections() if isinstance(w, ConvWeights) else 1

    @property
    def kind(self) -> str:
        if isinstance(self.weights, ConvWeights):
            return "conv"
        w = self.weights
        small = w.shape[0] * w.shape[1] <= 1 << 20
        return "dense" if small and not self.channel_part and w.nnz > 0.1 * w.shape[0] * w.shape[1] else "sparse"


@dataclass
class Stage:
    name: str
    kind: str  # source | lif | reset_lif | and | addressed_acc | maxpool | region_out (a value a Region sends)
    node: Optional[ir.Node]
    size: int
    depth: int = 0
    inputs: list = field(default_factory=list)  # per port: list[Connection | ("gather", src, idx, relay)]
    graded: bool = False  # output is a graded integer (not a 0/1 spike)
    mixing: int = 0  # of ``depth``, the steps that buffering (time-mixing) regions added on the way here


@dataclass
class NetSpec:
    graph: ir.Graph
    T: int
    source: str
    stages: dict[str, Stage]
    connections: list[Connection]
    host_nodes: list[str]  # nodes evaluated on the host after the network
    recorded: list[str]  # stage outputs read back (all of them) and region outputs
    memory: Optional[object] = None  # resources.MemoryEstimate of the Lava run
    regions: dict = field(default_factory=dict)  # name -> Region (custom processes running IR nodes)

    @property
    def latency(self) -> int:
        return max(s.depth for s in self.stages.values())

    @property
    def time_mixing_latency(self) -> int:
        """Of :attr:`latency`, the steps that buffering (time-mixing) regions added on the way."""
        return max(s.mixing for s in self.stages.values() if s.depth == self.latency)


# ------------------------------------------------------------------------------------------------
# matrices of the linear integer operations (index maps: :mod:`spikec.ir.index_maps`)
# ------------------------------------------------------------------------------------------------


def synapse_matrix(n: ir.SynapseNode, in_feats, out_feats) -> sp.csr_matrix:
    """The unrolled map of a synapse node (features of its input and output): tests and the terms
    that cannot stay factored only."""
    w = np.asarray(n.weight, np.int64)
    if n.layout == "conv":
        return conv_matrix(w, in_feats, n.stride, n.padding, n.dilation, n.groups, out_feats)
    return linear_matrix(w, in_feats)


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
        core = SharedMap(n, tuple(graph.types[n.inputs[0]].features), tuple(t.features))
        terms = []
        for tm in inner:
            if tm.synapse is not None:
                raise UnsupportedError(f"lava: synapses {tm.synapse} and {n.name} in a row cannot be folded")
            terms.append(Term(tm.producer, tm.matrix, tm.exp + n.weight_exp, n.name, tm.floored or n.weight_exp < 0, core,
                              factor=tm.factor))
    elif isinstance(n, ir.AddNode):
        terms = _linearize(graph, n.inputs[0], stages, source, memo) + _linearize(graph, n.inputs[1], stages, source, memo)
    elif isinstance(n, ir.ShiftNode):
        terms = []
        for tm in _linearize(graph, n.inputs[0], stages, source, memo):
            if tm.floored and n.shift > 0:  # ⌊a·2^e⌋·2^s is not ⌊a·2^(e+s)⌋
                raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) shifts left a value that a negative weight "
                                       "exponent already floored; Lava applies the exponent after the weights")
            terms.append(replace(tm, exp=tm.exp + n.shift, floored=tm.floored or n.shift < 0))
    elif isinstance(n, ir.ScaleNode):
        k = integer_factor(n)
        terms = []
        for tm in _linearize(graph, n.inputs[0], stages, source, memo):
            if tm.floored:
                raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) multiplies a value that a negative weight "
                                       "exponent already floored; Lava applies the exponent after the weights")
            terms.append(replace(tm, factor=tm.factor * k))
    elif isinstance(n, _FOLDABLE):
        m = _foldable_matrix(n, graph.types[n.inputs[0]], t)
        sums = isinstance(n, (ir.ReduceNode, ir.AvgPoolNode))
        terms = []
        for tm in _linearize(graph, n.inputs[0], stages, source, memo):
            if sums and tm.floored:
                raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) sums values that a negative weight "
                                       "exponent already floored; Lava applies the exponent after the sum")
            terms.append(tm.then(m))
    else:
        raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) has no Lava form between stages")
    memo[value] = terms
    return terms


def _sign_mode(data: np.ndarray) -> str:
    if data.size == 0 or data.min() >= 0:
        return "exc"
    if data.max() <= 0:
        return "inh"
    return "mixed"


def _check_8bit(data: np.ndarray, what: str) -> str:
    """The sign mode of the stored weights ``data``, or the refusal when Lava would change them."""
    data = np.asarray(data, np.int64)
    mode = _sign_mode(data)
    if data.size and not np.array_equal(lava_effective_weights(data, mode), data):
        raise UnsupportedError(f"lava: the connection {what} has weights outside Lava's 8-bit {mode} range after folding "
                               f"(e.g. sums of weights); max |w| {np.abs(data).max()}")
    return mode



# ------------------------------------------------------------------------------------------------
# regions: what no stock Lava process runs, evaluated by one custom process each
# ------------------------------------------------------------------------------------------------

# kinds that are never folded into connections: non-linear integer kernels, products of two values,
# added constants, concatenations, time mixing, 3-d convolutions (over time), sums over time
REGION_SEEDS = (ir.IntegerKernelNode, ir.MulNode, ir.MatMulNode, ir.AddConstantNode, ir.ConcatNode,
                ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)


def _seeds_region(n: ir.Node) -> bool:
    return (isinstance(n, REGION_SEEDS) or isinstance(n, ir.SynapseNode) and np.ndim(n.weight) == 5
            or isinstance(n, ir.ReduceNode) and n.over_time)


@dataclass
class Region:
    """One custom process (:class:`~.procs.process.IntRegion`) that evaluates ``nodes`` per step
    (:mod:`.region`) from its input values (one port each, fed like a stage input: a gather or
    connections) and sends its output values (one port each; every output is also a
    ``"region_out"`` :class:`Stage` named after its value, the producer connections start from).

    Timing: inputs of sample step τ arrive at depth ``in_depth``.  A per-step region sends the
    outputs of step τ in the same step (``depth = in_depth``).  A *buffered* region (time mixing)
    keeps the T input steps of a sample, evaluates when step L = T − 1 arrives (L = 0 when all its
    inputs are one-step values: :meth:`last_step`), and sends output step k at input step L + k,
    i.e. during the next sample's steps 0 .. L − 1 (``depth = in_depth + L``: the time-mixing
    latency, ``added_latency``).  A one-step output is sent on each of the T output steps (the
    same value): a reader at any depth finds it with its sample's steps, no extra latency."""

    name: str
    nodes: list[str]
    inputs: list[str]  # one input port per value
    outputs: list[str] = field(default_factory=list)  # one output port per value
    buffered: bool = False
    in_depth: int = 0
    depth: int = 0
    ports: list = field(default_factory=list)  # like Stage.inputs: Connection | ("gather", port, src, idx, delay)

    @property
    def added_latency(self) -> int:
        return self.depth - self.in_depth

    def last_step(self, graph: ir.Graph) -> int:
        """The sample step after which a buffered region has all its inputs: T − 1, or 0 when every
        input is a one-step value (e.g. a static input made the time axis): no latency then."""
        return max((graph.types[v].time for v in self.inputs), default=1) - 1


def _closure(start, step, stop) -> set[str]:
    """Values reachable from ``start`` by ``step`` (value -> next values) without entering ``stop``."""
    seen: set[str] = set()
    stack = [v for s in start for v in step(s)]
    while stack:
        v = stack.pop()
        if v in seen or stop(v):
            continue
        seen.add(v)
        stack.extend(step(v))
    return seen


def _linearizable(graph: ir.Graph, value: str, producers: set[str], source: str, memo: dict) -> bool:
    """Whether ``value`` folds into Lava connections from ``producers`` (8-bit weights included,
    checked on what is not unrolled yet); ``memo``: :func:`_linearize`'s, for these producers."""
    try:
        for tm in _linearize(graph, value, producers, source, memo):
            for part in tm.expand():
                w = part.weights(graph.types[part.producer].numel)
                if not isinstance(w, Unrolled):
                    _check_8bit(w.data, value)
    except UnsupportedError:
        return False
    return True


def plan_region_nodes(graph: ir.Graph, stage_set: set[str], source: str, feeds_stage: set[str]) -> set[str]:
    """The nodes custom region processes evaluate (module docstring): the nodes Lava cannot fold
    (:data:`REGION_SEEDS`), everything on a path between two of them that passes no stage (a
    region never sends to a stage that feeds it back), the linear nodes whose inputs all are
    region values (shifts, sums, synapses: the region sends their narrower results), and every
    stage or region input that does not fold into 8-bit connections (e.g. a sum after a floor,
    a bias), until every remaining input folds."""
    def is_stop(v: str) -> bool:
        return v in stage_set or v == source or isinstance(graph[v], ir.InputNode)

    def users(v: str) -> list[str]:
        return [u.name for u in graph.users(v)]

    def followers(region: set[str]) -> set[str]:
        return {n.name for n in graph.nodes if n.name in feeds_stage and n.name not in region and not is_stop(n.name)
                and n.inputs and all(i in region for i in n.inputs) and isinstance(n, (*_FOLDABLE, ir.ScaleNode))}

    region = {n.name for n in graph.nodes if n.name in feeds_stage and _seeds_region(n)}
    while True:
        region |= _closure(region, users, is_stop) & _closure(region, lambda v: list(graph[v].inputs), is_stop)
        while follow := followers(region):
            region |= follow
        wanted = dict.fromkeys(i for n in graph.nodes if n.name in region or n.name in stage_set for i in n.inputs)
        memo: dict = {}
        failing = {v for v in wanted if not is_stop(v) and v not in region
                   and not _linearizable(graph, v, stage_set | region, source, memo)}
        if not failing:
            return region
        region |= failing


def _stage_hops(graph: ir.Graph, stage_set: set[str]) -> dict[str, int]:
    """Per node the most stages on a path from the input to it (the node itself excluded)."""
    hops: dict[str, int] = {}
    for n in graph.nodes:
        hops[n.name] = max((hops[i] + (i in stage_set) for i in n.inputs), default=0)
    return hops


def group_regions(graph: ir.Graph, region_nodes: set[str], stage_set: set[str]) -> list[Region]:
    """Region nodes grouped into processes: connected region nodes with as many stages before them
    (so no process feeds a stage that feeds it: the process graph stays acyclic)."""
    hops = _stage_hops(graph, stage_set)
    parent = {v: v for v in region_nodes}

    def root(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for v in region_nodes:
        for i in graph[v].inputs:
            if i in region_nodes and hops[i] == hops[v]:
                parent[root(i)] = root(v)
    groups: dict[str, list[str]] = {}
    for n in graph.nodes:
        if n.name in region_nodes:
            groups.setdefault(root(n.name), []).append(n.name)
    regions = []
    for k, names in enumerate(groups.values()):
        members = set(names)
        inputs = list(dict.fromkeys(i for v in names for i in graph[v].inputs if i not in members))
        regions.append(Region(f"region{k}:{names[0]}", names, inputs,
                              buffered=any(mixes_time(graph[v]) for v in names)))
    return regions


def _refuse_region(graph: ir.Graph, r: Region, T: int, readers: dict[str, list[str]]) -> None:
    """The reasons a region cannot run (one line naming the node and its module).  ``readers``: per
    value, the stages (not regions) whose inputs read it."""
    for v in r.nodes:
        n = graph[v]
        if not runs(n):
            raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) has no Lava form (neither a stage, nor "
                                   "foldable into connections, nor run by a region process)")
        if isinstance(n, ir.ReduceNode) and n.reduce != "sum" or \
                isinstance(n, ir.AvgPoolNode) and (n.divisor_override != 1 or n.ceil_mode):
            raise UnsupportedError(f"lava: {n.op} {n.name} ({n.source}) in a region is not an integer sum (a region "
                                   "process sums integers only)")
    for v in r.outputs:
        n, steps = graph[v], graph.types[v].time
        if steps not in (1, T):
            raise UnsupportedError(f"lava: the time-mixed value {n.name} ({n.source}, {steps} steps) leaves its region; "
                                   f"only {T}-step and one-step values can be streamed")
        short = [s for s in readers.get(v, []) if graph.types[s].time != T]
        if steps != T and short:
            s = graph[short[0]]
            raise UnsupportedError(f"lava: the time-mixed value {n.name} ({n.source}, {steps} step) leaves its region "
                                   f"into the stage {s.name} ({s.source}), which runs on {graph.types[s.name].time} step; "
                                   f"stages run on the {T} steps of a sample")
    if len(r.inputs) > MAX_PORTS or len(r.outputs) > MAX_PORTS:  # connections into one port add
        raise UnsupportedError(f"lava: region {r.name} needs {len(r.inputs)} inputs and {len(r.outputs)} outputs, "
                               f"more than the {MAX_PORTS} ports of a region process")


# ------------------------------------------------------------------------------------------------
# the network
# ------------------------------------------------------------------------------------------------


def _feeds_stage(graph: ir.Graph, stage_names: list[str], stage_set: set[str], source: str) -> set[str]:
    """Every node on a path into a stage (the rest, after the network, is the host tail)."""
    return _closure(stage_names, lambda v: graph[v].inputs, lambda v: v in stage_set or v == source)


def _stage(graph: ir.Graph, n: ir.Node) -> Stage:
    kind = {ir.AndNode: "and", ir.AddressedAccumulationNode: "addressed_acc", ir.MaxPoolNode: "maxpool"}.get(type(n))
    if isinstance(n, ir.LoihiNeuronNode):
        kind = "lif" if n.reset == "zero" and n.v_init == 0 else "reset_lif"
    return Stage(n.name, kind, n, graph.types[n.name].numel, graded=kind in ("addressed_acc",) or
                 (kind == "maxpool" and graph.types[n.name].kind is not ir.Kind.SPIKE))


def _port_terms(graph: ir.Graph, st: Stage, producers: set[str], source: str, memo: dict) -> list[list[Term]]:
    """Per input port of a stage, the terms of its input (a neuron layer sums all its inputs)."""
    n = st.node
    ports = [list(n.inputs)] if isinstance(n, ir.LoihiNeuronNode) else [[i] for i in n.inputs]
    port_terms = []
    for values in ports:
        terms = [part for v in values for tm in _linearize(graph, v, producers, source, memo) for part in tm.expand()]
        if st.kind == "and":  # an AND broadcasts its operands to the output shape: fold that selection in
            b = broadcast_matrix(graph.types[values[0]].features, graph.types[n.name].features)
            terms = [tm.then(b) for tm in terms]
        port_terms.append(terms)
    return port_terms


def _wire(name: str, port_terms: list[list[Term]], stages: dict[str, Stage], connections: list, neuron: bool):
    """The inputs of the unit ``name`` (a stage or a region): per term a connection (one step) or, for
    a single index selection into a custom process (``neuron`` False), a gather (no step); every
    arrival balanced to the latest with delays.  Returns (arrival depth, input items)."""
    arrivals = []
    for p, terms in enumerate(port_terms):
        for tm in terms:
            direct = not neuron and len(terms) == 1 and tm.is_gather()
            arrivals.append((p, tm, direct, stages[tm.producer].depth + (0 if direct else 1)))
    depth = max((a[3] for a in arrivals), default=0)
    mixing = max((stages[a[1].producer].mixing for a in arrivals if a[3] == depth), default=0)
    items = []
    for p, tm, direct, arrive in arrivals:
        delay = depth - arrive
        if direct:
            items.append(("gather", p, tm.producer, tm.matrix.indices.astype(np.int64), delay))
            continue
        w = tm.weights(stages[tm.producer].size)
        what = f"{tm.producer} -> {name} (through {tm.synapse or 'data movement'})"
        mode = None if isinstance(w, Unrolled) else _check_8bit(w.data, what)  # Unrolled: checked once built
        if delay > 62:
            raise UnsupportedError(f"lava: balancing {tm.producer} -> {name} needs a delay of {delay} > 62 steps")
        conn = Connection(f"{tm.producer}->{name}#{len(connections)}", tm.producer, name, p, w, tm.exp, mode,
                          graded=stages[tm.producer].graded, delay=delay, synapse=tm.synapse,
                          channel_part=tm.channel_part)
        connections.append(conn)
        items.append(conn)
    return depth, mixing, items


def _unit_order(graph: ir.Graph, units: list, unit_of: dict[str, object]) -> list:
    """Stages and regions in an order where every unit comes after the units it reads from (a unit
    reads the units found walking back from its inputs through folded nodes)."""
    listed = {id(u) for u in units}

    def reads(u):
        values = list(u.inputs) if isinstance(u, Region) else list(u.node.inputs)
        found, seen = [], set()
        while values:
            v = values.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in unit_of and unit_of[v] is not u:
                if id(unit_of[v]) in listed:
                    found.append(unit_of[v])
            elif v not in unit_of:
                values.extend(graph[v].inputs)
        return found

    return topological_sort(units, reads, key=id)


def build_netspec(graph: ir.Graph, max_memory: Optional[int] = None) -> NetSpec:
    """Cut a quantized graph into Lava stages, regions and connections (see module docstring).

    The network's memory is estimated (:func:`~.resources.estimate_memory`, kept in
    ``NetSpec.memory``) before any term is unrolled; above ``max_memory`` bytes the build is
    refused with the estimate."""
    graph.validate()
    qin = [n for n in graph.nodes if isinstance(n, ir.QuantizeInputNode)]
    if len(qin) != 1:
        raise UnsupportedError("lava: expected one quantized input")
    source = qin[0].name
    T = max(graph.types[n.name].time for n in graph.nodes)
    stage_names = [n.name for n in graph.nodes if isinstance(n, STAGE_TYPES)]
    stage_set = set(stage_names)
    feeds_stage = _feeds_stage(graph, stage_names, stage_set, source)
    host = [n.name for n in graph.nodes if n.name not in stage_set and n.name not in feeds_stage
            and n.name != source and not isinstance(n, ir.InputNode)]
    region_nodes = plan_region_nodes(graph, stage_set, source, feeds_stage)
    regions = group_regions(graph, region_nodes, stage_set)
    producers = stage_set | region_nodes

    stages: dict[str, Stage] = {source: Stage(source, "source", qin[0], graph.types[source].numel, 0, graded=True)}
    for name in stage_names:
        stages[name] = _stage(graph, graph[name])
    memo: dict = {}
    terms_of: dict[int, list[list[Term]]] = {}
    for name in stage_names:
        terms_of[id(stages[name])] = _port_terms(graph, stages[name], producers, source, memo)
    for r in regions:
        terms_of[id(r)] = [[part for tm in _linearize(graph, v, producers, source, memo) for part in tm.expand()]
                           for v in r.inputs]
    # the region values some stage or region reads become region outputs (stages named after the value)
    read = {tm.producer for ports in terms_of.values() for terms in ports for tm in terms}
    unit_of: dict[str, object] = {name: stages[name] for name in stage_names}
    unit_of[source] = stages[source]
    for r in regions:
        r.outputs = [v for v in r.nodes if v in read]
        for v in r.nodes:
            unit_of[v] = r
        for v in r.outputs:
            stages[v] = Stage(v, "region_out", graph[v], graph.types[v].numel, graded=True)

    readers: dict[str, list[str]] = {}  # per value, the stages reading it (a one-step value must not feed a one-step stage)
    for name in stage_names:
        for tm in {tm.producer for terms in terms_of[id(stages[name])] for tm in terms}:
            readers.setdefault(tm, []).append(name)
    connections: list[Connection] = []
    for unit in _unit_order(graph, [stages[n] for n in stage_names] + regions, unit_of):
        if isinstance(unit, Region):
            unit.in_depth, mixing, unit.ports = _wire(unit.name, terms_of[id(unit)], stages, connections, neuron=False)
            unit.depth = unit.in_depth + (unit.last_step(graph) if unit.buffered else 0)
            _refuse_region(graph, unit, T, readers)
            for v in unit.outputs:
                stages[v].depth, stages[v].mixing = unit.depth, mixing + unit.added_latency
        else:
            neuron = unit.kind in ("lif", "reset_lif")
            unit.depth, unit.mixing, unit.inputs = _wire(unit.name, terms_of[id(unit)], stages, connections, neuron)
    # every stage output and region output is read back: the host recomputes the rest (e.g. the classifier) from them
    recorded = stage_names + [v for r in regions for v in r.outputs]
    spec = NetSpec(graph, T, source, stages, connections, host, recorded, regions={r.name: r for r in regions})

    from .resources import estimate_memory, format_bytes

    spec.memory = estimate_memory(spec)
    if max_memory is not None and spec.memory.total > max_memory:
        raise SpikecError(f"lava: the network needs about {format_bytes(spec.memory.total)} "
                          f"({spec.memory.summary()}), over the limit of {format_bytes(max_memory)} (--max-memory)")
    for c in connections:  # the terms that must be unrolled, now that the estimate allows it
        if isinstance(c.weights, Unrolled):
            syn = c.weights.core.node.name
            c.weights = c.weights.build()
            c.sign_mode = _check_8bit(c.weights.data, f"{c.src} -> {c.dst} (through {syn})")
    return spec
