"""spikec.ir.index_maps: each matrix applied to a flattened input equals the torch op on it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikec import ir
from spikec.errors import UnsupportedError
from spikec.ir.index_maps import broadcast_matrix, conv_matrix, linear_matrix, op_matrix

RNG = np.random.default_rng(0)


def _ints(*shape) -> np.ndarray:
    return RNG.integers(-9, 10, size=shape).astype(np.int64)


def _apply(m, x: np.ndarray) -> np.ndarray:
    """``M · flat(x)`` for one sample ``x`` [*features] (exact: int64)."""
    return np.asarray(m @ x.reshape(-1)).ravel()


def _types(node: ir.Node, feats) -> tuple[ir.TensorType, ir.TensorType]:
    t = ir.TensorType(1, tuple(feats), ir.Kind.INT)
    return t, node.infer([t])


@pytest.mark.parametrize("cin, cout, size, k, stride, padding, dilation, groups", [
    (3, 4, (7, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1),
    (4, 6, (9, 8), (3, 2), (2, 1), (1, 0), (1, 2), 2),
    (4, 4, (6, 6), (3, 3), (2, 2), (2, 1), (1, 1), 4),  # depthwise
    (2, 3, (10,), (3,), (2,), (1,), (2,), 1),  # 1d
    (3, 5, (5, 5), (1, 1), (1, 1), (0, 0), (1, 1), 1),  # pointwise
])
def test_conv_matrix_is_the_convolution(cin, cout, size, k, stride, padding, dilation, groups):
    w = _ints(cout, cin // groups, *k)
    w[0, 0].flat[0] = 0  # zero entries are left out of the matrix, not mis-placed
    x = _ints(cin, *size)
    conv = F.conv1d if len(size) == 1 else F.conv2d
    y = conv(torch.from_numpy(x)[None].double(), torch.from_numpy(w).double(), None, stride, padding, dilation, groups)[0]
    m = conv_matrix(w, (cin, *size), stride, padding, dilation, groups, tuple(y.shape))
    assert m.shape == (y.numel(), x.size) and m.dtype == np.int64
    np.testing.assert_array_equal(_apply(m, x), y.numpy().reshape(-1).astype(np.int64))
    assert conv_matrix(w, (cin, *size), stride, padding, dilation, groups, tuple(y.shape), dtype=np.float32).dtype == np.float32


def test_conv_matrix_of_zero_weights_is_empty():
    m = conv_matrix(np.zeros((2, 1, 3, 3), np.int64), (1, 4, 4), (1, 1), (1, 1), (1, 1), 1, (2, 4, 4))
    assert m.shape == (32, 16) and m.nnz == 0


@pytest.mark.parametrize("feats", [(5,), (3, 5), (2, 3, 5)])
def test_linear_matrix_is_the_linear_layer(feats):
    w, x = _ints(4, feats[-1]), _ints(*feats)
    y = F.linear(torch.from_numpy(x), torch.from_numpy(w))
    np.testing.assert_array_equal(_apply(linear_matrix(w, feats), x), y.numpy().reshape(-1))


@pytest.mark.parametrize("feats, kernel, stride, padding, ceil_mode", [
    ((3, 8, 8), (2, 2), (2, 2), (0, 0), False),
    ((2, 7, 9), (3, 3), (2, 2), (1, 1), False),
    ((2, 7, 7), (2, 2), (2, 2), (0, 0), True),  # a last window that reaches beyond the input
    ((3, 9), (3,), (2,), (1,), False),  # 1d
])
def test_avgpool_matrix_is_the_sum_pool(feats, kernel, stride, padding, ceil_mode):
    node = ir.AvgPoolNode("p", ("x",), kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode,
                          divisor_override=1)
    in_t, out_t = _types(node, feats)
    x = _ints(*feats)
    pool = F.avg_pool1d if len(kernel) == 1 else F.avg_pool2d
    kw = {} if len(kernel) == 1 else {"divisor_override": 1}
    y = pool(torch.from_numpy(x)[None].double(), kernel, stride, padding, ceil_mode, True, **kw)[0]
    if len(kernel) == 1:  # avg_pool1d has no divisor_override: scale the mean back to the sum
        y = y * kernel[0]
    assert tuple(y.shape) == out_t.features
    np.testing.assert_array_equal(_apply(op_matrix(node, in_t, out_t), x), y.numpy().reshape(-1).round().astype(np.int64))


@pytest.mark.parametrize("feats, perm", [((2, 3, 4), (2, 0, 1)), ((5, 6), (1, 0)), ((2, 3, 4, 5), (0, 3, 1, 2))])
def test_permute_matrix_is_the_permute(feats, perm):
    node = ir.PermuteNode("p", ("x",), perm=perm)
    x = _ints(*feats)
    y = torch.from_numpy(x).permute(*perm)
    np.testing.assert_array_equal(_apply(op_matrix(node, *_types(node, feats)), x), y.reshape(-1).numpy())


def test_reshape_and_repeat_are_the_identity():
    node = ir.ReshapeNode("r", ("x",), features=(6, 4))
    in_t, out_t = _types(node, (2, 3, 4))
    x = _ints(2, 3, 4)
    np.testing.assert_array_equal(_apply(op_matrix(node, in_t, out_t), x),
                                  torch.from_numpy(x).reshape(6, 4).reshape(-1).numpy())
    rep = ir.RepeatTimeNode("t", ("x",), time=4)
    np.testing.assert_array_equal(_apply(op_matrix(rep, in_t, in_t), x), x.reshape(-1))


@pytest.mark.parametrize("axis, start, stop", [(0, 1, 3), (1, 0, 2), (2, 2, 5)])
def test_slice_matrix_is_the_slice(axis, start, stop):
    node = ir.SliceNode("s", ("x",), axis=axis, start=start, stop=stop)
    x = _ints(3, 4, 5)
    y = torch.from_numpy(x).narrow(axis, start, stop - start)
    np.testing.assert_array_equal(_apply(op_matrix(node, *_types(node, x.shape)), x), y.reshape(-1).numpy())


@pytest.mark.parametrize("axes, keepdim", [((0,), False), ((1, 2), True), ((-1,), False), ((0, 2), False)])
def test_reduce_matrix_is_the_sum(axes, keepdim):
    node = ir.ReduceNode("r", ("x",), reduce="sum", axes=axes, keepdim=keepdim)
    x = _ints(3, 4, 5)
    y = torch.from_numpy(x).sum(dim=axes, keepdim=keepdim)
    np.testing.assert_array_equal(_apply(op_matrix(node, *_types(node, x.shape)), x), y.reshape(-1).numpy())


def test_pad_matrix_is_zero_padding():
    node = ir.PadNode("p", ("x",), pads=((1, 2), (0, 3)), value=0.0)
    x = _ints(2, 4, 5)
    y = F.pad(torch.from_numpy(x), (0, 3, 1, 2))
    np.testing.assert_array_equal(_apply(op_matrix(node, *_types(node, x.shape)), x), y.reshape(-1).numpy())


@pytest.mark.parametrize("in_feats, out_feats", [((4,), (3, 4)), ((3, 1), (3, 5)), ((1, 5), (2, 4, 5)), ((2, 3), (2, 3))])
def test_broadcast_matrix_is_numpy_broadcasting(in_feats, out_feats):
    x = _ints(*in_feats)
    np.testing.assert_array_equal(_apply(broadcast_matrix(in_feats, out_feats), x),
                                  np.broadcast_to(x, out_feats).reshape(-1))


@pytest.mark.parametrize("node", [
    ir.ReduceNode("r", ("x",), reduce="mean", axes=(0,)),
    ir.ReduceNode("r", ("x",), reduce="sum", axes=(), over_time=True),
    ir.PadNode("p", ("x",), pads=((1, 1), (1, 1)), value=1.0),
])
def test_no_index_map_without_a_linear_feature_map(node):
    t = ir.TensorType(2, (2, 3, 3), ir.Kind.INT)
    with pytest.raises(UnsupportedError):
        op_matrix(node, t, t)
