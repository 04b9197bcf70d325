"""The base of all node kinds and the typing helpers the families share.

:class:`Node` holds what every node has (name, inputs, source) and the introspection the graph,
printer and serializer use.  The helpers check arity and time steps, broadcast feature shapes,
compute convolution / pooling output sizes and give the kind of a sum or a product (the kind
algebra of :mod:`spikec.ir.types`: a sum of spikes or counts counts, a product of spikes is a spike).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Optional, Union

import numpy as np

from ...errors import IRError
from ..types import Kind, TensorType, TimeBehaviour

Scalar = Union[float, np.ndarray]


@dataclass(frozen=True, eq=False)
class Node:
    """Base of all node kinds."""

    name: str
    inputs: tuple[str, ...]
    source: str = ""

    op: ClassVar[str] = "node"
    arity: ClassVar[Optional[int]] = 1

    # --- typing --------------------------------------------------------------------------------
    def infer(self, ins: list[TensorType]) -> TensorType:  # pragma: no cover - abstract
        raise NotImplementedError

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.PER_STEP

    def fail(self, msg: str) -> IRError:
        where = f" (from {self.source})" if self.source else ""
        return IRError(f"node '{self.name}' [{self.op}]{where}: {msg}")

    # --- introspection -------------------------------------------------------------------------
    def attrs(self) -> dict[str, Any]:
        """Operation attributes and parameters (everything except name / inputs / source)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("name", "inputs", "source")
        }

    def summary(self) -> str:
        """Short human-readable description of the key parameters."""
        parts = []
        for k, v in self.attrs().items():
            if isinstance(v, np.ndarray):
                parts.append(f"{k}={_array_str(v)}")
            elif v is not None:
                parts.append(f"{k}={v}")
        return ", ".join(parts)

    def same_as(self, other: "Node") -> bool:
        """Exact structural equality (arrays compared bit for bit, dtypes included)."""
        if type(self) is not type(other):
            return False
        if (self.name, self.inputs, self.source) != (other.name, other.inputs, other.source):
            return False
        a, b = self.attrs(), other.attrs()
        for k in a:
            x, y = a[k], b[k]
            if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
                if not (
                    isinstance(x, np.ndarray)
                    and isinstance(y, np.ndarray)
                    and x.dtype == y.dtype
                    and x.shape == y.shape
                    and np.array_equal(x, y, equal_nan=True)
                ):
                    return False
            elif x != y or type(x) is not type(y):
                return False
        return True

    def replace(self, **changes) -> "Node":
        return dataclasses.replace(self, **changes)


def _array_str(a: np.ndarray) -> str:
    if a.size == 1:
        return f"{a.reshape(-1)[0]:.4g}"
    return f"<{a.dtype}{list(a.shape)}>"


def _scalar_or_array_str(v) -> str:
    return _array_str(v) if isinstance(v, np.ndarray) else f"{v:g}"


def _check_arity(node: Node, ins: list[TensorType]) -> None:
    if node.arity is not None and len(ins) != node.arity:
        raise node.fail(f"expects {node.arity} input(s), got {len(ins)}")


def _same_time(node: Node, ins: list[TensorType]) -> int:
    times = {t.time for t in ins}
    if len(times) != 1:
        raise node.fail(f"inputs have different numbers of time steps {sorted(times)}")
    return times.pop()


def _broadcast(node: Node, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise node.fail(f"feature shapes {a} and {b} do not broadcast") from None


def _norm_axis(node: Node, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise node.fail(f"axis {axis} out of range for {ndim} feature dims")
    return axis % ndim


def _conv_out(length: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = length + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= length + p:
        out -= 1
    return out


def _sum_kind(a: Kind, b: Kind) -> Kind:
    if a is Kind.REAL or b is Kind.REAL:
        return Kind.REAL
    if a in (Kind.SPIKE, Kind.COUNT) and b in (Kind.SPIKE, Kind.COUNT):
        return Kind.COUNT
    return Kind.INT


def _product_kind(a: Kind, b: Kind) -> Kind:
    if a is Kind.SPIKE and b is Kind.SPIKE:
        return Kind.SPIKE
    return _sum_kind(a, b)
