"""Index maps: the linear IR operations as sparse matrices over flattened features.

Every map here is the matrix ``M`` of shape ``[prod(out_features), prod(in_features)]`` with

    flat(op(x)) = M · flat(x)        (flat: row-major over the features of one step and sample)

for every input ``x`` of the node's input type.  Time and batch are untouched: ``M`` acts on each
``[*features]`` slice alone.  The entries are the op's own integers (kernel weights, 1 for a
selection or a summand), so ``M`` is exact in any integer or float dtype that holds them.

Targets that fold data movement into connection weights (Lava), or write it as an Affine (NIR),
or as a MatMul (ONNX), build the matrices here; what a target refuses to fold is the target's
decision, checked before it asks for a map.

The weight-shared maps also exist as kernels that never build ``M`` (:func:`conv_apply`,
:func:`conv_apply_transposed`, :func:`linear_apply`: numpy only, exact integers), for targets
whose memory must be the kernel, not the unrolled matrix (Lava's convolution connections).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import scipy.sparse as sp

from ..errors import UnsupportedError
from .nodes import AvgPoolNode, Node, PadNode, PermuteNode, ReduceNode, RepeatTimeNode, ReshapeNode, SliceNode
from .types import TensorType

__all__ = ["as_gather", "broadcast_matrix", "conv_apply", "conv_apply_transposed", "conv_matrix", "linear_apply",
           "linear_matrix", "op_matrix"]


def _select(out_from_in: np.ndarray, n_in: int) -> sp.csr_matrix:
    """Matrix with a 1 at (o, out_from_in[o]) for out_from_in[o] >= 0."""
    rows = np.nonzero(out_from_in >= 0)[0]
    return sp.csr_matrix((np.ones(len(rows), np.int64), (rows, out_from_in[rows])), shape=(len(out_from_in), n_in))


def conv_matrix(weight: np.ndarray, in_feats, stride, padding, dilation, groups, out_feats,
                dtype=np.int64) -> sp.csr_matrix:
    """The convolution ``[C_in, *spatial] -> [C_out, *spatial']`` with ``weight``
    ``[C_out, C_in / groups, *kernel]`` (zero padding, no bias) as the ``[prod(out_feats),
    prod(in_feats)]`` matrix of its kernel entries (``dtype``); windows that reach beyond the
    input (padding, ceil mode) simply have fewer entries.  Zero weights are left out."""
    cout, cin_g = weight.shape[:2]
    k = weight.shape[2:]
    nd = len(k)
    out_sp, in_sp = out_feats[1:], in_feats[1:]
    cout_g = cout // groups
    rows, cols, vals = [], [], []
    grids = np.meshgrid(*[np.arange(o) for o in out_sp], indexing="ij")
    out_pos = [g.reshape(-1) for g in grids]
    n_out_sp = int(np.prod(out_sp))
    for co in range(cout):
        g = co // cout_g
        for ci_l in range(cin_g):
            ci = g * cin_g + ci_l
            for kk in np.ndindex(*k):
                w = weight[(co, ci_l) + kk]
                if w == 0:
                    continue
                inp = [out_pos[a] * stride[a] - padding[a] + kk[a] * dilation[a] for a in range(nd)]
                ok = np.ones(n_out_sp, bool)
                for a in range(nd):
                    ok &= (inp[a] >= 0) & (inp[a] < in_sp[a])
                in_flat = np.zeros(n_out_sp, np.int64) + ci
                for a in range(nd):
                    in_flat = in_flat * in_sp[a] + inp[a]
                out_flat = co * n_out_sp + np.arange(n_out_sp)
                rows.append(out_flat[ok])
                cols.append(in_flat[ok])
                vals.append(np.full(int(ok.sum()), w, dtype))
    if not rows:
        return sp.csr_matrix((int(np.prod(out_feats)), int(np.prod(in_feats))), dtype=dtype)
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(int(np.prod(out_feats)), int(np.prod(in_feats))))
    return m.tocsr()  # duplicates (none for a convolution) would be summed


def linear_matrix(weight: np.ndarray, in_feats) -> sp.csr_matrix:
    """``x @ weightᵀ`` on the last feature axis (``weight`` ``[out, in]``, no bias) as a matrix:
    one copy of ``weight`` per position of the leading feature axes (block diagonal), in
    ``weight``'s dtype."""
    w = np.asarray(weight)
    lead = int(np.prod(in_feats[:-1])) if len(in_feats) > 1 else 1
    return sp.kron(sp.identity(lead, dtype=w.dtype), sp.csr_matrix(w), format="csr")


def op_matrix(n: Node, in_t: TensorType, out_t: TensorType) -> sp.csr_matrix:
    """The int64 matrix of a data-movement or summing node with input type ``in_t`` and output
    type ``out_t`` (weighted nodes: :func:`conv_matrix`, :func:`linear_matrix`):

    * reshape, repeat over time: the identity (row-major features are unchanged);
    * permute, slice: the selection of each output's input feature;
    * reduce (a sum over feature axes): a 1 from every summand to its sum;
    * average pool: the *sum* pool of its windows (zero padding; the divisor is the caller's);
    * pad (with zeros): the selection of the inner block, rows of the border empty.

    A reduce over time or a mean, and padding with a non-zero value, have no such matrix
    (UnsupportedError)."""
    n_in, n_out = in_t.numel, out_t.numel
    if isinstance(n, (ReshapeNode, RepeatTimeNode)):
        return sp.identity(n_in, dtype=np.int64, format="csr")
    if isinstance(n, PermuteNode):
        return _select(np.arange(n_in).reshape(in_t.features).transpose(n.perm).reshape(-1), n_in)
    if isinstance(n, SliceNode):
        idx = np.arange(n_in).reshape(in_t.features)
        sl = [slice(None)] * len(in_t.features)
        sl[n.axis] = slice(n.start, n.stop)
        return _select(idx[tuple(sl)].reshape(-1), n_in)
    if isinstance(n, ReduceNode):
        if n.over_time or n.reduce != "sum":
            raise UnsupportedError(f"{n.op} {n.name} ({n.source}) over time / not a sum has no feature index map")
        axes = [a % len(in_t.features) for a in n.axes]
        keep = tuple(1 if i in axes else d for i, d in enumerate(in_t.features))
        out_idx = np.broadcast_to(np.arange(int(np.prod(keep))).reshape(keep), in_t.features).reshape(-1)
        return sp.csr_matrix((np.ones(n_in, np.int64), (out_idx, np.arange(n_in))), shape=(n_out, n_in))
    if isinstance(n, AvgPoolNode):
        c = in_t.features[0]
        ones = np.ones((c, 1, *n.kernel), np.int64)
        return conv_matrix(ones, in_t.features, n.stride, n.padding, (1,) * len(n.kernel), c, out_t.features)
    if isinstance(n, PadNode):
        if isinstance(n.value, np.ndarray) or n.value != 0:
            raise UnsupportedError(f"padding {n.name} ({n.source}) with a non-zero value has no feature index map")
        out_idx = np.full(n_out, -1)
        pos = np.arange(n_out).reshape(out_t.features)
        sl = (slice(None),) + tuple(slice(lo, lo + d) for (lo, _), d in zip(n.pads, in_t.features[1:]))
        out_idx[pos[sl].reshape(-1)] = np.arange(n_in)
        return _select(out_idx, n_in)
    raise UnsupportedError(f"{n.op} {n.name} is not a linear data-movement or summing operation")


def broadcast_matrix(in_feats, out_feats) -> sp.csr_matrix:
    """numpy broadcasting of features ``in_feats`` to ``out_feats`` (leading axes aligned with 1)
    as the int64 selection matrix ``[prod(out_feats), prod(in_feats)]``."""
    aligned = (1,) * (len(out_feats) - len(in_feats)) + tuple(in_feats)
    n_in = int(np.prod(in_feats))
    idx = np.broadcast_to(np.arange(n_in).reshape(aligned), out_feats).reshape(-1)
    return _select(idx, n_in)


# ------------------------------------------------------------------------------------------------
# weight-shared maps applied as kernels (no unrolled matrix): numpy only, exact integers
# ------------------------------------------------------------------------------------------------

_EXACT_FLOAT64 = 1 << 53  # float64 holds every integer below 2^53: sums bounded by that are exact


def _exact_matmul(a: np.ndarray, b: np.ndarray, bound: int) -> np.ndarray:
    """Integer ``a @ b`` as int64, in float64 (BLAS) when ``bound`` (max |a| · max |b| · inner size)
    proves every partial sum an integer below 2^53, else in int64."""
    if bound < _EXACT_FLOAT64:
        return np.rint(np.matmul(a.astype(np.float64), b.astype(np.float64))).astype(np.int64)
    return np.matmul(a.astype(np.int64), b.astype(np.int64))


def _absmax(x: np.ndarray) -> int:
    return int(np.abs(x).max()) if x.size else 0


def _conv_geometry(in_spatial, out_spatial, k, stride, padding, dilation):
    """Zero padding (low, high) per spatial axis so that every output window lies inside."""
    return [(padding[a], max(0, (out_spatial[a] - 1) * stride[a] + dilation[a] * (k[a] - 1) + 1 - in_spatial[a] - padding[a]))
            for a in range(len(k))]


def _taps(k, stride, dilation, out_spatial):
    """Per kernel offset: the strided slices of the padded input that the offset reads."""
    for offs in np.ndindex(*k):
        yield offs, tuple(slice(offs[a] * dilation[a], offs[a] * dilation[a] + stride[a] * (out_spatial[a] - 1) + 1, stride[a])
                          for a in range(len(k)))


def conv_apply(x: np.ndarray, weight: np.ndarray, stride, padding, dilation, groups, out_spatial) -> np.ndarray:
    """``M · x`` for ``M`` = :func:`conv_matrix` (same indexing: PyTorch cross-correlation, zero
    padding, windows beyond the input have fewer entries) without building ``M``: ``x``
    ``[C_in, *spatial]`` integers, ``weight`` ``[C_out, C_in / groups, *kernel]``, result int64
    ``[C_out, *out_spatial]``.  Exact: float64 GEMM only when max|w| · max|x| · fan-in < 2^53."""
    x = np.asarray(x)
    w = np.asarray(weight)
    cout, cin_g = w.shape[:2]
    k = w.shape[2:]
    cin = x.shape[0]
    n_k, n_pos = int(np.prod(k)), int(np.prod(out_spatial))
    xp = np.pad(x, [(0, 0)] + _conv_geometry(x.shape[1:], out_spatial, k, stride, padding, dilation))
    cols = np.empty((cin, n_k, n_pos), dtype=x.dtype)
    for t, (_, sl) in enumerate(_taps(k, stride, dilation, out_spatial)):
        cols[:, t] = xp[(slice(None),) + sl].reshape(cin, n_pos)
    cols = cols.reshape(groups, cin_g * n_k, n_pos)
    wg = w.reshape(groups, cout // groups, cin_g * n_k)
    out = _exact_matmul(wg, cols, _absmax(w) * _absmax(x) * cin_g * n_k)
    return out.reshape(cout, *out_spatial)


def conv_apply_transposed(y: np.ndarray, weight: np.ndarray, in_spatial, stride, padding, dilation, groups) -> np.ndarray:
    """``Mᵀ · y`` for ``M`` = :func:`conv_matrix` (``y`` ``[C_out, *out_spatial]``), int64
    ``[C_in, *in_spatial]``, exact (int64 accumulation)."""
    y = np.asarray(y, np.int64)
    w = np.asarray(weight, np.int64)
    cout, cin_g = w.shape[:2]
    k = w.shape[2:]
    out_spatial = y.shape[1:]
    n_k, n_pos = int(np.prod(k)), int(np.prod(out_spatial))
    geo = _conv_geometry(in_spatial, out_spatial, k, stride, padding, dilation)
    cols = np.matmul(np.swapaxes(w.reshape(groups, cout // groups, cin_g * n_k), 1, 2),
                     y.reshape(groups, cout // groups, n_pos)).reshape(groups * cin_g, n_k, *out_spatial)
    xp = np.zeros((groups * cin_g,) + tuple(in_spatial[a] + lo + hi for a, (lo, hi) in enumerate(geo)), np.int64)
    for t, (_, sl) in enumerate(_taps(k, stride, dilation, out_spatial)):
        xp[(slice(None),) + sl] += cols[:, t]
    inner = (slice(None),) + tuple(slice(lo, lo + in_spatial[a]) for a, (lo, _) in enumerate(geo))
    return xp[inner]


def linear_apply(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``M · x`` for ``M`` = :func:`linear_matrix` without building it: ``x`` ``[*lead, in]``
    integers, result int64 ``[*lead, out]`` (exact, as :func:`conv_apply`)."""
    x = np.asarray(x)
    w = np.asarray(weight)
    return _exact_matmul(x, w.T, _absmax(w) * _absmax(x) * w.shape[1])


def as_gather(m: sp.csr_matrix) -> Optional[np.ndarray]:
    """The index vector ``idx`` of a partial selection ``m`` (every row at most one entry, equal to
    1): ``(m · x)[o] = x[idx[o]]``, 0 where ``idx[o] = −1``; None when ``m`` is not one."""
    m = m.tocsr()
    counts = np.diff(m.indptr)
    if counts.size and counts.max() > 1 or (m.nnz and not np.all(m.data == 1)):
        return None
    idx = np.full(m.shape[0], -1, np.int64)
    idx[counts == 1] = m.indices[: m.nnz]  # one entry per non-empty row, in row order
    return idx
