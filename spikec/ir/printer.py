"""Readable renderings of an IR graph: a line-per-node text dump and a rich table."""

from __future__ import annotations

from .graph import Graph


def format_graph(graph: Graph) -> str:
    """One line per node: ``%name : type = op(%in, ...) {params}  # source``."""
    types = graph.types
    lines = [f"graph {graph.name} ({len(graph)} nodes)"]
    for n in graph.nodes:
        ins = ", ".join(f"%{i}" for i in n.inputs)
        params = n.summary()
        src = f"  # {n.source}" if n.source else ""
        lines.append(
            f"  %{n.name} : {types[n.name]} = {n.op}({ins})"
            + (f" {{{params}}}" if params else "")
            + src
        )
    return "\n".join(lines)


def graph_table(graph: Graph, title: str | None = None):
    """A ``rich.table.Table`` with node, op, source module, shape, kind and key parameters."""
    from rich.table import Table

    types = graph.types
    table = Table(title=title or f"{graph.name}: {len(graph)} nodes", show_lines=False)
    for col in ("node", "op", "source module", "shape", "kind", "time", "parameters"):
        table.add_column(col, overflow="fold")
    for n in graph.nodes:
        t = types[n.name]
        table.add_row(
            n.name,
            n.op,
            n.source or "(top level)",
            t.shape_str(),
            t.kind.value,
            n.time_behaviour().value,
            n.summary(),
        )
    return table
