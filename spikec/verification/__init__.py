"""Verification: the torch model vs the traced float IR vs the optimised float IR vs the integer
model vs the target's own run, neuron layer by neuron layer, on the same inputs.

* :mod:`.compare`: comparing runs (spike agreement, flips with their margins);
* :mod:`.report`: what was found (:class:`~.report.VerifyReport`: text, rich table, JSON);
* :mod:`.bounds`: per-layer error bounds of the quantized model, which judge teacher-forced flips;
* :mod:`.chunks`: the samples in chunks, in this process or in worker processes, merged exactly;
* :func:`verify_graph` (here): runs everything on one opened model and fills the report.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from spikec import ir, loihi

from .compare import Comparison, FlipJudgement, compare_graphs, compare_runs, judge, judge_flips, spike_agreement
from .report import LayerRecord, VerifyError, VerifyReport

__all__ = ["Comparison", "FlipJudgement", "LayerRecord", "VerifyError", "VerifyReport", "compare_graphs", "compare_runs",
           "judge_flips", "spike_agreement", "teacher_forced", "verify_graph"]


def top1_classes(y, per_step: bool = False) -> torch.Tensor:
    """Predicted class per sample; per-step outputs [T, B, C] (or [B, T, C]) are averaged over time first."""
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).double()
    y = y.mean(0) if per_step else y
    if y.dim() > 2:  # [B, ..., C] (e.g. per-step logits batch-first): averaged over the axes between
        y = y.reshape(y.shape[0], -1, y.shape[-1]).mean(1)
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
    from .bounds import input_rounding_error, layer_bounds
    from .chunks import taught_counts

    taught = taught_counts(target, compiled, r_opt, x)
    bounds = layer_bounds(compiled.optimized, compiled.quantized, compiled.quant_report,
                          observed={k: m for k, (_, _, m) in taught.items() if m is not None},
                          input_error=input_rounding_error(compiled.quantized, x))
    out = {}
    for k, (agreement, flips, _) in taught.items():
        b = bounds.get(k)
        out[k] = (agreement.fraction, judge(flips, b.theta, b.absolute) if b is not None and flips is not None else None, b)
    return out


def verify_graph(graph: ir.Graph, target, x: np.ndarray, *, module: Optional[torch.nn.Module] = None,
                 labels: Optional[np.ndarray] = None, calib: Optional[np.ndarray] = None,
                 input_range=(0.0, 1.0), skip=(), model_output=None, workers: int = 1, chunk: Optional[int] = None,
                 progress: bool = False, recipe=None, perturb: Optional[float] = None, **options) -> VerifyReport:
    """Compile ``graph`` for ``target`` and compare every stage on ``x`` (already checked against the
    graph's input).  ``module`` is the torch model the graph was traced from, when there is one.
    The integer model is the target's reference run (:meth:`Target.reference_run`).

    The samples run in chunks of ``chunk`` (:data:`.chunks.DEFAULT_CHUNK`) in ``workers`` processes
    (0 or 1: this one), the torch model rebuilt there from ``recipe`` (:class:`.chunks.ModelRecipe`)
    or ``module`` pickled; the report does not depend on ``workers`` (:mod:`.chunks`).  ``progress``:
    a progress bar on stderr.  The target's own run is one run of all samples, in this process.
    ``perturb``: also the float IR's top-1 agreement with itself under a relative weight perturbation
    of that size (:mod:`.sensitivity`), the yardstick for the float-vs-integer agreement."""
    from spikec.compiler import compile_graph
    from spikec.data import sample_count
    from spikec.errors import SpikecError
    from spikec.targets import get_target

    from .bounds import layer_bounds
    from .chunks import DEFAULT_CHUNK, Job, run_chunks

    t = get_target(target)
    opts = t.option_values(options)
    report = VerifyReport(samples=sample_count(graph, x), target=t.name, integer=t.integer)
    try:
        res, failure, error = compile_graph(graph, t, calib=calib, input_range=input_range, skip=skip), None, None
    except SpikecError as e:
        res, failure, error = None, ("compile", str(e)), e
    # a target that is its own reference (intref) has nothing to check its run against
    job = Job(graph, res, model_output, keep_reference=t.reference_name != t.name)
    found = run_chunks(job, x, module, recipe, workers, chunk or DEFAULT_CHUNK, progress)
    # what holds before the target's passes: the traced float IR against the torch model
    for n in graph.nodes:
        if isinstance(n, ir.NeuronNode):
            c = found.traced[n.name]
            report.layers.append(LayerRecord(n.name, n.source, c.rate, None if c.torch_vs_ir is None else c.torch_vs_ir.fraction, None))
    failure = failure or found.failure
    if failure is not None:
        report.failure = f"{failure[0]}: {failure[1]}"
        raise VerifyError(failure[1], report) from error
    bounds = {}
    if "reference" in found.outputs:
        if found.warnings:  # they count what a chunk saw: the whole data's come from one more run of it (only then)
            whole = t.reference_run(res, x)
            report.overflows, report.warnings = dict(whole.details.get("overflows", {})), report.warnings + whole.warnings
        else:
            order = {n.name: i for i, n in enumerate(res.graph.nodes)}
            report.overflows = dict(sorted(found.overflows.items(), key=lambda kv: order.get(kv[0], len(order))))
        if res.quant_report is not None:  # the bounds use maxima over all samples, so the flips are judged only now
            report.approximations = res.quant_report.approximations()
            bounds = layer_bounds(res.optimized, res.quantized, res.quant_report, input_error=found.input_error,
                                  observed={k: c.max_h for k, c in found.layers.items() if c.max_h is not None})
    report.layers = []
    for n in res.graph.nodes:
        if not isinstance(n, (ir.LoihiNeuronNode if t.integer else ir.NeuronNode)):
            continue
        c = found.layers[n.name]
        rec = LayerRecord(n.name, n.source, c.rate, None if c.torch_vs_ir is None else c.torch_vs_ir.fraction,
                          float("nan") if c.passes is None else c.passes.fraction)
        if c.float_int is not None:
            rec.float_vs_int, rec.first_divergence = c.float_int.fraction, c.float_int.first
            if rec.first_divergence is not None and report.first_divergent_layer is None:
                report.first_divergent_layer = f"{n.name} at t={rec.first_divergence[0]}"
        if c.local is not None:
            rec.local_agreement, bound = c.local.fraction, bounds.get(n.name)
            if bound is not None and c.flips is not None:
                judged = judge(c.flips, bound.theta, bound.absolute)
                rec.error_bound, rec.unexplained_flips = bound.relative, judged.unexplained
                rec.unexplained_at, rec.off_rule = judged.positions, list(bound.deviations)
                held = loihi.V_LIMIT * bound.delta_v  # the bound assumes no saturation: only within this range
                if c.max_h is not None and c.max_h > held:
                    rec.out_of_range, rec.unexplained_flips, rec.unexplained_at = c.max_h / held, None, []
                    report.warnings.append(
                        f"{n.source or n.name}: these inputs drive its membrane to |H| = {c.max_h:.3g}, beyond the "
                        f"{held:.3g} its 24-bit state holds at the chosen scale ({'calibrated' if res.calib is not None else 'worst-case'} "
                        f"bounds exceeded): the integer layer saturates, so its {judged.flips} teacher-forced flips are not "
                        "judged against the error bound; calibrate (--calib) with data like these")
        report.layers.append(rec)
    stage = f"emit the {t.name} artifact"
    try:
        artifact = t.emit(res, **opts)
        stage = f"run the {t.name} artifact"
        check = t.check(res, artifact, x, found.reference) if job.keep_reference else None
    except SpikecError as e:
        report.failure = f"{stage}: {e}"
        raise VerifyError(str(e), report) from e
    if check is not None:
        report.check, report.check_lines = check.to_dict(), list(check.lines)
        for rec in report.layers:
            rec.target = check.layers.get(rec.layer)

    per_step = graph.outputs[0].layout == "split"
    y_float, y_torch = found.outputs["float"], found.outputs.get("torch")
    if "reference" in found.outputs:
        y_cmp = found.outputs["reference"]
    else:
        y_cmp = check.outputs if check is not None and check.outputs is not None else y_float
    if tuple(np.shape(y_cmp)) != tuple(y_float.shape):  # compared position by position below
        report.failure = (f"compare the outputs: the {t.name} target's ({report.compared} run) have shape "
                          f"{list(np.shape(y_cmp))}, the float IR's {list(y_float.shape)}")
        raise VerifyError(f"{t.name}: {report.failure}", report)
    top1 = lambda y: top1_classes(y, per_step)  # noqa: E731
    report.top1_agreement = float((top1(y_float) == top1(y_cmp)).float().mean())
    report.notes += vacuity_notes(top1(y_float), y_cmp, per_step, report.compared)
    report.top1_vacuous = bool(report.notes)
    if y_torch is not None:
        report.top1_torch = float((top1(y_torch) == top1(y_cmp)).float().mean())
    if perturb is not None:
        from .sensitivity import perturbed_agreement

        # the float outputs compared came from the optimised float IR: perturb that one, chunk by chunk
        report.perturbed = perturbed_agreement(res.optimized if res is not None else graph, x, y_float, top1, perturb,
                                               labels, chunk or DEFAULT_CHUNK)
    if labels is not None:
        lab = torch.as_tensor(labels)
        if y_torch is not None:
            report.accuracy["torch"] = float((top1(y_torch) == lab).float().mean())
        report.accuracy["float IR"] = float((top1(y_float) == lab).float().mean())
        report.accuracy["integer" if t.integer else t.name] = float((top1(y_cmp) == lab).float().mean())
    return report
