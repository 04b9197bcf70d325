"""What the op handlers and the converter (:mod:`spikec.frontend.trace`) share.

A handler converts one ATen call: ``(converter, *args, **kwargs) -> Act | Poison | constant |
tuple``, called with the call's arguments already converted (activations as :class:`Act`,
parameters and buffers as tensors, Python values as they are).  ``@handles(name, ...)`` enters a
handler in :data:`HANDLERS` under the operation names it converts; importing
:mod:`spikec.frontend.handlers`, which imports every family module, fills the table, and does
nothing else.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import torch

from ...errors import SpikecError


@dataclass(frozen=True)
class Act:
    """An ATen tensor that is an IR value ``[T, B, *f]``: ``layout`` 'split' = ``[T, B·, *post]``,
    'merged' = ``[*pre, T*B·, *post]``, with ``pre`` the first ``batch_at`` feature axes and ``B·`` the
    batch merged with the next ``batch_with`` ones (:mod:`spikec.frontend.layouts`)."""

    value: str
    layout: str
    batch_at: int = 0
    batch_with: int = 0
    time_from_feature: bool = False  # the time axis was a feature axis the code merged into the batch

    def __post_init__(self):
        if self.layout not in ("split", "merged") or (self.layout == "split" and self.batch_at):
            raise ValueError(f"bad layout {self.layout!r} (batch_at={self.batch_at})")

    def like(self, value: str) -> "Act":
        """The same layout for another value of the same features (an elementwise result)."""
        return Act(value, self.layout, self.batch_at, self.batch_with, self.time_from_feature)


@dataclass(frozen=True)
class Poison:
    """Result of an op that could not be converted; an error only if something uses it."""

    error: SpikecError


def op_name(node: torch.fx.Node) -> str:
    t = node.target
    if t is operator.getitem:
        return "getitem"
    s = str(t)
    return s.rsplit(".", 1)[0] if s.count(".") >= 2 else s


HANDLERS: dict[str, Callable] = {}


def handles(*names):
    def deco(fn):
        for n in names:
            HANDLERS[n] = fn
        return fn

    return deco


def ntuple(v, n):
    if isinstance(v, int):
        return (v,) * n
    v = tuple(int(x) for x in v)
    return v * n if len(v) == 1 else v
