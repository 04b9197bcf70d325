"""The integer model (quantized IR) as an ONNX graph that onnxruntime runs bit-exactly like intref.

* opset 17; time unrolled for the fixed T (every value exists once per step);
* convolutions on spikes and on the unsigned 8-bit input use ConvInteger with uint8 operands only
  (MIXED weights as halved positive and negative parts: onnxruntime's u8 x s8 kernels may
  saturate to int16 on CPUs without VNNI; exact int32 accumulation); 1x1 convolutions on graded
  values are MatMuls over channels; other convolutions and sum pools are unrolled integer matrices;
* the only float operations are the input quantization at the boundary
  (``Cast(Clip(Floor(double(x) / scale + 0.5)))``, in float64 as intref's quantize_input); from there on every tensor is
  int64 and every operation integer: MatMul (synapses, with convolutions and sum pools unrolled to
  matrices), Add, Mul, Div (truncates toward zero, as Lava's decay), Where, Clip, Greater, Max,
  ReduceSum, Reshape / Transpose / Slice / Pad;
* floor shifts ``x >> k`` are ``q - [x - q·2^k < 0]`` with ``q = x / 2^k`` truncated;
* the output is the integer model's output (int64); the real value is ``output × scale`` (scale in
  the model's metadata).
"""

from __future__ import annotations

import json

import numpy as np

from spikec import __version__, ir, loihi
from spikec.errors import UnsupportedError

OPSET = 17


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
        """Initializer holding ``mᵀ`` (int64) for :meth:`flat_matmul` (one per node, shared by all steps)."""
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


def export_onnx(graph: ir.Graph):
    """Build an ``onnx.ModelProto`` of a quantized graph (see module docstring)."""
    import onnx
    from onnx import TensorProto, helper

    from spikec.ir.index_maps import conv_matrix, op_matrix

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
            w_t = b.const(np.asarray(n.weight, np.int64).T) if n.layout == "linear" else None
            src = graph.producer(n.inputs[0])
            if isinstance(src, ir.RepeatTimeNode):
                src = graph.producer(src.inputs[0])
            # uint8 operands: spikes, or the unsigned 8-bit input (a signed input is int64 MatMul)
            u8_input = types[n.inputs[0]].kind is ir.Kind.SPIKE or (isinstance(src, ir.QuantizeInputNode) and not src.signed)
            native = n.layout == "conv" and u8_input
            pointwise = n.layout == "conv" and not native and n.groups == 1 and all(k == 1 for k in n.weight.shape[2:]) \
                and all(v == 1 for v in n.stride) and not any(n.padding)
            if pointwise:  # a 1x1 conv on graded values: MatMul over channels, [C_out, C] x [B, C, positions]
                w_pw = b.const(np.asarray(n.weight, np.int64).reshape(n.weight.shape[0], -1))
            elif n.layout == "conv" and not native:  # other convs on graded values: an unrolled matrix
                m = b.matrix(conv_matrix(np.asarray(n.weight, np.int64), fin, n.stride, n.padding, n.dilation, n.groups,
                                         tn.features))
            if native:  # ConvInteger, uint8 x uint8 (exact int32 accumulation): mixed-sign weights
                # as a positive and a negative part, since onnxruntime's u8 x s8 kernels may saturate
                # pairs of products to int16 on x86 CPUs without VNNI (onnxruntime issue 6004)
                w = np.asarray(n.weight, np.int64)
                parts = [(2, np.clip(w, 0, None) // 2), (-2, np.clip(-w, 0, None) // 2)] if n.sign_mode == "mixed" else \
                    [(1, w)] if n.sign_mode == "exc" else [(-1, -w)]
                parts = [(sc, b.const(wp, np.uint8)) for sc, wp in parts if wp.any()] or [(1, b.const(0 * w, np.uint8))]
                zx = b.const(0, np.uint8)
                conv_attrs = dict(strides=list(n.stride), pads=list(n.padding) * 2, dilations=list(n.dilation), group=n.groups)
            for t in steps:
                x = at(n.inputs[0], t)
                if native:
                    xu = b.op("Cast", [x], to=TensorProto.UINT8)
                    terms = []
                    for sc, w_c in parts:
                        term = b.op("Cast", [b.op("ConvInteger", [xu, w_c, zx, zx], **conv_attrs)], to=TensorProto.INT64)
                        terms.append(term if sc == 1 else b.op("Mul", [term, b.const(sc)]))
                    acc = b.add_all(terms)
                elif pointwise:
                    xs_ = b.op("Reshape", [x, b.const([0, fin[0], -1])])
                    acc = b.op("Reshape", [b.op("MatMul", [w_pw, xs_]), b.const([0, *tn.features])])
                elif n.layout == "conv":
                    acc = b.flat_matmul(x, m, fin, tn.features)
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
        elif isinstance(n, ir.SliceNode):
            for t in steps:
                val[(n.name, t)] = b.op("Slice", [at(n.inputs[0], t), b.const([n.start]), b.const([n.stop]), b.const([n.axis + 1])])
        elif isinstance(n, ir.AvgPoolNode):
            m = b.matrix(op_matrix(n, types[n.inputs[0]], tn))
            for t in steps:
                val[(n.name, t)] = b.flat_matmul(at(n.inputs[0], t), m, types[n.inputs[0]].features, tn.features)
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
    g = helper.make_graph(b.nodes, graph.name, [x_in], [o for o, _ in outputs], initializer=b.inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spikec",
                              producer_version=__version__)
    meta = {"output_scales": json.dumps([s for _, s in outputs]), "time_steps": json.dumps(T),
            "semantics": "integer model of spikec intref; real output = output * output_scales[i]"}
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    if model.ByteSize() >= 2 ** 31:
        raise UnsupportedError(f"onnx: the model needs {model.ByteSize() / 2 ** 30:.1f} GiB, over protobuf's 2 GiB limit "
                               "(convolutions on graded values are unrolled matrices); use a smaller model or --target intref")
    onnx.checker.check_model(model)
    return model
