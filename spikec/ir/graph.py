"""The IR graph: an ordered, immutable list of nodes forming a dataflow DAG.

Nodes are stored in topological order (every input refers to an earlier node), which makes the
graph acyclic by construction; :meth:`Graph.validate` checks that, the references, the names and
the types.  Passes never mutate a graph: they build a new one (see :meth:`Graph.rewrite`).
"""

from __future__ import annotations

from functools import cached_property
from typing import Callable, Hashable, Iterable, Optional, Sequence, TypeVar

from ..errors import IRError
from .nodes import InputNode, Node, OutputNode
from .types import TensorType


class Graph:
    """A typed dataflow graph over time-stepped tensors."""

    def __init__(self, nodes: Iterable[Node], name: str = "model", metadata: Optional[dict] = None):
        self.nodes: tuple[Node, ...] = tuple(nodes)
        self.name = name
        self.metadata: dict = dict(metadata or {})
        self._by_name: dict[str, Node] = {}
        for n in self.nodes:
            if n.name in self._by_name:
                raise IRError(f"duplicate node name '{n.name}'")
            self._by_name[n.name] = n

    # --- access ---------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        try:
            return self._by_name[name]
        except KeyError:
            raise IRError(f"no node named '{name}'") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def inputs(self) -> list[InputNode]:
        return [n for n in self.nodes if isinstance(n, InputNode)]

    @property
    def outputs(self) -> list[OutputNode]:
        return [n for n in self.nodes if isinstance(n, OutputNode)]

    def producer(self, value: str) -> Node:
        """The node producing ``value`` (values are named after their producer)."""
        return self[value]

    @cached_property
    def _users(self) -> dict[str, list[Node]]:
        users: dict[str, list[Node]] = {n.name: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                if i in users and n not in users[i]:
                    users[i].append(n)
        return users

    def users(self, value: str) -> list[Node]:
        return list(self._users.get(value, []))

    def count_ops(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts

    # --- typing and validation ---------------------------------------------------------------------
    @cached_property
    def types(self) -> dict[str, TensorType]:
        """Type of every value, inferred in order.  Raises IRError on the first bad node."""
        types: dict[str, TensorType] = {}
        for n in self.nodes:
            missing = [i for i in n.inputs if i not in types]
            if missing:
                known = [i for i in missing if i in self._by_name]
                if known:
                    raise n.fail(f"input(s) {known} come later in the graph (cycle or bad order)")
                raise n.fail(f"input(s) {missing} do not exist")
            try:
                types[n.name] = n.infer([types[i] for i in n.inputs])
            except IRError:
                raise
            except (ValueError, TypeError, IndexError) as e:
                raise n.fail(str(e)) from e
        return types

    def type_of(self, value: str) -> TensorType:
        return self.types[value]

    def validate(self) -> "Graph":
        """Check names, references, acyclicity, types, and graph boundary; return self."""
        if not self.inputs:
            raise IRError("graph has no input node")
        if not self.outputs:
            raise IRError("graph has no output node")
        for n in self.nodes:
            if not n.name or any(c.isspace() for c in n.name):
                raise IRError(f"invalid node name {n.name!r}")
            if isinstance(n, OutputNode) and self.users(n.name):
                raise n.fail("an output node cannot feed other nodes")
        self.types  # noqa: B018 - infers every type, raising on the first error
        return self

    # --- building -----------------------------------------------------------------------------------
    def rewrite(self, nodes: Iterable[Node], **metadata) -> "Graph":
        """A new graph with ``nodes`` (re-ordered topologically if needed) and merged metadata."""
        meta = dict(self.metadata)
        meta.update(metadata)
        return Graph(topological_order(list(nodes)), name=self.name, metadata=meta)

    def same_as(self, other: "Graph") -> bool:
        """Exact equality: same name, metadata and nodes (arrays bit for bit)."""
        return (
            self.name == other.name
            and self.metadata == other.metadata
            and len(self) == len(other)
            and all(a.same_as(b) for a, b in zip(self.nodes, other.nodes))
        )


T = TypeVar("T")


def _same(x):
    return x


def topological_sort(items: Sequence[T], preds: Callable[[T], Iterable[T]], key: Callable[[T], Hashable] = _same,
                     cycles: str = "raise") -> list[T]:
    """Stable topological order of ``items``: depth first, each item placed right after its not yet
    placed predecessors (``preds(item)``, in their order), otherwise in the given order, so an order
    that is already valid comes back unchanged.  Items are told apart by ``key`` (the first one of a
    key is placed).  An edge that closes a cycle raises IRError (``cycles="raise"``) or is skipped
    (``cycles="ignore"``: the order is then valid for the remaining edges)."""
    placed: set = set()
    visiting: set = set()
    order: list[T] = []
    for root in items:
        if key(root) in placed:
            continue
        visiting.add(key(root))
        stack = [(root, iter(preds(root)))]
        while stack:  # iterative depth-first search (deep graphs exceed Python's recursion limit)
            item, pending = stack[-1]
            for p in pending:
                k = key(p)
                if k in placed:
                    continue
                if k in visiting:
                    if cycles == "raise":
                        raise IRError(f"cycle through node '{k}'")
                    continue
                visiting.add(k)
                stack.append((p, iter(preds(p))))
                break
            else:
                stack.pop()
                visiting.discard(key(item))
                placed.add(key(item))
                order.append(item)
    return order


def topological_order(nodes: list[Node]) -> list[Node]:
    """Stable topological sort of IR nodes (keeps the given order where it is already valid)."""
    by_name = {n.name: n for n in nodes}
    return topological_sort(nodes, lambda n: [by_name[i] for i in n.inputs if i in by_name], key=lambda n: n.name)


def dead_code_elimination(nodes: list[Node]) -> list[Node]:
    """Keep only nodes that an output (or an input node) depends on."""
    by_name = {n.name: n for n in nodes}
    live: set[str] = set()
    stack = [n.name for n in nodes if isinstance(n, (OutputNode, InputNode))]
    while stack:
        name = stack.pop()
        if name in live:
            continue
        live.add(name)
        stack.extend(i for i in by_name[name].inputs if i in by_name)
    return [n for n in nodes if n.name in live]


def last_reads(nodes: Iterable[Node]) -> dict[str, tuple[str, ...]]:
    """Per node of ``nodes`` (in execution order), the values it is the last of them to read: once it
    has run, those values are dead (what an executor frees to keep only the widest cut alive)."""
    last: dict[str, str] = {}
    order = []
    for n in nodes:
        order.append(n.name)
        for i in n.inputs:
            last[i] = n.name
    out: dict[str, list[str]] = {name: [] for name in order}
    for value, reader in last.items():
        out[reader].append(value)
    return {name: tuple(values) for name, values in out.items()}
