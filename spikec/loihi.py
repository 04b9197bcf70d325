"""Loihi 2 fixed-point semantics, stated once: the constants, rounding rules and integer LIF step
of Lava 0.10.0's fixed_pt process models (``PyLifModelBitAcc``, ``PyDenseModelBitAcc``), which
intref, the ONNX exporter, spikec's own Lava process models and the quantizer all follow.

LIF neuron, one time step (``t`` from 1; u starts at 0, v at v_init)::

    u = trunc0(u · (4096 − (du + 1)) / 4096) + (a << 6)          du: 12-bit, du = 4095: u = a << 6
    u = u − 2^24 if u > 2^23;  u = u + 2^24 if u <= −2^23          24-bit wrap, applied once
    v = clip(trunc0(v · (4096 − dv) / 4096) + u + bias, −(2^23 − 1), 2^23 − 1)   (new u; saturates)
    s = v > (vth << 6)                                             vth: 17-bit unsigned, strict >
    reset "zero": v = 0 | "soft": v = v − ((vth << 6) + 1) | "value": v = reset_value   (where s)

    trunc0(p) = sign(p) · (|p| >> 12)        (truncation toward zero of the int64 product)
    bias      = bias_mant << bias_exp        (>> −bias_exp if negative; NOT shifted by 6)

u is not reset.  Lava's stock LIF has the "zero" reset only; "soft" and "value" are spikec's
``ResetLIF`` process.  Lava receives ``a`` as int32 and shifts it in int32: |a| >= 2^25
(:data:`A_INT32_LIMIT`) overflows there, so intref equals Lava only below that.

Dense synapse: sign mode EXC if min(w) >= 0, INH if max(w) <= 0, else MIXED; Lava clips the
weights to the mode's range and drops ``8 − num_weight_bits (+1 for MIXED)`` LSBs (arithmetic,
floor), so 8-bit MIXED weights are effectively even.  The output ``acc << weight_exp``
(``>> −weight_exp``, floor) is delivered one step later.

This module imports numpy only: Lava's process models import it, and importing it never imports
torch.  The array functions also take torch tensors (dispatched on the argument's type to torch's
own functions; the tensor's dtype is kept where the arithmetic allows).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .array_backend import clip as _clip
from .array_backend import is_torch as _is_torch
from .array_backend import where as _where

# the LIF step in one line (artifact manifests)
LIF_SEMANTICS = ("Lava PyLifModelBitAcc: u = trunc0(u*(4096-(du+1))/4096) + (a << 6), 24-bit wrap; "
                 "v = clip(trunc0(v*(4096-dv)/4096) + u + (bias_mant << bias_exp), +-(2^23-1)); s = v > vth << 6; "
                 "reset zero: v = 0 | soft: v -= (vth << 6) + 1 | value: v = reset_value")

# ---- state ---------------------------------------------------------------------------------------
STATE_BITS = 24  # u and v are 24-bit
U_MAX = 1 << 23  # u lives in (−U_MAX, U_MAX]: one wrap modulo U_MODULUS per step
U_MODULUS = 1 << 24
V_LIMIT = (1 << 23) - 1  # v saturates at ±V_LIMIT (no wrap)

# ---- decays ----------------------------------------------------------------------------------------
DECAY_SHIFT = 12
DECAY_UNITY = 1 << DECAY_SHIFT  # 4096: decays are du / 4096, dv / 4096 (12-bit du, dv)
DECAY_MAX = DECAY_UNITY - 1  # 4095, the largest du / dv
MEMORYLESS_DU = DECAY_MAX  # du = 4095: u = a << 6 (the +1 of the u decay makes it full)

# ---- currents, thresholds --------------------------------------------------------------------------
CURRENT_SHIFT = 6  # u += a << 6 (Lava's act_shift): one unit of a is 64 units of u and v
VTH_SHIFT = 6  # s = v > vth << 6 (Lava's vth_shift)
VTH_BITS = 17
VTH_LIMIT = 1 << VTH_BITS  # vth in [0, 2^17)
A_INT32_LIMIT = 1 << 25  # |a| >= 2^25: Lava's int32 `a << 6` overflows (Lava and Loihi then differ from intref)

# ---- biases ------------------------------------------------------------------------------------------
BIAS_MANT_MAX = 4095  # |bias_mant| the quantizer emits (13-bit signed: −4096..4095)
BIAS_EXP_MAX = 7  # bias_exp in 0..7 (3-bit)

# ---- weights -------------------------------------------------------------------------------------------
WEIGHT_BITS = 8  # 8-bit mantissa per synapse, one exponent per synapse group
SIGN_MODES = ("exc", "inh", "mixed")


# ---- array backend: numpy, or torch for torch tensors (never imported here; spikec.array_backend) ---------------------------
def _int64(x):
    return x.to(sys.modules["torch"].int64) if _is_torch(x) else np.asarray(x, dtype=np.int64)


def _as_dtype_of(x, like):
    return x.to(like.dtype) if _is_torch(like) else np.asarray(x).astype(like.dtype, copy=False)


def _array(x):
    return x if hasattr(x, "dtype") else np.int64(x)


# ---- rounding rules --------------------------------------------------------------------------------------
def trunc0_decay(x, factor: int):
    """``trunc0(x · factor / 4096)`` = ``sign(p) · (|p| >> 12)`` with ``p = x · factor`` in int64
    (Lava's decay: truncation toward zero).  ``factor`` is ``4096 − (du + 1)`` for u
    (:func:`u_decay_factor`) and ``4096 − dv`` for v (:func:`v_decay_factor`).

    Fast paths with the same result: factor 4096 (identity), 0, and powers of two
    (``trunc(x / 2^j)`` by shifts, no wide product, dtype kept)."""
    x = _array(x)
    if factor == DECAY_UNITY:
        return x
    if factor == 0:
        return x * 0
    k = factor.bit_length() - 1
    if factor == 1 << k:  # trunc(x / 2^j), j = 12 − k: add 2^j − 1 to negatives, then floor-shift
        j = DECAY_SHIFT - k
        r = x >> (x.itemsize * 8 - 1)  # −1 for negative x, else 0
        r &= (1 << j) - 1  # in place: one temporary array, not four (the hot loop of integer runs)
        r += x
        r >>= j
        return r
    p = _int64(x) * factor
    q = abs(p) >> DECAY_SHIFT
    return _as_dtype_of(_where(p < 0, -q, q), x)


def u_decay_factor(du: int) -> int:
    """The multiplier of u per step, out of 4096: ``4096 − (du + 1)`` (du = 0 still decays by 1/4096)."""
    return DECAY_UNITY - (du + 1)


def v_decay_factor(dv: int) -> int:
    """The multiplier of v per step, out of 4096: ``4096 − dv`` (dv = 0: no leak)."""
    return DECAY_UNITY - dv


def floor_shift(x, k):
    """``x << k`` for k >= 0, ``x >> −k`` (arithmetic: floor) otherwise: weight exponents, biases.
    ``k`` may be an integer array (numpy ``x``), one exponent per element (channel exponents)."""
    if np.ndim(k) == 0:
        return x << k if k >= 0 else x >> (-k)
    k = np.asarray(k, np.int64)
    x = np.asarray(x, np.int64)
    return np.where(k >= 0, x << np.maximum(k, 0), x >> np.maximum(-k, 0))


def wrap_u(u):
    """The 24-bit wrap of u, applied once: ``u > 2^23 → u − 2^24``; ``u <= −2^23 → u + 2^24``."""
    u = _where(u > U_MAX, u - U_MODULUS, u)
    return _where(u <= -U_MAX, u + U_MODULUS, u)


def saturate_v(v):
    """v saturates (does not wrap) at ±(2^23 − 1)."""
    return _clip(v, -V_LIMIT, V_LIMIT)


def threshold(vth: int) -> int:
    """The membrane threshold ``vth << 6``: a neuron spikes when ``v > threshold(vth)``."""
    return vth << VTH_SHIFT


def first_spiking_v(vth: int) -> int:
    """The smallest membrane that spikes: ``(vth << 6) + 1`` (also the soft reset's decrement)."""
    return threshold(vth) + 1


def vth_at_most(theta_v: float) -> int:
    """The largest vth whose first spiking membrane ``64·vth + 1`` is <= ``theta_v`` (membrane
    units), 0 if none: a real threshold represented from below within 64 units."""
    return max(0, math.floor((theta_v - 1) / (1 << VTH_SHIFT)))


def decay_to_dv(d: float) -> int:
    """The 12-bit v decay closest to a real decay ``d`` per step: ``round(4096·d)``."""
    return int(round(DECAY_UNITY * d))


def bias_value(bias_mant, bias_exp):
    """``bias_mant << bias_exp`` (``>> −bias_exp`` where negative), int64; not shifted by 6."""
    m = np.asarray(bias_mant, dtype=np.int64)
    e = np.asarray(bias_exp, dtype=np.int64)
    return np.where(e >= 0, np.left_shift(m, np.maximum(e, 0)), np.right_shift(m, np.maximum(-e, 0)))


def split_bias(b) -> tuple[np.ndarray, np.ndarray, int]:
    """Real biases (in membrane units) as ``mant << exp`` with ``|mant| <= 4095``, ``exp`` in
    0..7: the smallest exponent that fits, mantissa rounded to nearest.  Returns (mant, exp, number
    of biases beyond ``4095 << 7``, saturated)."""
    b = np.asarray(b, dtype=np.float64)
    mag = np.abs(b)
    exp = np.where(mag > BIAS_MANT_MAX, np.ceil(np.log2(np.maximum(mag, 1) / BIAS_MANT_MAX)), 0).astype(np.int64)
    saturated = int(np.sum(exp > BIAS_EXP_MAX))
    exp = np.clip(exp, 0, BIAS_EXP_MAX)
    mant = np.clip(np.round(b / 2.0 ** exp), -BIAS_MANT_MAX, BIAS_MANT_MAX).astype(np.int64)
    return mant, exp, saturated


# ---- weights -------------------------------------------------------------------------------------------
def sign_mode(w) -> str:
    """Lava's determine_sign_mode: "exc" if min >= 0, "inh" if max <= 0, else "mixed"."""
    w = np.asarray(w)
    if w.min() >= 0:
        return "exc"
    if w.max() <= 0:
        return "inh"
    return "mixed"


def weight_lsb_shift(mode: str, num_weight_bits: int = WEIGHT_BITS) -> int:
    """LSBs Lava drops from each weight: ``8 − num_weight_bits (+1 for MIXED)``."""
    return 8 - num_weight_bits + (1 if mode == "mixed" else 0)


def effective_weights(w, mode: str | None = None, num_weight_bits: int = WEIGHT_BITS) -> np.ndarray:
    """The weights Lava's fixed_pt Dense actually uses: clipped to the sign mode's 8-bit range
    (MIXED [−256, 255], EXC [0, 255], INH [−255, 0]), then the LSBs truncated (``(w >> t) << t``,
    sign-flipped for INH), t = :func:`weight_lsb_shift`."""
    w = np.asarray(w).astype(np.int64)
    mode = mode or sign_mode(w)
    if mode == "mixed":
        w = np.clip(w, -256, 255)
    elif mode == "exc":
        w = np.clip(w, 0, 255)
    else:
        w = np.clip(w, -255, 0)
    t = weight_lsb_shift(mode, num_weight_bits)
    if mode == "inh":
        return -(((-w) >> t) << t)
    return (w >> t) << t


def weight_mantissa_grid(mode: str, bits: int = WEIGHT_BITS) -> tuple[int, int]:
    """(largest |mantissa|, step) that Lava keeps exactly: EXC [0, 2^bits − 1] and INH
    [−(2^bits − 1), 0] in steps of 1; MIXED even values in [−(2^bits − 2), 2^bits − 2]."""
    return ((1 << bits) - 2, 2) if mode == "mixed" else ((1 << bits) - 1, 1)


def min_weight_exp(peak: float, mode: str, bits: int = WEIGHT_BITS) -> int:
    """The smallest weight exponent ``e`` with ``peak / 2^e`` within the mantissa range (no clipping)."""
    return math.ceil(math.log2(peak / weight_mantissa_grid(mode, bits)[0]))


def weight_mantissas(scaled: np.ndarray, mode: str, bits: int = WEIGHT_BITS, axis=None):
    """Real weights already divided by ``2^e`` → mantissas (float64 integers): rounded to the
    nearest value of the mode's grid (even for MIXED), then clipped to its range.  Returns
    (mantissas, fraction of weights clipped: a float, or per index of the axes not in ``axis``)."""
    wmax, step = weight_mantissa_grid(mode, bits)
    q = np.round(scaled / step) * step
    clipped = np.mean(np.abs(q) > wmax, axis=axis)
    clipped = float(clipped) if axis is None else clipped
    q = np.clip(q, -wmax if mode != "exc" else 0, wmax if mode != "inh" else 0)
    return q, clipped


# ---- the LIF step --------------------------------------------------------------------------------------
def reset_v(v, s, reset: str, vth: int, reset_value: int = 0):
    """v after the spikes ``s``: "zero" v = 0, "soft" v −= (vth << 6) + 1, "value" v = reset_value."""
    if reset == "zero":
        return _where(s, 0, v)
    if reset == "soft":
        return _where(s, v - first_spiking_v(vth), v)
    if reset == "value":
        return _where(s, reset_value, v)
    raise ValueError(f"unknown reset {reset!r}")


def lif_step(u, v, a, *, du: int, dv: int, vth: int, bias, reset: str = "zero", reset_value: int = 0,
             wrap: bool = True):
    """One Loihi 2 LIF time step (the recurrences in the module docstring); returns (u, v, s).

    ``u``, ``v``: the state after the previous step; ``a``: this step's input current (integers, not
    yet shifted by 6); ``bias``: ``bias_mant << bias_exp`` (:func:`bias_value`).  numpy arrays or
    torch tensors; the result has the dtype of the state when no operand is wider.  ``wrap=False``
    skips the 24-bit wrap of u, an optimisation only for callers that have proved |u| stays within
    (−2^23, 2^23] (the wrap is then the identity)."""
    u = trunc0_decay(u, u_decay_factor(du)) + (a << CURRENT_SHIFT)
    if wrap:
        u = wrap_u(u)
    v = saturate_v(trunc0_decay(v, v_decay_factor(dv)) + u + bias)
    s = v > threshold(vth)
    return u, reset_v(v, s, reset, vth, reset_value), s


# ---- the host boundary -------------------------------------------------------------------------------
def input_levels(x, scale: float):
    """The analog input's integer levels before clipping: ``floor(x / scale + 1/2)`` in float64
    (the only float arithmetic of an integer run; intref, Lava's source and ONNX use this rule).
    numpy arrays or torch tensors."""
    if hasattr(x, "double"):
        return (x.double() / scale + 0.5).floor()
    return np.floor(np.asarray(x, dtype=np.float64) / scale + 0.5)
