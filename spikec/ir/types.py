"""Value types of the spikec IR.

Every IR value is a time-stepped tensor with the fixed layout ``[T, B, *features]``:

* ``T`` (``time``) is the number of time steps; a static (not yet repeated) input has ``T = 1``;
* ``B`` is the batch axis, left symbolic: a graph runs on any batch size, so types never store it;
* ``features`` is the per-sample shape, e.g. ``(C, H, W)`` or ``(heads, d, N)``.

The *kind* says which numbers the value can hold.  Kinds are ordered by generality
(SPIKE ⊂ COUNT ⊂ INT ⊂ REAL) and passes use them to prove facts such as "this matmul operand is
binary", so a kind must never claim more than the producer guarantees.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Kind(enum.Enum):
    """Value set of a tensor."""

    SPIKE = "spike"  #: binary, {0, 1}
    COUNT = "count"  #: non-negative integers (sums of spikes)
    INT = "int"  #: signed integers
    REAL = "real"  #: real numbers

    @property
    def rank(self) -> int:
        return _RANK[self]

    def join(self, other: "Kind") -> "Kind":
        """Smallest kind containing both (used for sums and selections)."""
        return self if self.rank >= other.rank else other

    @property
    def is_binary(self) -> bool:
        return self is Kind.SPIKE

    @property
    def is_integer(self) -> bool:
        return self is not Kind.REAL


_RANK = {Kind.SPIKE: 0, Kind.COUNT: 1, Kind.INT: 2, Kind.REAL: 3}


class TimeBehaviour(enum.Enum):
    """How an operation relates the time steps of its input and output."""

    PER_STEP = "per-step"  #: output step t depends only on input step t
    STATEFUL = "stateful"  #: causal recurrence: step t depends on steps <= t (neurons)
    MIXES_STEPS = "mixes-steps"  #: output depends on all steps (e.g. mean over time)


@dataclass(frozen=True)
class TensorType:
    """Type of an IR value: ``[time, batch, *features]`` with a kind."""

    time: int
    features: tuple[int, ...]
    kind: Kind

    def __post_init__(self) -> None:
        if self.time < 1:
            raise ValueError(f"time must be >= 1, got {self.time}")
        if any(int(d) != d or d < 1 for d in self.features):
            raise ValueError(f"feature dims must be positive integers, got {self.features}")
        object.__setattr__(self, "features", tuple(int(d) for d in self.features))

    @property
    def numel(self) -> int:
        """Elements per time step and sample."""
        n = 1
        for d in self.features:
            n *= d
        return n

    def with_(self, **changes) -> "TensorType":
        fields = {"time": self.time, "features": self.features, "kind": self.kind}
        fields.update(changes)
        return TensorType(**fields)

    def shape_str(self) -> str:
        return "[" + ", ".join([f"T={self.time}", "B", *map(str, self.features)]) + "]"

    def __str__(self) -> str:
        return f"{self.kind.value}{self.shape_str()}"
