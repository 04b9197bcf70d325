"""What every pass shares: its result type, its report, and small graph-editing helpers.

A pass is a pure function ``Graph -> PassResult``.  It never mutates its input; it returns a new
graph and a :class:`PassReport` saying how often it fired and, for each candidate where it did not
fire, why (the onnxscript-rewriter discipline: pattern -> check (reason) -> rewrite).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

from spikec.ir import Graph, Node


@dataclass
class PassReport:
    name: str
    fired: int = 0
    applied: list[str] = field(default_factory=list)  # "where: what was done"
    not_applied: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    def did(self, where: str, what: str) -> None:
        self.fired += 1
        self.applied.append(f"{where}: {what}")

    def skip(self, where: str, reason: str) -> None:
        self.not_applied.append((where, reason))

    def summary(self) -> str:
        s = f"{self.name}: fired {self.fired}x"
        if self.not_applied:
            s += f", {len(self.not_applied)} candidate(s) left"
        return s

    def lines(self) -> list[str]:
        out = [self.summary()]
        out += [f"  + {a}" for a in self.applied]
        out += [f"  - {w}: {r}" for w, r in self.not_applied]
        return out


@dataclass
class PassResult:
    graph: Graph
    report: PassReport

    @property
    def modified(self) -> bool:
        return self.report.fired > 0


def where(node: Node) -> str:
    return f"{node.name}" + (f" ({node.source})" if node.source and node.source != node.name else "")


def sole_user(graph: Graph, value: str) -> Optional[Node]:
    users = graph.users(value)
    return users[0] if len(users) == 1 else None


def rename_inputs(node: Node, mapping: dict[str, str]) -> Node:
    if not any(i in mapping for i in node.inputs):
        return node
    return node.replace(inputs=tuple(mapping.get(i, i) for i in node.inputs))


def substitute(nodes: Iterable[Node], mapping: dict[str, str], drop: set[str] = frozenset()) -> list[Node]:
    """Drop nodes named in ``drop`` and make every reader of ``old`` read ``mapping[old]``."""
    def resolve(v: str) -> str:
        seen = set()
        while v in mapping and v not in seen:
            seen.add(v)
            v = mapping[v]
        return v

    full = {k: resolve(k) for k in mapping}
    return [rename_inputs(n, full) for n in nodes if n.name not in drop]


class NameSource:
    """Fresh node names that do not collide with a graph's."""

    def __init__(self, graph: Graph):
        self.used = {n.name for n in graph.nodes}

    def __call__(self, base: str) -> str:
        name, k = base, 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name
