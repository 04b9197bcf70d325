"""Reductions: sums / means over feature axes or time, and windowed max / average pooling."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

from ..types import Kind, TensorType, TimeBehaviour
from .base import Node, _check_arity, _conv_out, _norm_axis


@dataclass(frozen=True, eq=False)
class ReduceNode(Node):
    """Sum or mean over feature ``axes`` and, if ``over_time``, over the time axis (which then
    has length 1).  ``keepdim`` keeps reduced feature axes with size 1."""

    reduce: str = "sum"
    axes: tuple[int, ...] = ()
    over_time: bool = False
    keepdim: bool = False

    op: ClassVar[str] = "reduce"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.MIXES_STEPS if self.over_time else TimeBehaviour.PER_STEP

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.reduce not in ("sum", "mean"):
            raise self.fail(f"reduce must be 'sum' or 'mean', got {self.reduce!r}")
        nd = len(x.features)
        axes = {_norm_axis(self, a, nd) for a in self.axes}
        if not axes and not self.over_time:
            raise self.fail("reduces nothing")
        feats = tuple(
            (1 if i in axes else d) for i, d in enumerate(x.features) if self.keepdim or i not in axes
        )
        if self.reduce == "mean":
            kind = Kind.REAL
        else:
            kind = Kind.COUNT if x.kind in (Kind.SPIKE, Kind.COUNT) else x.kind
        return TensorType(1 if self.over_time else x.time, feats, kind)

    def summary(self):
        over = [f"f{a}" for a in self.axes] + (["time"] if self.over_time else [])
        return f"{self.reduce} over {','.join(over)}" + (" keepdim" if self.keepdim else "")


@dataclass(frozen=True, eq=False)
class MaxPoolNode(Node):
    """Max pooling per time step (PyTorch ``max_pool1d/2d``; padding is -inf).  Of spikes it is
    an OR and stays binary."""

    kernel: tuple[int, ...] = (2, 2)
    stride: tuple[int, ...] = (2, 2)
    padding: tuple[int, ...] = (0, 0)
    dilation: tuple[int, ...] = (1, 1)
    ceil_mode: bool = False

    op: ClassVar[str] = "maxpool"

    def infer(self, ins):
        _check_arity(self, ins)
        return _pool_type(self, ins[0], self.dilation, keep_kind=True)

    def summary(self):
        return f"k{list(self.kernel)} s{list(self.stride)} p{list(self.padding)}"


@dataclass(frozen=True, eq=False)
class AvgPoolNode(Node):
    """Average pooling per time step (PyTorch ``avg_pool1d/2d`` semantics)."""

    kernel: tuple[int, ...] = (2, 2)
    stride: tuple[int, ...] = (2, 2)
    padding: tuple[int, ...] = (0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None

    op: ClassVar[str] = "avgpool"

    def infer(self, ins):
        _check_arity(self, ins)
        t = _pool_type(self, ins[0], (1,) * len(self.kernel), keep_kind=False)
        if self.divisor_override == 1 and ins[0].kind is not Kind.REAL:  # an integer sum pool
            t = t.with_(kind=Kind.COUNT if ins[0].kind in (Kind.SPIKE, Kind.COUNT) else Kind.INT)
        return t

    def summary(self):
        s = f"k{list(self.kernel)} s{list(self.stride)} p{list(self.padding)}"
        return s + (" sum" if self.divisor_override == 1 else "")


def _pool_type(node, x: TensorType, dilation, keep_kind: bool) -> TensorType:
    nd = len(node.kernel)
    if nd not in (1, 2) or len(x.features) != nd + 1:
        raise node.fail(f"{nd}-d pooling needs features [C, {nd} spatial], got {x.features}")
    spatial = tuple(
        _conv_out(L, k, s, p, d, node.ceil_mode)
        for L, k, s, p, d in zip(x.features[1:], node.kernel, node.stride, node.padding, dilation)
    )
    if any(o < 1 for o in spatial):
        raise node.fail(f"output spatial size {spatial} is empty")
    return TensorType(x.time, (x.features[0], *spatial), x.kind if keep_kind else Kind.REAL)
