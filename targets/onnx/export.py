"""The integer model (quantized IR) as an ONNX graph that onnxruntime runs bit-exactly like intref.

* opset 17; time unrolled for the fixed T (every value exists once per step);
* every convolution stays a convolution (never an unrolled matrix): ConvInteger with uint8 operands
  only (see *Convolutions* below); a 1x1 convolution on graded values is a MatMul over channels;
  sum pools are depthwise ConvIntegers with a kernel of ones;
* the only float operations are the input quantization at the boundary
  (``Cast(Clip(Floor(double(x) / scale + 0.5)))``, in float64 as intref's quantize_input); from there on every tensor is
  int64 and every operation integer: ConvInteger (uint8 x uint8 -> int32), MatMul (linear synapses,
  pointwise convolutions), Add, Mul, Div (truncates toward zero, as Lava's decay), Where, Clip,
  Greater, Max, ReduceSum, Reshape / Transpose / Slice / Pad;
* floor shifts ``x >> k`` are ``q - [x - q·2^k < 0]`` with ``q = x / 2^k`` truncated;
* the operations that are not spike-driven: the integer kernels of :mod:`spikec.integer_approx` written
  in ONNX integer ops (:mod:`.kernels`), products of two values (Mul / MatMul), added constants (Add);
  time mixing as the T per-step tensors stacked on a feature axis (Unsqueeze / Concat) and taken apart
  by index (Gather);
* the output is the integer model's output (int64); the real value is ``output × scale`` (scale in
  the model's metadata).

Convolutions (exact by construction).  onnxruntime has no float64 or int64 Conv kernel, and its
u8 x s8 ConvInteger kernels may saturate pairs of products to int16 on x86 CPUs without VNNI
(onnxruntime issue 6004), so every convolution is written with u8 x u8 ConvIntegers, whose int32
accumulation is exact while it cannot overflow.  For an integer input ``x`` in ``[lo, hi]``
(:func:`value_ranges`, sound interval arithmetic over the quantized graph) and integer weights ``w``::

    x = x⁺ − x⁻,   x⁺ = max(x, 0),  x⁻ = max(−x, 0)         (x⁻ only if lo < 0, x⁺ only if hi > 0)
    x± = Σ_i 256^i · d±_i,   d_i ∈ [0, 255]                  (digits: ⌈bits(max x±) / 8⌉ of them)
    w = w⁺ − w⁻,   w± = g± · Σ_j 256^j · e±_j,  e_j ∈ [0, 255]   (g = gcd per output channel: MIXED
                                                             weights halve to ≤ 128, a channel exponent's shift goes too)
    conv(x, w) = Σ ± g · 256^(i+j) · ConvInteger(d_i, e_j)    (the ± from the two splits)

Convolution is bilinear, so the identity is exact in the integers; zero padding is zero in every
part and digit.  Each ConvInteger sums products of a digit (≤ max d_i) and a weight digit over
one output channel's kernel, so its result is at most ``max d_i · max_o Σ e_j[o]``; the exporter
checks that this is below 2^31 (else it refuses: the int32 accumulator could wrap) and combines the
int32 results in int64.  Spikes and the unsigned 8-bit input are one part of one digit (one
ConvInteger per weight sign, as before); a sum of two spike trains ``[0, 2]`` too; a signed or
residual-stream input adds a negative part; values beyond 255 add digits.  No float arithmetic, so
no 2^53 argument is needed.

Size.  Without dense matrices the file is about the weights plus a few hundred bytes per node and
step; :func:`estimate_bytes` computes it before building, and a model over protobuf's 2 GiB is
refused with its estimate (:class:`UnsupportedError`) instead of failing in serialisation.
"""

from __future__ import annotations

import json
import math
from typing import Optional

import numpy as np

from spikec import __version__, ir, loihi
from spikec.errors import UnsupportedError
from spikec.targets.intref.executor import integer_factor

from .kernels import emit as emit_kernel
from .kernels import output_range as kernel_output_range

OPSET = 17
PROTOBUF_LIMIT = 2 ** 31 - 1  # bytes: protobuf cannot serialise a larger message (tests lower it)
NODE_BYTES = 160  # estimate of one ONNX node plus its small constants (names, attributes)
ACC_LIMIT = 2 ** 31  # ConvInteger's int32 accumulator
DIGIT = 256
Range = Optional[tuple[int, int]]  # inclusive integer bounds of a value; None: unknown
INT64_RANGE = (-(2 ** 63 - 1), 2 ** 63 - 1)


# --- value ranges -------------------------------------------------------------------------------

def _span(*vals: int) -> tuple[int, int]:
    return min(vals), max(vals)


def _with_zero(r: tuple[int, int]) -> tuple[int, int]:
    """``r`` widened to contain 0 (zero padding, or terms a sum may leave out)."""
    return min(r[0], 0), max(r[1], 0)


def synapse_range(w: np.ndarray, x: tuple[int, int], exp: int = 0, bias=None) -> tuple[int, int]:
    """Range of ``(Σ_k w[o, k] · x_k) >> exp (+ bias[o])`` over all o, each x_k in ``x`` or 0 (padding)."""
    lo, hi = _with_zero(x)
    w = np.asarray(w, np.int64).reshape(w.shape[0], -1)
    pos = [int(v) for v in np.clip(w, 0, None).sum(1)]  # Python ints: no overflow
    neg = [int(v) for v in np.clip(w, None, 0).sum(1)]
    b = [0] * len(pos) if bias is None else [int(v) for v in np.asarray(bias).reshape(-1)]
    los = [loihi.floor_shift(p * lo + q * hi, exp) + c for p, q, c in zip(pos, neg, b)]
    his = [loihi.floor_shift(p * hi + q * lo, exp) + c for p, q, c in zip(pos, neg, b)]
    return min(los), max(his)


def value_ranges(graph: ir.Graph) -> dict[str, Range]:
    """Inclusive integer bounds of every value of a quantized graph, by interval arithmetic from the
    input quantization's clip range (so guaranteed for every input); None where unknown (the float
    input, operations without integer semantics).  A value's kind tightens it (SPIKE: [0, 1];
    COUNT: >= 0), as the kinds are contracts (:mod:`spikec.ir.types`)."""
    types = graph.types
    r: dict[str, Range] = {}
    for n in graph.nodes:
        ins = [r.get(i) for i in n.inputs]
        out: Range = None
        if isinstance(n, ir.QuantizeInputNode):
            out = tuple(int(v) for v in n.bounds)
        elif isinstance(n, ir.LoihiNeuronNode):
            out = (0, 1)
        elif isinstance(n, ir.InputNode) or any(i is None for i in ins):
            out = None
        elif isinstance(n, ir.SynapseNode):
            out = synapse_range(n.weight, ins[0], n.weight_exp, n.bias)
        elif isinstance(n, ir.ShiftNode):
            out = tuple(loihi.floor_shift(v, n.shift) for v in ins[0])
        elif isinstance(n, ir.ScaleNode):
            out = _span(*(v * integer_factor(n) for v in ins[0]))
        elif isinstance(n, ir.AddNode):
            out = (ins[0][0] + ins[1][0], ins[0][1] + ins[1][1])
        elif isinstance(n, (ir.AndNode, ir.AddressedAccumulationNode)):
            k = types[n.inputs[0]].features[-1] if isinstance(n, ir.AddressedAccumulationNode) else 1
            lo, hi = _span(*(a * b for a in ins[0] for b in ins[1]))
            out = (min(k * lo, lo), max(k * hi, hi))  # a sum of k products
        elif isinstance(n, ir.ReduceNode):
            t = types[n.inputs[0]]
            k = math.prod(t.features[a] for a in n.axes) * (t.time if n.over_time else 1)
            out = (min(k * ins[0][0], ins[0][0]), max(k * ins[0][1], ins[0][1]))
        elif isinstance(n, ir.AvgPoolNode):  # integer sum pool, zero padding
            k = math.prod(n.kernel)
            lo, hi = _with_zero(ins[0])
            out = (k * lo, k * hi)
        elif isinstance(n, ir.PadNode):
            v = np.asarray(n.value, np.float64)
            out = (min(ins[0][0], math.floor(v.min())), max(ins[0][1], math.ceil(v.max())))
        elif isinstance(n, (ir.MaxPoolNode, ir.RepeatTimeNode, ir.ReshapeNode, ir.PermuteNode, ir.SliceNode,
                            ir.DequantizeNode, ir.OutputNode, ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)):
            out = ins[0]
        elif isinstance(n, ir.ConcatNode):
            out = (min(v[0] for v in ins), max(v[1] for v in ins))
        elif isinstance(n, ir.AddConstantNode):
            c = np.asarray(n.constant, np.int64) * int(n.alpha)
            out = (ins[0][0] + int(min(c.min(), 0)), ins[0][1] + int(max(c.max(), 0)))
        elif isinstance(n, ir.IntegerKernelNode):
            out = kernel_output_range(n, *ins[0])
        elif isinstance(n, (ir.MulNode, ir.MatMulNode)):  # products of two integer values (a matmul sums k of them)
            k = types[n.inputs[0]].features[-1] if isinstance(n, ir.MatMulNode) else 1
            lo, hi = _span(*(a * b for a in ins[0] for b in ins[1]))
            out = (min(k * lo, lo), max(k * hi, hi))
        kind = types[n.name].kind
        if kind is ir.Kind.SPIKE:
            out = (0, 1)
        elif kind is ir.Kind.COUNT and out is not None:
            out = (max(out[0], 0), max(out[1], 0))
        r[n.name] = out
    return r


# --- the ONNX graph builder ---------------------------------------------------------------------

class _Builder:
    def __init__(self, graph: ir.Graph):
        import onnx
        from onnx import helper

        self.onnx, self.h = onnx, helper
        self.g = graph
        self.types = graph.types
        self.nodes, self.inits = [], []
        self.k = 0

    def name(self, base: str) -> str:
        self.k += 1
        return f"{base.replace('.', '_').replace(':', '_')}_{self.k}"

    def const(self, value, dtype=np.int64, base="c") -> str:
        n = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), n))
        return n

    def op(self, op_type: str, inputs: list, base: str = "t", **attrs) -> str:
        out = self.name(base)
        self.nodes.append(self.h.make_node(op_type, inputs, [out], **attrs))
        return out

    # ------------------------------------------------------------------------------------------
    def floor_shift(self, x: str, k: int) -> str:
        if k >= 0:
            return self.op("Mul", [x, self.const(1 << k)]) if k else x
        d = self.const(1 << (-k))
        q = self.op("Div", [x, d])
        r = self.op("Sub", [x, self.op("Mul", [q, d])])
        neg = self.op("Cast", [self.op("Less", [r, self.const(0)])], to=self.onnx.TensorProto.INT64)
        return self.op("Sub", [q, neg])

    def trunc_decay(self, x: str, factor: int) -> str:
        """:func:`spikec.loihi.trunc0_decay`: ONNX integer Div truncates toward zero, like Lava."""
        if factor == loihi.DECAY_UNITY:
            return x
        return self.op("Div", [self.op("Mul", [x, self.const(factor)]), self.const(loihi.DECAY_UNITY)])

    def matrix(self, m) -> str:
        """Initializer holding ``mᵀ`` (int64) for :meth:`flat_matmul` (one per node, shared by all steps):
        only a ceil-mode sum pool still needs one (intref has none)."""
        return self.const(np.asarray(m.toarray() if hasattr(m, "toarray") else m).T)

    def flat_matmul(self, x: str, m_t: str, in_feats, out_feats) -> str:
        """``x`` [B, *in] -> [B, *out] via the integer matrix initializer ``m_t`` [n_in, n_out]."""
        xf = self.op("Reshape", [x, self.const([0, int(np.prod(in_feats))])])
        y = self.op("MatMul", [xf, m_t])
        return self.op("Reshape", [y, self.const([0, *out_feats])])

    def add_all(self, xs: list) -> str:
        """Sum of several int64 tensors (ONNX Sum has no integer kernel in onnxruntime)."""
        y = xs[0]
        for x in xs[1:]:
            y = self.op("Add", [y, x])
        return y


# --- convolutions as u8 x u8 ConvIntegers -------------------------------------------------------

def _digits(m: int) -> int:
    """Base-256 digits needed for the non-negative integers up to ``m``."""
    return max(1, (int(m).bit_length() + 7) // 8)


def weight_parts(w: np.ndarray) -> list[tuple[int | np.ndarray, np.ndarray]]:
    """``w`` as ``Σ scale · part`` with uint8 ``part`` arrays (sign, gcd and base-256 digits).  The gcd
    is taken per output channel (axis 0): ``scale`` is an int, or an int64 array ``[C_out, 1, ...]``
    when the channels' gcds differ (channels with weight exponents of their own)."""
    w = np.asarray(w, np.int64)
    parts = []
    for sign, p in ((1, np.clip(w, 0, None)), (-1, np.clip(-w, 0, None))):
        if not p.any():
            continue
        rows = p.reshape(p.shape[0], -1)
        g = np.gcd.reduce(rows, axis=1)
        g = np.where(g > 0, g, np.max(g)).astype(np.int64)  # an all-zero channel: any (the largest) gcd
        g = int(g[0]) if np.all(g == g[0]) else g.reshape(-1, *([1] * (w.ndim - 1)))
        p = p // g
        for j in range(_digits(int(p.max()))):
            e = (p >> (8 * j)) & 255
            if e.any():
                parts.append((sign * g * DIGIT ** j, e.astype(np.uint8)))
    return parts or [(1, np.zeros(w.shape, np.uint8))]


def input_parts(x: Range) -> list[tuple[int, int, int]]:
    """``(sign, digits, largest top digit)`` of the non-negative parts x⁺ / x⁻ of a value in ``x``."""
    lo, hi = x if x is not None else INT64_RANGE
    out = []
    for sign, m in ((1, hi), (-1, -lo)):
        if m > 0:
            nd = _digits(m)
            out.append((sign, nd, m >> (8 * (nd - 1))))
    return out or [(1, 1, 0)]


class ConvInteger:
    """An exact integer convolution ``conv(x, w)`` (int64 in, int64 out) of a value in range ``x``
    as u8 x u8 ConvIntegers (module docstring); the weights are initializers shared by all steps."""

    def __init__(self, b: "_Builder", w: np.ndarray, x: Range, stride, padding, dilation, groups: int, where: str):
        self.b = b
        self.lo = (x if x is not None else INT64_RANGE)[0]
        self.xparts = input_parts(x)
        self.wparts = [(sc, b.const(e, np.uint8), e) for sc, e in weight_parts(w)]
        fan = [int(v) for sc, _, e in self.wparts for v in e.reshape(e.shape[0], -1).sum(1, dtype=np.int64)]
        top = max(255 if nd > 1 else t for _, nd, t in self.xparts)
        if top * max(fan) >= ACC_LIMIT:
            raise UnsupportedError(f"onnx: convolution {where}: a ConvInteger could sum up to {top * max(fan)} "
                                   f"(fan-in {int(np.prod(w.shape[1:]))}), beyond its int32 accumulator; use --target intref")
        self.zero = b.const(0, np.uint8)
        self.attrs = dict(strides=list(stride), pads=list(padding) * 2, dilations=list(dilation), group=groups)

    def __call__(self, x: str) -> str:
        from onnx import TensorProto

        b, terms = self.b, []
        pos = x if self.lo >= 0 else b.op("Max", [x, b.const(0)])  # x⁺
        for sx, nd, _ in self.xparts:
            xs = pos if sx == 1 else b.op("Sub", [pos, x])  # x⁻ = x⁺ − x
            for i in range(nd):  # base-256 digits, lowest first
                if i < nd - 1:
                    q = b.op("Div", [xs, b.const(DIGIT)])  # non-negative: truncation is floor
                    d, xs = b.op("Sub", [xs, b.op("Mul", [q, b.const(DIGIT)])]), q
                else:
                    d = xs
                du = b.op("Cast", [d], to=TensorProto.UINT8)
                for sw, w_c, _ in self.wparts:
                    y = b.op("Cast", [b.op("ConvInteger", [du, w_c, self.zero, self.zero], **self.attrs)],
                             to=TensorProto.INT64)
                    sc = sx * sw * DIGIT ** i  # per output channel [C_out, 1, ...]: broadcast over [N, C_out, ...]
                    terms.append(y if np.ndim(sc) == 0 and sc == 1 else b.op("Mul", [y, b.const(np.squeeze(sc, 1) if np.ndim(sc) else sc)]))
        return b.add_all(terms)


def synapse_form(n: ir.SynapseNode, x: Range) -> str:
    """How a synapse node is written: ``linear`` (int64 MatMul), ``pointwise`` (a 1x1 convolution on
    graded values: int64 MatMul over channels) or ``conv`` (:class:`ConvInteger`)."""
    if n.layout != "conv":
        return "linear"
    one_operand = x is not None and x[0] >= 0 and x[1] <= 255  # spikes, the unsigned 8-bit input, small counts
    if not one_operand and n.groups == 1 and all(k == 1 for k in n.weight.shape[2:]) \
            and all(v == 1 for v in n.stride) and not any(n.padding):
        return "pointwise"
    return "conv"


def estimate_bytes(graph: ir.Graph, ranges: Optional[dict[str, Range]] = None) -> tuple[int, str]:
    """The serialised size the exported model will have (initializers exactly, nodes estimated at
    :data:`NODE_BYTES` per operation), and the node holding the largest initializer."""
    ranges = value_ranges(graph) if ranges is None else ranges
    types = graph.types
    total, biggest = 0, (0, "")
    for n in graph.nodes:
        tn = types[n.name]
        nbytes, ops = 0, 2
        if isinstance(n, ir.SynapseNode):
            form = synapse_form(n, ranges[n.inputs[0]])
            if form == "conv":
                k = len(weight_parts(n.weight))
                nbytes = k * n.weight.size
                ops = 8 + 4 * k * sum(nd for _, nd, _ in input_parts(ranges[n.inputs[0]]))
            else:
                nbytes = 8 * n.weight.size
            nbytes += 0 if n.bias is None else 8 * n.bias.size
        elif isinstance(n, ir.AvgPoolNode):
            fin = types[n.inputs[0]].features
            nbytes = 8 * math.prod(fin) * tn.numel if n.ceil_mode else fin[0] * math.prod(n.kernel)
            ops = 12
        elif isinstance(n, ir.PadNode):
            nbytes = 9 * tn.numel  # the border mask and values
        elif isinstance(n, ir.LoihiNeuronNode):
            nbytes, ops = 8 * tn.numel, 24
        elif isinstance(n, ir.MaxPoolNode):
            ops = 2 + math.prod(n.kernel)
        total += nbytes + NODE_BYTES * ops * tn.time
        biggest = max(biggest, (nbytes, f"{n.name} ({n.source})" if n.source else n.name))
    return total, biggest[1]


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2 ** 30:.2f} GiB" if nbytes >= 2 ** 24 else f"{nbytes / 2 ** 20:.2f} MiB"


def export_onnx(graph: ir.Graph):
    """Build an ``onnx.ModelProto`` of a quantized graph (see module docstring); a model that would not
    fit protobuf's 2 GiB is refused first, with its estimated size (:class:`UnsupportedError`)."""
    import onnx
    from google.protobuf.message import EncodeError
    from onnx import TensorProto, helper

    ranges = value_ranges(graph)
    size, biggest = estimate_bytes(graph, ranges)
    if size > PROTOBUF_LIMIT:
        raise UnsupportedError(f"onnx: the model would need about {_gib(size)} (largest tensor: {biggest}), over "
                               f"protobuf's {_gib(PROTOBUF_LIMIT + 1)} limit; use a smaller model or --target intref")
    b = _Builder(graph)
    types = graph.types
    T = max(t.time for t in types.values())
    val: dict[tuple[str, int], str] = {}

    def at(v: str, t: int) -> str:
        return val[(v, t)] if (v, t) in val else val[(v, 0)]

    (inp,) = graph.inputs
    x_shape = ["B", *inp.features] if inp.layout == "static" else [inp.time, "B", *inp.features]
    x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)
    outputs = []
    for n in graph.nodes:
        tn = types[n.name]
        steps = range(tn.time)
        if isinstance(n, ir.InputNode):
            for t in steps:
                val[(n.name, t)] = "x" if inp.layout == "static" else b.op("Gather", ["x", b.const(t)], axis=0)
        elif isinstance(n, ir.QuantizeInputNode):
            lo, hi = n.bounds
            for t in steps:  # in float64, like intref: float32 would round x / scale differently at .5
                x64 = b.op("Cast", [at(n.inputs[0], t)], to=TensorProto.DOUBLE)
                q = b.op("Floor", [b.op("Add", [b.op("Div", [x64, b.const(n.scale, np.float64)]),
                                                 b.const(0.5, np.float64)])])
                q = b.op("Clip", [q, b.const(lo, np.float64), b.const(hi, np.float64)])
                val[(n.name, t)] = b.op("Cast", [q], to=TensorProto.INT64)
        elif isinstance(n, ir.RepeatTimeNode):
            for t in steps:
                val[(n.name, t)] = at(n.inputs[0], 0)
        elif isinstance(n, ir.SynapseNode):
            fin = types[n.inputs[0]].features
            form = synapse_form(n, ranges[n.inputs[0]])
            if form == "linear":
                w_t = b.const(np.asarray(n.weight, np.int64).T)
            elif form == "pointwise":  # [C_out, C] x [B, C, positions]
                w_pw = b.const(np.asarray(n.weight, np.int64).reshape(n.weight.shape[0], -1))
            else:
                conv = ConvInteger(b, n.weight, ranges[n.inputs[0]], n.stride, n.padding, n.dilation, n.groups,
                                   where=f"{n.name} ({n.source})" if n.source else n.name)
            for t in steps:
                x = at(n.inputs[0], t)
                if form == "conv":
                    acc = conv(x)
                elif form == "pointwise":
                    xs_ = b.op("Reshape", [x, b.const([0, fin[0], -1])])
                    acc = b.op("Reshape", [b.op("MatMul", [w_pw, xs_]), b.const([0, *tn.features])])
                else:
                    acc = b.op("MatMul", [x, w_t])
                y = b.floor_shift(acc, n.weight_exp)
                if n.bias is not None:
                    bias = np.asarray(n.bias, np.int64)
                    if n.layout == "conv":
                        bias = bias.reshape(-1, *([1] * (len(tn.features) - 1)))
                    y = b.op("Add", [y, b.const(bias)])
                val[(n.name, t)] = y
        elif isinstance(n, ir.ShiftNode):
            for t in steps:
                val[(n.name, t)] = b.floor_shift(at(n.inputs[0], t), n.shift)
        elif isinstance(n, ir.ScaleNode):  # an integer multiple (the quantizer's negations and alignments)
            k = b.const(integer_factor(n))
            for t in steps:
                val[(n.name, t)] = b.op("Mul", [at(n.inputs[0], t), k])
        elif isinstance(n, (ir.AddNode, ir.AndNode, ir.AddressedAccumulationNode)):
            opt = {ir.AddNode: "Add", ir.AndNode: "Mul", ir.AddressedAccumulationNode: "MatMul"}[type(n)]
            for t in steps:
                val[(n.name, t)] = b.op(opt, [at(n.inputs[0], t), at(n.inputs[1], t)])
        elif isinstance(n, ir.ReduceNode):
            if n.reduce != "sum":
                raise UnsupportedError(f"onnx: integer reduce {n.name} must be a sum")
            nd = len(types[n.inputs[0]].features)
            axes = [a % nd + 1 for a in n.axes]
            for t in steps:
                per = [at(n.inputs[0], s) for s in (range(types[n.inputs[0]].time) if n.over_time else [t])]
                x = b.add_all(per)
                val[(n.name, t)] = b.op("ReduceSum", [x, b.const(axes)], keepdims=int(n.keepdim)) if axes else x
        elif isinstance(n, (ir.ReshapeNode,)):
            for t in steps:
                val[(n.name, t)] = b.op("Reshape", [at(n.inputs[0], t), b.const([0, *n.features])])
        elif isinstance(n, ir.PermuteNode):
            for t in steps:
                val[(n.name, t)] = b.op("Transpose", [at(n.inputs[0], t)], perm=[0, *[p + 1 for p in n.perm]])
        elif isinstance(n, ir.TimeToFeaturesNode):  # the T per-step tensors stacked on feature axis n.axis
            per = [b.op("Unsqueeze", [at(n.inputs[0], s), b.const([n.axis + 1])]) for s in range(types[n.inputs[0]].time)]
            val[(n.name, 0)] = per[0] if len(per) == 1 else b.op("Concat", per, axis=n.axis + 1)
        elif isinstance(n, ir.FeaturesToTimeNode):  # step t: index t of feature axis n.axis
            for t in steps:
                val[(n.name, t)] = b.op("Gather", [at(n.inputs[0], 0), b.const(t)], axis=n.axis + 1)
        elif isinstance(n, ir.ConcatNode):
            for t in steps:
                val[(n.name, t)] = b.op("Concat", [at(i, t) for i in n.inputs], axis=n.axis + 1)
        elif isinstance(n, ir.AddConstantNode):  # the integer constant of step t (or the one of every step)
            c = np.asarray(n.constant, np.int64) * int(n.alpha)
            per_step = [b.const(c[t if c.shape[0] > 1 else 0]) for t in range(c.shape[0])]
            for t in steps:
                val[(n.name, t)] = b.op("Add", [at(n.inputs[0], t), per_step[t if c.shape[0] > 1 else 0]])
        elif isinstance(n, ir.IntegerKernelNode):  # spikec.integer_approx's kernel (targets/onnx/kernels.py)
            for t in steps:
                val[(n.name, t)] = emit_kernel(b, n, at(n.inputs[0], t), len(types[n.inputs[0]].features))
        elif isinstance(n, (ir.MulNode, ir.MatMulNode)):  # a product of two integer values, int64
            opt = "Mul" if isinstance(n, ir.MulNode) else "MatMul"
            for t in steps:
                val[(n.name, t)] = b.op(opt, [at(n.inputs[0], t), at(n.inputs[1], t)])
        elif isinstance(n, ir.SliceNode):
            for t in steps:
                val[(n.name, t)] = b.op("Slice", [at(n.inputs[0], t), b.const([n.start]), b.const([n.stop]), b.const([n.axis + 1])])
        elif isinstance(n, ir.AvgPoolNode):  # an integer sum pool
            fin = types[n.inputs[0]].features
            if n.divisor_override != 1:
                raise UnsupportedError(f"onnx: integer pooling {n.name} ({n.source}) must be a sum pool (divisor 1)")
            if n.ceil_mode:  # no ConvInteger form (intref has no such pool either): an unrolled matrix
                from spikec.ir.index_maps import op_matrix

                m = b.matrix(op_matrix(n, types[n.inputs[0]], tn))
                pool = lambda x, m=m, fin=fin, fout=tn.features: b.flat_matmul(x, m, fin, fout)  # noqa: E731
            else:  # a depthwise convolution with a kernel of ones
                pool = ConvInteger(b, np.ones((fin[0], 1, *n.kernel), np.int64), ranges[n.inputs[0]], n.stride,
                                   n.padding, (1,) * len(n.kernel), fin[0], where=n.name)
            for t in steps:
                val[(n.name, t)] = pool(at(n.inputs[0], t))
        elif isinstance(n, ir.MaxPoolNode):
            fin = types[n.inputs[0]].features
            pads = [0, 0] + [p for p in n.padding] + [0, 0] + [
                max(0, (o - 1) * s + d * (k - 1) + 1 - L - p)
                for o, s, d, k, L, p in zip(tn.features[1:], n.stride, n.dilation, n.kernel, fin[1:], n.padding)]
            for t in steps:
                xp = b.op("Pad", [at(n.inputs[0], t), b.const(pads), b.const(np.iinfo(np.int64).min)])
                parts = []
                for offs in np.ndindex(*n.kernel):
                    starts = [o * d for o, d in zip(offs, n.dilation)]
                    ends = [st + s * (o - 1) + 1 for st, s, o in zip(starts, n.stride, tn.features[1:])]
                    axes = list(range(2, 2 + len(offs)))
                    parts.append(b.op("Slice", [xp, b.const(starts), b.const(ends), b.const(axes), b.const(list(n.stride))]))
                val[(n.name, t)] = parts[0] if len(parts) == 1 else b.op("Max", parts)
        elif isinstance(n, ir.PadNode):
            fin = types[n.inputs[0]].features
            pads = [0, 0] + [lo for lo, _ in n.pads] + [0, 0] + [hi for _, hi in n.pads]
            mask = np.zeros(tn.features, bool)
            mask[(slice(None),) + tuple(slice(lo, lo + L) for (lo, _), L in zip(n.pads, fin[1:]))] = True
            value = np.broadcast_to(np.asarray(n.value).reshape(-1, *([1] * (len(tn.features) - 1)))
                                    if np.ndim(n.value) else np.asarray(n.value), tn.features).astype(np.int64)
            for t in steps:
                padded = b.op("Pad", [at(n.inputs[0], t), b.const(pads), b.const(0)])
                val[(n.name, t)] = b.op("Where", [b.const(mask, bool), padded, b.const(value)])
        elif isinstance(n, ir.LoihiNeuronNode):  # spikec.loihi.lif_step, one step at a time
            bias = b.const(np.broadcast_to(loihi.bias_value(n.bias_mant, n.bias_exp), tn.features))
            u = v = None
            for t in steps:
                a = at(n.inputs[0], t)
                for extra in n.inputs[1:]:
                    a = b.op("Add", [a, at(extra, t)])
                if u is None:
                    zero = b.op("Mul", [a, b.const(0)])
                    u, v = zero, b.op("Add", [zero, b.const(n.v_init)])
                u = b.op("Add", [b.trunc_decay(u, loihi.u_decay_factor(n.du)),
                                 b.op("Mul", [a, b.const(1 << loihi.CURRENT_SHIFT)])])
                u = b.op("Where", [b.op("Greater", [u, b.const(loihi.U_MAX)]), b.op("Sub", [u, b.const(loihi.U_MODULUS)]), u])
                u = b.op("Where", [b.op("LessOrEqual", [u, b.const(-loihi.U_MAX)]), b.op("Add", [u, b.const(loihi.U_MODULUS)]), u])
                v = b.op("Add", [b.op("Add", [b.trunc_decay(v, loihi.v_decay_factor(n.dv)), u]), bias])
                v = b.op("Clip", [v, b.const(-loihi.V_LIMIT), b.const(loihi.V_LIMIT)])
                s = b.op("Greater", [v, b.const(loihi.threshold(n.vth))])
                if n.reset == "zero":
                    v = b.op("Where", [s, b.const(0), v])
                elif n.reset == "soft":
                    v = b.op("Where", [s, b.op("Sub", [v, b.const(loihi.first_spiking_v(n.vth))]), v])
                else:
                    v = b.op("Where", [s, b.const(n.reset_value), v])
                val[(n.name, t)] = b.op("Cast", [s], to=TensorProto.INT64)
        elif isinstance(n, ir.DequantizeNode):
            for t in steps:
                val[(n.name, t)] = at(n.inputs[0], t)
        elif isinstance(n, ir.OutputNode):
            per = [b.op("Unsqueeze", [at(n.inputs[0], t), b.const([0])]) for t in steps]
            y = per[0] if len(per) == 1 else b.op("Concat", per, axis=0)  # [T, B, ...]
            if n.layout == "batch":
                y = b.op("Squeeze", [y, b.const([0])])
            elif n.layout == "merged":
                y = b.op("Reshape", [y, b.const([-1, *tn.features])])
            b.nodes.append(helper.make_node("Identity", [y], [n.name]))
            src = graph.producer(n.inputs[0])
            scale = src.scale if isinstance(src, ir.DequantizeNode) else 1.0
            shape = {"split": [tn.time, "B"], "batch": ["B"], "merged": ["TB"]}[n.layout] + list(tn.features)
            outputs.append((helper.make_tensor_value_info(n.name, TensorProto.INT64, shape), scale))
        else:
            raise UnsupportedError(f"onnx: no integer ONNX form for {n.op} {n.name} ({n.source})")
    try:  # protobuf may serialise while assembling (upb): a failure is one line, not a traceback
        g = helper.make_graph(b.nodes, graph.name, [x_in], [o for o, _ in outputs], initializer=b.inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spikec",
                                  producer_version=__version__)
        meta = {"output_scales": json.dumps([s for _, s in outputs]), "time_steps": json.dumps(T),
                "output_layouts": json.dumps([n.layout for n in graph.outputs]),
                "semantics": "integer model of spikec intref; real output = output * output_scales[i]"}
        for k, v in meta.items():
            model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
        size = model.ByteSize()
        if size > PROTOBUF_LIMIT:
            raise UnsupportedError(f"onnx: the model needs {_gib(size)}, over protobuf's {_gib(PROTOBUF_LIMIT + 1)} "
                                   "limit; use a smaller model or --target intref")
        onnx.checker.check_model(model)
    except (EncodeError, ValueError, MemoryError) as e:
        raise UnsupportedError(f"onnx: the model cannot be serialised ({type(e).__name__}: {e}); "
                               "use a smaller model or --target intref") from None
    return model
