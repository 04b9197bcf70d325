"""The one execution loop of the IR, shared by the float interpreter and the integer executor.

A run is: the input brought to ``[T, B, *features]`` (:func:`input_to_values`), then every node in
graph order computed by its kernel from its inputs' values, then the outputs brought to the source
model's layout (:func:`to_output_layout`).  What an executor adds is only its kernel table (node type
-> ``kernel(node, *inputs) -> value``), looked up by exact node type.  Without ``record`` a value is
freed as soon as its last user has run (outputs and ``keep`` values are kept), so memory peaks at the
widest cut of the graph rather than its size.  The value layout helpers the kernels share live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Mapping, Optional, Union

import numpy as np
import torch

from .. import ir
from ..errors import ShapeError, SpikecError

Kernel = Callable[..., torch.Tensor]  # kernel(node, *inputs) -> value
MembraneKernel = Callable[..., tuple[torch.Tensor, Any]]  # kernel(node, *inputs) -> (value, membrane)


@dataclass
class Execution:
    outputs: list[torch.Tensor]  # graph outputs, source-model layout, in graph output order
    values: dict[str, torch.Tensor] = field(default_factory=dict)  # node -> [T, B, *f] (recorded or kept)
    membranes: dict[str, Any] = field(default_factory=dict)  # neuron node -> membrane (if recorded)
    taught: dict[str, torch.Tensor] = field(default_factory=dict)  # teacher-forced node -> its own computed value


def merge_time(x: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``fn`` applied with time merged into the batch: ``[T, B, ...] -> [T·B, ...] -> [T, B, ...]``.

    ``fn`` treats every sample alike, so a value that is the same at every step (a
    :func:`repeat_time` view) is computed once and repeated the same way."""
    T, B = x.shape[:2]
    if T > 1 and x.stride(0) == 0:
        return repeat_time(merge_time(x[:1], fn), T)
    y = fn(x.reshape(T * B, *x.shape[2:]))
    return y.reshape(T, B, *y.shape[1:])


def repeat_time(x: torch.Tensor, time: int) -> torch.Tensor:
    """``x`` ``[T, B, ...]`` repeated ``time`` times along time; a view when T = 1 (time stride 0, no copy)."""
    if x.shape[0] == 1:
        return x.expand(time, *x.shape[1:])
    return x.repeat(time, *([1] * (x.dim() - 1)))


def delayed(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``x`` ``[T, B, ...]`` shifted ``steps`` steps later in time, zeros in front (a synaptic delay)."""
    front = torch.zeros_like(x[:min(steps, x.shape[0])])
    return torch.cat([front, x[:max(x.shape[0] - steps, 0)]])


def align_features(x: torch.Tensor, nfeat: int) -> torch.Tensor:
    """Insert singleton feature axes after [T, B] so ``x`` has ``nfeat`` feature dims."""
    missing = nfeat - (x.dim() - 2)
    if missing <= 0:
        return x
    return x.reshape(*x.shape[:2], *([1] * missing), *x.shape[2:])


def input_to_values(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray]) -> tuple[ir.InputNode, torch.Tensor]:
    """Check ``x`` against the graph input and bring it to ``[T, B, *features]`` float32."""
    (inp,) = graph.inputs
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()
    feats = tuple(inp.features)
    if inp.layout == "static":
        expected = ("B", *feats)
        ok = x.dim() == len(feats) + 1 and tuple(x.shape[1:]) == feats
        xs = x.unsqueeze(0) if ok else None
    else:
        expected = (inp.time, "B", *feats)
        ok = x.dim() == len(feats) + 2 and x.shape[0] == inp.time and tuple(x.shape[2:]) == feats
        xs = x if ok else None
    if not ok:
        exp = "[" + ", ".join(map(str, expected)) + "]"
        raise ShapeError(f"input has shape {list(x.shape)}, the model expects {exp}")
    return inp, xs


def to_output_layout(node: ir.OutputNode, v: torch.Tensor) -> torch.Tensor:
    """An output value ``[T, B, *f]`` in its node's layout: merged ``[T·B, *f]``, batch ``[B, *f]``
    (static models), or split (as is)."""
    if node.layout == "merged":
        return v.reshape(v.shape[0] * v.shape[1], *v.shape[2:])
    if node.layout == "batch":
        return v[0]
    return v


def execute(graph: ir.Graph, x: Union[torch.Tensor, np.ndarray], kernels: Mapping[type, Kernel], *,
            record: bool = False, neurons: Optional[Mapping[type, MembraneKernel]] = None,
            overrides: Optional[Mapping[str, torch.Tensor]] = None,
            teacher: Optional[Mapping[str, torch.Tensor]] = None,
            check: Optional[Callable[[ir.Node, torch.Tensor], None]] = None,
            executor: str = "the executor", keep: Collection[str] = ()) -> Execution:
    """Run ``graph`` on ``x`` (as the source model takes it) with ``kernels``.

    ``record`` keeps every node's value and runs the node types in ``neurons`` with their membrane
    kernels instead (``{type: kernel(node, *inputs) -> (value, membrane)}``), keeping the membranes.
    ``keep`` names the nodes whose values alone are kept (in ``Execution.values``) without ``record``:
    every other value is still freed after its last user (e.g. the neuron layers' spikes of a run).
    ``overrides`` replaces the values of the named nodes (nothing is computed for them); everything
    downstream is computed from them.  ``teacher`` forces values too, but after computing them:
    each named node is computed as usual from its (possibly forced) inputs, its computed value is kept
    in ``Execution.taught``, and its users get the teacher's value instead (cast to the computed
    value's dtype, which must represent it exactly).  Teacher-forcing every neuron layer with another
    model's spikes gives each layer's local behaviour, free of upstream cascades.  ``check(node,
    value)`` sees every computed value before it is stored.  A node with no kernel is refused when it
    is reached, as one ``executor`` cannot run."""
    overrides = overrides or {}
    teacher = teacher or {}
    taught: dict[str, torch.Tensor] = {}
    neurons = neurons or {}
    inp, xs = input_to_values(graph, x)
    env: dict[str, torch.Tensor] = {inp.name: xs}
    membranes: dict[str, Any] = {}
    keep = frozenset(keep)
    dead_after = ir.last_reads(graph.nodes)
    with torch.no_grad():
        for n in graph.nodes:
            if isinstance(n, ir.InputNode):
                continue
            if n.name in overrides:
                value = overrides[n.name]
            else:
                kernel = kernels.get(type(n))
                if kernel is None:
                    raise SpikecError(f"{executor} cannot run node '{n.name}' (op {n.op})")
                ins = [env[i] for i in n.inputs]
                if record and type(n) in neurons:
                    value, membranes[n.name] = neurons[type(n)](n, *ins)
                else:
                    value = kernel(n, *ins)
            if check is not None:
                check(n, value)
            if n.name in teacher and n.name not in overrides:
                taught[n.name] = value
                value = _taught_value(n, teacher[n.name], value)
            env[n.name] = value
            if not record:
                for i in dead_after[n.name]:
                    if not isinstance(graph[i], ir.OutputNode) and i not in keep:
                        env.pop(i, None)
    outs = [to_output_layout(o, env[o.name]) for o in graph.outputs]
    values = env if record else {k: env[k] for k in keep if k in env}
    return Execution(outs, values, membranes, taught)


def _taught_value(n: ir.Node, forced, computed: torch.Tensor) -> torch.Tensor:
    """The teacher's value for ``n`` in the computed value's shape and dtype (refused if it differs
    in shape or the dtype cannot hold it exactly, e.g. real values forced into an integer node)."""
    forced = torch.as_tensor(np.asarray(forced) if not isinstance(forced, torch.Tensor) else forced)
    if forced.numel() != computed.numel():
        raise ShapeError(f"teacher value of '{n.name}' has shape {list(forced.shape)}, the node computes "
                         f"{list(computed.shape)}")
    cast = forced.reshape(computed.shape).to(computed.dtype)
    if not torch.equal(cast.to(forced.dtype), forced.reshape(computed.shape)):
        raise SpikecError(f"teacher value of '{n.name}' is not representable as {computed.dtype}")
    return cast


def scan_time(step: Callable, inputs: torch.Tensor, state, record: bool = False):
    """A neuron layer's recurrence over time: ``state, spikes_t, trace_t = step(state, inputs[t])``
    for t = 0..T-1.  Returns the stacked spikes and, with ``record``, a tuple of the stacked trace
    fields (e.g. the membranes), else None."""
    spikes, traces = [], []
    for x_t in inputs:
        state, s, trace = step(state, x_t)
        spikes.append(s)
        if record:
            traces.append(trace)
    stacked = torch.stack(spikes)
    return stacked, (tuple(torch.stack(f) for f in zip(*traces)) if record else None)
