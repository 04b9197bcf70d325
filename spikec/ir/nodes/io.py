"""Graph boundary: inputs and outputs, and the two ends of the integer datapath (host-side input
quantization, dequantization of the result)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..types import Kind, TensorType
from .base import Node, _check_arity

# ------------------------------------------------------------------------------------------------
# Graph boundary
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class InputNode(Node):
    """Graph input.

    ``layout = "static"``: the model receives ``[B, *features]`` (one frame, ``time`` must be 1;
    a :class:`RepeatTimeNode` usually follows).  ``layout = "sequence"``: the model receives
    ``[T, B, *features]`` with ``T = time``.
    """

    features: tuple[int, ...] = ()
    time: int = 1
    kind: str = Kind.REAL.value
    layout: str = "static"

    op: ClassVar[str] = "input"
    arity: ClassVar[Optional[int]] = 0

    def infer(self, ins):
        _check_arity(self, ins)
        if self.layout not in ("static", "sequence"):
            raise self.fail(f"layout must be 'static' or 'sequence', got {self.layout!r}")
        if self.layout == "static" and self.time != 1:
            raise self.fail("a static input has time = 1")
        return TensorType(self.time, tuple(self.features), Kind(self.kind))


@dataclass(frozen=True, eq=False)
class OutputNode(Node):
    """Graph output (identity).  ``layout`` is how the source model returned it:
    ``"split"`` = ``[T, B, *f]``, ``"merged"`` = ``[T*B, *f]``, ``"batch"`` = ``[B, *f]`` (T = 1)."""

    layout: str = "split"

    op: ClassVar[str] = "output"

    def infer(self, ins):
        _check_arity(self, ins)
        if self.layout not in ("split", "merged", "batch"):
            raise self.fail(f"unknown output layout {self.layout!r}")
        if self.layout == "batch" and ins[0].time != 1:
            raise self.fail("layout 'batch' needs a value with time = 1")
        return ins[0]


# ------------------------------------------------------------------------------------------------
# Integer (quantized) forms, produced by the quantize pass; semantics are Loihi 2 / Lava fixed_pt
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class QuantizeInputNode(Node):
    """Host-side input quantization to ``bits``-bit graded values:
    ``q = clip(floor(x / scale + 1/2), lo, hi)`` with ``[lo, hi] = [0, 2^bits − 1]`` (unsigned) or
    ``[−2^(bits−1), 2^(bits−1) − 1]`` (signed), where ``x`` is the model's float32 input and the
    division runs in float64.  NaN inputs are refused.  The integer datapath starts at its output."""

    scale: float = 1.0
    bits: int = 8
    signed: bool = False

    op: ClassVar[str] = "quantize_input"

    @property
    def bounds(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def infer(self, ins):
        _check_arity(self, ins)
        return ins[0].with_(kind=Kind.INT if self.signed else Kind.COUNT)

    def summary(self):
        return f"{'s' if self.signed else 'u'}{self.bits} scale={self.scale:.4g}"


@dataclass(frozen=True, eq=False)
class DequantizeNode(Node):
    """End of the integer datapath: the integer value ``q`` stands for the real ``q · scale``.
    Executors return ``q``; the real value is computed outside the datapath."""

    scale: float = 1.0

    op: ClassVar[str] = "dequantize"

    def infer(self, ins):
        _check_arity(self, ins)
        if ins[0].kind is Kind.REAL:
            raise self.fail("dequantize needs an integer input")
        return ins[0]

    def summary(self):
        return f"scale={self.scale:.6g}"
