"""``spikec compile``: trace, run the target's passes, write the target's artifact."""

from __future__ import annotations

import argparse

from . import common


def add_parser(sub) -> None:
    from spikec.targets import all_targets, names

    p = sub.add_parser("compile", help="compile a model for a target",
                       description="Trace a checkpoint, run the target's pass pipeline and write the target artifact. "
                                   "Targets: " + "; ".join(f"{t.name}: {t.description}" for t in all_targets()))
    common.add_model_options(p, optional=True)
    p.add_argument("--target", choices=names(), help="backend to compile for")
    p.add_argument("-o", "--output", metavar="OUT", help="artifact path (directory or file, per target)")
    p.add_argument("--emit-ir", metavar="DIR", help="also save the traced IR (JSON + npz) to DIR")
    g = p.add_argument_group("passes")
    g.add_argument("--list-passes", action="store_true", help="list the passes and each target's pipeline, then exit")
    g.add_argument("--skip", action="append", default=[], metavar="PASS", help="skip a pass of the pipeline (repeatable)")
    g.add_argument("--dump-ir-after", metavar="PASS", help="print the IR after this pass")
    g.add_argument("-v", "--verbose", action="store_true", help="print what every pass did where (and where it did not fire, why)")
    common.add_quantization_options(p.add_argument_group("quantization (integer targets)"))
    common.add_target_options(p)
    common.add_debug(p)
    p.set_defaults(func=run)


def list_passes() -> int:
    import importlib

    from spikec.passes.pipelines import PASS_OPTIONS, PASSES, PIPELINES
    from spikec.targets import all_targets

    print("passes:")
    for name, fn in PASSES.items():
        doc = (importlib.import_module(fn.__module__).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:40s} {doc.split(':', 1)[-1].strip()}")
    print("pipelines:")
    for pipeline, names in PIPELINES.items():
        print(f"  {pipeline:8s} {' -> '.join(names)}")
        for pass_name, opts in PASS_OPTIONS.get(pipeline, {}).items():
            print(f"  {'':8s}   {pass_name}: {opts}")
    print("targets:")
    for t in all_targets():
        print(f"  {t.name:8s} pipeline {t.pipeline if isinstance(t.pipeline, str) else list(t.pipeline)}"
              + (" + quantization (Loihi 2 fixed point)" if t.integer else ""))
    return 0


def run(args: argparse.Namespace) -> int:
    from spikec import ir
    from spikec.api import emit
    from spikec.compiler import compile_graph
    from spikec.outputs import check_output
    from spikec.passes.pipelines import resolve
    from spikec.targets import get_target

    if args.list_passes:
        return list_passes()
    common.require([opt for opt, v in (("CHECKPOINT", args.checkpoint), ("--target", args.target), ("-o/--output", args.output))
             if not v], "compile")
    target = get_target(args.target)
    resolve(target.pipeline, args.skip)  # unknown pass names fail before the (slow) trace
    options = target.option_values(common.target_options(args, target))
    check_output(args.output, directory=target.artifact == "directory", protect=common.inputs_of(args))
    if args.emit_ir:
        check_output(args.emit_ir, directory=True, option="--emit-ir")
    calib = common.calib_of(args)
    graph = common.graph_of(args)  # trace first: model errors are reported whatever the target
    if args.emit_ir:
        ir.save(graph, args.emit_ir)
        print(f"wrote traced IR ({len(graph)} nodes) to {args.emit_ir}")

    def dump(name, g):
        print(f"--- IR after {name} ---")
        print(ir.format_graph(g))

    def progress(report, nodes):  # as each pass finishes: a failing pass does not hide the earlier reports
        print(f"  {report.summary()}  ({nodes} nodes)")
        if args.verbose:
            print("\n".join("    " + ln for ln in report.lines()))

    label = target.pipeline if isinstance(target.pipeline, str) else "custom"
    print(f"pipeline '{label}': {len(graph)} nodes")
    res = compile_graph(graph, target, calib=calib, input_range=args.input_range, skip=args.skip,
                        dump_after=args.dump_ir_after, on_dump=dump, on_pass=progress)
    print(f"  nodes: {len(graph)} -> {len(res.optimized)}")
    if res.quant_lines:
        print("\n".join(res.quant_lines))
    artifact = emit(res, source={"checkpoint": str(args.checkpoint), "model": args.model}, **options)
    if artifact.lines:
        print("\n".join(artifact.lines))
    artifact.save(args.output)
    print(f"wrote {target.name} artifact to {args.output} (spikec run {args.output} --input X.npy runs it)")
    return 0
