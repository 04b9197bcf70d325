"""Operations that are not spike-driven: layer norm, softmax and pointwise activation functions.

They read and produce real values per time step and sample (``TimeBehaviour.PER_STEP``; an axis is
a feature axis).  Their integer forms are approximations whose errors are stated and bounded in
:mod:`spikec.integer_approx` (I-BERT-style integer exp, square root and erf): a compile that uses
one names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import numpy as np

from ..types import Kind
from .base import Node, _check_arity, _norm_axis

ACTIVATIONS = ("relu", "sigmoid", "gelu")


@dataclass(frozen=True, eq=False)
class LayerNormNode(Node):
    """Layer normalisation over the last ``normalized_ndim`` feature axes (PyTorch ``layer_norm``)::

        y = (x − mean(x)) / sqrt(var(x) + eps) · weight + bias      (biased variance)

    ``weight`` / ``bias`` have the normalised shape (None: 1 / 0)."""

    normalized_ndim: int = 1
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None
    eps: float = 1e-5

    op: ClassVar[str] = "layernorm"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        k = self.normalized_ndim
        if not 1 <= k <= len(x.features):
            raise self.fail(f"normalises {k} axes of a value with features {list(x.features)}")
        shape = x.features[len(x.features) - k:]
        for what, p in (("weight", self.weight), ("bias", self.bias)):
            if p is not None and tuple(p.shape) != shape:
                raise self.fail(f"{what} has shape {list(p.shape)}, the normalised axes {list(shape)}")
        return x.with_(kind=Kind.REAL)

    def summary(self):
        return f"over the last {self.normalized_ndim} axes, eps {self.eps:g}"


@dataclass(frozen=True, eq=False)
class SoftmaxNode(Node):
    """``softmax`` along feature ``axis``: exp(x − max) / Σ exp(x − max)."""

    axis: int = -1

    op: ClassVar[str] = "softmax"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        _norm_axis(self, self.axis, len(x.features))
        return x.with_(kind=Kind.REAL)

    def summary(self):
        return f"axis f{self.axis}"


@dataclass(frozen=True, eq=False)
class ActivationNode(Node):
    """A pointwise activation function: ``relu`` max(x, 0), ``sigmoid`` 1 / (1 + e^−x), ``gelu``
    x·Φ(x) (``approximate`` "none", PyTorch's default, or "tanh").  ReLU keeps an integer kind."""

    function: str = "relu"
    approximate: str = "none"

    op: ClassVar[str] = "activation"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.function not in ACTIVATIONS:
            raise self.fail(f"function must be one of {ACTIVATIONS}, got {self.function!r}")
        if self.approximate not in ("none", "tanh") or (self.approximate != "none" and self.function != "gelu"):
            raise self.fail(f"approximate={self.approximate!r} is a GELU option ('none' or 'tanh')")
        if self.function == "relu":
            return x.with_(kind=Kind.COUNT if x.kind is Kind.INT else x.kind)
        return x.with_(kind=Kind.REAL)

    def summary(self):
        return self.function + (f" ({self.approximate})" if self.approximate != "none" else "")



INTEGER_KERNELS = ("relu", "sigmoid", "gelu", "softmax", "layer_norm")


@dataclass(frozen=True, eq=False)
class IntegerKernelNode(Node):
    """The integer form of a :class:`LayerNormNode` / :class:`SoftmaxNode` / :class:`ActivationNode`:
    ``kernel`` of :mod:`spikec.integer_approx` on the integers q (value ≈ q·``scale_in``), first
    saturated at ±(2^``input_bits`` − 1) (a value beyond the bound its scale was chosen for), giving
    integers at ``output_scale``.  The fields are the kernel plan's arguments (:meth:`plan` builds
    it, the same constants on every target): ``output_bits`` (sigmoid, softmax: output 2^-bits),
    ``axis`` (softmax, feature axis), ``gamma`` / ``beta`` / ``eps`` (layer norm over the last
    ``normalized_ndim`` feature axes, flattened; gamma and beta always given).  Its error against the
    float op is the plan's ``error_bound``."""

    kernel: str = "relu"
    scale_in: float = 1.0
    output_scale: float = 1.0
    output_bits: int = 15
    axis: int = -1
    input_bits: int = 15
    normalized_ndim: int = 1
    gamma: Optional[np.ndarray] = None
    beta: Optional[np.ndarray] = None
    eps: float = 1e-5

    op: ClassVar[str] = "integer_kernel"

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.kernel not in INTEGER_KERNELS:
            raise self.fail(f"kernel must be one of {INTEGER_KERNELS}, got {self.kernel!r}")
        if x.kind is Kind.REAL:
            raise self.fail(f"reads real values ({x}); it takes integers")
        if self.kernel == "softmax":
            _norm_axis(self, self.axis, len(x.features))
        if self.kernel == "layer_norm" and (self.gamma is None or self.beta is None or self.gamma.shape != self.beta.shape
                                            or self.gamma.shape != x.features[len(x.features) - self.normalized_ndim:]):
            raise self.fail("an integer layer norm needs gamma and beta of the normalised axes' shape")
        return x.with_(kind=Kind.COUNT if self.kernel in ("sigmoid", "softmax") else Kind.INT)

    def plan(self):
        """The kernel's :mod:`spikec.integer_approx` plan (None for relu)."""
        from spikec import integer_approx as A

        if self.kernel == "sigmoid":
            return A.sigmoid_plan(self.scale_in, self.output_bits)
        if self.kernel == "softmax":
            return A.softmax_plan(self.scale_in, self.output_bits)
        if self.kernel == "gelu":
            return A.gelu_plan(self.scale_in)
        if self.kernel == "layer_norm":
            return A.layer_norm_plan(self.scale_in, self.gamma.reshape(-1).astype(np.float64),
                                     self.beta.reshape(-1).astype(np.float64), eps=self.eps,
                                     input_bits=self.input_bits, output_scale=self.output_scale)
        return None

    def summary(self):
        return f"integer {self.kernel}, scale {self.scale_in:.4g} -> {self.output_scale:.4g}"
