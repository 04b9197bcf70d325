"""``spikec report``: synaptic operations, energy and Loihi 2 cores per layer, with plots."""

from __future__ import annotations

import sys

from . import common


def add_parser(sub) -> None:

    p = sub.add_parser("report", help="per-layer synaptic operations, energy, firing rates and Loihi 2 cores, with plots",
                       description="Run the optimised float IR and the integer reference model on the inputs and write "
                       "a per-layer report to a directory: neurons, synapses, firing rate, synaptic operations (SOPs) "
                       "and MACs per sample, energy with the papers' 45 nm constants (E_AC 0.9 pJ, E_MAC 4.6 pJ), "
                       "float vs integer spike agreement, quantization error and Loihi 2 cores (report.md, "
                       "report.json, and four PNG plots).")
    common.add_model_options(p)
    common.add_data_options(p)
    g = p.add_argument_group("report")
    g.add_argument("-o", "--output", metavar="DIR", help="directory to write (report.md, report.json, *.png)")
    g.add_argument("--max-memory", metavar="SIZE",
                   help="Loihi 2 cores only if the simulated network's memory estimate stays below SIZE "
                        "(e.g. 8G; default: half of the machine's RAM); else the cores are n/a")
    g.add_argument("--no-cores", action="store_true", help="skip the Loihi 2 resource model")
    common.add_quantization_options(g)
    common.add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from spikec.data import check_inputs
    from spikec.reporting import report_graph
    from spikec.reporting.output import check_report_dir

    common.require([] if args.output else ["-o DIR"], "report")
    check_report_dir(args.output, protect=common.inputs_of(args))
    x, labels = common.load_data(args, "report")
    graph = common.graph_of(args)
    x, labels = common.limit_samples(graph, x, labels, args.limit)
    check_inputs(graph, x, labels)
    report = report_graph(graph, x, labels=labels, calib=common.calib_of(args), input_range=args.input_range,
                          cores=not args.no_cores, max_memory=args.max_memory)
    for line in report.quantization.get("warnings", []):
        print(line, file=sys.stderr)
    Console(width=200).print(report)
    out = report.save(args.output, protect=common.inputs_of(args))
    print(f"wrote {out}: {', '.join(report.files)}")
    return 0
