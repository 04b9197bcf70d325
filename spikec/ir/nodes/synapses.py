"""Synaptic (weighted) operations: float convolution, linear map and batch norm, and the integer
synapses the quantize pass turns them into."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

import numpy as np

from ..types import Kind, TensorType
from .base import Node, _check_arity, _conv_out


@dataclass(frozen=True, eq=False)
class ConvNode(Node):
    """N-d convolution per time step (PyTorch ``conv1d`` / ``conv2d`` / ``conv3d`` semantics,
    cross-correlation; a 3-d one convolves over time once the time axis is a feature axis,
    :class:`~.shape.TimeToFeaturesNode`).

    ``weight``: ``[C_out, C_in / groups, *kernel]``; ``bias``: ``[C_out]`` or None.
    Input features ``[C_in, *spatial]``; output ``[C_out, *spatial_out]`` with
    ``out = floor((L + 2p - d(k-1) - 1) / s) + 1`` per spatial axis.
    """

    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1, 1), np.float32))
    bias: Optional[np.ndarray] = None
    stride: tuple[int, ...] = (1,)
    padding: tuple[int, ...] = (0,)
    dilation: tuple[int, ...] = (1,)
    groups: int = 1

    op: ClassVar[str] = "conv"

    @property
    def spatial_dims(self) -> int:
        return self.weight.ndim - 2

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        nd = self.spatial_dims
        if nd not in (1, 2, 3):
            raise self.fail(f"only conv1d / conv2d / conv3d are supported, weight has {nd} spatial dims")
        if len(x.features) != nd + 1:
            raise self.fail(f"expects features [C, {nd} spatial], got {x.features}")
        for name in ("stride", "padding", "dilation"):
            if len(getattr(self, name)) != nd:
                raise self.fail(f"{name} must have {nd} entries")
        c_in = x.features[0]
        if c_in != self.weight.shape[1] * self.groups:
            raise self.fail(
                f"input has {c_in} channels, weight expects "
                f"{self.weight.shape[1]} x {self.groups} groups"
            )
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise self.fail(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        spatial = tuple(
            _conv_out(L, k, s, p, d)
            for L, k, s, p, d in zip(
                x.features[1:], self.weight.shape[2:], self.stride, self.padding, self.dilation
            )
        )
        if any(o < 1 for o in spatial):
            raise self.fail(f"output spatial size {spatial} is empty")
        return TensorType(x.time, (self.weight.shape[0], *spatial), Kind.REAL)

    def summary(self):
        k = "x".join(map(str, self.weight.shape[2:]))
        s = f"{self.weight.shape[1] * self.groups}->{self.weight.shape[0]} k{k}"
        if any(v != 1 for v in self.stride):
            s += f" s{list(self.stride)}"
        if any(v != 0 for v in self.padding):
            s += f" p{list(self.padding)}"
        if any(v != 1 for v in self.dilation):
            s += f" d{list(self.dilation)}"
        if self.groups != 1:
            s += f" g{self.groups}"
        return s + (" +bias" if self.bias is not None else "")


@dataclass(frozen=True, eq=False)
class LinearNode(Node):
    """Affine map on the last feature axis: ``y = x Wᵀ + b``; ``weight`` ``[out, in]``."""

    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.float32))
    bias: Optional[np.ndarray] = None

    op: ClassVar[str] = "linear"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if not x.features or x.features[-1] != self.weight.shape[1]:
            raise self.fail(f"last feature dim of {x.features} != in_features {self.weight.shape[1]}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise self.fail(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        return TensorType(x.time, (*x.features[:-1], self.weight.shape[0]), Kind.REAL)

    def summary(self):
        s = f"{self.weight.shape[1]}->{self.weight.shape[0]}"
        return s + (" +bias" if self.bias is not None else "")


@dataclass(frozen=True, eq=False)
class BatchNormNode(Node):
    """Inference batch norm over feature axis ``axis`` (the channel axis):
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (PyTorch ``batch_norm``, eval mode)."""

    mean: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))
    var: np.ndarray = field(default_factory=lambda: np.ones(1, np.float32))
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    eps: float = 1e-5
    axis: int = 0

    op: ClassVar[str] = "batchnorm"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        c = self.mean.shape[0]
        if self.axis >= len(x.features) or x.features[self.axis] != c:
            raise self.fail(f"channel axis {self.axis} of {x.features} != {c} channels")
        for nm in ("var", "weight", "bias"):
            a = getattr(self, nm)
            if a is not None and a.shape != (c,):
                raise self.fail(f"{nm} shape {a.shape} != ({c},)")
        return x.with_(kind=Kind.REAL)

    def summary(self):
        return f"C={self.mean.shape[0]} eps={self.eps:g}"


# ------------------------------------------------------------------------------------------------
# Integer (quantized) forms, produced by the quantize pass; semantics are Loihi 2 / Lava fixed_pt
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class SynapseNode(Node):
    """Integer synapses (Lava ``Dense`` / ``Sparse`` fixed_pt semantics, conv or linear layout).

    ``weight`` holds the *effective* integer weights (already clipped and LSB-truncated as Lava's
    Dense does on its first step: even values in [−256, 254] for MIXED sign mode, [0, 255] EXC,
    [−255, 0] INH)::

        acc = Σ_j weight[o, j] · in[j]            (exact integer sum; spikes or graded payloads)
        out = acc << weight_exp   if weight_exp >= 0   else   acc >> −weight_exp   (floor)
        out += bias                                   (only for host-side output layers)

    ``channel_exp`` (``[C_out]`` int, or None: all ``weight_exp``) gives each output channel its own
    Loihi weight exponent: channel ``c`` stores mantissas ``weight[c] >> (channel_exp[c] −
    weight_exp)`` (8-bit, in the synapse's sign mode) and is delivered by a connection with exponent
    ``channel_exp[c]`` (Loihi has one exponent per connection: :meth:`channel_groups` are the
    connections).  ``weight`` holds them
    shifted to the common exponent, so the arithmetic above is unchanged and exact:
    ``⌊(m·2^(e_c − e))·x · 2^e⌋ = ⌊m·x·2^(e_c)⌋`` for ``e_c >= e``.

    ``layout = "conv"`` uses ``stride`` / ``padding`` / ``dilation`` / ``groups`` (PyTorch
    convolution indexing, zero padding); ``"linear"`` acts on the last feature axis."""

    layout: str = "linear"
    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int32))
    weight_exp: int = 0
    sign_mode: str = "mixed"
    bias: Optional[np.ndarray] = None
    channel_exp: Optional[np.ndarray] = None
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    groups: int = 1

    op: ClassVar[str] = "synapse"

    def _as_float_node(self):
        if self.layout == "conv":
            return ConvNode(self.name, self.inputs, self.source, weight=self.weight, bias=None, stride=self.stride,
                            padding=self.padding, dilation=self.dilation, groups=self.groups)
        return LinearNode(self.name, self.inputs, self.source, weight=self.weight, bias=None)

    def infer(self, ins):
        _check_arity(self, ins)
        if ins[0].kind is Kind.REAL:
            raise self.fail("integer synapses need an integer input")
        if not np.issubdtype(self.weight.dtype, np.integer):
            raise self.fail(f"weights must be integers, are {self.weight.dtype}")
        if self.sign_mode not in ("mixed", "exc", "inh"):
            raise self.fail(f"unknown sign mode {self.sign_mode!r}")
        t = self._as_float_node().infer(ins)
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise self.fail(f"bias shape {self.bias.shape} != ({self.weight.shape[0]},)")
        if self.channel_exp is not None:
            ce = np.asarray(self.channel_exp)
            if ce.shape != (self.weight.shape[0],) or not np.issubdtype(ce.dtype, np.integer):
                raise self.fail(f"channel_exp must be {self.weight.shape[0]} integers, is {ce.dtype} {ce.shape}")
            shift = self.channel_shift()
            if shift.min() < 0:
                raise self.fail(f"channel exponents {ce.min()} below the common exponent {self.weight_exp}")
            w = np.asarray(self.weight, np.int64).reshape(len(ce), -1)
            if np.any(w % (np.int64(1) << shift)[:, None]):
                raise self.fail("a channel's weights are not multiples of 2^(its exponent - the common exponent)")
        return t.with_(kind=Kind.INT)

    def channel_exps(self) -> np.ndarray:
        """Each output channel's weight exponent (``[C_out]`` int64)."""
        if self.channel_exp is None:
            return np.full(self.weight.shape[0], self.weight_exp, np.int64)
        return np.asarray(self.channel_exp, np.int64)

    def channel_shift(self) -> np.ndarray:
        """Each output channel's exponent above the common one (``[C_out]`` int64, all 0 without
        ``channel_exp``): ``weight[c]`` is its mantissas shifted left by it."""
        return self.channel_exps() - self.weight_exp

    def connections(self) -> int:
        """The Loihi connections of this synapse: one per distinct channel exponent."""
        return 1 if self.channel_exp is None else len(np.unique(self.channel_exp))

    def mantissas(self) -> np.ndarray:
        """The stored mantissas (int64): ``weight`` with each output channel shifted back by its
        exponent's distance from the common one (``weight`` itself without ``channel_exp``)."""
        w = np.asarray(self.weight, np.int64)
        if self.channel_exp is None:
            return w
        return w >> self.channel_shift().reshape(-1, *([1] * (w.ndim - 1)))

    def channel_groups(self) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """The Loihi connections of this synapse, one per distinct channel exponent:
        ``(exponent, channels, mantissas)`` with ``mantissas`` the weight array at that exponent,
        restricted to those output channels (the others zero).  One group without ``channel_exp``."""
        mant = self.mantissas()
        if self.channel_exp is None:
            return [(self.weight_exp, np.arange(mant.shape[0]), mant)]
        exps = self.channel_exps()
        groups = []
        for e in np.unique(exps):
            chans = np.nonzero(exps == e)[0]
            part = np.zeros_like(mant)
            part[chans] = mant[chans]
            groups.append((int(e), chans, part))
        return groups

    def summary(self):
        shape = "x".join(map(str, self.weight.shape))
        exp = (f"exp={self.weight_exp}" if self.channel_exp is None
               else f"exp={int(np.min(self.channel_exp))}..{int(np.max(self.channel_exp))} ({self.connections()} connections)")
        return f"{self.layout} w{shape} {exp} {self.sign_mode}" + (" +bias" if self.bias is not None else "")
