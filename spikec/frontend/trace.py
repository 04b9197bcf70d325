"""Tracing a PyTorch spiking model into the spikec IR.

Why ``torch.export`` (non-strict) rather than ``torch.fx`` symbolic tracing: spiking transformers
unpack shapes (``T, B, C, H, W = x.shape``), reshape, multiply and matmul activations, which fx's
symbolic tracer cannot follow (nirtorch's fx tracer fails on them), while ``torch.export`` runs the
real Python code on fake tensors and records the ATen operations that were executed, with the
source module path of each (``nn_module_stack``).  Neuron modules are swapped for one custom op
first (:mod:`.neurons`), so a neuron layer is one node, not an unrolled time loop.

The batch axis is exported as a *dynamic* dimension.  Its symbol tells, for every tensor in the
ATen graph, which axis is the batch: that is how the converter maps the model's tensors, which are
either ``[T, B, ...]`` ("split") or ``[T*B, ...]`` ("merged", as ``SeqToANNContainer`` and
spikingjelly's ``layer.*`` wrappers make them), onto IR values of layout ``[T, B, *features]``.
Operations that would mix the batch axis with another axis are refused.
"""

from __future__ import annotations

import copy
import math
import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .. import ir
from ..errors import ShapeError, SpikecError, UnsupportedError
from ..ir.types import TensorType
from .load import LoadedModel
from .bn_pad import replace_bn_and_pad
from .neurons import replace_neurons

TRACE_BATCH = 3  # example batch for export (dynamic; any size >= 2 works)


@dataclass(frozen=True)
class Act:
    """An ATen tensor that is an IR value: ``layout`` 'split' = [T, B, *f], 'merged' = [T*B, *f]."""

    value: str
    layout: str


@dataclass(frozen=True)
class Poison:
    """Result of an op that could not be converted; an error only if something uses it."""

    error: SpikecError


def _module_of(node: torch.fx.Node) -> tuple[str, str]:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, typ = list(stack.values())[-1]
    tname = typ if isinstance(typ, str) else f"{typ.__module__}.{typ.__qualname__}"
    return path, tname


def _op_name(node: torch.fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    s = str(t)
    return s.rsplit(".", 1)[0] if s.count(".") >= 2 else s


SUPPORTED_ATEN = (
    "conv1d/conv2d, linear, batch_norm, max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool(1), add, "
    "sub, mul, div (by constants), matmul, mean/sum over axes, flatten/unflatten/view/reshape/"
    "squeeze/unsqueeze, transpose/permute, chunk/split/select/slice, repeat over time, dropout "
    "(eval), clone/contiguous/detach, and spiking neurons"
)


class _Converter:
    def __init__(self, ep, sequence: bool, graph_name: str):
        self.ep = ep
        self.sequence = sequence
        self.graph_name = graph_name
        self.nodes: list[ir.Node] = []
        self.types: dict[str, TensorType] = {}
        self.env: dict[torch.fx.Node, Any] = {}
        self.used_names: set[str] = set()
        sig = ep.graph_signature
        self.const_of: dict[str, torch.Tensor] = {}
        for ph, key in {**sig.inputs_to_parameters, **sig.inputs_to_buffers}.items():
            self.const_of[ph] = ep.state_dict[key]
        for ph, key in getattr(sig, "inputs_to_lifted_tensor_constants", {}).items():
            self.const_of[ph] = ep.constants[key]
        self.user_inputs = list(sig.user_inputs)
        self.batch = None  # symbol (SymInt) or int of the batch axis
        self.cur: Optional[torch.fx.Node] = None

    # --- helpers ----------------------------------------------------------------------------------
    def where(self) -> str:
        path, typ = _module_of(self.cur) if self.cur is not None else ("", "")
        if path:
            return f"module '{path}' ({typ})"
        return "the model's top-level forward"

    def unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} in {self.where()}")

    def emit(self, cls, inputs: Sequence[str], primary: bool = False, **attrs) -> str:
        path, _ = _module_of(self.cur) if self.cur is not None else ("", "")
        base = path if (primary and path) else (f"{path}:{cls.op}" if path else cls.op)
        name, k = base, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        self.used_names.add(name)
        node = cls(name=name, inputs=tuple(inputs), source=path, **attrs)
        try:
            self.types[name] = node.infer([self.types[i] for i in inputs])
        except SpikecError as e:
            raise UnsupportedError(f"{e} (while converting {self.where()})") from None
        self.nodes.append(node)
        return name

    def t(self, act: Act) -> TensorType:
        return self.types[act.value]

    def act(self, x, role: str = "input") -> Act:
        if isinstance(x, Poison):
            raise x.error.with_traceback(None)
        if not isinstance(x, Act):
            raise self.unsupported(f"{_op_name(self.cur)} needs an activation as {role}, got {type(x).__name__}")
        return x

    def value(self, a):
        if isinstance(a, torch.fx.Node):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(x) for x in a)
        return a

    # batch-axis bookkeeping ------------------------------------------------------------------------
    def coef(self, d) -> Optional[int]:
        """k if dimension ``d`` equals k * batch, else None."""
        b = self.batch
        if isinstance(b, torch.SymInt):
            if not isinstance(d, torch.SymInt):
                return None
            q = d.node.expr / b.node.expr
            return int(q) if getattr(q, "is_Integer", False) else None
        if isinstance(d, int) and d % b == 0:
            return d // b
        return None

    def layout_of_shape(self, shape, time: int) -> tuple[str, tuple[int, ...]]:
        """Which layout an ATen tensor of ``shape`` has for an IR value with ``time`` steps."""
        def concrete(dims):
            return all(not isinstance(d, torch.SymInt) for d in dims)

        if len(shape) >= 2 and concrete(shape[:1]) and int(shape[0]) == time and self.coef(shape[1]) == 1 and concrete(shape[2:]):
            return "split", tuple(int(d) for d in shape[2:])
        if len(shape) >= 1 and self.coef(shape[0]) == time and concrete(shape[1:]):
            return "merged", tuple(int(d) for d in shape[1:])
        raise self.unsupported(
            f"a tensor of shape {tuple(shape)} that mixes the batch axis with other axes "
            f"(expected [T={time}, B, ...] or [T*B, ...])"
        )

    def feature_axis(self, act: Act, dim: int, ndim: int) -> int | str:
        dim = dim % ndim if ndim else dim
        if act.layout == "split":
            return {0: "time", 1: "batch"}.get(dim, dim - 2)
        return "time*batch" if dim == 0 else dim - 1

    def need_feature_axis(self, act: Act, dim: int, ndim: int, what: str) -> int:
        ax = self.feature_axis(act, dim, ndim)
        if isinstance(ax, str):
            raise self.unsupported(f"{what} along the {ax} axis")
        return ax

    def out_shape(self):
        v = self.cur.meta.get("val")
        return tuple(v.shape)

    def const(self, x) -> Optional[np.ndarray]:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy().copy()
        return None

    # --- conversion ------------------------------------------------------------------------------
    def run(self) -> ir.Graph:
        g = self.ep.graph_module.graph
        for node in g.nodes:
            self.cur = node
            if node.op == "placeholder":
                self.env[node] = self.placeholder(node)
            elif node.op == "call_function":
                try:
                    self.env[node] = self.call(node)
                except SpikecError as e:
                    self.env[node] = Poison(e)
            elif node.op == "output":
                self.output(node)
            else:
                raise self.unsupported(f"fx node kind {node.op!r}")
        nodes = ir.dead_code_elimination(self.nodes)
        return ir.Graph(nodes, name=self.graph_name).validate()

    def placeholder(self, node):
        if node.name in self.const_of:
            return self.const_of[node.name]
        if node.name not in self.user_inputs:
            raise self.unsupported(f"unknown graph input {node.name}")
        if self.user_inputs.index(node.name) != 0:
            raise UnsupportedError("models with more than one input are not supported")
        shape = tuple(node.meta["val"].shape)
        if self.sequence:
            if len(shape) < 2:
                raise ShapeError(f"a sequence input needs shape [T, B, ...], got {shape}")
            self.batch = shape[1]
            time, feats, layout = int(shape[0]), shape[2:], "sequence"
        else:
            self.batch = shape[0]
            time, feats, layout = 1, shape[1:], "static"
        name = self.emit(ir.InputNode, [], features=tuple(int(d) for d in feats), time=time,
                         kind=ir.Kind.REAL.value, layout=layout)
        return Act(name, "split" if self.sequence else "merged")

    def output(self, node):
        results = node.args[0]
        results = results if isinstance(results, (list, tuple)) else [results]
        for i, r in enumerate(results):
            a = self.act(self.value(r), "output")
            t = self.t(a)
            if a.layout == "merged" and t.time == 1:
                layout = "batch"
            else:
                layout = a.layout
            self.cur = node
            name = "output" if len(results) == 1 else f"output_{i}"
            self.used_names.add(name)
            out = ir.OutputNode(name=name, inputs=(a.value,), source="", layout=layout)
            self.types[name] = out.infer([t])
            self.nodes.append(out)

    def call(self, node):
        op = _op_name(node)
        handler: Optional[Callable] = _HANDLERS.get(op)
        if handler is None:
            raise self.unsupported(f"unsupported operation {op}")
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        return handler(self, *args, **kwargs)


# ------------------------------------------------------------------------------------------------
# Handlers: (converter, *args, **kwargs) -> Act | Poison | constant | tuple
# ------------------------------------------------------------------------------------------------

_HANDLERS: dict[str, Callable] = {}


def handles(*names):
    def deco(fn):
        for n in names:
            _HANDLERS[n] = fn
        return fn

    return deco


def _tuple(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v


@handles("aten.conv1d", "aten.conv2d")
def _conv(c: _Converter, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("a convolution on a [T, B, ...] tensor (expected time merged into batch)")
    w = c.const(weight)
    if w is None:
        raise c.unsupported("a convolution with a computed (non-constant) weight")
    nd = w.ndim - 2
    dil = _tuple(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            padding = 0
        elif padding == "same" and all((d * (k - 1)) % 2 == 0 for d, k in zip(dil, w.shape[2:])):
            padding = tuple(d * (k - 1) // 2 for d, k in zip(dil, w.shape[2:]))
        else:
            raise c.unsupported(f"convolution padding={padding!r} with an even kernel")
    name = c.emit(ir.ConvNode, [x.value], primary=True, weight=w, bias=c.const(bias),
                  stride=_tuple(stride, nd), padding=_tuple(padding, nd), dilation=dil, groups=int(groups))
    return Act(name, "merged")


@handles("aten.linear")
def _linear(c, x, weight, bias=None):
    x = c.act(x)
    w = c.const(weight)
    if w is None:
        raise c.unsupported("a linear layer with a computed (non-constant) weight")
    if not c.t(x).features:
        raise c.unsupported("a linear layer applied to the batch axis")
    return Act(c.emit(ir.LinearNode, [x.value], primary=True, weight=w, bias=c.const(bias)), x.layout)


def _bn(c, x, weight, bias, mean, var, eps):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("batch norm on a [T, B, ...] tensor (it would normalise over time)")
    if not isinstance(mean, torch.Tensor):
        raise c.unsupported("batch norm without running statistics (track_running_stats=False)")
    return Act(
        c.emit(ir.BatchNormNode, [x.value], primary=True, mean=c.const(mean), var=c.const(var),
               weight=c.const(weight), bias=c.const(bias), eps=float(eps), axis=0),
        "merged",
    )


@handles("aten.batch_norm")
def _batch_norm(c, x, weight, bias, running_mean, running_var, training, momentum, eps, cudnn=False):
    if training:
        raise c.unsupported("batch norm in training mode")
    return _bn(c, x, weight, bias, running_mean, running_var, eps)


@handles("aten._native_batch_norm_legit_no_training")
def _bn_no_training(c, x, weight, bias, running_mean, running_var, momentum, eps):
    return (_bn(c, x, weight, bias, running_mean, running_var, eps), None, None)


@handles("aten.max_pool1d", "aten.max_pool2d", "aten.max_pool2d_with_indices")
def _maxpool(c, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("max pooling on a [T, B, ...] tensor")
    nd = len(c.t(x).features) - 1
    k = _tuple(kernel, nd)
    s = _tuple(stride, nd) if stride not in ((), [], None) else k
    out = Act(c.emit(ir.MaxPoolNode, [x.value], primary=True, kernel=k, stride=s,
                     padding=_tuple(padding, nd), dilation=_tuple(dilation, nd), ceil_mode=bool(ceil_mode)), "merged")
    return (out, None) if "with_indices" in _op_name(c.cur) else out


@handles("aten.avg_pool1d", "aten.avg_pool2d")
def _avgpool(c, x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("average pooling on a [T, B, ...] tensor")
    nd = len(c.t(x).features) - 1
    k = _tuple(kernel, nd)
    s = _tuple(stride, nd) if stride not in ((), [], None) else k
    return Act(c.emit(ir.AvgPoolNode, [x.value], primary=True, kernel=k, stride=s, padding=_tuple(padding, nd),
                      ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad),
                      divisor_override=divisor_override), "merged")


@handles("aten.adaptive_avg_pool1d", "aten.adaptive_avg_pool2d")
def _adaptive_avgpool(c, x, output_size):
    x = c.act(x)
    if x.layout != "merged":
        raise c.unsupported("adaptive pooling on a [T, B, ...] tensor")
    if any(int(o) != 1 for o in _tuple(output_size, len(c.t(x).features) - 1)):
        raise c.unsupported(f"adaptive average pooling to {output_size} (only to size 1)")
    axes = tuple(range(1, len(c.t(x).features)))
    return Act(c.emit(ir.ReduceNode, [x.value], primary=True, reduce="mean", axes=axes, keepdim=True), "merged")


def _const_factor(c, x: Act, k) -> np.ndarray | float:
    """A constant multiplier as a scalar or an array over the features."""
    if isinstance(k, (int, float)):
        return float(k)
    arr = c.const(k)
    feats = c.t(x).features
    full_nd = len(feats) + (2 if x.layout == "split" else 1)
    arr = arr.reshape((1,) * (full_nd - arr.ndim) + arr.shape)
    lead = 2 if x.layout == "split" else 1
    if any(d != 1 for d in arr.shape[:lead]):
        raise c.unsupported("multiplication by a constant that varies over time or batch")
    arr = arr.reshape(arr.shape[lead:]).astype(np.float32)
    return float(arr.reshape(-1)[0]) if arr.size == 1 else arr


@handles("aten.mul")
def _mul(c, a, b):
    if isinstance(a, Act) and isinstance(b, Act):
        ta, tb = c.t(a), c.t(b)
        if a.layout != b.layout and not (ta.time == 1 and tb.time == 1):
            raise c.unsupported("a product of tensors with different time layouts")
        return Act(c.emit(ir.MulNode, [a.value, b.value]), a.layout)
    if not isinstance(a, Act):
        a, b = b, a
    a = c.act(a)
    return Act(c.emit(ir.ScaleNode, [a.value], factor=_const_factor(c, a, b), mode="mul"), a.layout)


@handles("aten.div")
def _div(c, a, b, rounding_mode=None):
    a = c.act(a)
    if isinstance(b, (Act, Poison)) or rounding_mode is not None:
        raise c.unsupported("division by an activation (or with rounding)")
    return Act(c.emit(ir.ScaleNode, [a.value], factor=_const_factor(c, a, b), mode="div"), a.layout)


@handles("aten.add", "aten.sub")
def _add(c, a, b, alpha=1):
    sub = _op_name(c.cur) == "aten.sub"
    if not (isinstance(a, Act) and isinstance(b, Act)):
        for v in (a, b):
            if isinstance(v, Poison):
                raise v.error.with_traceback(None)
        raise c.unsupported("adding a constant (bias / position embedding) to an activation")
    ta, tb = c.t(a), c.t(b)
    if ta.time != tb.time:
        raise c.unsupported(f"adding values with {ta.time} and {tb.time} time steps")
    if a.layout != b.layout and ta.time != 1:
        raise c.unsupported("adding tensors with different time layouts")
    rhs = b.value
    k = -alpha if sub else alpha
    if k != 1:
        rhs = c.emit(ir.ScaleNode, [rhs], factor=float(k), mode="mul")
    return Act(c.emit(ir.AddNode, [a.value, rhs]), a.layout)


@handles("aten.matmul", "aten.bmm")
def _matmul(c, a, b):
    a, b = c.act(a, "left operand"), c.act(b, "right operand")
    if isinstance(a, Act) and isinstance(b, Act) and a.layout == b.layout:
        return Act(c.emit(ir.MatMulNode, [a.value, b.value]), a.layout)
    raise c.unsupported("a matmul with a constant operand or mixed layouts (use nn.Linear)")


@handles("aten.transpose", "aten.permute", "aten.t")
def _permute(c, x, *dims):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    nd = len(t.features) + lead
    if _op_name(c.cur) == "aten.t":
        dims = (1, 0) if nd == 2 else ()
    if _op_name(c.cur) == "aten.transpose":
        d0, d1 = (int(d) % nd for d in dims)
        perm = list(range(nd))
        perm[d0], perm[d1] = perm[d1], perm[d0]
    else:
        perm = [int(d) % nd for d in (dims[0] if len(dims) == 1 else dims)]
    if perm[:lead] != list(range(lead)):
        raise c.unsupported(f"a permutation {perm} that moves the time or batch axis")
    fperm = tuple(p - lead for p in perm[lead:])
    if fperm == tuple(range(len(fperm))):
        return x
    return Act(c.emit(ir.PermuteNode, [x.value], perm=fperm), x.layout)


@handles("aten.flatten", "aten.unflatten", "aten.view", "aten.reshape", "aten._unsafe_view",
         "aten.squeeze", "aten.unsqueeze", "aten.expand")
def _shape_op(c, x, *args):
    x = c.act(x)
    t = c.t(x)
    layout, feats = c.layout_of_shape(c.out_shape(), t.time)
    if _op_name(c.cur) == "aten.expand" and math.prod(feats) != t.numel:
        raise c.unsupported("expand that broadcasts an activation")
    if feats == t.features:
        return Act(x.value, layout)
    return Act(c.emit(ir.ReshapeNode, [x.value], features=feats), layout)


@handles("aten.clone", "aten.contiguous", "aten.alias", "aten.detach", "aten.lift_fresh_copy",
         "aten._to_copy", "aten.to")
def _identity(c, x, *args, **kwargs):
    if isinstance(x, Act):
        if c.cur.meta.get("val") is not None and c.cur.meta["val"].dtype not in (torch.float32,):
            raise c.unsupported(f"a cast of an activation to {c.cur.meta['val'].dtype}")
        return x
    if isinstance(x, Poison):
        raise x.error.with_traceback(None)
    return x


@handles("aten.dropout", "aten.feature_dropout")
def _dropout(c, x, p, train):
    if train:
        raise c.unsupported("dropout in training mode (call model.eval())")
    return c.act(x)


def _reduce(c, x, dims, keepdim, how):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    nd = len(t.features) + lead
    dims = [int(d) % nd for d in ([dims] if isinstance(dims, int) else dims)]
    over_time, axes = False, []
    for d in dims:
        ax = c.feature_axis(x, d, nd)
        if ax == "time":
            over_time = True
        elif isinstance(ax, str):
            raise c.unsupported(f"a {how} over the {ax} axis")
        else:
            axes.append(ax)
    if over_time and keepdim:
        raise c.unsupported(f"a {how} over time with keepdim=True")
    name = c.emit(ir.ReduceNode, [x.value], reduce=how, axes=tuple(axes), over_time=over_time, keepdim=bool(keepdim))
    if over_time:
        return Act(name, "merged")  # [B, *f]: time axis (now length 1) dropped, as in torch
    return Act(name, x.layout)


@handles("aten.mean")
def _mean(c, x, dims=None, keepdim=False, dtype=None):
    if dims is None:
        raise c.unsupported("a mean over all axes (including batch)")
    return _reduce(c, x, dims, keepdim, "mean")


@handles("aten.sum")
def _sum(c, x, dims=None, keepdim=False, dtype=None):
    if dims is None:
        raise c.unsupported("a sum over all axes (including batch)")
    return _reduce(c, x, dims, keepdim, "sum")


@handles("aten.repeat")
def _repeat(c, x, repeats):
    x = c.act(x)
    t = c.t(x)
    reps = [int(r) for r in repeats]
    if x.layout == "split" and t.time == 1 and len(reps) == len(t.features) + 2 and all(r == 1 for r in reps[1:]):
        return Act(c.emit(ir.RepeatTimeNode, [x.value], time=reps[0]), "split")
    raise c.unsupported(f"repeat{tuple(reps)} (only repeating a single frame over time, [T, 1, 1, ...])")


def _slices(c, x: Act, dim, sizes) -> list[Act]:
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a split")
    outs, start = [], 0
    for s in sizes:
        outs.append(Act(c.emit(ir.SliceNode, [x.value], axis=ax, start=start, stop=start + s), x.layout))
        start += s
    return outs


@handles("aten.chunk")
def _chunk(c, x, chunks, dim=0):
    x = c.act(x)
    lead = 2 if x.layout == "split" else 1
    n = c.t(x).features[c.need_feature_axis(x, int(dim), len(c.t(x).features) + lead, "a chunk")]
    size = -(-n // int(chunks))
    sizes = [min(size, n - i) for i in range(0, n, size)]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.split", "aten.split_with_sizes")
def _split(c, x, split, dim=0):
    x = c.act(x)
    lead = 2 if x.layout == "split" else 1
    n = c.t(x).features[c.need_feature_axis(x, int(dim), len(c.t(x).features) + lead, "a split")]
    if isinstance(split, int):
        sizes = [min(split, n - i) for i in range(0, n, split)]
    else:
        sizes = [int(s) for s in split]
    return tuple(_slices(c, x, dim, sizes))


@handles("aten.select")
def _select(c, x, dim, index):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a select")
    i = int(index) % t.features[ax]
    s = c.emit(ir.SliceNode, [x.value], axis=ax, start=i, stop=i + 1)
    feats = t.features[:ax] + t.features[ax + 1:]
    return Act(c.emit(ir.ReshapeNode, [s], features=feats), x.layout)


@handles("aten.slice")
def _slice(c, x, dim=0, start=None, end=None, step=1):
    x = c.act(x)
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    ax = c.need_feature_axis(x, int(dim), len(t.features) + lead, "a slice")
    if step != 1:
        raise c.unsupported("a strided slice")
    n = t.features[ax]
    lo, hi, _ = slice(start, end).indices(n)
    if lo == 0 and hi == n:
        return x
    return Act(c.emit(ir.SliceNode, [x.value], axis=ax, start=lo, stop=hi), x.layout)


@handles("spikec.channel_pad")
def _channel_pad(c, x, pad, values):
    x = c.act(x)
    if x.layout != "merged" or len(c.t(x).features) != 3:
        raise c.unsupported("BN-aware padding of a tensor that is not [T*B, C, H, W]")
    p = int(pad)
    return Act(c.emit(ir.PadNode, [x.value], primary=True, pads=((p, p), (p, p)),
                      value=c.const(values).astype(np.float32)), "merged")


@handles("aten.pad", "aten.constant_pad_nd")
def _pad(c, x, pad, *rest):
    x = c.act(x)
    mode = rest[0] if rest and isinstance(rest[0], str) else "constant"
    value = next((r for r in rest if isinstance(r, (int, float))), 0.0) if rest else 0.0
    if mode != "constant":
        raise c.unsupported(f"padding mode {mode!r} (only constant padding)")
    if value is None:
        value = 0.0
    t = c.t(x)
    lead = 2 if x.layout == "split" else 1
    nd = len(t.features) + lead
    pairs = [(int(pad[i]), int(pad[i + 1])) for i in range(0, len(pad), 2)]  # last axis first
    first_axis = nd - len(pairs)
    if first_axis < lead + 1:
        raise c.unsupported("padding the channel, batch or time axis")
    n_spatial = len(t.features) - 1
    pads = [(0, 0)] * n_spatial
    for k, pr in enumerate(pairs):
        pads[n_spatial - 1 - k] = pr
    return Act(c.emit(ir.PadNode, [x.value], pads=tuple(pads), value=float(value)), x.layout)


@handles("aten.sym_size", "aten._assert_tensor_metadata", "aten._assert_scalar", "aten.sym_constrain_range_for_size")
def _ignore(c, *args, **kwargs):
    return None


@handles("getitem")
def _getitem(c, seq, i):
    if isinstance(seq, Poison):
        return seq
    if isinstance(seq, (tuple, list)):
        return seq[i]
    raise c.unsupported("indexing a tensor")


@handles("aten.full_like", "aten.zeros_like", "aten.full", "aten.zeros", "aten.new_zeros", "aten.new_full")
def _full_like(c, x, value=0.0, *rest, **kwargs):
    """Only as a neuron's initial state (spikingjelly exported programs); a constant fill."""
    op = _op_name(c.cur)
    if op in ("aten.zeros_like", "aten.zeros", "aten.new_zeros"):
        value = 0.0
    elif op == "aten.new_full":
        value = rest[0] if rest else kwargs.get("fill_value")
    return ("full_like", float(value))


def _neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init):
    x = c.act(x)
    if x.layout != "split":
        raise c.unsupported("a neuron on a tensor whose time axis is merged into the batch")
    name = c.emit(ir.NeuronNode, [x.value], primary=True, model=model, v_threshold=float(v_threshold),
                  v_reset=None if v_reset is None else float(v_reset), tau=None if tau is None else float(tau),
                  decay_input=bool(decay_input), leak_rate=None if leak_rate is None else float(leak_rate),
                  v_init=float(v_init))
    return Act(name, "split")


@handles("spikec.neuron")
def _spikec_neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init):
    return _neuron(c, x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init)


def _sj_v_init(c, v, expected: float):
    if not (isinstance(v, tuple) and v[0] == "full_like" and v[1] == expected):
        raise c.unsupported(f"a spikingjelly neuron whose initial membrane is not the constant {expected}")


@handles("sj_lif.forward")
def _sj_lif(c, x, v, tau, decay_input, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    return (_neuron(c, x, "LIF", threshold, reset, tau, decay_input, None, v_init), Poison(c.unsupported("reading a neuron's membrane")), Poison(c.unsupported("reading a neuron's membrane")))


@handles("sj_if.forward")
def _sj_if(c, x, v, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    return (_neuron(c, x, "IF", threshold, reset, None, True, None, v_init), Poison(c.unsupported("reading a neuron's membrane")), Poison(c.unsupported("reading a neuron's membrane")))


@handles("sj_plif.forward")
def _sj_plif(c, x, v, w, decay_input, threshold, reset, detach_reset=False, alpha=4.0, store_v_seq=False, sid=0):
    v_init = 0.0 if reset is None else float(reset)
    _sj_v_init(c, v, v_init)
    wt = c.const(w)
    if wt is None:
        raise c.unsupported("a parametric LIF whose w is not a constant")
    rate = float(torch.tensor(wt).float().sigmoid().item())
    return (_neuron(c, x, "LIF", threshold, reset, 1.0 / rate, decay_input, rate, v_init), Poison(c.unsupported("reading a neuron's membrane")), Poison(c.unsupported("reading a neuron's membrane")))


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def example_input(input_shape: Sequence[int], time_steps: Optional[int], batch: int = TRACE_BATCH) -> torch.Tensor:
    shape = (batch, *input_shape) if time_steps is None else (time_steps, batch, *input_shape)
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g)


def export_module(model: torch.nn.Module, input_shape: Sequence[int], time_steps: Optional[int] = None):
    """Swap neurons for the traceable op and ``torch.export`` a copy of ``model`` (eval mode)."""
    model = copy.deepcopy(model).eval()
    model, _ = replace_neurons(model)
    replace_bn_and_pad(model)
    x = example_input(input_shape, time_steps)
    batch_axis = 0 if time_steps is None else 1
    dyn = ({batch_axis: torch.export.Dim.AUTO},)  # symbolic batch; see module docstring
    try:
        with torch.no_grad():
            return torch.export.export(model, (x,), dynamic_shapes=dyn, strict=False)
    except SpikecError:
        raise
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "size" in msg or "shape" in msg or "channels" in msg or "expected" in msg.lower():
            what = f"[B, {', '.join(map(str, input_shape))}]" if time_steps is None else f"[T={time_steps}, B, {', '.join(map(str, input_shape))}]"
            raise ShapeError(
                f"the model does not accept input of shape {what}: {msg}. "
                "Check --input-shape (per-sample shape, without batch) and --time-steps."
            ) from None
        raise UnsupportedError(f"torch.export could not trace the model: {msg}") from None
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UnsupportedError(f"torch.export could not trace the model: {type(e).__name__}: {msg}") from None


def trace(
    loaded: LoadedModel | torch.nn.Module,
    input_shape: Optional[Sequence[int]] = None,
    time_steps: Optional[int] = None,
    name: str = "model",
) -> ir.Graph:
    """Trace a model (or a loaded checkpoint) into a validated IR graph.

    ``input_shape`` is the per-sample input shape without batch (e.g. ``(3, 32, 32)``); with
    ``time_steps`` the model input is a sequence ``[T, B, *input_shape]``, else a frame
    ``[B, *input_shape]`` that the model repeats over time itself.
    """
    if isinstance(loaded, torch.nn.Module):
        loaded = LoadedModel(module=loaded)
    if loaded.exported is not None:
        ep = loaded.exported
        sequence = time_steps is not None
    else:
        if input_shape is None:
            raise ShapeError("--input-shape is required to trace a model (per-sample shape, e.g. 3,32,32)")
        ep = export_module(loaded.module, input_shape, time_steps)
        sequence = time_steps is not None
    graph = _Converter(ep, sequence, name).run()
    return graph
