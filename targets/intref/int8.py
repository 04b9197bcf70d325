"""Exact u8 × s8 products on the CPU's int8 units (oneDNN: AMX / VNNI), for the integer reference.

The integer model knows its operands are 8-bit: spike trains and small spike counts are unsigned
bytes, and Loihi weights are 8-bit mantissas (Lava's MIXED sign mode keeps even values in
[−256, 254]: an int8 times 2).  torch's x86 int8 kernels (``torch.ops.onednn.qconv_pointwise`` /
``qlinear_pointwise``, the kernels torch.compile's x86 int8 lowering calls) compute::

    acc[o] = Σ_j x[j] · w8[o, j]          in int32 (u8 · s8 products)
    out[o] = float32(acc[o]) · x_scale · w_scale[o]

With zero points 0, ``x_scale = 1`` and ``w_scale[o] = 2^k[o]`` (a power of two per output channel:
the product is exact; a channel with a weight exponent of its own is a channel with its own k)
``out`` is the exact integer ``Σ x · w`` for ``w[o] = w8[o] · 2^k[o]`` when (:func:`usable`):

* every ``x`` is in [0, 255] and every ``w8`` in [−128, 127] (:func:`split`);
* no pair of products overflows int16: CPUs without VNNI / AMX add u8 · s8 products in pairs with
  int16 saturation (``vpmaddubsw``), so ``2 · max x · max |w8| <= 32767`` is required everywhere;
* ``|Σ x · w| < 2^24`` for every partial sum (int32 exact, float32 output exact): the caller's
  bound ``peak(x) · l1(w) < 2^24``.

These are private torch ops (the project pins torch 2.13): if they are missing or refuse a call,
:func:`conv` / :func:`linear` return None and the caller uses its float kernels (same integers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

PAIR_LIMIT = (1 << 15) - 1  # int16: a u8 · s8 pair sum must not saturate
_state = {"available": True}


@dataclass
class Int8Weights:
    """``w[o] = w8[o] · 2^k[o]`` with ``w8`` int8 ``[out, ...]``; prepacked copies made on first use per layout."""

    w8: torch.Tensor
    peak: int  # max |w8|
    scales: torch.Tensor  # 2^k[o] per output channel (float32)
    zero_points: torch.Tensor  # 0 per output channel
    packed: dict = field(default_factory=dict)


def split(w: torch.Tensor) -> Optional[Int8Weights]:
    """``w`` (int64) as ``w8[o] · 2^k[o]`` with ``w8`` in [−128, 127] and, per output channel, the
    smallest such k >= 0, or None (a channel with an odd weight beyond int8, e.g. Lava's EXC mode up
    to 255)."""
    if w.numel() == 0:
        return None
    rows = w.reshape(w.shape[0], -1)
    k = torch.zeros(rows.shape[0], dtype=torch.int64)
    while True:
        w8 = rows >> k[:, None]
        fits = (w8.min(1).values >= -128) & (w8.max(1).values <= 127)
        if bool(fits.all()):
            break
        k = torch.where(fits, k, k + 1)
        if bool((rows & ((1 << k) - 1)[:, None]).any()) or int(k.max()) > 62:
            return None  # a channel not a multiple of 2^k: no larger k either
    w8 = w8.reshape(w.shape)
    return Int8Weights(w8.to(torch.int8), int(w8.abs().max()), (1 << k).to(torch.float32),
                       torch.zeros(rows.shape[0], dtype=torch.int64))


def usable(x_lo: int, x_hi: int, w: Optional[Int8Weights]) -> bool:
    """True when the int8 kernels give the exact integers for inputs in [x_lo, x_hi] (the caller
    has checked the accumulation bound < 2^24)."""
    return (_state["available"] and w is not None and 0 <= x_lo and x_hi <= 255
            and 2 * x_hi * w.peak <= PAIR_LIMIT)


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.uint8 else x.to(torch.uint8)


def conv(x: torch.Tensor, w: Int8Weights, stride, padding, dilation, groups: int) -> Optional[torch.Tensor]:
    """``Σ x · w`` of a convolution (zero padding), float32 holding exact integers; None if refused."""
    key = (tuple(stride), tuple(padding), tuple(dilation), groups)
    try:
        packed = w.packed.get(key)
        if packed is None:
            packed = w.packed[key] = torch.ops.onednn.qconv_prepack(w.w8, w.scales, 1.0, 0, *map(list, key[:3]),
                                                                     groups, None)
        return torch.ops.onednn.qconv_pointwise(_u8(x), 1.0, 0, packed, w.scales, w.zero_points, None, *map(list, key[:3]),
                                                groups, 1.0, 0, torch.float32, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        _state["available"] = False
        return None


def linear(x: torch.Tensor, w: Int8Weights) -> Optional[torch.Tensor]:
    """``x @ wᵀ`` on the last axis (``w`` ``[out, in]``), float32 holding exact integers; None if refused."""
    try:
        packed = w.packed.get("linear")
        if packed is None:
            packed = w.packed["linear"] = torch.ops.onednn.qlinear_prepack(w.w8, None)
        y = torch.ops.onednn.qlinear_pointwise(_u8(x).reshape(-1, x.shape[-1]), 1.0, 0, packed, w.scales,
                                               w.zero_points, None, 1.0, 0, torch.float32, "none", [], "")
        return y.reshape(*x.shape[:-1], y.shape[-1])
    except (AttributeError, RuntimeError, NotImplementedError):
        _state["available"] = False
        return None
