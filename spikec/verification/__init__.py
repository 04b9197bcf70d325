"""Verification: the torch model vs the traced float IR vs the optimised float IR vs the integer
model vs the target's own run, neuron layer by neuron layer, on the same inputs.

* :mod:`.compare`: comparing runs (spike agreement, flips with their margins);
* :mod:`.report`: what was found (:class:`~.report.VerifyReport`: text, rich table, JSON);
* :mod:`.bounds`: per-layer error bounds of the quantized model, which judge teacher-forced flips;
* :func:`verify_graph` (here): runs everything on one opened model and fills the report.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from spikec import ir

from .compare import Comparison, FlipJudgement, compare_graphs, compare_runs, judge_flips, spike_agreement
from .report import LayerRecord, VerifyError, VerifyReport

__all__ = ["Comparison", "FlipJudgement", "LayerRecord", "VerifyError", "VerifyReport", "compare_graphs", "compare_runs",
           "judge_flips", "spike_agreement", "teacher_forced", "verify_graph"]


def _top1(y, per_step: bool = False) -> torch.Tensor:
    """Predicted class per sample; per-step outputs [T, B, C] are averaged over time first."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).double()
    y = y.mean(0) if per_step else y
    return y.reshape(-1, y.shape[-1]).argmax(-1)


def run_torch(module: torch.nn.Module, x: np.ndarray, output=None, batch_axis: Optional[int] = None,
              output_batch_axis: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The torch model's (first compiled) output and every neuron module's spikes (by module path).

    With ``batch_axis`` the model runs one sample at a time (models whose output depends on the
    batch, see the tracer's ``batch_dependent``): spikes come back as [steps, B, -1], outputs
    concatenated along ``output_batch_axis``."""
    if batch_axis is not None:
        runs = [run_torch(module, np.take(x, [i], axis=batch_axis), output) for i in range(x.shape[batch_axis])]
        y = torch.cat([r[0] for r in runs], output_batch_axis)
        spikes = {p: torch.cat([r[1][p].reshape(r[1][p].shape[0], 1, -1) for r in runs], 1) for p in runs[0][1]}
        return y, spikes
    from spikec.frontend.neurons import neuron_spec
    from spikec.frontend.outputs import select_eager

    spikes: dict[str, torch.Tensor] = {}
    model = module.eval()
    hooks = [m.register_forward_hook(lambda mod, i, o, p=p: spikes.__setitem__(p, o.detach()))
             for p, m in model.named_modules() if p and neuron_spec(m, p)]
    try:
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
    except ImportError:
        pass
    try:
        with torch.no_grad():
            y = select_eager(model(torch.as_tensor(x)), output)[0]
    finally:
        for h in hooks:
            h.remove()
    return y, spikes


def vacuity_notes(classes_float: torch.Tensor, y_cmp, per_step: bool, compared: str) -> list[str]:
    """Why a top-1 agreement figure says nothing: every input gets the same float class, or the
    compared outputs do not depend on the input at all."""
    notes = []
    if classes_float.numel() < 2:
        return notes
    if bool((classes_float == classes_float[0]).all()):
        notes.append(f"top-1 agreement is vacuous: the float model gives all {classes_float.numel()} inputs class "
                     f"{int(classes_float[0])} (untrained weights, or inputs outside what it was trained on)")
    y = torch.as_tensor(np.asarray(y_cmp)).double()
    y = y.mean(0) if per_step else y
    y = y.reshape(classes_float.numel(), -1)
    if bool((y == y[0]).all()):
        notes.append(f"top-1 agreement is vacuous: the {compared} outputs are identical for every input (they do not "
                     "depend on it: silent layers, or weights rounded to zero)")
    return notes


def float_run_output(graph: ir.Graph, r):
    """A float interpreter run (recorded) as the RunOutput a target's check compares with."""
    from spikec.targets.base import RunOutput

    values = {k: v.numpy() for k, v in r.values.items()}
    neurons = [n for n in graph.nodes if isinstance(n, ir.NeuronNode)]
    return RunOutput(outputs=[r.outputs[0].numpy()], layers={n.name: values[n.name] for n in neurons},
                     sources={n.name: n.source for n in neurons}, values=values)


def teacher_forced(target, compiled, r_opt, x) -> dict[str, tuple[float, FlipJudgement, object]]:
    """Every Loihi neuron layer of ``compiled.quantized`` run by the integer executor on the float
    model's own spikes of the layers upstream (``r_opt``: the optimised float IR's recorded run,
    whose neuron names are the quantized graph's), in one pass.  Per layer: (local agreement with the
    float spikes, the flips judged against the layer's error bound, the :class:`~.bounds.LayerBound`)."""
    from .bounds import layer_bounds

    names = [n.name for n in compiled.quantized.nodes if isinstance(n, ir.LoihiNeuronNode) and n.name in r_opt.values]
    run = target.reference_run(compiled, x, teacher={k: r_opt.values[k] for k in names})
    observed = {k: float(h.abs().max()) for k, h in r_opt.membranes.items() if k in names and h.numel()}
    bounds = layer_bounds(compiled.optimized, compiled.quantized, compiled.quant_report, x=x, observed=observed)
    out = {}
    for k in names:
        ref, local = r_opt.values[k], torch.as_tensor(run.taught[k])
        b = bounds.get(k)
        judged = (judge_flips(ref, local, r_opt.membranes[k], b.theta, b.absolute) if b is not None and k in r_opt.membranes
                  else None)
        out[k] = (spike_agreement(ref, local)[0], judged, b)
    return out


def verify_graph(graph: ir.Graph, target, x: np.ndarray, *, module: Optional[torch.nn.Module] = None,
                 labels: Optional[np.ndarray] = None, calib: Optional[np.ndarray] = None,
                 input_range=(0.0, 1.0), skip=(), model_output=None, **options) -> VerifyReport:
    """Compile ``graph`` for ``target`` and compare every stage on ``x`` (already checked against the
    graph's input).  ``module`` is the torch model the graph was traced from, when there is one.
    The integer model is the target's reference run (:meth:`Target.reference_run`)."""
    from spikec.compiler import compile_graph
    from spikec.data import sample_count
    from spikec.errors import SpikecError
    from spikec.runtime.float_interpreter import run_float
    from spikec.targets import get_target

    t = get_target(target)
    opts = t.option_values(options)
    xt = torch.as_tensor(x)
    report = VerifyReport(samples=sample_count(graph, x), target=t.name, integer=t.integer)
    per_sample = (0 if graph.inputs[0].layout == "static" else 1) if graph.metadata.get("batch_dependent") else None
    y_torch, torch_spikes = (run_torch(module, x, model_output, per_sample, 1 if graph.outputs[0].layout == "split" else 0)
                             if module is not None else (None, {}))
    r_traced = run_float(graph, xt, record=True)
    # what holds before the target's passes: the traced float IR against the torch model
    for n in graph.nodes:
        if isinstance(n, ir.NeuronNode):
            tv = spike_agreement(r_traced.values[n.name], torch_spikes[n.source])[0] if n.source in torch_spikes else None
            report.layers.append(LayerRecord(n.name, n.source, float(r_traced.values[n.name].float().mean()), tv, None))
    stage = "compile"
    try:
        res = compile_graph(graph, t, calib=calib, input_range=input_range, skip=skip)
        stage = "run the optimised and the integer models"
        r_opt = run_float(res.optimized, xt, record=True)
        ref = t.reference_run(res, x)  # the integer reference model (integer targets), else None
        local = {}
        if ref is not None:
            report.overflows = dict(ref.details.get("overflows", {}))
            report.warnings += ref.warnings
            if res.quant_report is not None:
                stage = "run the integer model teacher-forced with the float spikes"
                local = teacher_forced(t, res, r_opt, x)
        report.layers = []
        for n in res.graph.nodes:
            if not isinstance(n, (ir.LoihiNeuronNode if t.integer else ir.NeuronNode)):
                continue
            opt = r_opt.values[n.name]
            traced = r_traced.values.get(n.name)
            passes = float((traced == opt).float().mean()) if traced is not None else float("nan")
            tv = None
            if n.source in torch_spikes and traced is not None:
                tv = spike_agreement(traced, torch_spikes[n.source])[0]
            rec = LayerRecord(n.name, n.source, float(opt.float().mean()), tv, passes)
            if ref is not None:
                rec.float_vs_int, rec.first_divergence = spike_agreement(opt, ref.values[n.name])
                if rec.first_divergence is not None and report.first_divergent_layer is None:
                    report.first_divergent_layer = f"{n.name} at t={rec.first_divergence[0]}"
            if n.name in local:
                rec.local_agreement, judged, bound = local[n.name]
                if judged is not None:
                    rec.error_bound, rec.unexplained_flips = bound.relative, judged.unexplained
                    rec.unexplained_at, rec.off_rule = judged.positions, list(bound.deviations)
            report.layers.append(rec)
        stage = f"emit the {t.name} artifact"
        artifact = t.emit(res, **opts)
        stage = f"run the {t.name} artifact"
        check = t.check(res, artifact, x, ref if ref is not None else float_run_output(res.optimized, r_opt))
    except SpikecError as e:
        report.failure = f"{stage}: {e}"
        raise VerifyError(str(e), report) from e
    if check is not None:
        report.check, report.check_lines = check.to_dict(), list(check.lines)
        for rec in report.layers:
            rec.target = check.layers.get(rec.layer)

    per_step = graph.outputs[0].layout == "split"
    y_float = r_opt.outputs[0]
    if ref is not None:
        y_cmp = ref.outputs[0]
    else:
        y_cmp = check.outputs if check is not None and check.outputs is not None else y_float
    top1 = lambda y: _top1(y, per_step)  # noqa: E731
    report.top1_agreement = float((top1(y_float) == top1(y_cmp)).float().mean())
    report.notes += vacuity_notes(top1(y_float), y_cmp, per_step, report.compared)
    report.top1_vacuous = bool(report.notes)
    if y_torch is not None:
        report.top1_torch = float((top1(y_torch) == top1(y_cmp)).float().mean())
    if labels is not None:
        lab = torch.as_tensor(labels)
        if y_torch is not None:
            report.accuracy["torch"] = float((top1(y_torch) == lab).float().mean())
        report.accuracy["float IR"] = float((top1(y_float) == lab).float().mean())
        report.accuracy["integer" if t.integer else t.name] = float((top1(y_cmp) == lab).float().mean())
    return report
