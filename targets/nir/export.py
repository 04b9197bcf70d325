"""Float IR -> NIR graph (NIR 1.0.8), with exact neuron semantics and spike products expressed with
standard nodes only.

Conventions (stored in the graph metadata as JSON strings):

* one NIR evaluation = one time step; ``dt = 2^-10 s`` (a power of two, so ``dt/τ`` and
  ``dt·r`` are exact in floating point); ``T`` steps per sample, static inputs fed every step;
* spikingjelly LIF ``H = V + (X − (V − V_r))/τ`` ↔ NIR LIF with ``tau = τ·dt``, ``r = 1``,
  ``v_leak = v_reset = V_r``; with decay_input=False ``r = τ``; IF ↔ NIR IF with ``r = 1/dt``;
* spikingjelly fires at ``H ≥ θ``, NIR at ``v > θ'``: ``θ'`` is the float32 number just below θ,
  so the two agree exactly on float32 membranes;
* sums are fan-in edges; every linear data movement (reshape, permute, slice, token sums, 1×1
  convs on token layouts) is an Affine on the flattened vector (Flatten first where needed);
* AND of two spike tensors = two edges into Threshold(1.5); max pool of spikes = SumPool2d then
  Threshold(0.5); a product of spike matrices is a count of coincidences:
  (A B)[n, j] = Σ_k [a_nk + b_kj > 1.5] and (Q Kᵀ V)[n, j] = Σ_{m,i} [q_ni + k_mi + v_mj > 2.5],
  built from broadcasting Affines, a Threshold and a summing Affine (size reported; refused above
  ``max_neurons``);
* the Loihi 2 fixed-point scales of the same model (when the caller computed them) are stored
  as the ``quantization`` metadata;
* a sum / mean over time at the end becomes the ``readout`` metadata (per-step outputs, summed or
  averaged by the consumer), classifier biases divided by T accordingly;
* soft reset (V = H − θS) = a reset-free LI / I membrane, Threshold(θ') and a self-inhibiting
  recurrent edge (see :meth:`_Exporter.soft_reset_neuron`);
* max pool of real values that are a convolution of spikes = comparisons, winners and AND
  selections (:mod:`.real_maxpool`; counted against ``max_neurons`` with the coincidences);
* grouped convolutions are written with block-diagonal dense weights (NIR 1.0.8's type check
  ignores ``groups``).

Anything else (real-valued products, max pool of other real values, ops across time inside the
network) raises an error naming the node and its module; ``partial=True`` exports the
expressible prefix instead (outputs are then the last exportable values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from spikec import __version__, ir
from spikec.errors import UnsupportedError

from . import real_maxpool

DT = 2.0 ** -10
EXPANSION_NAMES = {"spike product": "coincidence neurons", "max pool": "comparison / selection neurons"}
EXPANSION_ADVICE = {"spike product": "use smaller attention (tokens x head dim)",
                    "max pool": "use fewer channels or a smaller pooled map"}


@dataclass
class Val:
    """An IR value as NIR: the NIR nodes whose (summed) outputs make it, all of one ``shape``."""

    terms: list[str]
    shape: tuple[int, ...]  # () means flat of size numel

    @property
    def flat(self) -> bool:
        return len(self.shape) == 1


@dataclass
class Exported:
    graph: object  # nir.NIRGraph
    coincidence_neurons: int = 0  # threshold neurons of all expansions (spike products, real max pools)
    notes: list[str] = field(default_factory=list)
    partial_outputs: list[str] = field(default_factory=list)


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _below(theta: float) -> np.float32:
    return np.nextafter(np.float32(theta), np.float32(-np.inf))


class _Exporter:
    def __init__(self, graph: ir.Graph, max_neurons: int):
        import nir

        self.nir = nir
        self.g = graph
        self.types = graph.types
        self.max_neurons = max_neurons
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.vals: dict[str, Val] = {}
        self.flat_cache: dict[str, str] = {}
        self.coincidences = 0
        self.notes: list[str] = []

    def fail(self, n: ir.Node, what: str) -> UnsupportedError:
        return UnsupportedError(f"nir: {what} at {n.name} ({n.op}, module '{n.source or 'top level'}')")

    def add(self, name: str, node, inputs: list[str]) -> str:
        base, k = name.replace(".", "_").replace(":", "_"), 1
        key = base
        while key in self.nodes:
            k += 1
            key = f"{base}_{k}"
        self.nodes[key] = node
        self.edges += [(i, key) for i in inputs]
        return key

    def flat_terms(self, v: Val) -> list[str]:
        if v.flat:
            return v.terms
        out = []
        for t in v.terms:
            if t not in self.flat_cache:
                self.flat_cache[t] = self.add(f"{t}_flat", self.nir.Flatten(input_type={"input": np.array(v.shape)},
                                                                              start_dim=0, end_dim=-1), [t])
            out.append(self.flat_cache[t])
        return out

    def affine(self, name: str, v: Val, w, bias=None) -> Val:
        w = w.toarray() if sp.issparse(w) else np.asarray(w)
        b = np.zeros(w.shape[0], np.float32) if bias is None else _f32(bias)
        node = self.add(name, self.nir.Affine(weight=_f32(w), bias=b), self.flat_terms(v))
        return Val([node], (w.shape[0],))

    # --------------------------------------------------------------------------------------------
    def run(self, partial: bool) -> list[str]:
        from ..lava.netspec import _broadcast_matrix, op_matrix

        self._op_matrix, self._bcast = op_matrix, _broadcast_matrix
        outputs = []
        for n in self.g.nodes:
            try:
                self.visit(n)
            except UnsupportedError:
                if not partial:
                    raise
                outputs = [k for k in self.vals if k not in {i for m in self.g.nodes if m.name in self.vals for i in m.inputs}]
                self.notes.append(f"partial export: stopped at {n.name} ({n.op}, {n.source})")
                return outputs
            if isinstance(n, ir.OutputNode):
                outputs.append(n.name)
        return outputs

    def visit(self, n: ir.Node) -> None:
        nir, t = self.nir, self.types[n.name]
        get = lambda i: self.vals[n.inputs[i]]  # noqa: E731
        if isinstance(n, ir.InputNode):
            node = self.add("input", nir.Input(input_type={"input": np.array(n.features)}), [])
            self.vals[n.name] = Val([node], tuple(n.features))
        elif isinstance(n, ir.RepeatTimeNode):
            self.vals[n.name] = get(0)
        elif isinstance(n, ir.ConvNode):
            x = get(0)
            spatial = any(k > 1 for k in n.weight.shape[2:]) or any(s > 1 for s in n.stride) or any(n.padding) or \
                any(isinstance(u, ir.MaxPoolNode) for u in self.g.users(n.name))
            if spatial and not x.flat:
                cls = nir.Conv2d if n.spatial_dims == 2 else nir.Conv1d
                shp = tuple(x.shape[1:]) if n.spatial_dims == 2 else x.shape[1]
                arg = lambda a: tuple(a) if n.spatial_dims == 2 else a[0]  # noqa: E731
                node = self.add(n.name, cls(input_shape=shp, weight=real_maxpool.dense_conv_weight(_f32(n.weight), n.groups),
                                            stride=arg(n.stride), padding=arg(n.padding), dilation=arg(n.dilation), groups=1,
                                            bias=_f32(n.bias if n.bias is not None else np.zeros(n.weight.shape[0]))), x.terms)
                self.vals[n.name] = Val([node], t.features)
            else:  # 1x1 convs on token layouts, or convs on flat values: an unrolled Affine
                from ..lava.netspec import conv_matrix

                w = conv_matrix(n.weight, self.types[n.inputs[0]].features, n.stride, n.padding, n.dilation, n.groups,
                                t.features, dtype=np.float32)
                sp_n = int(np.prod(t.features[1:]))
                bias = None if n.bias is None else np.repeat(n.bias, sp_n)
                self.vals[n.name] = self.affine(n.name, x, w, bias)
        elif isinstance(n, ir.LinearNode):
            lead = int(np.prod(t.features[:-1])) if len(t.features) > 1 else 1
            w = sp.kron(sp.identity(lead), sp.csr_matrix(n.weight.astype(np.float64)))
            bias = None if n.bias is None else np.tile(n.bias, lead)
            self.vals[n.name] = self.affine(n.name, get(0), w, bias)
        elif isinstance(n, ir.NeuronNode):
            self.neuron(n)
        elif isinstance(n, ir.AddNode):
            a, b = get(0), get(1)
            if self.types[n.inputs[0]].features != self.types[n.inputs[1]].features:
                raise self.fail(n, "a broadcasting sum")
            if a.shape == b.shape:
                self.vals[n.name] = Val(a.terms + b.terms, a.shape)
            else:
                self.vals[n.name] = Val(self.flat_terms(a) + self.flat_terms(b), (t.numel,))
        elif isinstance(n, ir.ScaleNode):
            f = np.broadcast_to(np.asarray(n.factor, np.float64), t.features)
            f = f if n.mode == "mul" else 1.0 / f
            x = get(0)
            fx = f if not x.flat else f.reshape(-1)
            node = self.add(n.name, nir.Scale(scale=_f32(fx)), x.terms)
            self.vals[n.name] = Val([node], x.shape)
        elif isinstance(n, (ir.ReshapeNode, ir.PermuteNode, ir.SliceNode)) or \
                (isinstance(n, ir.ReduceNode) and not n.over_time):
            x = get(0)
            if isinstance(n, ir.ReshapeNode):  # row-major: the flattened vector is unchanged
                self.vals[n.name] = Val(self.flat_terms(x), (t.numel,))
                return
            m = self._op_matrix(n.replace(reduce="sum") if isinstance(n, ir.ReduceNode) else n,
                                self.types[n.inputs[0]], t).astype(np.float64)
            if isinstance(n, ir.ReduceNode) and n.reduce == "mean":
                m = m / (self.types[n.inputs[0]].numel // t.numel)
            self.vals[n.name] = self.affine(n.name, x, m)
        elif isinstance(n, ir.ReduceNode):  # over time: only as the readout
            raise self.fail(n, "an operation across time steps inside the network")
        elif isinstance(n, ir.MaxPoolNode) and self.types[n.inputs[0]].kind is not ir.Kind.SPIKE:
            self.real_maxpool(n)
        elif isinstance(n, ir.MaxPoolNode):
            x = get(0)
            if x.flat or len(n.kernel) != 2 or any(d != 1 for d in n.dilation):
                raise self.fail(n, "max pooling of spikes on a flattened layout or with dilation")
            s = self.add(n.name, nir.SumPool2d(kernel_size=np.array(n.kernel), stride=np.array(n.stride),
                                               padding=np.array(n.padding)), x.terms)
            th = self.add(f"{n.name}_or", nir.Threshold(threshold=np.full(t.features, 0.5, np.float32)), [s])
            self.vals[n.name] = Val([th], t.features)
        elif isinstance(n, ir.AvgPoolNode):
            x = get(0)
            m = self._op_matrix(n, self.types[n.inputs[0]], t).astype(np.float64) / (n.divisor_override or int(np.prod(n.kernel)))
            self.vals[n.name] = self.affine(n.name, x, m)
        elif isinstance(n, ir.AndNode):
            if any(self.types[i].kind is not ir.Kind.SPIKE for i in n.inputs):
                raise self.fail(n, "AND of non-binary values")
            terms = []
            for i in n.inputs:
                b = self._bcast(self.types[i].features, t.features).astype(np.float64)
                terms += self.affine(f"{n.name}_in", self.vals[i], b).terms
            node = self.add(n.name, nir.Threshold(threshold=np.full(t.numel, 1.5, np.float32)), terms)
            self.vals[n.name] = Val([node], (t.numel,))
        elif isinstance(n, (ir.AddressedAccumulationNode, ir.MatMulNode)):
            self.spike_product(n)
        elif isinstance(n, ir.OutputNode):
            self.vals[n.name] = get(0)
        else:
            raise self.fail(n, f"no NIR form for {n.op}")

    def neuron(self, n: ir.NeuronNode) -> None:
        nir, t = self.nir, self.types[n.name]
        x = self.vals[n.inputs[0]]
        if isinstance(n.v_threshold, np.ndarray):
            th = np.broadcast_to(n.v_threshold, t.features).astype(np.float32)
        else:
            th = np.full(t.features, n.v_threshold, np.float32)
        shape = x.shape
        th = np.nextafter(th, np.float32(-np.inf)).reshape(shape)
        full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
        if n.v_reset is None:
            self.soft_reset_neuron(n, x, th)
            return
        if n.model == "IF":
            node = nir.IF(r=full(1.0 / DT), v_threshold=th, v_reset=full(n.v_reset))
        else:
            tau = (1.0 / n.leak_rate) if n.leak_rate is not None else n.tau
            r = 1.0 if n.decay_input else tau
            node = nir.LIF(tau=full(tau * DT), r=full(r), v_leak=full(n.v_reset), v_threshold=th, v_reset=full(n.v_reset))
            node.metadata = {"spikec_leak_rate": json.dumps(n.leak_rate), "spikec_decay_input": json.dumps(n.decay_input)}
        self.vals[n.name] = Val([self.add(n.name, node, x.terms)], shape)

    def soft_reset_neuron(self, n: ir.NeuronNode, x: Val, th_below: np.ndarray) -> None:
        """Soft reset (V = H − θS) with standard nodes: NIR neurons only reset to a value, so the
        membrane is a reset-free LI (IF: I) node holding H, the spikes are Threshold(θ') of it, and
        the subtraction is a self-inhibiting recurrent edge S → Scale(−c) → membrane, which NIR
        consumers evaluate with a one-step delay (the previous step's spikes).

        With leak rate k (1/τ, or sigmoid(w) for parametric LIF) the source computes
        H[t] = V + (X − V)·k with V = H[t−1] − θS[t−1]; the LI node computes
        H[t] = H[t−1] + (X + F − H[t−1])·k, equal for F = −θ(1 − k)/k · S[t−1]
        (decay_input=False: H = (1 − k)V + X, F = −θ(1 − k)·S[t−1]; IF: F = −θ·S[t−1]).
        The algebra is exact; float32 rounding follows a different operation order than the
        source, which the re-import check measures.
        """
        nir, shape = self.nir, x.shape
        full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
        theta = np.broadcast_to(np.asarray(n.v_threshold, np.float64), self.types[n.name].features).reshape(shape)
        if n.model == "IF":
            mem = nir.I(r=full(1.0 / DT))
            c = theta
        else:
            k = n.leak_rate if n.leak_rate is not None else 1.0 / n.tau
            tau = 1.0 / k
            mem = nir.LI(tau=full(tau * DT), r=full(1.0 if n.decay_input else tau), v_leak=full(0.0))
            mem.metadata = {"spikec_leak_rate": json.dumps(n.leak_rate), "spikec_decay_input": json.dumps(n.decay_input)}
            c = theta * (1 - k) / k if n.decay_input else theta * (1 - k)
        m = self.add(f"{n.name}_membrane", mem, x.terms)
        spikes = self.add(n.name, nir.Threshold(threshold=th_below), [m])
        inhibit = self.add(f"{n.name}_soft_reset", nir.Scale(scale=_f32(-c)), [spikes])
        self.edges.append((inhibit, m))  # recurrent: previous step's spikes
        self.notes.append(f"{n.name}: soft reset as {type(mem).__name__} + Threshold + recurrent Scale(-theta*...)")
        self.vals[n.name] = Val([spikes], shape)

    def count_expansion(self, n: ir.Node, size: int, what: str) -> None:
        self.coincidences += size
        if self.coincidences > self.max_neurons:
            raise UnsupportedError(
                f"nir: the {what} at {n.name} (module '{n.source}') expands to {size} {EXPANSION_NAMES[what]} "
                f"({self.coincidences} expansion neurons in all) > --max-nir-neurons {self.max_neurons}; raise the limit, "
                f"{EXPANSION_ADVICE[what]}, or export with --partial")

    def real_maxpool(self, n: ir.MaxPoolNode) -> None:
        """Max pool of a convolution of spikes as comparisons, winners and AND selections."""
        reason = real_maxpool.unsupported_reason(self.g, n)
        if reason:
            raise self.fail(n, f"max pooling of real values: {reason}")
        conv = self.g.producer(n.inputs[0])
        y, s = self.vals[conv.name], self.vals[conv.inputs[0]]
        if y.flat or s.flat:
            raise self.fail(n, "max pooling of real values on a flattened layout")
        size = real_maxpool.selection_units(conv, n, self.types[n.name].features)
        self.count_expansion(n, size, "max pool")
        self.vals[n.name] = Val(real_maxpool.lower(self, n, conv, y.terms, s.terms), self.types[n.name].features)
        self.notes.append(f"{n.name}: max pool of real values as {size} comparison / selection neurons")

    def spike_product(self, n) -> None:
        """Coincidence expansion of A @ B (pair) or (A @ B) @ C (triple) over binary operands."""
        g, types = self.g, self.types
        ops = list(n.inputs)
        chain = None
        for side in (0, 1):
            inner = g.producer(ops[side])
            if isinstance(inner, (ir.AddressedAccumulationNode, ir.MatMulNode)) and \
                    all(types[i].kind is ir.Kind.SPIKE for i in inner.inputs) and types[ops[1 - side]].kind is ir.Kind.SPIKE:
                chain = (side, inner)
        users = g.users(n.name)
        if chain is None and users and all(isinstance(u, (ir.AddressedAccumulationNode, ir.MatMulNode)) for u in users) \
                and all(types[i].kind is ir.Kind.SPIKE for i in ops) \
                and all(types[o].kind is ir.Kind.SPIKE for u in users for o in u.inputs if o != n.name):
            return  # the consumer builds one triple coincidence from this product's operands
        if chain is None and not all(types[i].kind is ir.Kind.SPIKE for i in ops):
            raise self.fail(n, "a product without two binary operands (NIR cannot multiply signals)")
        t = types[n.name]
        lead = t.features[:-2]
        L = int(np.prod(lead)) if lead else 1
        if chain is None:
            a, b = ops
            (N, K), (_, J) = types[a].features[-2:], types[b].features[-2:]
            idx = np.indices((L, N, K, J)).reshape(4, -1)  # l, n, k, j
            rows = [np.ravel_multi_index((idx[0], idx[1], idx[2]), (L, N, K)),
                    np.ravel_multi_index((idx[0], idx[2], idx[3]), (L, K, J))]
            srcs, th = [a, b], 1.5
            out_idx = np.ravel_multi_index((idx[0], idx[1], idx[3]), (L, N, J))
        else:
            side, inner = chain
            if side == 0:  # (Q Kt) V
                q, kt, v = inner.inputs[0], inner.inputs[1], ops[1]
            else:  # Q (Kt V)
                q, kt, v = ops[0], inner.inputs[0], inner.inputs[1]
            (N, I), (_, M), (_, J) = types[q].features[-2:], types[kt].features[-2:], types[v].features[-2:]
            idx = np.indices((L, N, M, I, J)).reshape(5, -1)  # l, n, m, i, j
            rows = [np.ravel_multi_index((idx[0], idx[1], idx[3]), (L, N, I)),
                    np.ravel_multi_index((idx[0], idx[3], idx[2]), (L, I, M)),
                    np.ravel_multi_index((idx[0], idx[2], idx[4]), (L, M, J))]
            srcs, th = [q, kt, v], 2.5
            out_idx = np.ravel_multi_index((idx[0], idx[1], idx[4]), (L, N, J))
        size = idx.shape[1]
        self.count_expansion(n, size, "spike product")
        terms = []
        for src, r in zip(srcs, rows):
            sel = sp.csr_matrix((np.ones(size), (np.arange(size), r)), shape=(size, types[src].numel))
            terms += self.affine(f"{n.name}_coinc_in", self.vals[src], sel).terms
        node = self.add(f"{n.name}_coinc", self.nir.Threshold(threshold=np.full(size, th, np.float32)), terms)
        summ = sp.csr_matrix((np.ones(size), (out_idx, np.arange(size))), shape=(t.numel, size))
        self.vals[n.name] = self.affine(n.name, Val([node], (size,)), summ)
        self.notes.append(f"{n.name}: spike product as {size} coincidence neurons (threshold {th})")


def _readout(graph: ir.Graph) -> tuple[ir.Graph, Optional[str]]:
    """Move a final sum / mean over time behind the per-step classifier (dividing its bias by T)."""
    (out,) = graph.outputs
    chain = []
    v = out.inputs[0]
    while True:
        n = graph.producer(v)
        if isinstance(n, ir.ReduceNode) and n.over_time and not n.axes:
            break
        if isinstance(n, (ir.LinearNode, ir.ReshapeNode)) and len(graph.users(v)) == 1:
            chain.append(n)
            v = n.inputs[0]
            continue
        return graph, None
    T = graph.types[n.inputs[0]].time
    nodes = []
    for m in graph.nodes:
        if m is n:
            continue
        if m in chain and isinstance(m, ir.LinearNode) and m.bias is not None:
            m = m.replace(bias=(m.bias / np.float32(T)).astype(m.bias.dtype))
        if m.inputs and n.name in m.inputs:
            m = m.replace(inputs=tuple(n.inputs[0] if i == n.name else i for i in m.inputs))
        if isinstance(m, ir.OutputNode):
            m = m.replace(layout="split")
        nodes.append(m)
    return graph.rewrite(nodes), n.reduce


def quantization_metadata(report) -> dict:
    """The Loihi 2 fixed-point scales of the same model (a :class:`spikec.passes.quantize.QuantReport`
    from the intref / lava pipeline), keyed by source module: value ≈ integer · scale."""
    return {
        "convention": "Loihi 2 fixed point as `spikec compile --target intref|lava` quantizes this model: "
                      "real value = integer * scale; weights = mantissa << exp",
        "input_scale": report.input_scale,
        "calibrated": report.calibrated,
        "synapses": [{"module": r.source, "node": r.name, "weight_exp": r.weight_exp, "sign_mode": r.sign_mode,
                      "scale_in": r.delta_in, "scale_out": r.delta_out} for r in report.synapses],
        "neurons": [{"module": r.source, "node": r.name, "scale_v": r.delta_v, "vth": r.vth, "dv": r.dv,
                     "threshold": r.threshold} for r in report.neurons],
    }


def export_nir(graph: ir.Graph, max_neurons: int = 1_000_000, partial: bool = False,
               quantization: Optional[dict] = None) -> Exported:
    """Export a float IR graph (after the 'nir' pass pipeline) as a nir.NIRGraph.  ``quantization``
    (see :func:`quantization_metadata`) is stored in the metadata as given."""
    import nir

    graph, readout = _readout(graph)
    ex = _Exporter(graph, max_neurons)
    outputs = ex.run(partial)
    for o in outputs:
        val = ex.vals[o]
        terms = val.terms
        if len(terms) > 1:  # nirtorch does not sum the edges into an Output node: sum them first
            terms = [ex.add(f"{o}_sum", nir.Scale(scale=np.ones(val.shape, np.float32)), terms)]
        ex.add(f"output_{o}" if o != "output" else "output",
               nir.Output(output_type={"output": np.array(val.shape)}), terms)
    # drop nodes that reach no output (nirtorch's interpreter waits for them forever)
    rev: dict[str, list[str]] = {}
    for a, b in ex.edges:
        rev.setdefault(b, []).append(a)
    live, stack = set(), [k for k, v in ex.nodes.items() if isinstance(v, nir.Output)]
    while stack:
        v = stack.pop()
        if v not in live:
            live.add(v)
            stack += rev.get(v, [])
    ex.nodes = {k: v for k, v in ex.nodes.items() if k in live}
    ex.edges = [(a, b) for a, b in ex.edges if a in live and b in live]
    T = max(graph.types[n.name].time for n in graph.nodes)
    meta = {
        "spikec_version": __version__,
        "dt": json.dumps(DT),
        "T": json.dumps(T),
        "threshold_convention": json.dumps("source fires at v >= theta; NIR v_threshold is the float32 just below theta"),
        "readout": json.dumps(readout or "per step"),
        "input_layout": json.dumps(graph.inputs[0].layout),
        "sources": json.dumps({k: n.source for k, n in ((m.name, m) for m in graph.nodes) if n.source}),
        "notes": json.dumps(ex.notes),
        "recurrent_edge_convention": json.dumps("an edge that closes a cycle carries its source's output of the "
                                                "previous time step (zeros at the first step)"),
        "quantization": json.dumps(quantization if quantization is not None else {"unavailable": "not computed"}),
    }
    return Exported(nir.NIRGraph(nodes=ex.nodes, edges=ex.edges, metadata=meta), ex.coincidences, ex.notes, outputs)
