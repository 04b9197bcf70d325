"""The ``spikec`` command line.

    spikec show    CKPT [model options]                 # traced IR as a table
    spikec compile CKPT --target {lava,nir,intref} -o OUT [model options]

Errors in the user's input (files, shapes, unsupported modules) print one line and exit with
code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence

from . import __version__
from .errors import SpikecError

EXIT_USAGE = 2


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 3,32,32, got {text!r}") from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"expected positive dimensions like 3,32,32, got {text!r}")
    return dims


def _add_model_options(p: argparse.ArgumentParser, optional: bool = False) -> None:
    p.add_argument("checkpoint", nargs="?" if optional else None, help="checkpoint: state_dict (.pt/.pth), pickled nn.Module, or torch.export program (.pt2); or a saved IR directory (show)")
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="FACTORY", help="architecture of a state_dict: 'package.module:factory' or 'path/to/file.py:factory'")
    g.add_argument("--model-kwargs", metavar="JSON", help="keyword arguments for the factory, as a JSON object")
    g.add_argument("--input-shape", type=_shape, metavar="C,H,W", help="per-sample input shape without batch, e.g. 3,32,32")
    g.add_argument("--time-steps", type=_positive, metavar="T", help="the model takes a sequence [T, B, *input-shape] (default: a frame [B, *input-shape])")
    g.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling a whole nn.Module (runs code from the file: only for files you trust)")


def _range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI like 0,1, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r}")
    return lo, hi


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _inputs(args) -> tuple:
    """Every file the command reads (outputs must never overwrite them)."""
    model = getattr(args, "model", None)
    model_file = model.rpartition(":")[0] if model and (".py:" in model or "/" in model) else None
    return tuple(p for p in (getattr(args, "checkpoint", None), model_file, getattr(args, "calib", None),
                             getattr(args, "input", None), getattr(args, "labels", None)) if p)


def _write_file(path, write) -> None:
    from .outputs import atomic_file

    atomic_file(path, write)


def _npy_bytes(a) -> bytes:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.asarray(a))
    return buf.getvalue()


def _add_max_nir_neurons(group) -> None:
    group.add_argument("--max-nir-neurons", type=int, default=1_000_000, metavar="N",
                       help="nir: refuse expansions (spike-product coincidences, max-pool selections) above N "
                            "threshold neurons in all (default 1000000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spikec",
        description="Compile trained PyTorch spiking transformers to neuromorphic targets.",
    )
    parser.add_argument("--version", action="version", version=f"spikec {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("show", help="trace a model and print its IR as a table",
                       description="Trace a checkpoint (or load a saved IR directory) and print the IR: node, op, source module, shape, kind, parameters.")
    _add_model_options(p)
    p.add_argument("--text", action="store_true", help="plain text dump instead of a table")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_show)

    from .targets import TARGETS

    p = sub.add_parser("compile", help="compile a model for a target",
                       description="Trace a checkpoint, run the target's pass pipeline and write the target artifact. Targets: "
                       + "; ".join(f"{k}: {v}" for k, v in TARGETS.items()))
    _add_model_options(p, optional=True)
    p.add_argument("--target", choices=sorted(TARGETS), help="backend to compile for")
    p.add_argument("-o", "--output", metavar="OUT", help="artifact path (directory or file, per target)")
    p.add_argument("--emit-ir", metavar="DIR", help="also save the traced IR (JSON + npz) to DIR")
    g = p.add_argument_group("passes")
    g.add_argument("--list-passes", action="store_true", help="list the passes and each target's pipeline, then exit")
    g.add_argument("--skip", action="append", default=[], metavar="PASS", help="skip a pass of the pipeline (repeatable)")
    g.add_argument("--dump-ir-after", metavar="PASS", help="print the IR after this pass")
    g.add_argument("-v", "--verbose", action="store_true", help="print what every pass did where (and where it did not fire, why)")
    g = p.add_argument_group("quantization (integer targets)")
    g.add_argument("--calib", metavar="FILE", help="calibration inputs (.npy, model input layout): per-layer scales from measured currents")
    g.add_argument("--input-range", type=_range, default=(0.0, 1.0), metavar="LO,HI", help="range of the model's analog input (default 0,1; a negative LO needs '=': --input-range=-1,1)")
    g = p.add_argument_group("nir")
    _add_max_nir_neurons(g)
    g.add_argument("--partial", action="store_true", help="export the expressible prefix instead of failing")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a compiled artifact on inputs",
                       description="Run a compiled artifact on an input array, without the model code: intref (integer "
                                   "reference executor), lava (Loihi2SimCfg fixed_pt), onnx (onnxruntime), nir (nirtorch).")
    p.add_argument("artifact", help="what spikec compile wrote (a directory, or a .onnx / .nir file)")
    p.add_argument("--input", required=True, metavar="X.npy", help="inputs in the model's input layout ([B, ...] or [T, B, ...])")
    p.add_argument("--save", metavar="Y.npy", help="write the (dequantized) outputs here")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("verify", help="compare torch model, float IR and integer model layer by layer",
                       description="Run the original torch model, the traced float IR, the optimised float IR and the "
                       "integer model (intref) on the same inputs; print per-layer spike agreement, the first divergence, "
                       "output top-1 agreement and accuracy (with labels).")
    _add_model_options(p)
    g = p.add_argument_group("data")
    g.add_argument("--input", metavar="X.npy", help="inputs (model input layout)")
    g.add_argument("--labels", metavar="Y.npy", help="integer labels for accuracy")
    g.add_argument("--dataset", choices=["digits"], help="a bundled dataset instead of --input (digits: scikit-learn 8x8 held-out split)")
    g.add_argument("--limit", type=int, metavar="N", help="use the first N inputs")
    g = p.add_argument_group("checks")
    g.add_argument("--target", choices=["intref", "lava", "nir", "onnx"], default="intref",
                   help="target to verify (lava: also runs the network in Lava and checks it bit for bit against intref; "
                        "onnx: also runs the ONNX model in onnxruntime and checks its outputs bit for bit against intref; "
                        "nir: exports, reads the file back with nirtorch and compares it with the float IR)")
    g.add_argument("--min-agreement", type=float, default=0.0, metavar="F", help="exit 1 if float vs integer top-1 agreement is below F (0..1)")
    g.add_argument("--json", metavar="FILE", help="write the per-layer report as JSON")
    g.add_argument("--calib", metavar="FILE", help="calibration inputs for quantization (.npy)")
    g.add_argument("--input-range", type=_range, default=(0.0, 1.0), metavar="LO,HI", help="range of the model's analog input (default 0,1; a negative LO needs '=': --input-range=-1,1)")
    _add_max_nir_neurons(g)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_verify)
    return parser


def load_graph(args):
    """Trace the model named by the common model options (or load a saved IR directory)."""
    from . import ir
    from .frontend import load_checkpoint, trace
    from .frontend.load import parse_model_kwargs

    path = Path(args.checkpoint)
    if path.is_dir() and (path / "graph.json").exists():
        return ir.load(path)
    loaded = load_checkpoint(path, factory=args.model, model_kwargs=parse_model_kwargs(args.model_kwargs),
                             trust_checkpoint=args.trust_checkpoint)
    return trace(loaded, args.input_shape, args.time_steps, name=path.stem)


def cmd_show(args) -> int:
    from rich.console import Console

    from .ir import format_graph, graph_table

    graph = load_graph(args)
    if args.text:
        print(format_graph(graph))
    else:
        Console(width=200).print(graph_table(graph))
    return 0


def cmd_list_passes() -> int:
    from .passes.pipelines import PASS_OPTIONS, PASSES, PIPELINES

    print("passes:")
    for name, fn in PASSES.items():
        doc = (__import__(fn.__module__, fromlist=["_"]).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:40s} {doc.split(':', 1)[-1].strip()}")
    print("pipelines:")
    for target, names in PIPELINES.items():
        print(f"  {target:8s} {' -> '.join(names)}")
        for pass_name, opts in PASS_OPTIONS.get(target, {}).items():
            print(f"  {'':8s}   {pass_name}: {opts}")
    return 0


def cmd_compile(args) -> int:
    from . import ir
    from .compiler import compile_graph, load_array
    from .passes.pipelines import resolve
    from .targets import AVAILABLE, TARGETS

    if args.list_passes:
        return cmd_list_passes()
    missing = [opt for opt, v in (("CHECKPOINT", args.checkpoint), ("--target", args.target), ("-o/--output", args.output)) if not v]
    if missing:
        raise SpikecError(f"compile needs {', '.join(missing)} (see spikec compile --help)")
    resolve({"onnx": "intref"}.get(args.target, args.target), args.skip)  # unknown pass names fail before the (slow) trace
    from .outputs import check_output

    check_output(args.output, directory=args.target in ("intref", "lava"), protect=_inputs(args))
    if args.emit_ir:
        check_output(args.emit_ir, directory=True, option="--emit-ir")
    calib = load_array(args.calib, "--calib") if args.calib else None
    graph = load_graph(args)  # trace first: model errors are reported whatever the target
    if args.emit_ir:
        ir.save(graph, args.emit_ir)
        print(f"wrote traced IR ({len(graph)} nodes) to {args.emit_ir}")

    def dump(name, g):
        print(f"--- IR after {name} ---")
        print(ir.format_graph(g))

    def show(res):
        print("\n".join(res.lines))
        if args.verbose:
            for rep in res.pipeline.reports:
                print("\n".join("    " + l for l in rep.lines()))

    if args.target not in AVAILABLE:
        show(compile_graph(graph, args.target, skip=args.skip, dump_after=args.dump_ir_after, on_dump=dump, integer=False))
        raise SpikecError(
            f"target '{args.target}' ({TARGETS[args.target]}) is not implemented in spikec {__version__} yet; "
            f"available targets: {', '.join(sorted(AVAILABLE)) or 'none'} "
            "(inspect the IR with `spikec show`, --emit-ir or --dump-ir-after)"
        )
    res = compile_graph(graph, args.target, calib=calib, input_range=args.input_range, skip=args.skip,
                        dump_after=args.dump_ir_after, on_dump=dump)
    show(res)
    src = {"checkpoint": str(args.checkpoint), "model": args.model}
    from .targets.intref import write_artifact

    if args.target == "intref":
        write_artifact(res.quantized, args.output, res.lines, source=src)
        print(f"wrote intref artifact to {args.output}")
    elif args.target == "onnx":
        from .targets.onnx import OPSET, export_onnx, write_onnx

        model = export_onnx(res.quantized)  # passes onnx.checker
        write_onnx(model, args.output)
        print(f"wrote {args.output}: integer-only ONNX (opset {OPSET}, time unrolled, {model.ByteSize() // 1024} KiB); "
              "real output = output x output_scales (model metadata)")
    elif args.target == "nir":
        from .targets.nir import export_nir, quantization_metadata, write_nir

        try:  # the fixed-point scales of the same model, for the metadata
            quant = quantization_metadata(compile_graph(graph, "intref", calib=calib, input_range=args.input_range,
                                                        skip=args.skip).quant_report)
        except SpikecError as e:
            quant = {"unavailable": str(e)}
        ex = export_nir(res.optimized, max_neurons=args.max_nir_neurons, partial=args.partial, quantization=quant)
        print(f"NIR graph: {len(ex.graph.nodes)} nodes, {ex.coincidence_neurons} expansion neurons "
              "(spike-product coincidences, max-pool selections)")
        for note in ex.notes:
            print("  " + note)
        write_nir(ex, args.output)
        print(f"wrote {args.output} (nir.read + spikec verify --target nir check it)")
    elif args.target == "lava":
        from .targets.lava import FORMAT, build_netspec, report_lines

        spec = build_netspec(res.quantized)  # checks that the network can be built before writing
        resources = report_lines(spec)
        print("Loihi 2 resources:")
        print("\n".join("  " + l for l in resources))
        write_artifact(res.quantized, args.output, res.lines + resources, source=src, fmt=FORMAT,
                       extra={"lava": {"latency": spec.latency, "T": spec.T, "resources": resources,
                                       "run_config": "Loihi2SimCfg(select_tag='fixed_pt')"}})
        print(f"wrote lava artifact to {args.output} (spikec run rebuilds the network and runs it in Lava)")
    return 0


def cmd_run(args) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from . import ir
    from .compiler import load_array
    from .targets.intref import load_artifact, run_int

    x = load_array(args.input, "--input")
    if args.save:
        from .outputs import check_output

        args.save = args.save if str(args.save).endswith(".npy") else f"{args.save}.npy"  # what np.save writes
        check_output(args.save, directory=False, protect=(args.input, args.artifact), option="--save")
    if Path(args.artifact).is_file():
        return _run_file(args, x)
    graph, manifest = load_artifact(args.artifact)
    from .targets.intref.executor import clipped_input_lines

    for line in clipped_input_lines(graph, x):
        print(line, file=sys.stderr)
    if manifest["format"] == "spikec-lava":
        from .targets.lava import build_netspec
        from .targets.lava.runner import run_lava

        spec = build_netspec(graph)
        r = run_lava(spec, x, progress=sys.stdout.isatty())
        print(f"lava: {r.steps} steps (Loihi2SimCfg fixed_pt), build {r.build_seconds:.2f} s, run {r.run_seconds:.2f} s, "
              f"{r.timings['steps_per_second']:.1f} steps/s")
    else:
        r = run_int(graph, x, record=True)
        for line in r.overflow_lines():
            print(line, file=sys.stderr)
    y = r.real_outputs()[0].numpy()
    table = Table(title=f"{args.artifact}: per-layer spikes ({x.shape[0] if manifest['input']['layout'] == 'static' else x.shape[1]} samples)")
    for col in ("neuron layer", "source module", "spikes", "rate"):
        table.add_column(col)
    for n in graph.nodes:
        if isinstance(n, ir.LoihiNeuronNode):
            s = r.values[n.name]
            table.add_row(n.name, n.source, str(int(s.sum())), f"{float(s.float().mean()):.4f}")
    Console(width=160).print(table)
    print(f"output: shape {list(y.shape)}, integer scale {r.scales[0]:.6g}")
    flat = y.reshape(-1, y.shape[-1])
    print("top-1 (first 20):", flat.argmax(-1)[:20].tolist())
    if args.save:
        _write_file(args.save, lambda tmp: tmp.write_bytes(_npy_bytes(y)))
        print(f"saved outputs to {args.save}")
    return 0


def _run_file(args, x) -> int:
    """``spikec run`` on a single-file artifact: ONNX (onnxruntime) or NIR (nirtorch re-import)."""
    import numpy as np

    path = Path(args.artifact)
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        from .targets.nir.verify import run_file

        y, rec, meta = run_file(path, x)
        y = y.numpy()
        print(f"nir: {meta['T']} steps per sample in nirtorch with spikec's node map (forward Euler, dt from the "
              f"metadata); readout: {meta['readout']}")
        sources = meta.get("sources", {})
        print(f"  {'neuron layer':44s} {'source module':44s} rate")
        for layer, key in meta.get("neurons", {}).items():
            print(f"  {layer:44s} {sources.get(layer, ''):44s} {float(rec[key].float().mean()):.4f}")
    elif path.suffix == ".onnx" or magic[:1] == b"\x08":
        from .targets.onnx.runner import run_onnx

        outs, scales, meta = run_onnx(path, x)
        y = outs[0] * scales[0]
        print(f"onnx: onnxruntime, integer outputs x scale {scales[0]:.6g} ({meta.get('semantics', '')})")
    else:
        raise SpikecError(f"{path}: not a spikec artifact (an intref / lava directory, a .onnx or a .nir file)")
    print(f"output: shape {list(y.shape)}")
    flat = np.asarray(y).reshape(-1, y.shape[-1])
    print("top-1 (first 20):", flat.argmax(-1)[:20].tolist())
    if args.save:
        _write_file(args.save, lambda tmp: tmp.write_bytes(_npy_bytes(y)))
        print(f"saved outputs to {args.save}")
    return 0


def cmd_verify(args) -> int:
    import json

    from .outputs import check_output
    from .verify import run_verify

    if args.json:
        check_output(args.json, directory=False, protect=_inputs(args), option="--json")
    if args.target == "nir":
        return cmd_verify_nir(args)

    report = run_verify(args)
    print("\n".join(report.lines()))
    if args.json:
        _write_file(args.json, lambda tmp: tmp.write_text(json.dumps(report.to_dict(), indent=1)))
        print(f"wrote {args.json}")
    if report.lava and not (report.lava["bit_exact"] and report.lava["outputs_equal"]):
        print("FAIL: the Lava run differs from intref", file=sys.stderr)
        return 1
    if report.onnx and not report.onnx["outputs_equal"]:
        print("FAIL: the onnxruntime outputs differ from intref's", file=sys.stderr)
        return 1
    if report.top1_agreement < args.min_agreement:
        print(f"FAIL: top-1 agreement {report.top1_agreement:.4f} < --min-agreement {args.min_agreement}", file=sys.stderr)
        return 1
    return 0


def cmd_verify_nir(args) -> int:
    import json
    import tempfile

    from .compiler import compile_graph
    from .targets.nir import export_nir, write_nir
    from .targets.nir.verify import check_against_float
    from .verify import load_data

    from .verify import check_inputs

    x, _ = load_data(args)
    graph = load_graph(args)
    check_inputs(graph, x, None)
    res = compile_graph(graph, "nir")
    ex = export_nir(res.optimized, max_neurons=args.max_nir_neurons)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.nir"
        write_nir(ex, path)
        rep = check_against_float(res.optimized, path, x)
    print(f"verify (nir re-import with nirtorch) on {len(x)} samples; readout: {rep['readout']}")
    for name, agree in rep["layers"].items():
        print(f"  {name[:50]:50s} float=nir {agree:.4%}")
    print(f"spikes identical in every layer: {'yes' if rep['spikes_identical'] else 'NO'}; "
          f"outputs max |diff| {rep['output_max_abs_diff']:.3g}")
    if args.json:
        _write_file(args.json, lambda tmp: tmp.write_text(json.dumps(rep, indent=1)))
    return 0 if rep["spikes_identical"] and rep["output_max_abs_diff"] <= 1e-5 else 1


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except SpikecError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
