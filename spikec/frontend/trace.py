"""Tracing a PyTorch spiking model into the spikec IR.

Why ``torch.export`` (non-strict) rather than ``torch.fx`` symbolic tracing: spiking transformers
unpack shapes (``T, B, C, H, W = x.shape``), reshape, multiply and matmul activations, which fx's
symbolic tracer cannot follow (nirtorch's fx tracer fails on them), while ``torch.export`` runs the
real Python code on fake tensors and records the ATen operations that were executed, with the
source module path of each (``nn_module_stack``).  Neuron modules are swapped for one custom op
first (:mod:`.neurons`), so a neuron layer is one node, not an unrolled time loop.

The batch axis is exported as a *dynamic* dimension.  Its symbol tells, for every tensor in the
ATen graph, which axis is the batch: that is how the converter maps the model's tensors, which are
``[T, B, ...]`` ("split"), ``[T*B, ...]`` ("merged", as ``SeqToANNContainer`` and spikingjelly's
``layer.*`` wrappers make them), or arrangements where feature axes stand in front of the batch or
merge into it behind (:mod:`.layouts`), onto IR values of layout ``[T, B, *features]``.
Operations that would mix the batch axis with another axis are refused.

This module is the converter: where time and batch are in each tensor, the dispatch loop (an op
that cannot be converted becomes a :class:`Poison` value, an error only if its result is used) and
the :func:`trace` entry point.  The per-op handlers are the ``@handles`` table in
:mod:`spikec.frontend.handlers`, one module per op family.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from .. import ir
from ..errors import ShapeError, SpikecError, UnsupportedError
from ..ir.types import TensorType
from . import layouts
from .bn_pad import replace_bn_and_pad
from .finite import refuse_nonfinite
from .handlers import HANDLERS, Act, Poison, handles, op_name
from .load import LoadedModel
from .neurons import replace_neurons
from .outputs import OutputChoice, choose, leaf_paths

__all__ = ["Act", "HANDLERS", "Poison", "SUPPORTED_ATEN", "TRACE_BATCH", "example_input", "export_module",
           "handles", "trace"]

TRACE_BATCH = 3  # example batch for export (dynamic; any size >= 2 works)


def _module_of(node: torch.fx.Node, user_classes: Optional[dict[str, str]] = None) -> tuple[str, str]:
    """(module path, class) of ``node``; ``user_classes`` (path -> the user's neuron class) names the
    class that the tracing stand-in replaced, so messages never name spikec's TracedNeuron."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, typ = list(stack.values())[-1]
    tname = typ if isinstance(typ, str) else f"{typ.__module__}.{typ.__qualname__}"
    return path, (user_classes or {}).get(path, tname) if tname.endswith("TracedNeuron") else tname


SUPPORTED_ATEN = (
    "conv1d/conv2d/conv3d, linear, batch_norm, max_pool1d/2d, avg_pool1d/2d, adaptive_avg_pool(1), add, "
    "sub, adding constants (biases, position embeddings, per step or not), mul, div (by constants), matmul, "
    "mean/sum over axes, flatten/unflatten/view/reshape/"
    "squeeze/unsqueeze, transpose/permute (also moving time into the features and back), cat, "
    "chunk/split/select/unbind/slice, repeat over time, dropout "
    "(eval), clone/contiguous/detach, layer_norm / softmax / relu / sigmoid / gelu (float IR and intref only so far), "
    "and spiking neurons"
)
SUPPORTED_NEURONS = ("neurons: spikingjelly LIFNode, IFNode, ParametricLIFNode (multi-step) and the legacy "
                     "clock_driven MultiStepLIFNode / MultiStepIFNode / MultiStepParametricLIFNode")


class _Converter:
    def __init__(self, ep, sequence: bool, graph_name: str, output_choice: OutputChoice = None,
                 user_classes: Optional[dict[str, str]] = None):
        self.ep = ep
        self.sequence = sequence
        self.graph_name = graph_name
        self.output_choice = output_choice
        self.user_classes = user_classes or {}  # module path -> the user's neuron class (export_module)
        self.notes: list[str] = []  # what the user should know about the trace (skipped outputs ...)
        self.batch_dependent: list[str] = []  # neuron modules whose upstream output depends on the batch
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
    def module_of_current(self) -> tuple[str, str]:
        """(module path, the user's class) of the node being converted."""
        return _module_of(self.cur, self.user_classes) if self.cur is not None else ("", "")

    def where(self) -> str:
        path, typ = self.module_of_current()
        if path:
            return f"module '{path}' ({typ})"
        return "the model's top-level forward"

    def where_short(self) -> str:
        """:meth:`where` with the class name only (``module 'fc' (Linear)``)."""
        path, typ = self.module_of_current()
        return f"module '{path}' ({typ.rpartition('.')[2]})" if path else "the model's top-level forward"

    def unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{what} in {self.where()}")

    def emit(self, cls, inputs: Sequence[str], primary: bool = False, **attrs) -> str:
        path, _ = self.module_of_current()
        base = path if (primary and path) else (f"{path}:{cls.op}" if path else cls.op)
        name, k = base, 1
        while name in self.used_names:
            k += 1
            name = f"{base}_{k}"
        refuse_nonfinite(self.where_short(), attrs)
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
            raise self.unsupported(f"{op_name(self.cur)} needs an activation as {role}, got {type(x).__name__}")
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

    def feature_axis(self, act: Act, dim: int) -> int | str:
        """The IR feature axis of the tensor's axis ``dim``, or what that axis holds instead."""
        ax = layouts.feature_axis(self, act, dim)
        return layouts.axis_name(self, act, ax) if isinstance(ax, str) else ax

    def need_feature_axis(self, act: Act, dim: int, what: str) -> int:
        return layouts.need_feature_axis(self, act, dim, what)

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
        meta = {"notes": self.notes} if self.notes else {}
        if self.batch_dependent:
            meta["batch_dependent"] = self.batch_dependent
        return ir.Graph(nodes, name=self.graph_name, metadata=meta).validate()

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
        results = list(results) if isinstance(results, (list, tuple)) else [results]
        spec = getattr(self.ep, "call_spec", None)
        spec = getattr(spec, "out_spec", None)
        paths = leaf_paths(spec) if spec is not None and spec.num_leaves == len(results) else \
            [f"[{i}]" for i in range(len(results))]
        keep, notes = choose(paths, [isinstance(r, torch.fx.Node) for r in results], self.output_choice)
        self.notes += notes
        results = [results[i] for i in keep]
        for i, r in enumerate(results):
            a = layouts.time_major(self, self.act(self.value(r), "output"))
            layouts.need_plain(self, a, "a model output")
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
        op = op_name(node)
        handler: Optional[Callable] = HANDLERS.get(op)
        if handler is None:
            raise UnsupportedError(f"unsupported operation {op} in {self.where()}; spikec compiles {SUPPORTED_ATEN} "
                                   f"({SUPPORTED_NEURONS}): replace the module or open an issue")
        args = [self.value(a) for a in node.args]
        kwargs = {k: self.value(v) for k, v in node.kwargs.items()}
        out = handler(self, *args, **kwargs)
        self._check_rank(node, out)
        return out

    def _check_rank(self, node, out) -> None:
        """Every activation a handler returns has as many axes as the tensor torch computed: a layout
        that lost track of an axis is refused here rather than computing something else."""
        vals = node.meta.get("val")
        pairs = zip(out, vals) if isinstance(out, tuple) and isinstance(vals, (tuple, list)) else [(out, vals)]
        for a, v in pairs:
            if isinstance(a, Act) and isinstance(v, torch.Tensor) and len(layouts.torch_axes(self, a)) != v.dim():
                raise self.unsupported(f"{op_name(node)} giving a tensor of shape {layouts.shape_str(self, v.shape)} "
                                       f"that spikec's layout tracking reads with {len(layouts.torch_axes(self, a))} "
                                       "axes (please report this model)")


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def example_input(input_shape: Sequence[int], time_steps: Optional[int], batch: int = TRACE_BATCH) -> torch.Tensor:
    shape = (batch, *input_shape) if time_steps is None else (time_steps, batch, *input_shape)
    g = torch.Generator().manual_seed(0)
    return torch.rand(shape, generator=g)


def export_module(model: torch.nn.Module, input_shape: Sequence[int], time_steps: Optional[int] = None):
    """Swap neurons for the traceable op and ``torch.export`` a copy of ``model`` (eval mode).
    Returns the exported program and, per neuron module path, the user's class it replaced."""
    try:
        model = copy.deepcopy(model).eval()
    except RuntimeError:  # torch copies only graph leaves: state a forward pass with autograd left behind
        held = next((f"module '{p}' ({type(m).__name__}) holds '{k}'" for p, m in model.named_modules()
                     for attr, val in vars(m).items() for k, v in (val.items() if isinstance(val, dict) else [(attr, val)])
                     if isinstance(v, torch.Tensor) and v.grad_fn is not None), "the model holds a tensor")
        raise SpikecError(f"cannot copy the model for tracing: {held} computed with autograd (neuron state left by "
                          "an earlier forward pass); reset the neurons "
                          "(spikingjelly.activation_based.functional.reset_net(model)) or run the model under "
                          "torch.no_grad()") from None
    model, _ = replace_neurons(model)
    user_classes = {p: m.original_type for p, m in model.named_modules() if hasattr(m, "original_type")}
    replace_bn_and_pad(model)
    x = example_input(input_shape, time_steps)
    batch_axis = 0 if time_steps is None else 1
    dyn = ({batch_axis: torch.export.Dim.AUTO},)  # symbolic batch; see module docstring
    try:
        with torch.no_grad():
            return torch.export.export(model, (x,), dynamic_shapes=dyn, strict=False), user_classes
    except SpikecError:
        raise
    except RuntimeError as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "size" in msg or "shape" in msg or "channels" in msg or "expected" in msg.lower():
            dims = ", ".join(map(str, input_shape))
            what = f"[B, {dims}]" if time_steps is None else f"[T={time_steps}, B, {dims}]"
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
    output: OutputChoice = None,
) -> ir.Graph:
    """Trace a model (or a loaded checkpoint) into a validated IR graph.

    ``input_shape`` is the per-sample input shape without batch (e.g. ``(3, 32, 32)``); with
    ``time_steps`` the model input is a sequence ``[T, B, *input_shape]``, else a frame
    ``[B, *input_shape]`` that the model repeats over time itself.  ``output`` picks one of several
    model outputs (:mod:`.outputs`); the graph's ``metadata["notes"]`` says what was skipped.
    """
    if isinstance(loaded, torch.nn.Module):
        loaded = LoadedModel(module=loaded)
    user_classes: dict[str, str] = {}  # an exported program's module stack names the user's classes itself
    if loaded.exported is not None:
        ep = loaded.exported
        sequence = time_steps is not None
    else:
        if input_shape is None:
            raise ShapeError("--input-shape is required to trace a model (per-sample shape, e.g. 3,32,32)")
        ep, user_classes = export_module(loaded.module, input_shape, time_steps)
        sequence = time_steps is not None
    graph = _Converter(ep, sequence, name, output, user_classes).run()
    return graph
