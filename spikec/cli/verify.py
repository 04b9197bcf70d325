"""``spikec verify``: torch model vs float IR vs integer model vs the target, per neuron layer."""

from __future__ import annotations

import sys

from . import common

workers = common.int_at_least(0, "a number of worker processes (0 or more)")


def add_parser(sub) -> None:
    from spikec.targets import names
    from spikec.targets.base import REFERENCE

    p = sub.add_parser("verify", help="compare torch model, float IR, integer model and target layer by layer",
                       description="Run the original torch model, the traced float IR, the optimised float IR, the "
                       "integer reference model (integer targets) and the target's own run on the same inputs; print "
                       "per-layer spike agreement, the first divergence, the target's check against its reference "
                       "(the integer model bit for bit, or the float IR), output top-1 agreement and accuracy (with labels); "
                       "for integer targets also each layer teacher-forced "
                       "(fed the float spikes of the layers upstream) against its quantization error bound: exit 1 "
                       "when a flip lies beyond it.")
    common.add_model_options(p)
    d = common.add_data_options(p)
    d.add_argument("--workers", type=workers, default=1, metavar="N",
                   help="run the samples in N worker processes (each re-opens the model; default 1: this process, "
                        "as does 0); the report is the same for every N. A progress bar shows on stderr "
                        "when it is a terminal. The target's own run (e.g. Lava) is one run in this process")
    g = p.add_argument_group("checks")
    g.add_argument("--target", choices=names(), default=REFERENCE,
                   help=f"target to verify (default {REFERENCE}): its pipeline, and its own run checked against its "
                        "reference (integer targets: the integer reference bit for bit; others: the float IR)")
    g.add_argument("--perturb", type=float, metavar="REL",
                   help="also run the float IR with every weight x (1 + REL·N(0,1)) and report its top-1 agreement "
                        "with itself: the model's own sensitivity, the yardstick for float vs integer (e.g. 1e-3)")
    g.add_argument("--min-agreement", type=float, default=0.0, metavar="F",
                   help="exit 1 if float vs integer (or target) top-1 agreement is below F (0..1)")
    g.add_argument("--json", metavar="FILE", help="write the per-layer report as JSON")
    common.add_quantization_options(g)
    common.add_target_options(p, verify=True)
    common.add_debug(p)
    p.set_defaults(func=run)


def show(report) -> None:
    from rich.console import Console

    print(f"verify ({report.target}) on {report.samples} samples")
    Console(width=200).print(report.table())
    print("\n".join(report.summary_lines()))


def run(args) -> int:
    from spikec.data import check_inputs
    from spikec.outputs import check_output
    from spikec.targets import get_target
    from spikec.verification import VerifyError, verify_graph
    from spikec.verification.chunks import ModelRecipe

    if args.json:
        check_output(args.json, directory=False, protect=common.inputs_of(args), option="--json")
    target = get_target(args.target)
    x, labels = common.load_data(args, "verify")
    loaded = common.open_args(args)  # once: the torch module runs, and the same object is traced
    graph = common.graph_of(args, loaded)
    x, labels = common.limit_samples(graph, x, labels, args.limit)
    check_inputs(graph, x, labels)
    try:
        recipe = ModelRecipe(args.checkpoint, args.model, args.model_kwargs, args.trust_checkpoint)  # what workers re-open
        report = verify_graph(graph, target, x, module=loaded.module, labels=labels, calib=common.calib_of(args),
                              model_output=args.model_output, input_range=args.input_range, workers=args.workers,
                              progress=sys.stderr.isatty(), recipe=recipe, perturb=args.perturb,
                              **common.target_options(args, target, verify=True))
    except VerifyError as e:  # what was checked before the failure, then the one-line error
        show(e.report)
        raise
    for line in report.warnings:
        print(line, file=sys.stderr)
    show(report)
    if args.json:
        common.write_file(args.json, lambda tmp: tmp.write_text(report.to_json()))
        print(f"wrote {args.json}")
    if not report.exact:
        print(f"FAIL: the {report.target} run differs from {report.check['reference']}", file=sys.stderr)
        return 1
    if not report.flips_explained:
        print("FAIL: teacher-forced flips beyond the quantization error bound (a bug, not rounding) in "
              + ", ".join(report.unexplained_layers), file=sys.stderr)
        return 1
    if report.top1_agreement < args.min_agreement:
        print(f"FAIL: top-1 agreement {report.top1_agreement:.4f} < --min-agreement {args.min_agreement}", file=sys.stderr)
        return 1
    return 0
