"""Float IR -> NIR graph (NIR 1.0.8), with exact neuron semantics and spike products expressed with
standard nodes only.

Conventions (stored in the graph metadata as JSON strings):

* one NIR evaluation = one time step; ``dt = 1e-4 s`` (the step snnTorch's importer assumes and
  cannot be told otherwise; Norse takes it as ``from_nir(..., dt=)``); ``T`` steps per sample, static
  inputs fed every step, each step a ``[B, *features]`` batch;
* spikingjelly LIF ``H = V + (X − (V − V_r))/τ`` ↔ NIR LIF with ``tau = τ·dt``, ``r = 1``,
  ``v_leak = v_reset = V_r``; with decay_input=False ``r = τ``; IF ↔ NIR IF with ``r = 1/dt``
  (τ·dt is not exact in float32: the source's τ in steps is kept as the node's ``spikec_tau``);
* ``consumer=NAME``: neurons that NAME's NIR import computes exactly only in another NIR-conforming
  form are written in it (:func:`.consumers.encode_neuron`: for snnTorch, IF with reset to 0 as a LIF
  without leak; for Norse, LIF with reset to 0 and τ = 2^k input-decayed, r = 1 and θ/τ);
* spikingjelly fires at ``H ≥ θ``, NIR at ``v > θ'``: ``θ'`` is the float32 number just below θ,
  so the two agree exactly on float32 membranes;
* causal convolutions over time (after :mod:`spikec.passes.causal_time_conv_to_delays`) are
  ``Delay`` nodes (``steps·dt``) feeding per-step convolutions; concatenations are Affines placing
  each input in its block, summed;
* sums are fan-in edges; every linear data movement (reshape, permute, slice, token sums, 1×1
  convs on token layouts) is an Affine on the flattened vector (Flatten first where needed, with
  ``start_dim = -len(shape)``: the first axis of NIR's un-batched shape, and also the first after
  the batch for readers that apply ``torch.nn.Flatten(start_dim)`` to batched tensors);
* average pools = SumPool2d then Scale(1/divisor) (an Affine with per-window divisors without
  ``count_include_pad``);
* AND of two spike tensors = two edges into Threshold(1.5); max pool of spikes = SumPool2d then
  Threshold(0.5) (an Affine of the window sums instead of the SumPool2d where NIR's cannot express
  the windows: ceil mode, dilation, 1-d, flattened layouts); a product of spike matrices is a
  count of coincidences: (A B)[n, j] = Σ_k [a_nk + b_kj > 1.5] and
  (Q Kᵀ V)[n, j] = Σ_{m,i} [q_ni + k_mi + v_mj > 2.5], built from broadcasting Affines, a Threshold
  and a summing Affine (size reported; refused above ``max_neurons``);
* the Loihi 2 fixed-point scales of the same model (when the caller computed them) are stored
  as the ``quantization`` metadata;
* a sum / mean over time at the end becomes the ``readout`` metadata (per-step outputs, summed or
  averaged by the consumer), classifier biases divided by T accordingly;
* soft reset (V = H − θS) = a nested graph: a recurrent circuit of Scale nodes around
  Threshold(θ'), in the source's operation order (see :meth:`_Exporter.soft_reset_neuron`);
* max pool of real values that are a convolution of spikes = comparisons, winners and AND
  selections (:mod:`.real_maxpool`; counted against ``max_neurons`` with the coincidences);
* grouped convolutions are written with block-diagonal dense weights and non-square kernels
  zero-padded to square ones (NIR 1.0.8's type check ignores ``groups`` and reads one kernel
  size); a kernel that cannot be centred in a square one (kh − kw odd) becomes an Affine.

Anything else (real-valued products, max pool of other real values, ops across time inside the
network) raises an error naming the node and its module; ``partial=True`` exports the
expressible prefix instead (outputs are then the last exportable values).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import scipy.sparse as sp

from spikec import __version__, ir
from spikec.errors import UnsupportedError
from spikec.ir.graph import topological_sort
from spikec.ir.index_maps import broadcast_matrix, conv_matrix, linear_matrix, op_matrix

from . import real_maxpool

DT = 1e-4
MAX_DENSE_ENTRIES = 2 ** 29  # float32 Affine weights in all: 2 GiB
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
    origins: dict[str, str] = field(default_factory=dict)  # NIR node key -> the IR node it comes from


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def _below(theta: float) -> np.float32:
    return np.nextafter(np.float32(theta), np.float32(-np.inf))


class _Exporter:
    def __init__(self, graph: ir.Graph, max_neurons: int, consumer: Optional[str] = None):
        import nir

        self.nir = nir
        self.g = graph
        self.types = graph.types
        self.max_neurons = max_neurons
        self.consumer = consumer  # write neurons in the form that consumer's NIR import reads exactly
        self.nodes: dict[str, object] = {}
        self.edges: list[tuple[str, str]] = []
        self.vals: dict[str, Val] = {}
        self.flat_cache: dict[str, str] = {}
        self.term_shapes: dict[str, tuple[int, ...]] = {}
        self.dense_entries = 0
        self.coincidences = 0
        self.notes: list[str] = []
        self.origins: dict[str, str] = {}  # NIR node key -> IR node name
        self.current: Optional[str] = None  # the IR node being visited

    def fail(self, n: ir.Node, what: str) -> UnsupportedError:
        return UnsupportedError(f"nir: {what} at {n.name} ({n.op}, module '{n.source or 'top level'}')")

    def add(self, name: str, node, inputs: list[str]) -> str:
        """Add ``node`` under a fresh key derived from ``name``, fed by the (summed) ``inputs``."""
        return self._add(name, node, self._fan_in(name, list(inputs)))

    def _fan_in(self, name: str, inputs: list[str]) -> list[str]:
        """At most two distinct inputs per node: nirtorch sums a node's input edges in set order
        (only a + b is order-free in float) and NIR has no duplicate edges.  Longer sums are
        added pairwise in the given order (the IR's) through Scale(1) nodes; x + x is Scale(2)."""
        while len(inputs) > 2 or (len(inputs) == 2 and inputs[0] == inputs[1]):
            a, b = inputs[:2]
            ones = np.ones(self.term_shapes.get(a) or self.nodes[a].output_type["output"], np.float32)
            s = self._add(f"{name}_x2", self.nir.Scale(scale=2 * ones), [a]) if a == b else \
                self._add(f"{name}_sum", self.nir.Scale(scale=ones), [a, b])
            inputs = [s] + inputs[2:]
        return inputs

    def _add(self, name: str, node, inputs: list[str]) -> str:
        base, k = name.replace(".", "_").replace(":", "_"), 1
        key = base
        while key in self.nodes:
            k += 1
            key = f"{base}_{k}"
        self.nodes[key] = node
        self.origins[key] = self.current
        self.edges += [(i, key) for i in inputs]
        return key

    def spatial(self, v: Val, name: str) -> bool:
        """Whether ``v`` is held in NIR with the IR value ``name``'s own (unflattened) shape."""
        return not v.flat and v.shape == tuple(self.types[name].features)

    def flat_terms(self, v: Val) -> list[str]:
        if v.flat:
            return v.terms
        out = []
        for t in v.terms:
            if t not in self.flat_cache:
                # start_dim counted from the end: the un-batched shape's first axis (NIR) is also the
                # first after the batch for readers that apply torch.nn.Flatten(start_dim) to batches
                self.flat_cache[t] = self.add(f"{t}_flat", self.nir.Flatten(input_type={"input": np.array(v.shape)},
                                                                              start_dim=-len(v.shape), end_dim=-1), [t])
            out.append(self.flat_cache[t])
        return out

    def affine(self, name: str, v: Val, w, bias=None) -> Val:
        self.dense_entries += w.shape[0] * w.shape[1]  # NIR Affines are dense: guard memory before building
        if self.dense_entries > MAX_DENSE_ENTRIES:
            raise UnsupportedError(
                f"nir: dense Affine weights would exceed {MAX_DENSE_ENTRIES * 4 / 2 ** 30:.0f} GiB at {name} "
                f"({w.shape[0]} x {w.shape[1]}; NIR has no sparse or reshaping nodes); use a smaller model, "
                "or export the expressible prefix with --partial")
        w = w.toarray() if sp.issparse(w) else np.asarray(w)
        b = np.zeros(w.shape[0], np.float32) if bias is None else _f32(bias)
        node = self.add(name, self.nir.Affine(weight=_f32(w), bias=b), self.flat_terms(v))
        return Val([node], (w.shape[0],))

    # --------------------------------------------------------------------------------------------
    def run(self, partial: bool) -> list[str]:
        outputs = []
        for n in self.g.nodes:
            try:
                self.current = n.name
                self.visit(n)
                if n.name in self.vals:  # shapes of the terms (some NIR nodes, e.g. SumPool2d, leave them open)
                    self.term_shapes.update((k, self.vals[n.name].shape) for k in self.vals[n.name].terms)
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
            if n.spatial_dims == 3:
                raise self.fail(n, "a 3-d convolution (NIR has Conv1d and Conv2d)")
            x = get(0)
            square = real_maxpool.square_kernel(n.weight, n.padding, n.dilation) if n.spatial_dims == 2 else (n.weight, n.padding)
            pointwise = all(k == 1 for k in n.weight.shape[2:]) and all(v == 1 for v in n.stride) and not any(n.padding)
            if pointwise and not x.flat and x.shape != self.types[n.inputs[0]].features and len(x.shape) in (2, 3):
                # a 1x1 conv over a kept view ([C, H, W] seen as [C, N] tokens): the same per-pixel map
                w = real_maxpool.dense_conv_weight(_f32(n.weight), n.groups).reshape(n.weight.shape[0], -1,
                                                                                      *([1] * (len(x.shape) - 1)))
                cls, shp = (nir.Conv2d, tuple(x.shape[1:])) if len(x.shape) == 3 else (nir.Conv1d, x.shape[1])
                one = (1, 1) if len(x.shape) == 3 else 1
                node = self.add(n.name, cls(input_shape=shp, weight=w, stride=one, padding=(0, 0) if one == (1, 1) else 0,
                                            dilation=one, groups=1,
                                            bias=_f32(n.bias if n.bias is not None else np.zeros(n.weight.shape[0]))), x.terms)
                self.vals[n.name] = Val([node], (n.weight.shape[0], *x.shape[1:]))
            elif self.spatial(x, n.inputs[0]) and square is not None:  # a NIR Conv (1x1 too: compact, the source's op)
                cls = nir.Conv2d if n.spatial_dims == 2 else nir.Conv1d
                weight, padding = square
                shp = tuple(x.shape[1:]) if n.spatial_dims == 2 else x.shape[1]
                arg = lambda a: tuple(a) if n.spatial_dims == 2 else a[0]  # noqa: E731
                node = self.add(n.name, cls(input_shape=shp, weight=real_maxpool.dense_conv_weight(_f32(weight), n.groups),
                                            stride=arg(n.stride), padding=arg(padding), dilation=arg(n.dilation), groups=1,
                                            bias=_f32(n.bias if n.bias is not None else np.zeros(n.weight.shape[0]))), x.terms)
                self.vals[n.name] = Val([node], t.features)
            else:  # convs on flattened values (token layouts after a reshape), odd non-square kernels: an Affine
                w = conv_matrix(n.weight, self.types[n.inputs[0]].features, n.stride, n.padding, n.dilation, n.groups,
                                t.features, dtype=np.float32)
                sp_n = int(np.prod(t.features[1:]))
                bias = None if n.bias is None else np.repeat(n.bias, sp_n)
                self.vals[n.name] = self.affine(n.name, x, w, bias)
        elif isinstance(n, ir.LinearNode):
            lead = int(np.prod(t.features[:-1])) if len(t.features) > 1 else 1
            w = linear_matrix(n.weight.astype(np.float64), t.features)
            bias = None if n.bias is None else np.tile(n.bias, lead)
            self.vals[n.name] = self.affine(n.name, get(0), w, bias)
        elif isinstance(n, ir.NeuronNode):
            self.neuron(n)
        elif isinstance(n, ir.AddNode):
            a, b = get(0), get(1)
            if self.types[n.inputs[0]].features != self.types[n.inputs[1]].features:
                raise self.fail(n, "a broadcasting sum")
            if a.shape != b.shape:
                a, b = Val(self.flat_terms(a), (t.numel,)), Val(self.flat_terms(b), (t.numel,))
            # each operand summed first: the float order of the IR's (a1 + a2) + (b1 + b2)
            one = lambda v: v.terms if len(v.terms) == 1 else \
                [self.add(f"{n.name}_operand", nir.Scale(scale=np.ones(v.shape, np.float32)), v.terms)]  # noqa: E731
            self.vals[n.name] = Val(one(a) + one(b), a.shape)
        elif isinstance(n, ir.ScaleNode):
            f = np.broadcast_to(np.asarray(n.factor, np.float64), t.features)
            f = f if n.mode == "mul" else 1.0 / f
            x = get(0)
            fx = f.reshape(x.shape)
            node = self.add(n.name, nir.Scale(scale=_f32(fx)), x.terms)
            self.vals[n.name] = Val([node], x.shape)
        elif isinstance(n, (ir.ReshapeNode, ir.PermuteNode, ir.SliceNode)) or \
                (isinstance(n, ir.ReduceNode) and not n.over_time):
            x = get(0)
            if isinstance(n, ir.ReshapeNode):  # row-major: the flattened vector is unchanged
                keep = not x.flat and t.features and x.shape[0] == t.features[0] and len(t.features) <= len(x.shape)
                # channel-first views ([C, H, W] <-> [C, N]) keep their NIR shape (1x1 convs stay convs)
                self.vals[n.name] = x if keep else Val(self.flat_terms(x), (t.numel,))
                return
            m = op_matrix(n.replace(reduce="sum") if isinstance(n, ir.ReduceNode) else n,
                          self.types[n.inputs[0]], t).astype(np.float64)
            if isinstance(n, ir.ReduceNode) and n.reduce == "mean":
                m = m / (self.types[n.inputs[0]].numel // t.numel)
            self.vals[n.name] = self.affine(n.name, x, m)
        elif isinstance(n, ir.ReduceNode):  # over time: only as the readout
            raise self.fail(n, "an operation across time steps inside the network")
        elif isinstance(n, ir.MaxPoolNode) and self.types[n.inputs[0]].kind is not ir.Kind.SPIKE:
            self.real_maxpool(n)
        elif isinstance(n, ir.MaxPoolNode):  # of spikes: an OR, [window sum > 0.5]
            x, in_t = get(0), self.types[n.inputs[0]]
            if self.spatial(x, n.inputs[0]) and sumpool_expresses(n, in_t.features, t.features):
                s = self.add(n.name, nir.SumPool2d(kernel_size=np.array(n.kernel), stride=np.array(n.stride),
                                                   padding=np.array(n.padding)), x.terms)
                th = self.add(f"{n.name}_or", nir.Threshold(threshold=np.full(t.features, 0.5, np.float32)), [s])
                self.vals[n.name] = Val([th], t.features)
            else:  # ceil mode, dilation, 1-d, flattened layouts: the window sums as an unrolled Affine
                c = in_t.features[0]
                m = conv_matrix(np.ones((c, 1, *n.kernel)), in_t.features, n.stride, n.padding, n.dilation, c,
                                t.features, dtype=np.float64)
                if m.getnnz(axis=1).min(initial=1) == 0:  # PyTorch's -inf padding would be the window's max
                    raise self.fail(n, "max pooling with a window that holds no input position")
                s = self.affine(n.name, x, m)
                th = self.add(f"{n.name}_or", nir.Threshold(threshold=np.full(t.numel, 0.5, np.float32)), s.terms)
                self.vals[n.name] = Val([th], (t.numel,))
        elif isinstance(n, ir.AvgPoolNode):
            x = get(0)
            if n.ceil_mode:
                raise self.fail(n, "ceil-mode average pooling")
            div = n.divisor_override or int(np.prod(n.kernel))
            if self.spatial(x, n.inputs[0]) and len(n.kernel) == 2 and (n.count_include_pad or n.divisor_override or not any(n.padding)):
                # SumPool2d (+ Scale(1/divisor)): avg_pool2d's own order, sum then divide
                pooled = self.add(n.name if div == 1 else f"{n.name}_sum",
                                  nir.SumPool2d(kernel_size=np.array(n.kernel), stride=np.array(n.stride),
                                                padding=np.array(n.padding)), x.terms)
                if div != 1:
                    pooled = self.add(n.name, nir.Scale(scale=np.full(t.features, 1.0 / div, np.float32)), [pooled])
                self.vals[n.name] = Val([pooled], t.features)
            else:  # an unrolled Affine; without count_include_pad each window divides by its inside count
                m = sp.csr_matrix(op_matrix(n, self.types[n.inputs[0]], t), dtype=np.float64)
                m = m / div if n.count_include_pad or n.divisor_override else \
                    sp.diags(1.0 / np.asarray(m.sum(1)).ravel()) @ m
                self.vals[n.name] = self.affine(n.name, x, m)
        elif isinstance(n, ir.DelayNode):  # y(t) = x(t - steps·dt)
            x = get(0)
            shape = x.shape or (t.numel,)
            node = self.add(n.name, nir.Delay(delay=np.full(shape, n.steps * DT, np.float32)), x.terms)
            self.vals[n.name] = Val([node], x.shape)
        elif isinstance(n, ir.ConcatNode):  # each input placed in its block of the flattened output: summed Affines
            out_index = np.arange(t.numel).reshape(t.features)
            terms, start = [], 0
            for i in n.inputs:
                f = self.types[i].features
                block = np.take(out_index, np.arange(start, start + f[n.axis]), axis=n.axis).reshape(-1)
                place = sp.csr_matrix((np.ones(block.size), (block, np.arange(block.size))), shape=(t.numel, block.size))
                terms += self.affine(f"{n.name}_in", self.vals[i], place).terms
                start += f[n.axis]
            self.vals[n.name] = Val(terms, (t.numel,))
        elif isinstance(n, ir.AndNode):
            if any(self.types[i].kind is not ir.Kind.SPIKE for i in n.inputs):
                raise self.fail(n, "AND of non-binary values")
            terms = []
            for i in n.inputs:
                b = broadcast_matrix(self.types[i].features, t.features).astype(np.float64)
                terms += self.affine(f"{n.name}_in", self.vals[i], b).terms
            node = self.add(n.name, nir.Threshold(threshold=np.full(t.numel, 1.5, np.float32)), terms)
            self.vals[n.name] = Val([node], (t.numel,))
        elif isinstance(n, (ir.AddressedAccumulationNode, ir.MatMulNode)):
            self.spike_product(n)
        elif isinstance(n, ir.OutputNode):
            self.vals[n.name] = get(0)
        elif isinstance(n, (ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)):
            raise self.fail(n, "time mixing has no NIR form (NIR's one operation across steps is Delay: only causal "
                               "convolutions over time become Delay nodes)")
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
        from .consumers import encode_neuron

        encoded = encode_neuron(self.consumer, nir, n, th, shape)
        if encoded is not None:  # an equally NIR-conforming form that this consumer reads exactly
            node, note = encoded
            self.notes.append(f"{n.name}: {note}")
        elif n.model == "IF":
            node = nir.IF(r=full(1.0 / DT), v_threshold=th, v_reset=full(n.v_reset))
        else:
            tau = (1.0 / n.leak_rate) if n.leak_rate is not None else n.tau
            r = 1.0 if n.decay_input else tau
            node = nir.LIF(tau=full(tau * DT), r=full(r), v_leak=full(n.v_reset), v_threshold=th, v_reset=full(n.v_reset))
            node.metadata = {"spikec_leak_rate": json.dumps(n.leak_rate), "spikec_decay_input": json.dumps(n.decay_input),
                             "spikec_tau": json.dumps(float(tau))}
        self.vals[n.name] = Val([self.add(n.name, node, x.terms)], shape)

    def soft_reset_neuron(self, n: ir.NeuronNode, x: Val, th_below: np.ndarray) -> None:
        """Soft reset (V = H − θS) with standard nodes, in the source's float32 operation order.

        NIR neurons only reset to a value, so the neuron is a nested NIRGraph (NIR's extension
        mechanism; its ``spikec_neuron`` metadata names the neuron for consumers that have one) of
        Scale nodes (each sums its input edges, then scales) around Threshold(θ').  The membrane
        state travels on one recurrent edge, which carries the previous step's value (zeros at
        t = 0, the source's initial V = 0)::

            IF:                   H = X + V[t−1]
            LIF, decay_input:     H = V[t−1] + (X − V[t−1])·k
            LIF, no decay_input:  H = X + (V − V·k)[t−1]
            S = [H > θ'],  V = H + (−θ)·S

        with leak rate k = 1/τ (or the parametric LIF's sigmoid(w)).  Each operation rounds as
        spikingjelly's does (``v + x``, ``v − v/τ``, ``h − θ·s``), so spikes are bit-identical, except
        that ``·k`` stands for ``/τ``: exact when τ is a power of two or the leak is a rate; otherwise
        the product can differ from the quotient by one ulp (noted).  Inside the subgraph the
        node names sort in evaluation order, so nirtorch breaks the cycle at the recurrent edge.
        """
        if n.v_init != 0.0:
            raise self.fail(n, f"soft reset with initial membrane {n.v_init} (recurrent edges start at 0)")
        nir, shape = self.nir, x.shape
        full = lambda v: np.full(shape, v, np.float32)  # noqa: E731
        theta = np.broadcast_to(np.asarray(n.v_threshold, np.float32), self.types[n.name].features).reshape(shape)
        nodes = {"input": nir.Input(input_type={"input": np.array(shape)}),
                 "output": nir.Output(output_type={"output": np.array(shape)})}
        edges: list[tuple[str, str]] = []

        def node(name, nir_node, inputs):
            nodes[name] = nir_node
            edges.extend((i, name) for i in inputs)
            return name

        def scale(name, factor, inputs):
            return node(name, nir.Scale(scale=full(factor) if np.isscalar(factor) else _f32(factor)), inputs)

        k = None if n.model == "IF" else np.float32(n.leak_rate if n.leak_rate is not None else 1.0 / n.tau)
        if n.model == "LIF" and n.decay_input:  # names sort in evaluation order
            d = scale("a_decay", k, ["input", "f_neg_v"])
            h = scale("b_membrane", 1.0, [d, "e_v"])
        elif n.model == "LIF":
            h = scale("b_membrane", 1.0, ["input", "g_leaked"])
        else:
            h = scale("b_membrane", 1.0, ["input", "e_v"])
        spikes = node("c_spikes", nir.Threshold(threshold=th_below), [h])
        v = scale("e_v", 1.0, [h, scale("d_reset", -theta, [spikes])])
        if n.model == "LIF" and n.decay_input:
            scale("f_neg_v", -1.0, [v])
        elif n.model == "LIF":
            scale("g_leaked", 1.0, [v, scale("f_leak", -k, [v])])
        edges.append((spikes, "output"))
        spec = {"model": n.model, "reset": "subtract threshold", "v_threshold": np.asarray(n.v_threshold).tolist(),
                "tau": n.tau if n.model == "LIF" and n.leak_rate is None else None, "leak_rate": n.leak_rate,
                "decay_input": n.decay_input if n.model == "LIF" else None}
        sub = nir.NIRGraph(nodes=nodes, edges=edges, metadata={"spikec_neuron": json.dumps(spec)})
        if n.model == "LIF" and n.leak_rate is None and np.frexp(n.tau)[0] != 0.5:
            self.notes.append(f"{n.name}: soft-reset leak v/tau computed as v*(1/tau) (tau={n.tau} is not a power of "
                              "two: may differ by one ulp)")
        self.notes.append(f"{n.name}: soft reset as a nested graph (Scale / Threshold circuit, one recurrent edge)")
        self.vals[n.name] = Val([self.add(n.name, sub, x.terms)], shape)

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
        if not (self.spatial(y, conv.name) and self.spatial(s, conv.inputs[0])):
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


def sumpool_expresses(pool, in_features, out_features) -> bool:
    """Whether NIR's SumPool2d (2-d, no dilation, floor-mode output size) has the windows of ``pool``:
    a ceil-mode pool does only when its output is no larger than the floor-mode one."""
    if len(pool.kernel) != 2 or any(d != 1 for d in pool.dilation):
        return False
    floor = tuple((size + 2 * p - k) // s + 1 for size, k, s, p in zip(in_features[1:], pool.kernel, pool.stride, pool.padding))
    return floor == tuple(out_features[1:])


def topological_order(keys: list[str], edges: list[tuple[str, str]]) -> list[str]:
    """``keys`` in evaluation order (:func:`spikec.ir.graph.topological_sort`; spikec's top level is
    acyclic: cycles live inside nested graphs, and an edge closing one in a foreign file is skipped)."""
    preds: dict[str, list[str]] = {k: [] for k in keys}
    for a, b in edges:
        preds[b].append(a)
    return topological_sort(keys, preds.__getitem__, cycles="ignore")


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


def _rejection(message: str, keys: dict[str, str], origins: dict[str, str], graph: ir.Graph) -> tuple[str, str]:
    """NIR's type-check ``message`` in the user's terms: `` at NODE (op, module 'M')`` for the IR nodes
    whose NIR nodes it names, and the message with NIR's evaluation-order keys (``n03_pool_or``)
    replaced by the exporter's names (``pool_or``, derived from the IR node's)."""
    named = [k for k in dict.fromkeys(re.findall(r"\w+", message)) if k in keys]
    nodes = [graph[origins[keys[k]]] for k in named if origins.get(keys[k]) in graph]
    places = [f"{n.name} ({n.op}, module '{n.source or 'top level'}')" for n in dict.fromkeys(nodes)]
    detail = re.sub(r"\w+", lambda m: keys.get(m.group(0), m.group(0)), message)
    return (f" at {' and '.join(places)}" if places else ""), detail


def quantization_metadata(report) -> dict:
    """The Loihi 2 fixed-point scales of the same model (a :class:`spikec.passes.quantize.QuantReport`
    from the intref / lava pipeline), keyed by source module: value ≈ integer · scale."""
    return {
        "convention": "Loihi 2 fixed point as `spikec compile --target intref|lava` quantizes this model: "
                      "real value = integer * scale; weights = mantissa << exp, exp = channel_exp[output channel] "
                      "(weight_exp for every channel when channel_exp is null; one Loihi connection per exp)",
        "input_scale": report.input_scale,
        "calibrated": report.calibrated,
        "synapses": [{"module": r.source, "node": r.name, "weight_exp": r.weight_exp,
                      "channel_exp": None if r.channel_exp is None else list(r.channel_exp), "connections": r.connections,
                      "sign_mode": r.sign_mode, "scale_in": r.delta_in, "scale_out": r.delta_out} for r in report.synapses],
        "neurons": [{"module": r.source, "node": r.name, "scale_v": r.delta_v, "vth": r.vth, "dv": r.dv,
                     "threshold": r.threshold} for r in report.neurons],
    }


def export_nir(graph: ir.Graph, max_neurons: int = 1_000_000, partial: bool = False,
               quantization: Optional[dict] = None, consumer: Optional[str] = None) -> Exported:
    """Export a float IR graph (after the 'nir' pass pipeline) as a nir.NIRGraph.  ``quantization``
    (see :func:`quantization_metadata`) is stored in the metadata as given.  ``consumer`` (a name of
    :mod:`.consumers`): neurons that this simulator's NIR import reads exactly only in another, equally
    NIR-conforming form are written in that form (:func:`.consumers.encode_neuron`)."""
    import nir

    graph, readout = _readout(graph)
    ex = _Exporter(graph, max_neurons, consumer)
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
    # keys prefixed in evaluation order: nir.read returns nodes sorted by key, and nirtorch evaluates
    # them in that order (re-queueing a nested graph whose inputs are not ready breaks nirtorch 2.6)
    order = topological_order([k for k in ex.nodes if k in live], [(a, b) for a, b in ex.edges if a in live and b in live])
    rename = {k: f"n{i:0{len(str(len(order)))}d}_{k}" for i, k in enumerate(order)}
    ex.nodes = {rename[k]: ex.nodes[k] for k in order}
    ex.edges = [(rename[a], rename[b]) for a, b in ex.edges if a in live and b in live]
    neurons = {n.name: rename[ex.vals[n.name].terms[0]] for n in graph.nodes
               if isinstance(n, ir.NeuronNode) and n.name in ex.vals and ex.vals[n.name].terms[0] in rename}
    T = max(graph.types[n.name].time for n in graph.nodes)
    meta = {
        "spikec_version": __version__,
        "dt": json.dumps(DT),
        "T": json.dumps(T),
        "threshold_convention": json.dumps("source fires at v >= theta; NIR v_threshold is the float32 just below theta"),
        "readout": json.dumps(readout or "per step"),
        # per output, the IR's per-sample shape (the NIR Output keeps a channel-first view, e.g. [C, 1, 1] for [C])
        "output_features": json.dumps([list(graph.types[o].features) for o in outputs]),
        "input_layout": json.dumps(graph.inputs[0].layout),
        "sources": json.dumps({k: n.source for k, n in ((m.name, m) for m in graph.nodes) if n.source}),
        "neurons": json.dumps(neurons),  # IR neuron layer -> the NIR node whose output is its spikes
        "notes": json.dumps(ex.notes),
        "consumer": json.dumps(consumer),  # the simulator whose NIR import the neuron forms were chosen for
        "recurrent_edge_convention": json.dumps("an edge that closes a cycle carries its source's output of the "
                                                "previous time step (zeros at the first step)"),
        "quantization": json.dumps(quantization if quantization is not None else {"unavailable": "not computed"}),
    }
    try:
        nir_graph = nir.NIRGraph(nodes=ex.nodes, edges=ex.edges, metadata=meta)
    except ValueError as e:  # NIR's own type check: a form spikec does not yet adapt to NIR's limits
        where, detail = _rejection(str(e), {v: k for k, v in rename.items()}, ex.origins, graph)
        raise UnsupportedError(f"nir: NIR {nir.__version__} rejects the exported graph{where} ({detail}): a NIR limit "
                               "spikec does not work around yet; please report the model") from None
    return Exported(nir_graph, ex.coincidences, ex.notes, outputs,
                    {rename[k]: ex.origins[k] for k in order if ex.origins.get(k)})
