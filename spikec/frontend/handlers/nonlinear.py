"""Operations that are not spike-driven: layer norm, softmax, ReLU, sigmoid and GELU (per time step,
along feature axes; across the time axis they are refused)."""

from __future__ import annotations

from ... import ir
from .. import layouts
from .base import handles


@handles("aten.layer_norm")
def _layer_norm(c, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    x = c.act(x)
    k = len(normalized_shape)
    layouts.need_trailing_features(c, x, k, "a layer norm")
    w, b = c.const(weight), c.const(bias)
    if (weight is not None and w is None) or (bias is not None and b is None):
        raise c.unsupported("a layer norm with computed (non-constant) affine parameters")
    return x.like(c.emit(ir.LayerNormNode, [x.value], primary=True, normalized_ndim=k, weight=w, bias=b,
                         eps=float(eps)))


@handles("aten.native_layer_norm")
def _native_layer_norm(c, x, normalized_shape, weight, bias, eps):
    return (_layer_norm(c, x, normalized_shape, weight, bias, eps), None, None)


@handles("aten.softmax", "aten._softmax")
def _softmax(c, x, dim, half_to_float=None, dtype=None):
    x = c.act(x)
    ax = c.need_feature_axis(x, int(dim), "a softmax")
    return x.like(c.emit(ir.SoftmaxNode, [x.value], axis=ax))


@handles("aten.relu", "aten.relu_", "aten.sigmoid", "aten.sigmoid_")
def _pointwise(c, x):
    x = c.act(x)
    fn = "relu" if "relu" in str(c.cur.target) else "sigmoid"
    return x.like(c.emit(ir.ActivationNode, [x.value], function=fn))


@handles("aten.gelu")
def _gelu(c, x, approximate="none"):
    x = c.act(x)
    return x.like(c.emit(ir.ActivationNode, [x.value], function="gelu", approximate=str(approximate)))
