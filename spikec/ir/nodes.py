"""IR node kinds: one frozen dataclass per operation.

Every node produces exactly one value, named like the node.  ``inputs`` name the values it reads,
``source`` names the module of the original model it came from (e.g. ``blocks.1.attn.q_lif``).
Array parameters are numpy arrays; everything else is plain JSON-able data.

All operations act on values of layout ``[T, B, *features]`` (see :mod:`spikec.ir.types`); axes
in node attributes are *feature* axes (0 = first feature axis) unless the field says otherwise.
Each class states its semantics in its docstring; :meth:`Node.infer` computes the output type and
raises :class:`~spikec.errors.IRError` when inputs do not fit.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Union

import numpy as np

from ..errors import IRError
from .types import Kind, TensorType, TimeBehaviour

Scalar = Union[float, np.ndarray]

NODE_TYPES: dict[str, type["Node"]] = {}


def _register(cls):
    NODE_TYPES[cls.op] = cls
    return cls


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


# ------------------------------------------------------------------------------------------------
# Graph boundary
# ------------------------------------------------------------------------------------------------


@_register
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


@_register
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
# Synaptic (weighted) operations
# ------------------------------------------------------------------------------------------------


def _conv_out(length: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = length + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= length + p:
        out -= 1
    return out


@_register
@dataclass(frozen=True, eq=False)
class ConvNode(Node):
    """N-d convolution per time step (PyTorch ``conv1d`` / ``conv2d`` semantics, cross-correlation).

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
        if nd not in (1, 2):
            raise self.fail(f"only conv1d / conv2d are supported, weight has {nd} spatial dims")
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


@_register
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


@_register
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
# Neurons
# ------------------------------------------------------------------------------------------------


@_register
@dataclass(frozen=True, eq=False)
class NeuronNode(Node):
    """Spiking neuron layer, stateful over time (spikingjelly multi-step semantics, float32).

    With input current X[t], membrane V (initial value ``v_init``), reset value V_r
    (``v_reset``, or 0 for soft reset) and threshold θ (``v_threshold``, scalar or per-channel
    array broadcastable to the features)::

        IF :                      H = V + X
        LIF, decay_input:         H = V + (X - (V - V_r)) / tau      (PLIF: ... * leak_rate)
        LIF, not decay_input:     H = V - (V - V_r) / tau + X        (PLIF: ... * leak_rate)
        S = [H >= θ]                         (fires at equality)
        hard reset (v_reset set): V = S * V_r + (1 - S) * H
        soft reset (v_reset None): V = H - S * θ

    ``leak_rate`` is set for parametric LIF (= sigmoid(w), multiplied instead of dividing by tau;
    ``tau`` then holds 1 / leak_rate for reference).
    """

    model: str = "LIF"
    v_threshold: Scalar = 1.0
    v_reset: Optional[float] = 0.0
    tau: Optional[float] = 2.0
    decay_input: bool = True
    leak_rate: Optional[float] = None
    v_init: float = 0.0

    op: ClassVar[str] = "neuron"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.STATEFUL

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.model not in ("LIF", "IF"):
            raise self.fail(f"unknown neuron model {self.model!r}")
        if self.model == "LIF" and self.leak_rate is None and (self.tau is None or self.tau <= 0):
            raise self.fail("LIF needs tau > 0 or a leak_rate")
        if isinstance(self.v_threshold, np.ndarray):
            try:
                np.broadcast_shapes(self.v_threshold.shape, x.features)
            except ValueError:
                raise self.fail(
                    f"threshold shape {self.v_threshold.shape} does not broadcast to {x.features}"
                ) from None
        return x.with_(kind=Kind.SPIKE)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    def summary(self):
        th = _scalar_or_array_str(self.v_threshold)
        reset = "soft" if self.v_reset is None else f"hard->{self.v_reset:g}"
        if self.model == "IF":
            return f"IF th={th} reset={reset}"
        leak = f"rate={self.leak_rate:.4g}" if self.leak_rate is not None else f"tau={self.tau:g}"
        di = "" if self.decay_input else " no-decay-input"
        return f"LIF {leak} th={th} reset={reset}{di}"


# ------------------------------------------------------------------------------------------------
# Elementwise and products
# ------------------------------------------------------------------------------------------------


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


@_register
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


@_register
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


@_register
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


@_register
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
# Reductions, pooling, time
# ------------------------------------------------------------------------------------------------


@_register
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


@_register
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


@_register
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


@_register
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


# ------------------------------------------------------------------------------------------------
# Data movement
# ------------------------------------------------------------------------------------------------


@_register
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


@_register
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


@_register
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


# ------------------------------------------------------------------------------------------------
# Spike-driven forms (produced by passes)
# ------------------------------------------------------------------------------------------------


@_register
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


@_register
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


@_register
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


# ------------------------------------------------------------------------------------------------
# Integer (quantized) forms, produced by the quantize pass; semantics are Loihi 2 / Lava fixed_pt
# ------------------------------------------------------------------------------------------------


@_register
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


@_register
@dataclass(frozen=True, eq=False)
class SynapseNode(Node):
    """Integer synapses (Lava ``Dense`` / ``Sparse`` fixed_pt semantics, conv or linear layout).

    ``weight`` holds the *effective* integer weights (already clipped and LSB-truncated as Lava's
    Dense does on its first step: even values in [−256, 254] for MIXED sign mode, [0, 255] EXC,
    [−255, 0] INH)::

        acc = Σ_j weight[o, j] · in[j]            (exact integer sum; spikes or graded payloads)
        out = acc << weight_exp   if weight_exp >= 0   else   acc >> −weight_exp   (floor)
        out += bias                                   (only for host-side output layers)

    ``layout = "conv"`` uses ``stride`` / ``padding`` / ``dilation`` / ``groups`` (PyTorch
    convolution indexing, zero padding); ``"linear"`` acts on the last feature axis."""

    layout: str = "linear"
    weight: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int32))
    weight_exp: int = 0
    sign_mode: str = "mixed"
    bias: Optional[np.ndarray] = None
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
        return t.with_(kind=Kind.INT)

    def summary(self):
        shape = "x".join(map(str, self.weight.shape))
        return f"{self.layout} w{shape} exp={self.weight_exp} {self.sign_mode}" + (" +bias" if self.bias is not None else "")


@_register
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


@_register
@dataclass(frozen=True, eq=False)
class LoihiNeuronNode(Node):
    """Loihi 2 LIF neuron (Lava ``PyLifModelBitAcc``, tag fixed_pt), integer state.

    The input current ``a`` is the sum of all inputs (int32).  Per time step::

        u = trunc0(u · (4096 − (du + 1)) / 4096) + (a << 6);  24-bit wrap of u (once: u > 2^23 →
            u − 2^24; u <= −2^23 → u + 2^24)
        v = clip(trunc0(v · (4096 − dv) / 4096) + u + (bias_mant << bias_exp), −(2^23 − 1), 2^23 − 1)
        s = v > (vth << 6)
        reset  "zero":  v = 0 where s          (Lava LIF)
               "soft":  v = v − ((vth << 6) + 1) where s      (custom process)
               "value": v = reset_value where s               (custom process)

    trunc0 truncates toward zero.  ``v`` starts at ``v_init``, ``u`` at 0.  bias_mant / bias_exp
    are per neuron (arrays broadcast to the features) or scalars."""

    du: int = 4095
    dv: int = 0
    vth: int = 0
    bias_mant: Union[int, np.ndarray] = 0
    bias_exp: Union[int, np.ndarray] = 0
    reset: str = "zero"
    reset_value: int = 0
    v_init: int = 0

    op: ClassVar[str] = "loihi_lif"
    arity: ClassVar[Optional[int]] = None

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.STATEFUL

    def infer(self, ins):
        if not ins:
            raise self.fail("needs at least one input")
        t = _same_time(self, ins)
        feats = ins[0].features
        for x in ins:
            if x.features != feats:
                raise self.fail(f"inputs have different features {x.features} vs {feats}")
            if x.kind is Kind.REAL:
                raise self.fail("inputs must be integers")
        if not (0 <= self.du <= 4095 and 0 <= self.dv <= 4095):
            raise self.fail(f"du, dv must be 12-bit (0..4095), got {self.du}, {self.dv}")
        if not 0 <= self.vth < (1 << 17):
            raise self.fail(f"vth must be 17-bit unsigned, got {self.vth}")
        if self.reset not in ("zero", "soft", "value"):
            raise self.fail(f"unknown reset {self.reset!r}")
        for nm in ("bias_mant", "bias_exp"):
            a = np.asarray(getattr(self, nm))
            try:
                np.broadcast_shapes(a.shape, feats)
            except ValueError:
                raise self.fail(f"{nm} shape {a.shape} does not broadcast to {feats}") from None
        if np.any(np.abs(np.asarray(self.bias_mant)) > 4096) or np.any(np.asarray(self.bias_exp) < 0) \
                or np.any(np.asarray(self.bias_exp) > 7):
            raise self.fail("bias must be a 13-bit signed mantissa with exponent 0..7")
        return TensorType(t, feats, Kind.SPIKE)

    def summary(self):
        b = np.asarray(self.bias_mant)
        bias = "" if not np.any(b) else (f" bias={int(b)}<<{int(np.asarray(self.bias_exp))}" if b.ndim == 0 else f" bias=<{list(b.shape)}>")
        return f"du={self.du} dv={self.dv} vth={self.vth} reset={self.reset}{bias}"


@_register
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
