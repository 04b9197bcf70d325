"""Filling a :class:`~.report.Report`: compile once for the integer reference, run the optimised float
IR (recorded) and the integer reference model batch by batch on the inputs, count, group by layer.

1. ``compile_graph(graph, intref)``: the optimised float graph (BN folded, scales merged, spike
   products as addressed accumulation), the quantized graph and the quantization report;
2. per batch of inputs: the float IR run with every value recorded (:func:`run_float`) → counts of
   every synaptic layer and product (:mod:`.ops`), spikes per layer; the integer reference run →
   spike agreement per layer, top-1 agreement (values freed after each batch);
3. rows: every stage of the network (a neuron layer, addressed accumulation, AND, max pool: what
   the Lava target maps to processes), each with the counted operations that feed it; operations
   after the last stage form a host-tail row;
4. Loihi 2 cores from the Lava target's resource model (:mod:`.resources`).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from spikec import ir
from spikec.ir.types import Kind

from .ops import COUNTED_TYPES, SYNAPSE_TYPES, Counts, count_node, unrolled_synapses
from .report import LayerRow, OpRecord, Report

STAGE_TYPES = (ir.NeuronNode, ir.AndNode, ir.AddressedAccumulationNode, ir.MaxPoolNode)
BATCH = 64  # samples per run: bounds the memory of the recorded values


def _stage_of(graph: ir.Graph, node: ir.Node) -> Optional[str]:
    """The stage ``node``'s result reaches first without passing another stage (None: none, the host tail)."""
    if isinstance(node, STAGE_TYPES):
        return node.name
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    seen, frontier, found = set(), [node.name], []
    while frontier:
        for u in graph.users(frontier.pop()):
            if u.name in seen:
                continue
            seen.add(u.name)
            (found if isinstance(u, STAGE_TYPES) else frontier).append(u.name)
    return min(found, key=order.__getitem__) if found else None


def _classes(y: torch.Tensor, layout: str, time: int) -> torch.Tensor:
    y = torch.as_tensor(y).double()
    if layout == "split":
        y = y.mean(0)
    elif layout == "merged":
        y = y.reshape(time, -1, *y.shape[1:]).mean(0)
    return y.reshape(y.shape[0], -1).argmax(-1)


def _batches(graph: ir.Graph, x: np.ndarray, labels: Optional[np.ndarray], size: int):
    axis = 0 if graph.inputs[0].layout == "static" else 1
    n = x.shape[axis]
    for lo in range(0, n, size):
        idx = np.arange(lo, min(n, lo + size))
        yield np.take(x, idx, axis=axis), None if labels is None else labels[idx]


def report_graph(graph: ir.Graph, x: np.ndarray, *, labels: Optional[np.ndarray] = None, calib=None,
                 input_range=(0.0, 1.0), skip=(), cores: bool = True, max_memory=None, batch: int = BATCH) -> Report:
    """The report of the traced ``graph`` on inputs ``x`` (already checked against the graph)."""
    from spikec.compiler import compile_graph
    from spikec.data import sample_count
    from spikec.errors import SpikecError
    from spikec.runtime.float_interpreter import run_float
    from spikec.targets import get_target
    from spikec.targets.base import REFERENCE

    from .resources import LoihiResources, loihi_resources

    reference = get_target(REFERENCE)
    notes = []
    try:
        compiled = compile_graph(graph, reference, calib=calib, input_range=input_range, skip=skip)
    except SpikecError as e:  # no integer model: the counts of the float IR still stand
        compiled = compile_graph(graph, reference, skip=skip, integer=False)
        notes.append(f"no integer model (float vs integer agreement and quantization error are n/a): {e}")
    g, q = compiled.optimized, compiled.quantized
    types = g.types
    counted = [n for n in g.nodes if isinstance(n, COUNTED_TYPES)]
    stages = [n for n in g.nodes if isinstance(n, STAGE_TYPES)]
    spiking = [n.name for n in stages if types[n.name].kind is Kind.SPIKE]
    compared = [k for k in spiking if q is not None and k in q and q.types[k].kind is Kind.SPIKE]
    counts = {n.name: Counts() for n in counted}
    spikes = dict.fromkeys(spiking, 0.0)
    elements = dict.fromkeys(spiking, 0)
    equal = dict.fromkeys(compared, 0)
    agree = total = seen = 0
    correct = {"float IR": 0, "integer": 0}
    out = g.outputs[0]
    for xb, yb in _batches(g, x, labels, batch):
        r = run_float(g, torch.as_tensor(xb), record=True)
        for n in counted:
            counts[n.name] += count_node(n, g, r.values)
        for k in spiking:
            spikes[k] += float(r.values[k].double().sum())
            elements[k] += r.values[k].numel()
        cf = _classes(r.outputs[0], out.layout, types[out.name].time)
        if yb is not None and cf.numel() == len(yb):
            correct["float IR"] += int((cf.numpy() == yb).sum())
            seen += len(yb)
        ref = reference.reference_run(compiled, xb) if q is not None else None
        if ref is None:
            continue
        for k in compared:
            equal[k] += int((r.values[k].numpy() == np.asarray(ref.values[k]).reshape(r.values[k].shape)).sum())
        ci = _classes(ref.outputs[0], out.layout, types[out.name].time)
        agree, total = agree + int((cf == ci).sum()), total + int(cf.numel())
        if yb is not None and cf.numel() == len(yb):
            correct["integer"] += int((ci.numpy() == yb).sum())
        del r, ref

    samples = sample_count(g, x)
    res = loihi_resources(graph, calib=calib, input_range=input_range, skip=skip, max_memory=max_memory,
                          compiled=compiled) if cores \
        else LoihiResources(reason="not computed (cores=False / --no-cores)")
    quant = compiled.quant_report
    w_err = {s.name: float(s.rel_error) for s in quant.synapses} if quant else {}
    th_err = ({n.name: float((n.threshold_int - n.threshold) / n.threshold) if n.threshold else 0.0 for n in quant.neurons}
              if quant else {})

    rep = Report(samples=samples, time_steps=max(t.time for t in types.values()), loihi=res.to_dict(),
                 quantization={"weight_error": w_err, "threshold_error": th_err,
                               "warnings": quant.warnings() if quant else [],
                               "input_scale": float(quant.input_scale) if quant else None,
                               "calibrated": bool(quant.calibrated) if quant else None}, notes=notes)
    order = {n.name: i for i, n in enumerate(g.nodes)}
    rows: dict[str, LayerRow] = {}
    for n in stages:
        rows[n.name] = LayerRow(n.name, n.source, n.op, types[n.name].numel, 0,
                                spikes[n.name] / elements[n.name] if n.name in spikes and elements[n.name] else None,
                                0.0, 0.0, float_vs_int=equal[n.name] / elements[n.name] if n.name in equal else None,
                                threshold_error=th_err.get(n.name), cores=res.cores.get(n.name))
    for n in counted:
        layer = _stage_of(g, n)
        if layer is None:  # after the last stage: the host tail
            layer = n.name
            rows[layer] = LayerRow(n.name, n.source, "host", 0, 0, None, 0.0, 0.0,
                                   cores=0 if res.available else None)
        c, row = counts[n.name], rows[layer]
        syn = unrolled_synapses(n, types[n.inputs[0]]) if isinstance(n, SYNAPSE_TYPES) else 0
        rep.ops.append(OpRecord(n.name, n.source, n.op, layer, [types[i].kind.value for i in n.inputs],
                                c.sops / samples, c.macs / samples, c.rule, syn))
        row.sops += c.sops / samples
        row.macs += c.macs / samples
        row.synapses += syn
        row.ops.append(n.name)
        if n.name in w_err:
            row.weight_error = max(row.weight_error or 0.0, w_err[n.name])
    rep.layers = sorted(rows.values(), key=lambda r: order[r.name])
    if total:
        rep.top1_agreement = agree / total
    if labels is not None and seen == len(labels):
        rep.accuracy = {"float IR": correct["float IR"] / seen}
        if total == seen:
            rep.accuracy["integer"] = correct["integer"] / seen
    others = [o.name for o in rep.ops if o.macs and any(isinstance(g[i], STAGE_TYPES) for i in _ancestors(g, o.name))]
    if others:
        rep.notes.append(f"real-valued inputs after the first layer, counted as MACs: {', '.join(others)}")
    if res.host:
        rep.notes.append(f"host tail (run on the host after the Loihi network): {', '.join(res.host)}")
    return rep


def _ancestors(graph: ir.Graph, name: str) -> set[str]:
    seen, stack = set(), list(graph[name].inputs)
    while stack:
        v = stack.pop()
        if v not in seen:
            seen.add(v)
            stack.extend(graph[v].inputs)
    return seen
