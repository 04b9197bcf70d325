"""``spikec show``: trace a model (or load a saved IR) and print its IR."""

from __future__ import annotations

from .common import add_debug, add_model_options, graph_of


def add_parser(sub) -> None:
    p = sub.add_parser("show", help="trace a model and print its IR as a table",
                       description="Trace a checkpoint (or load a saved IR directory) and print the IR: node, op, "
                                   "source module, shape, kind, parameters.")
    add_model_options(p)
    p.add_argument("--text", action="store_true", help="plain text dump instead of a table")
    add_debug(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from rich.console import Console

    from spikec.ir import format_graph, graph_table

    graph = graph_of(args)
    if args.text:
        print(format_graph(graph))
    else:
        Console(width=200).print(graph_table(graph))
    return 0
