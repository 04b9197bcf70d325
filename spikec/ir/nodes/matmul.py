"""Matrix products of two activations, and the multiplication-free form a pass gives them when
one operand is binary spikes (addressed accumulation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..types import Kind, TensorType
from .base import Node, _broadcast, _check_arity, _product_kind, _same_time


@dataclass(frozen=True, eq=False)
class MatMulNode(Node):
    """Matrix product of two activations per time step and sample (``torch.matmul`` on the
    features; both operands have >= 2 feature dims, leading dims broadcast)."""

    op: ClassVar[str] = "matmul"
    arity: ClassVar[Optional[int]] = 2

    def infer(self, ins):
        _check_arity(self, ins)
        t = _same_time(self, ins)
        a, b = ins[0].features, ins[1].features
        if len(a) < 2 or len(b) < 2:
            raise self.fail(f"operands need >= 2 feature dims, got {a} and {b}")
        if a[-1] != b[-2]:
            raise self.fail(f"inner dims differ: {a} @ {b}")
        lead = _broadcast(self, a[:-2], b[:-2])
        k = _product_kind(ins[0].kind, ins[1].kind)
        kind = Kind.COUNT if k is Kind.SPIKE else k  # a sum of products of spikes counts
        return TensorType(t, (*lead, a[-2], b[-1]), kind)


# ------------------------------------------------------------------------------------------------
# Spike-driven forms (produced by passes)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AddressedAccumulationNode(Node):
    """Matrix product ``A @ B`` (``torch.matmul`` on the features) where operand
    ``spike_operand`` (0 = A, 1 = B) is binary, computed without multiplications::

        spike_operand = 0:  out[..., n, :] = sum over {k : A[..., n, k] = 1} of B[..., k, :]
        spike_operand = 1:  out[..., :, j] = sum over {k : B[..., k, j] = 1} of A[..., :, k]

    i.e. for every active spike address, the selected row (column) of the other operand is added.
    The output kind is COUNT if the other operand is spikes / counts, INT / REAL otherwise."""

    spike_operand: int = 0

    op: ClassVar[str] = "addressed_acc"
    arity: ClassVar[Optional[int]] = 2

    def infer(self, ins):
        _check_arity(self, ins)
        if self.spike_operand not in (0, 1):
            raise self.fail("spike_operand must be 0 or 1")
        if ins[self.spike_operand].kind is not Kind.SPIKE:
            raise self.fail(f"operand {self.spike_operand} must be binary spikes, is {ins[self.spike_operand].kind.value}")
        t = MatMulNode(self.name, self.inputs, self.source).infer(ins)
        return t

    def summary(self):
        return f"spikes in {'AB'[self.spike_operand]}"
