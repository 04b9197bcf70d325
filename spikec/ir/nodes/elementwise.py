"""Elementwise operations: sums and products of two activations (and AND, their spike-driven form
of a product of spikes), adding and multiplying by constants, and exact integer shifts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from ..types import Kind, TensorType
from .base import Node, Scalar, _broadcast, _check_arity, _product_kind, _same_time, _scalar_or_array_str, _sum_kind


@dataclass(frozen=True, eq=False)
class AddNode(Node):
    """Elementwise sum of two activations (broadcast over features), e.g. a residual."""

    op: ClassVar[str] = "add"
    arity: ClassVar[Optional[int]] = 2

    def infer(self, ins):
        _check_arity(self, ins)
        t = _same_time(self, ins)
        return TensorType(
            t, _broadcast(self, ins[0].features, ins[1].features), _sum_kind(ins[0].kind, ins[1].kind)
        )


@dataclass(frozen=True, eq=False)
class MulNode(Node):
    """Elementwise (Hadamard) product of two activations; of two spike tensors it is an AND."""

    op: ClassVar[str] = "mul"
    arity: ClassVar[Optional[int]] = 2

    def infer(self, ins):
        _check_arity(self, ins)
        t = _same_time(self, ins)
        return TensorType(
            t,
            _broadcast(self, ins[0].features, ins[1].features),
            _product_kind(ins[0].kind, ins[1].kind),
        )


@dataclass(frozen=True, eq=False)
class ScaleNode(Node):
    """Multiplication (``mode="mul"``) or division (``mode="div"``) by a constant ``factor``
    (scalar or array broadcastable to the features).  Division is kept distinct from
    multiplication by the reciprocal because the two round differently in float32."""

    factor: Scalar = 1.0
    mode: str = "mul"

    op: ClassVar[str] = "scale"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.mode not in ("mul", "div"):
            raise self.fail(f"mode must be 'mul' or 'div', got {self.mode!r}")
        f = np.asarray(self.factor)
        try:
            feats = tuple(np.broadcast_shapes(f.shape, x.features))
        except ValueError:
            raise self.fail(f"factor shape {f.shape} does not broadcast to {x.features}") from None
        if feats != x.features:
            raise self.fail(f"factor shape {f.shape} would change the features {x.features}")
        integral = self.mode == "mul" and np.all(f == np.round(f))
        if x.kind is Kind.REAL or not integral:
            kind = Kind.REAL
        elif np.all(f >= 0):
            kind = Kind.COUNT if x.kind in (Kind.SPIKE, Kind.COUNT) else Kind.INT
        else:
            kind = Kind.INT
        if kind is Kind.COUNT and x.kind is Kind.SPIKE and np.all(f == 1):
            kind = Kind.SPIKE
        return x.with_(kind=kind)

    def summary(self):
        f = _scalar_or_array_str(self.factor)
        return f"{'x' if self.mode == 'mul' else '/'}{f}"


# ------------------------------------------------------------------------------------------------
# Spike-driven forms (produced by passes)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AddConstantNode(Node):
    """``x + alpha·constant`` (PyTorch's ``torch.add(x, constant, alpha=alpha)``, one rounding): a
    bias or a learnable position embedding.  ``constant`` has shape ``(t, *f)`` with t = 1 (the same
    at every step) or t = T (one per time step: a per-step position encoding), ``f`` broadcastable to
    the features (aligned from the right)."""

    constant: Optional[np.ndarray] = None
    alpha: float = 1.0

    op: ClassVar[str] = "add_constant"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        c = self.constant
        if c is None or c.ndim < 1 or c.shape[0] not in (1, x.time):
            raise self.fail(f"constant needs a leading time axis of 1 or {x.time} steps, has shape "
                            f"{None if c is None else list(c.shape)}")
        feats = _broadcast(self, x.features, c.shape[1:])
        if feats != x.features:
            raise self.fail(f"constant of shape {list(c.shape)} would change the features {list(x.features)}")
        kind = x.kind.join(Kind.INT) if c.dtype.kind in "iu" else Kind.REAL
        return x.with_(kind=kind)

    def summary(self):
        return (f"+ {self.alpha:g} x " if self.alpha != 1 else "+ ") + (
            f"const{list(self.constant.shape)}" if self.constant is not None else "const")


@dataclass(frozen=True, eq=False)
class AndNode(Node):
    """Logical AND of two binary spike tensors (broadcast over features): the spike-driven form
    of a Hadamard product of spikes.  Both inputs must be of kind SPIKE."""

    op: ClassVar[str] = "and"
    arity: ClassVar[Optional[int]] = 2

    def infer(self, ins):
        _check_arity(self, ins)
        t = _same_time(self, ins)
        if not all(x.kind is Kind.SPIKE for x in ins):
            raise self.fail(f"AND needs two spike tensors, got {ins[0].kind.value} and {ins[1].kind.value}")
        return TensorType(t, _broadcast(self, ins[0].features, ins[1].features), Kind.SPIKE)


# ------------------------------------------------------------------------------------------------
# Integer (quantized) forms, produced by the quantize pass; semantics are Loihi 2 / Lava fixed_pt
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShiftNode(Node):
    """Exact power-of-two rescaling of an integer value: ``x << shift`` (``shift`` >= 0) or
    ``x >> −shift`` (floor).  Connects integer counts to a neuron's input units."""

    shift: int = 0

    op: ClassVar[str] = "shift"

    def infer(self, ins):
        _check_arity(self, ins)
        if ins[0].kind is Kind.REAL:
            raise self.fail("shift needs an integer input")
        return ins[0].with_(kind=Kind.INT if ins[0].kind is Kind.INT or self.shift < 0 else Kind.COUNT)

    def summary(self):
        return f"<<{self.shift}" if self.shift >= 0 else f">>{-self.shift}"
