"""``spikec verify``: the original torch model vs the traced float IR vs the optimised float IR vs
the integer model, neuron layer by neuron layer, on the same inputs.

Columns of the per-layer table:

* ``torch=IR``: spike agreement of the traced float IR with the torch model (expected 100 %);
* ``passes``: agreement after the float pass pipeline (re-association flips only);
* ``float=int``: agreement of the integer model with the optimised float IR, and the first
  (time step, sample) where they diverge;
* ``lava=int`` (target lava): the Lava network's spikes equal intref's bit for bit.

Target onnx also runs the exported ONNX model in onnxruntime and compares its integer outputs with
intref's bit for bit.

Top-1 agreement and accuracy (with labels) are reported for the outputs.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch

from . import ir
from .errors import SpikecError


@dataclass
class LayerRow:
    layer: str
    source: str
    rate: float
    torch_vs_ir: Optional[float]
    passes: float
    float_vs_int: float
    first_divergence: Optional[tuple[int, int]] = None
    lava_exact: Optional[bool] = None  # Lava's spikes == intref's, bit for bit (target lava)


@dataclass
class VerifyReport:
    samples: int
    target: str
    layers: list[LayerRow] = field(default_factory=list)
    top1_torch_vs_int: Optional[float] = None
    top1_agreement: float = 0.0  # float IR vs integer model
    accuracy: dict = field(default_factory=dict)
    first_divergent_layer: Optional[str] = None
    lava: Optional[dict] = None  # {"bit_exact": bool, "outputs_equal": bool, "steps": int, "steps_per_second": float}
    onnx: Optional[dict] = None  # {"outputs_equal": bool, "nodes": int}: onnxruntime vs intref (target onnx)
    overflows: dict = field(default_factory=dict)  # neuron layer -> currents beyond Lava's int32 datapath

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"verify ({self.target}) on {self.samples} samples",
               f"{'neuron layer':44s} {'rate':>6s} {'torch=IR':>9s} {'passes':>9s} {'float=int':>10s} "
               + (f"{'lava=int':>9s} " if self.lava else "") + " first divergence (t, b)"]
        for r in self.layers:
            t = "-" if r.torch_vs_ir is None else f"{r.torch_vs_ir:.4%}"
            lv = "" if not self.lava else f"{'yes' if r.lava_exact else 'NO':>9s} "
            out.append(f"{r.layer[:44]:44s} {r.rate:6.3f} {t:>9s} {r.passes:9.4%} {r.float_vs_int:10.4%} {lv} "
                       + ("-" if r.first_divergence is None else str(r.first_divergence)))
        from spikec.targets.intref.executor import overflow_lines

        out += overflow_lines(self.overflows)
        if self.first_divergent_layer:
            out.append(f"first divergence float vs integer: layer {self.first_divergent_layer}")
        if self.lava:
            out.append(f"lava ({self.lava['steps']} steps, {self.lava['steps_per_second']:.1f} steps/s): "
                       f"bit-exact with intref in every layer: {'yes' if self.lava['bit_exact'] else 'NO'}; "
                       f"outputs equal: {'yes' if self.lava['outputs_equal'] else 'NO'}")
        if self.onnx:
            out.append(f"onnx (onnxruntime, {self.onnx['nodes']} nodes): outputs equal intref bit for bit: "
                       f"{'yes' if self.onnx['outputs_equal'] else 'NO'}")
        out.append(f"top-1 agreement float vs integer: {self.top1_agreement:.4%}"
                   + ("" if self.top1_torch_vs_int is None else f"  (torch vs integer: {self.top1_torch_vs_int:.4%})"))
        for k, v in self.accuracy.items():
            out.append(f"accuracy {k}: {v:.4%}")
        return out


def _top1(y: torch.Tensor, per_step: bool = False) -> torch.Tensor:
    """Predicted class per sample; per-step outputs [T, B, C] are averaged over time first."""
    y = y.double().mean(0) if per_step else y
    return y.reshape(-1, y.shape[-1]).argmax(-1)


def check_inputs(graph: ir.Graph, x: np.ndarray, labels: Optional[np.ndarray]) -> None:
    """The data must fit the model before anything runs (the torch model would fail obscurely)."""
    from .errors import ShapeError

    inp = graph.inputs[0]
    want = (["B"] if inp.layout == "static" else [inp.time, "B"]) + list(inp.features)
    got = list(x.shape)
    if len(got) != len(want) or any(w != "B" and w != g for w, g in zip(want, got)):
        raise ShapeError(f"--input has shape {got}; the model takes {want} (B = samples)")
    n = x.shape[0 if inp.layout == "static" else 1]
    if labels is not None and labels.shape != (n,):
        raise ShapeError(f"--labels has shape {list(labels.shape)}; expected one label per sample: [{n}]")


def load_data(args) -> tuple[np.ndarray, Optional[np.ndarray]]:
    from .compiler import load_array

    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        x = (d.images[1437:] / 16.0).astype(np.float32)[:, None]
        y = d.target[1437:].astype(np.int64)
    elif args.input:
        x = load_array(args.input, "--input").astype(np.float32)
        y = load_array(args.labels, "--labels").astype(np.int64) if args.labels else None
    else:
        raise SpikecError("verify needs data: --input X.npy (and --labels Y.npy) or --dataset digits")
    if args.limit:
        x, y = x[: args.limit], (None if y is None else y[: args.limit])
    return x, y


def run_verify(args) -> VerifyReport:
    from .cli import load_graph
    from .compiler import compile_graph, load_array
    from .frontend import load_checkpoint
    from .frontend.load import parse_model_kwargs
    from .frontend.neurons import neuron_spec
    from .runtime.float_interpreter import run_float
    from .targets.intref import run_int

    x, labels = load_data(args)
    graph = load_graph(args)
    check_inputs(graph, x, labels)
    calib = load_array(args.calib, "--calib") if args.calib else None
    res = compile_graph(graph, args.target, calib=calib, input_range=args.input_range)
    xt = torch.as_tensor(x)

    # the torch model, if we have one as a module
    torch_spikes, y_torch = {}, None
    loaded = None
    if not (hasattr(args, "checkpoint") and str(args.checkpoint).endswith(".pt2")):
        from pathlib import Path

        if not (Path(args.checkpoint).is_dir()):
            loaded = load_checkpoint(args.checkpoint, factory=args.model, model_kwargs=parse_model_kwargs(args.model_kwargs),
                                     trust_checkpoint=args.trust_checkpoint)
    if loaded is not None and loaded.module is not None:
        model = loaded.module.eval()
        hooks = [m.register_forward_hook(lambda mod, i, o, p=p: torch_spikes.__setitem__(p, o.detach()))
                 for p, m in model.named_modules() if p and neuron_spec(m, p)]
        try:
            from spikingjelly.activation_based import functional

            functional.reset_net(model)
        except ImportError:
            pass
        with torch.no_grad():
            y_torch = model(xt)
        for h in hooks:
            h.remove()

    r_traced = run_float(graph, xt, record=True)
    r_opt = run_float(res.optimized, xt, record=True)
    r_int = run_int(res.quantized, xt, record=True)
    report_overflows = r_int.overflows
    from .targets.intref.executor import clipped_input_lines

    for line in clipped_input_lines(res.quantized, x):
        print(line, file=sys.stderr)

    report = VerifyReport(samples=int(x.shape[0] if graph.inputs[0].layout == "static" else x.shape[1]), target=args.target,
                          overflows=report_overflows)
    for n in res.quantized.nodes:
        if not isinstance(n, ir.LoihiNeuronNode):
            continue
        ref = r_opt.values[n.name]
        ints = r_int.values[n.name].to(ref.dtype)
        traced = r_traced.values.get(n.name)
        passes = float((traced == ref).float().mean()) if traced is not None else float("nan")
        tv = None
        if n.source in torch_spikes and traced is not None:
            tv = float((torch_spikes[n.source].reshape(traced.shape) == traced).float().mean())
        diff = ref != ints
        first = None
        if bool(diff.any()):
            idx = torch.nonzero(diff)
            row = idx[torch.argsort(idx[:, 0], stable=True)[0]]
            first = (int(row[0]), int(row[1]))
            if report.first_divergent_layer is None:
                report.first_divergent_layer = f"{n.name} at t={first[0]}"
        report.layers.append(LayerRow(n.name, n.source, float(ref.float().mean()), tv, passes,
                                      float((~diff).float().mean()), first))
    if args.target == "lava":
        from .targets.lava import build_netspec
        from .targets.lava.runner import run_lava

        lr = run_lava(build_netspec(res.quantized), xt)
        for row in report.layers:
            row.lava_exact = bool(torch.equal(lr.values[row.layer], r_int.values[row.layer]))
        stages_exact = all(torch.equal(v, r_int.values[k]) for k, v in lr.values.items())
        report.lava = {"bit_exact": stages_exact, "outputs_equal": bool(torch.equal(lr.outputs[0], r_int.outputs[0])),
                       "steps": lr.steps, "steps_per_second": lr.timings["steps_per_second"]}
    if args.target == "onnx":
        from .targets.onnx import export_onnx
        from .targets.onnx.runner import run_onnx_model

        model = export_onnx(res.quantized)
        outs, _, _ = run_onnx_model(model, x)
        report.onnx = {"outputs_equal": bool(np.array_equal(outs[0], r_int.outputs[0].numpy())),
                       "nodes": len(model.graph.node)}
    y_float = r_opt.outputs[0]
    y_int = r_int.real_outputs()[0].to(y_float.dtype)
    per_step = graph.outputs[0].layout == "split"
    top1 = lambda y: _top1(y, per_step)  # noqa: E731
    report.top1_agreement = float((top1(y_float) == top1(y_int)).float().mean())
    if y_torch is not None:
        report.top1_torch_vs_int = float((top1(y_torch) == top1(y_int)).float().mean())
    if labels is not None:
        lab = torch.as_tensor(labels)
        if y_torch is not None:
            report.accuracy["torch"] = float((top1(y_torch) == lab).float().mean())
        report.accuracy["float IR"] = float((top1(y_float) == lab).float().mean())
        report.accuracy["integer"] = float((top1(y_int) == lab).float().mean())
    return report
