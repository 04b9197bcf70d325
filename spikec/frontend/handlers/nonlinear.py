"""Operations that are not spike-driven: layer norm, softmax, ReLU, sigmoid and GELU (per time step,
along feature axes; across the time axis they are refused)."""

from __future__ import annotations

from ... import ir
from .base import Act, handles


def _lead(x: Act) -> int:
    return 2 if x.layout == "split" else 1


@handles("aten.layer_norm")
def _layer_norm(c, x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    x = c.act(x)
    k = len(normalized_shape)
    if k > len(c.t(x).features):
        raise c.unsupported(f"a layer norm over {k} axes that include the time or batch axis")
    w, b = c.const(weight), c.const(bias)
    if (weight is not None and w is None) or (bias is not None and b is None):
        raise c.unsupported("a layer norm with computed (non-constant) affine parameters")
    return Act(c.emit(ir.LayerNormNode, [x.value], primary=True, normalized_ndim=k, weight=w, bias=b, eps=float(eps)),
               x.layout)


@handles("aten.native_layer_norm")
def _native_layer_norm(c, x, normalized_shape, weight, bias, eps):
    return (_layer_norm(c, x, normalized_shape, weight, bias, eps), None, None)


@handles("aten.softmax", "aten._softmax")
def _softmax(c, x, dim, half_to_float=None, dtype=None):
    x = c.act(x)
    ax = c.need_feature_axis(x, int(dim), len(c.t(x).features) + _lead(x), "a softmax")
    return Act(c.emit(ir.SoftmaxNode, [x.value], axis=ax), x.layout)


@handles("aten.relu", "aten.relu_", "aten.sigmoid", "aten.sigmoid_")
def _pointwise(c, x):
    x = c.act(x)
    fn = "relu" if "relu" in str(c.cur.target) else "sigmoid"
    return Act(c.emit(ir.ActivationNode, [x.value], function=fn), x.layout)


@handles("aten.gelu")
def _gelu(c, x, approximate="none"):
    x = c.act(x)
    return Act(c.emit(ir.ActivationNode, [x.value], function="gelu", approximate=str(approximate)), x.layout)
