"""Max pooling of real values that are a convolution of spikes, with standard NIR nodes only.

NIR has no max node, and a max of arbitrary reals cannot be built from affine maps and
thresholds.  But when the pooled value is ``y = W * s + b`` over a binary tensor ``s`` (spikingjelly's
Spikformer stem: conv → BN → max pool → LIF), the max is a selection, and a selection of a
weighted sum of spikes is a weighted sum of ANDs:

1. **comparisons** ``c_pq = [y_p ≥ y_q]`` for every ordered pair p < q of window positions: a
   grouped Conv2d with ±1 taps over ``y`` (computes ``fl(y_p − y_q)``, whose sign is exact) into
   Threshold(−0) (``v > −2⁻¹⁴⁹`` ⇔ ``v ≥ 0`` on float32).  Window positions in the padding hold
   −∞ in PyTorch; here a second grouped Conv2d over a map of ones (Threshold(−FLT_MAX) of ``y``)
   adds ``M·(in_p − in_q)`` with ``M`` a power of two above ``max |y|``: exactly 0 when both are
   inside, so the comparison stays exact, and ±M otherwise so the inside position wins;
2. **winner** ``w_p = [p beats every other q]`` (first position wins ties, as in PyTorch): a grouped
   1×1 Conv2d summing ``c_pq`` and ``1 − c_qp`` into Threshold(P − 1.5), exact small integers;
3. **selection** ``max_p y_p = Σ_p w_p·y_p = Σ_{p,i,k} W[c,i,k]·[w_p ∧ s_i(p+k)] + b_c·Σ_p w_p``:
   AND units = two edges (a 1×1 broadcast of ``w_p`` and a one-hot strided Conv2d that reads
   ``s`` at window position p, kernel tap k) into Threshold(1.5), then grouped 1×1 Conv2ds with
   the convolution's own weights and bias.

The result equals the max up to float32 summation order (the selected terms are summed in a
different order than the convolution did); the re-import check measures it.  Size:
``C_out·P·(C_in/groups)·K`` AND units per output pixel (P window, K kernel positions), reported
and counted against ``--max-nir-neurons`` together with the coincidence expansions.
"""

from __future__ import annotations

import itertools
from typing import Optional

import numpy as np

from spikec import ir


def dense_conv_weight(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv weight [C_out, C_in/g, ...] as the equal block-diagonal [C_out, C_in, ...]
    weight: NIR 1.0.8 infers a Conv2d's input channels as ``weight.shape[1]`` (ignoring
    ``groups``), so a grouped conv fails its type check on write and read."""
    if groups == 1:
        return weight
    co, cig = weight.shape[:2]
    dense = np.zeros((co, cig * groups, *weight.shape[2:]), weight.dtype)
    cog = co // groups
    for g in range(groups):
        dense[g * cog:(g + 1) * cog, g * cig:(g + 1) * cig] = weight[g * cog:(g + 1) * cog]
    return dense


def square_kernel(weight: np.ndarray, padding, dilation=(1, 1)):
    """A [.., kh, kw] conv weight as the equal square one, or None: NIR 1.0.8's Conv2d computes
    both output sizes from ``weight.shape[2]``.  The kernel is centred in K = max(kh, kw) with zero
    taps and the padding grown by as many (dilated) taps, which keeps every output; that needs
    an even K − kh and K − kw."""
    kh, kw = weight.shape[2:]
    if kh == kw:
        return weight, tuple(padding)
    if (kh - kw) % 2:
        return None
    K = max(kh, kw)
    ah, aw = (K - kh) // 2, (K - kw) // 2
    sq = np.zeros((*weight.shape[:2], K, K), weight.dtype)
    sq[:, :, ah:ah + kh, aw:aw + kw] = weight
    return sq, (padding[0] + ah * dilation[0], padding[1] + aw * dilation[1])


def _power_of_two_above(x: np.ndarray) -> np.ndarray:
    return np.exp2(np.ceil(np.log2(np.maximum(x, 1.0))) + 1).astype(np.float32)


def selection_units(conv: ir.ConvNode, pool: ir.MaxPoolNode, out_features) -> int:
    """Threshold neurons the lowering creates (comparisons, winners and AND units)."""
    co, cig = conv.weight.shape[0], conv.weight.shape[1]
    P, K = int(np.prod(pool.kernel)), int(np.prod(conv.weight.shape[2:]))
    pix = int(np.prod(out_features[1:]))
    return 0 if P == 1 else co * pix * (P * (P - 1) // 2 + P + P * cig * K)


def _geometry(conv: ir.ConvNode, pool: ir.MaxPoolNode):
    """Kernel extent, stride and padding of the convolution that reads s at (window p, tap k)."""
    (kh, kw), (ph, pw) = conv.weight.shape[2:], pool.kernel
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    extent = ((ph - 1) * sh + (kh - 1) * dh + 1, (pw - 1) * sw + (kw - 1) * dw + 1)
    stride = (pool.stride[0] * sh, pool.stride[1] * sw)
    pad = (pool.padding[0] * sh + conv.padding[0], pool.padding[1] * sw + conv.padding[1])
    return extent, stride, pad


def unsupported_reason(graph: ir.Graph, pool: ir.MaxPoolNode) -> Optional[str]:
    """Why ``pool`` (over real values) has no exact NIR form, or None if :func:`lower` applies."""
    conv = graph.producer(pool.inputs[0])
    if not isinstance(conv, ir.ConvNode) or conv.spatial_dims != 2:
        return "the pooled values are not a 2-d convolution (NIR has no max node; only a max of a " \
               "convolution of spikes can be built from thresholds)"
    if graph.types[conv.inputs[0]].kind is not ir.Kind.SPIKE:
        return f"the pooled convolution {conv.name} reads real values, not spikes (NIR has no max node; " \
               "only a max of a convolution of spikes can be built from thresholds)"
    if len(pool.kernel) != 2 or pool.ceil_mode or any(d != 1 for d in pool.dilation):
        return "dilated or ceil-mode pooling"
    extent, _, _ = _geometry(conv, pool)
    if (pool.kernel[0] - pool.kernel[1]) % 2 or (extent[0] - extent[1]) % 2:
        return f"a {list(pool.kernel)} window over a {list(conv.weight.shape[2:])} kernel needs a non-square " \
               "convolution that NIR 1.0.8 cannot type (odd difference of its sizes)"
    return None


def lower(ex, pool: ir.MaxPoolNode, conv: ir.ConvNode, y_terms: list[str], s_terms: list[str]) -> list[str]:
    """Add the NIR nodes for ``pool(conv(s))`` to exporter ``ex``; returns the output terms
    (their sum is the pooled tensor, shape ``[C_out, OH, OW]``)."""
    nir, types = ex.nir, ex.types
    W = np.asarray(conv.weight, np.float32)
    co, cig, kh, kw = W.shape
    ci = types[conv.inputs[0]].features[0]
    cog = co // conv.groups
    _, H, Wd = types[conv.name].features
    _, OH, OW = types[pool.name].features
    ph, pw = pool.kernel
    positions = list(itertools.product(range(ph), range(pw)))
    P = len(positions)
    pairs = list(itertools.combinations(range(P), 2))
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731

    def conv2d(name, weight, inputs, in_hw, stride=(1, 1), padding=(0, 0), groups=1, bias=None, dilation=(1, 1)):
        bias = np.zeros(weight.shape[0], np.float32) if bias is None else bias
        weight, padding = square_kernel(dense_conv_weight(f32(weight), groups), padding, dilation)
        node = nir.Conv2d(input_shape=tuple(in_hw), weight=weight, stride=tuple(stride), padding=tuple(padding),
                          dilation=tuple(dilation), groups=1, bias=f32(bias))
        return ex.add(name, node, inputs)

    def threshold(name, value, shape, inputs):
        return ex.add(name, nir.Threshold(threshold=np.full(shape, value, np.float32)), inputs)

    _, SH, SW = types[conv.inputs[0]].features
    if P == 1:  # a 1x1 window (no padding) subsamples: the convolution with the pool's stride folded in
        stride = (pool.stride[0] * conv.stride[0], pool.stride[1] * conv.stride[1])
        return [conv2d(f"{pool.name}_subsample", W, s_terms, (SH, SW), stride=stride, padding=conv.padding,
                       groups=conv.groups, bias=conv.bias, dilation=conv.dilation)]

    # 1. pairwise comparisons c_pq = [y_p >= y_q] (p < q), exact signs; padding positions lose
    cmp_w = np.zeros((co, len(pairs), 1, ph, pw), np.float32)
    for j, (a, b) in enumerate(pairs):
        cmp_w[:, j, 0][:, positions[a][0], positions[a][1]] = 1.0
        cmp_w[:, j, 0][:, positions[b][0], positions[b][1]] = -1.0
    geometry = dict(stride=pool.stride, padding=pool.padding, groups=co)
    diff = conv2d(f"{pool.name}_cmp_diff", cmp_w.reshape(co * len(pairs), 1, ph, pw), y_terms, (H, Wd), **geometry)
    cmp_in = [diff]
    if any(pool.padding):
        bound = np.abs(W).reshape(co, -1).sum(1) + (np.abs(conv.bias) if conv.bias is not None else 0.0)
        M = _power_of_two_above(bound)
        ones = threshold(f"{pool.name}_ones", np.finfo(np.float32).min, types[conv.name].features, y_terms)
        mask_w = cmp_w * M[:, None, None, None, None]
        cmp_in.append(conv2d(f"{pool.name}_cmp_pad", mask_w.reshape(co * len(pairs), 1, ph, pw), [ones], (H, Wd),
                             **geometry))
    below_zero = -np.float32(np.finfo(np.float32).smallest_subnormal)
    cmp = threshold(f"{pool.name}_cmp", below_zero, (co * len(pairs), OH, OW), cmp_in)

    # 2. winner w_p = [c_pq for q > p and (1 - c_qp) for q < p all hold]: first maximal position
    win_w = np.zeros((co, P, len(pairs)), np.float32)
    win_b = np.zeros((co, P), np.float32)
    for j, (a, b) in enumerate(pairs):
        win_w[:, a, j] = 1.0
        win_w[:, b, j] = -1.0
        win_b[:, b] += 1.0
    win_in = conv2d(f"{pool.name}_win_sum", win_w.reshape(co * P, len(pairs), 1, 1), [cmp], (OH, OW), groups=co,
                    bias=win_b.reshape(-1))
    win = threshold(f"{pool.name}_win", P - 1.5, (co * P, OH, OW), [win_in])

    # 3. AND units (c, p, i, k) = [w_p ∧ s_i(window p + tap k)], summed with the conv weights
    (sh, sw), (dh, dw) = conv.stride, conv.dilation
    (eh, ew), stride, pad = _geometry(conv, pool)
    taps = list(itertools.product(range(kh), range(kw)))
    units = co * P * cig * len(taps)
    read = np.zeros((units, ci, eh, ew), np.float32)
    gather = np.zeros((co, P * cig * len(taps), 1, 1), np.float32)
    u = 0
    for c in range(co):
        first_in = (c // cog) * cig
        for (qy, qx) in positions:
            for i in range(cig):
                for (ty, tx) in taps:
                    read[u, first_in + i, qy * sh + ty * dh, qx * sw + tx * dw] = 1.0
                    gather[c, u % (P * cig * len(taps)), 0, 0] = W[c, i, ty, tx]
                    u += 1
    spread = conv2d(f"{pool.name}_and_spread", np.ones((units, 1, 1, 1), np.float32), [win], (OH, OW),
                    groups=co * P)
    taps_in = conv2d(f"{pool.name}_and_spikes", read, s_terms, (SH, SW), stride=stride, padding=pad)
    ands = threshold(f"{pool.name}_and", 1.5, (units, OH, OW), [spread, taps_in])
    out = [conv2d(f"{pool.name}_select", gather, [ands], (OH, OW), groups=co)]
    if conv.bias is not None:
        bias_w = np.repeat(np.asarray(conv.bias, np.float32)[:, None], P, axis=1).reshape(co, P, 1, 1)
        out.append(conv2d(f"{pool.name}_select_bias", bias_w, [win], (OH, OW), groups=co))
    return out
