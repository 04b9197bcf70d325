"""Data movement: repetition over time, reshape, permute, slice, concatenation and constant padding
of the features, and the two time-mixing moves (the time axis into the features and back).  No
arithmetic (padding only writes its border value)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from ..types import Kind, TensorType, TimeBehaviour
from .base import Node, Scalar, _check_arity, _scalar_or_array_str, _sum_kind


@dataclass(frozen=True, eq=False)
class RepeatTimeNode(Node):
    """Direct encoding: repeat a one-step value ``time`` times along the time axis."""

    time: int = 1

    op: ClassVar[str] = "repeat_time"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if x.time != 1:
            raise self.fail(f"input must have time = 1, has {x.time}")
        return x.with_(time=self.time)

    def summary(self):
        return f"T={self.time}"


@dataclass(frozen=True, eq=False)
class TimeToFeaturesNode(Node):
    """Time mixing, explicit: the T steps of a value become feature axis ``axis`` of a one-step value,
    ``[T, B, *f] -> [1, B, *f']`` with f' = f with T inserted at ``axis`` (e.g. a permutation to
    ``[B, C, T, H, W]`` before a convolution over time).  Its output exists once every step has: a
    run over the whole sequence computes it; a stepping target buffers the T steps (latency T)."""

    axis: int = 0

    op: ClassVar[str] = "time_to_features"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.MIXES_STEPS

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if not 0 <= self.axis <= len(x.features):
            raise self.fail(f"axis {self.axis} out of range for features {x.features}")
        feats = list(x.features)
        feats.insert(self.axis, x.time)
        return x.with_(time=1, features=tuple(feats))

    def summary(self):
        return f"T -> f{self.axis}"


@dataclass(frozen=True, eq=False)
class FeaturesToTimeNode(Node):
    """The inverse move: feature axis ``axis`` of a one-step value becomes the time axis,
    ``[1, B, *f] -> [f[axis], B, *f without axis]``."""

    axis: int = 0

    op: ClassVar[str] = "features_to_time"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.MIXES_STEPS

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if x.time != 1:
            raise self.fail(f"input must have time = 1, has {x.time}")
        if not 0 <= self.axis < len(x.features) or len(x.features) < 2:
            raise self.fail(f"axis {self.axis} out of range for features {x.features}")
        feats = list(x.features)
        t = feats.pop(self.axis)
        return x.with_(time=t, features=tuple(feats))

    def summary(self):
        return f"f{self.axis} -> T"


@dataclass(frozen=True, eq=False)
class DelayNode(Node):
    """A delay of ``steps`` time steps, ``y[t] = x[t - steps]`` (0 for ``t < steps``): causal, so a
    stepping target runs it as synaptic delays (Loihi 2, Lava's ``DelaySparse``) or NIR's ``Delay``
    (:mod:`spikec.passes.causal_time_conv_to_delays` writes causal convolutions over time with it)."""

    steps: int = 1

    op: ClassVar[str] = "delay"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.STATEFUL

    def infer(self, ins):
        _check_arity(self, ins)
        if self.steps < 1:
            raise self.fail(f"steps must be >= 1, got {self.steps}")
        return ins[0]  # the zeros in front fit every kind

    def summary(self):
        return f"{self.steps} steps"


@dataclass(frozen=True, eq=False)
class ConcatNode(Node):
    """Concatenation of the inputs along feature ``axis`` (``torch.cat``)."""

    axis: int = 0

    op: ClassVar[str] = "concat"
    arity: ClassVar[Optional[int]] = None

    def infer(self, ins):
        if len(ins) < 2:
            raise self.fail(f"concatenates at least 2 values, got {len(ins)}")
        x = ins[0]
        if any(t.time != x.time or len(t.features) != len(x.features) for t in ins):
            raise self.fail(f"inputs differ in time steps or rank: {[str(t) for t in ins]}")
        if not 0 <= self.axis < len(x.features):
            raise self.fail(f"axis {self.axis} out of range for features {x.features}")
        if any(t.features[:self.axis] + t.features[self.axis + 1:] != x.features[:self.axis] + x.features[self.axis + 1:]
               for t in ins):
            raise self.fail(f"features differ outside axis {self.axis}: {[t.features for t in ins]}")
        feats = list(x.features)
        feats[self.axis] = sum(t.features[self.axis] for t in ins)
        kind = x.kind
        for t in ins[1:]:
            kind = kind.join(t.kind)
        return x.with_(features=tuple(feats), kind=kind)

    def summary(self):
        return f"axis f{self.axis}"


@dataclass(frozen=True, eq=False)
class ReshapeNode(Node):
    """Row-major reshape of the features to ``features`` (time and batch untouched)."""

    features: tuple[int, ...] = ()

    op: ClassVar[str] = "reshape"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if math.prod(self.features) != x.numel:
            raise self.fail(f"cannot reshape {x.features} to {self.features}")
        return x.with_(features=tuple(self.features))

    def summary(self):
        return f"-> {list(self.features)}"


@dataclass(frozen=True, eq=False)
class PermuteNode(Node):
    """Permutation of the feature axes: output axis i is input axis ``perm[i]``."""

    perm: tuple[int, ...] = ()

    op: ClassVar[str] = "permute"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if sorted(self.perm) != list(range(len(x.features))):
            raise self.fail(f"perm {self.perm} is not a permutation of {len(x.features)} axes")
        return x.with_(features=tuple(x.features[p] for p in self.perm))

    def summary(self):
        return f"{list(self.perm)}"


@dataclass(frozen=True, eq=False)
class SliceNode(Node):
    """Contiguous slice ``[start, stop)`` of feature axis ``axis`` (chunk / split / select)."""

    axis: int = 0
    start: int = 0
    stop: int = 1

    op: ClassVar[str] = "slice"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if not 0 <= self.axis < len(x.features):
            raise self.fail(f"axis {self.axis} out of range for features {x.features}")
        if not 0 <= self.start < self.stop <= x.features[self.axis]:
            raise self.fail(f"slice [{self.start}:{self.stop}) out of range {x.features[self.axis]}")
        feats = list(x.features)
        feats[self.axis] = self.stop - self.start
        return x.with_(features=tuple(feats))

    def summary(self):
        return f"f{self.axis}[{self.start}:{self.stop}]"


@dataclass(frozen=True, eq=False)
class PadNode(Node):
    """Constant padding of the spatial feature axes (1..n) per time step.

    ``pads[i] = (before, after)`` for spatial axis ``i + 1``; the border holds ``value``: a scalar,
    or one value per channel (``[C]``, Meta-SpikeFormer's BN-aware padding, where the border holds
    what the preceding batch norm outputs for a zero input)."""

    pads: tuple[tuple[int, int], ...] = ((0, 0),)
    value: Scalar = 0.0

    op: ClassVar[str] = "pad"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if len(self.pads) != len(x.features) - 1:
            raise self.fail(f"needs {len(x.features) - 1} (before, after) pairs for features {x.features}")
        if isinstance(self.value, np.ndarray) and self.value.shape != (x.features[0],):
            raise self.fail(f"per-channel value shape {self.value.shape} != ({x.features[0]},)")
        feats = (x.features[0], *(d + lo + hi for d, (lo, hi) in zip(x.features[1:], self.pads)))
        v = np.asarray(self.value)
        if x.kind is Kind.SPIKE and np.all((v == 0) | (v == 1)):
            kind = Kind.SPIKE
        elif x.kind is not Kind.REAL and np.all(v == np.round(v)):
            kind = _sum_kind(x.kind, Kind.COUNT if np.all(v >= 0) else Kind.INT)
        else:
            kind = Kind.REAL
        return TensorType(x.time, feats, kind)

    def summary(self):
        v = _scalar_or_array_str(self.value)
        return f"{[list(p) for p in self.pads]} value={v}"
