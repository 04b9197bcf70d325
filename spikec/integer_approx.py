"""Integer-only approximations of the ops of spiking transformers that are not spike-driven: exp,
softmax, sigmoid, GELU, ReLU, square root and layer norm, in the style of I-BERT (Kim et al. 2021,
"I-BERT: Integer-only BERT Quantization").  Stated once here; the integer reference interpreter
(torch), the ONNX exporter and spikec's Lava process models (numpy) follow it.

Fixed point.  A real value r is held as an integer q with r ≈ q·S, S > 0 the scale.  Each kernel
takes int64 input at a stated input scale and returns int64 at a stated output scale:

    kernel                input                 output      error bound, real units, vs the float op
    exp(q, plan)          q <= 0 at S_in         2^-30       ρ·e^x + η
    softmax(q, plan)      |q| < 2^62 at S_in     2^-k        2^-(k+1) + (ρ/2 + N·η) / (1 − ρ − N·η)
    sigmoid(q, plan)      any at S_in            2^-k        2^-(k+1) + (ρ/4 + η) / (1 − ρ − η)
    gelu(q, plan)         any at S_in            S_in        0.0182 + S_in/2 + O(2^-30)
    relu(q)               any                    S_in        0 (exact)
    isqrt(x)              0 <= x < 2^63          -           0 (exact floor square root)
    layer_norm(q, plan)   |q| < 2^B at S_in      S_out       |γ|·err_n(σ) + S_out/2 + O(S_out·√N·2^-h)

with ρ = EXP_POLY_RELATIVE_ERROR (3.1e-3, plus terms of 2^-30 and of the scale's multiplier,
:attr:`ExpPlan.relative_error`), η = EXP_ROUNDING_ERROR = 5·2^-30, N the softmax row length, and
err_n(σ) the normalised value's error, which shrinks like (1 + √N)/σ with the row's standard
deviation σ in units of S_in·2^-m (:meth:`LayerNormPlan.error_bound`).  Each plan states its own
bound as a number (``error_bound``); the kernels' docstrings derive them.

Plans and kernels.  Floats appear only in the ``*_plan`` functions, which turn scales and float
parameters into the integer constants of a frozen plan dataclass.  The kernels use integers only:
+, −, ×, floor division by integers, arithmetic shifts (floor), comparisons, clip, and max / sum
along an axis.  Every intermediate's bound is stated next to it and stays below 2^63; an input
outside a kernel's range raises ValueError instead of wrapping.  Floor division and shifts act on
non-negative operands everywhere except in gelu and layer_norm, where they round toward −∞.

Arrays.  This module imports numpy only.  Every kernel takes numpy integer arrays (anything
``np.asarray`` accepts) or torch integer tensors, dispatched on the argument's type as in
:mod:`spikec.loihi`, and returns int64 of the same kind; numpy and torch give identical integers.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

import numpy as np

from .array_backend import clip as _clip
from .array_backend import is_torch as _is_torch
from .array_backend import where as _where

# ---- I-BERT's polynomials (Kim et al. 2021) ----------------------------------------------------------
IBERT_EXP_A, IBERT_EXP_B, IBERT_EXP_C = 0.3585, 1.353, 0.344  # exp(p) ≈ a·(p + b)² + c for p in [−ln 2, 0]
IBERT_ERF_A, IBERT_ERF_B = -0.2888, -1.769  # erf(w) ≈ sign(w)·[a·(min(|w|, −b) + b)² + 1]

# max |a·(p + b)² + c − e^p| / e^p over p in [−ln 2 − 2^-30, 0]: 3.0973e-3 (at p = −ln 2 the
# polynomial is high by 1.8e-4, at p = 0 by 2.7e-4; the extreme −3.097e-3 is inside); tested.
EXP_POLY_RELATIVE_ERROR = 3.1e-3
# sup over real x of |x/2·(1 + erf_IBERT(x/√2)) − x·Φ(x)|: 0.018152 at x ≈ 2.35; tested.
GELU_POLY_ERROR = 1.82e-2

# ---- fixed-point constants ---------------------------------------------------------------------------
EXP_FRAC_BITS = 30  # exp's arguments, polynomial and output are at 2^-30
EXP_ONE = 1 << EXP_FRAC_BITS
EXP_ROUNDING_ERROR = 5.0 * 2.0**-EXP_FRAC_BITS  # η: the floors and constants of the integer polynomial
_LN2 = round(math.log(2) * EXP_ONE)  # ln 2 at 2^-30 (off by < 2^-31)
_EXP_A = round(IBERT_EXP_A * EXP_ONE)
_EXP_B = round(IBERT_EXP_B * EXP_ONE)
_EXP_C = round(IBERT_EXP_C * EXP_ONE)
_EXP_SHIFT_CAP = 31  # the argument saturates at 31·ln 2, where the output (< 2^31 before the shift) is 0
_EXP_ARGUMENT_CAP = _EXP_SHIFT_CAP * _LN2

GELU_FRAC_BITS = 30  # erf's argument and value at 2^-30
_ERF_ONE = 1 << GELU_FRAC_BITS
_ERF_A = round(-IBERT_ERF_A * _ERF_ONE)  # |a|
_ERF_CLIP = round(-IBERT_ERF_B * _ERF_ONE)  # −b: erf is ±1 from |w| = 1.769 on
_ERF_LIPSCHITZ = 2 * -IBERT_ERF_A * -IBERT_ERF_B  # |d erf_IBERT / dw| <= 2|a||b| = 1.022
_GELU_SATURATION_LIMIT = 1 << 31  # saturation·2^31 (the largest q·(1 + erf) at 2^-30) < 2^62

LAYER_NORM_FRAC_BITS = 24  # the normalised values (x − mean) / std are at 2^-24

_INT64_HEADROOM = 1 << 62  # products and sums are kept at or below 2^62 (one bit short of int64)
_MIN_MULTIPLIER = 1 << 19  # scale multipliers keep >= 20 significant bits: relative error <= 2^-20


# ---- array backend: numpy, or torch for torch tensors (never imported here; spikec.array_backend) --------------------------
def _int64(x):
    """``x`` as an int64 array of its kind (numpy for anything not a torch tensor); floats, bools and
    uint64 (which int64 cannot hold) raise TypeError."""
    if _is_torch(x):
        torch = sys.modules["torch"]
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"integer input expected, got a {x.dtype} tensor")
        return x.to(torch.int64)
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.integer) or a.dtype == np.uint64:
        raise TypeError(f"integer input expected, got dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _minimum(x, hi: int):
    return x.clamp(max=hi) if _is_torch(x) else np.minimum(x, hi)


def _max_along(x, axis: int):
    return x.amax(dim=axis, keepdim=True) if _is_torch(x) else x.max(axis=axis, keepdims=True)


def _sum_along(x, axis: int):
    return x.sum(dim=axis, keepdim=True) if _is_torch(x) else x.sum(axis=axis, keepdims=True)


def _constant(values, like):
    """Python ints as an int64 array of ``like``'s kind (and device)."""
    if _is_torch(like):
        return like.new_tensor(values, dtype=sys.modules["torch"].int64)
    return np.asarray(values, dtype=np.int64)


# ---- plan-side helpers (floats allowed) ---------------------------------------------------------------
def _multiplier(ratio: float, cap: int, what: str) -> tuple[int, int, int]:
    """Integers (multiplier, shift, limit) with ``(v · multiplier) >> shift ≈ v · ratio`` for
    0 <= v <= limit, where limit = ceil(cap · 2^shift / multiplier) is the least v whose image
    reaches ``cap`` (callers clamp v to limit: beyond it only "at least cap" matters).  The shift is
    the largest with cap·2^shift + multiplier <= 2^62, which bounds limit·multiplier below 2^62."""
    for shift in range(62, -1, -1):
        multiplier = round(ratio * 2.0**shift)
        if cap * (1 << shift) + multiplier <= _INT64_HEADROOM:
            break
    else:
        raise ValueError(f"{what}: scale too large (one input step is {ratio:g} units of 2^-30; int64 overflows)")
    if multiplier < _MIN_MULTIPLIER:
        raise ValueError(f"{what}: scale too small (multiplier {multiplier} has fewer than 20 bits)")
    return multiplier, shift, -(-cap * (1 << shift) // multiplier)


def _relative_error(multiplier: int, shift: int, ratio: float) -> float:
    """|multiplier / 2^shift − ratio| / ratio: the multiplier's relative error (<= 2^-20)."""
    return abs(multiplier - ratio * 2.0**shift) / (ratio * 2.0**shift)


# ---- exp -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExpPlan:
    """The integer constants of :func:`exp` for inputs at scale ``scale_in``: |x| = |q|·S_in is
    taken to 2^-30 as ``(|q| · multiplier) >> shift``, after clamping |q| to ``input_limit`` (the
    least |q| whose argument reaches 31·ln 2, where the output is 0).  Build with :func:`exp_plan`."""

    scale_in: float
    multiplier: int
    shift: int
    input_limit: int

    @property
    def relative_error(self) -> float:
        """ρ = (1 + ρ_poly)·e^γ − 1: the polynomial's relative error ρ_poly, and γ bounding the
        argument's error (see :func:`exp`)."""
        kappa = _relative_error(self.multiplier, self.shift, self.scale_in * EXP_ONE)
        ln2_fixed = _LN2 / EXP_ONE
        largest_argument = (_EXP_SHIFT_CAP * ln2_fixed + 2.0**-EXP_FRAC_BITS) / (1 - kappa)
        gamma = _EXP_SHIFT_CAP * abs(math.log(2) - ln2_fixed) + largest_argument * kappa + 2.0**-EXP_FRAC_BITS
        return (1 + EXP_POLY_RELATIVE_ERROR) * math.exp(gamma) - 1

    @property
    def error_bound(self) -> float:
        """ρ + η: the absolute error bound of :func:`exp` over all x <= 0 (the largest at x = 0)."""
        return self.relative_error + EXP_ROUNDING_ERROR


def exp_plan(scale_in: float) -> ExpPlan:
    """:class:`ExpPlan` for inputs at ``scale_in`` (2^-38 <= scale_in < 2^32, else ValueError)."""
    multiplier, shift, limit = _multiplier(scale_in * EXP_ONE, _EXP_ARGUMENT_CAP, "exp")
    return ExpPlan(float(scale_in), multiplier, shift, limit)


def _exp_of_magnitude(v, plan: ExpPlan):
    """exp(−v·S_in) at 2^-30 for int64 v >= 0 (the algebra is :func:`exp`'s); every value < 2^31."""
    v = _minimum(v, plan.input_limit)
    u = _minimum((v * plan.multiplier) >> plan.shift, _EXP_ARGUMENT_CAP)  # v·multiplier < 2^62; u <= 31·ln 2 < 2^35
    z = u // _LN2  # 0..31
    r = u - z * _LN2  # −p at 2^-30, in [0, ln 2)
    d = _EXP_B - r  # p + b at 2^-30, in (0.66, 1.353]·2^30
    poly = ((_EXP_A * ((d * d) >> EXP_FRAC_BITS)) >> EXP_FRAC_BITS) + _EXP_C  # d² < 1.84·2^60; poly < 1.0003·2^30
    return poly >> z


def exp(q, plan: ExpPlan):
    """e^x for x = q·S_in <= 0, at output scale 2^-30 (values in [0, 1.0003·2^30]).

    Algebra (I-BERT's i-exp, here at a fixed internal scale 2^-30 so that the accuracy does not
    depend on S_in)::

        t = (|q| · multiplier) >> shift        |x| at 2^-30: multiplier / 2^shift = S_in·2^30·(1 ± κ)
        t = min(t, 31·L)                         L = round(ln 2 · 2^30)
        z = t // L,  r = t − z·L                 t·2^-30 = z·L·2^-30 − p, p = −r·2^-30 in (−L·2^-30, 0]
        P = ((A · ((B − r)² >> 30)) >> 30) + C   a·(p + b)² + c at 2^-30 (A, B, C: a, b, c at 2^-30)
        out = P >> z                             e^p · 2^-z = e^x

    |q| is first clamped to ``plan.input_limit`` (where t reaches 31·L and the output is 0), so any
    int64 q <= 0 is accepted; q > 0 raises ValueError.  Intermediates: |q|·multiplier < 2^62,
    (B − r)² < 2^61, A·((B − r)² >> 30) < 2^60, P < 2^31.

    Error: out·2^-30 = e^x·(1 + α) + β with |α| <= ρ = ``plan.relative_error`` and |β| <= η =
    EXP_ROUNDING_ERROR = 5·2^-30, so |out·2^-30 − e^x| <= ρ·e^x + η <= ``plan.error_bound``.  ρ
    collects the polynomial's relative error (EXP_POLY_RELATIVE_ERROR) and e^γ, γ bounding the
    argument's error: 31·|ln 2 − L·2^-30| (2^-z for e^(−z·L·2^-30)), |x|·κ + 2^-30 (the
    multiplier and the floor of t).  η collects the rounding of A, B, C (<= 2·2^-30), the two
    floors inside P (<= 1.4·2^-30) and the floor of the shift (< 2^-30).  Inputs beyond the clamp
    return 0 where e^x < 2^-31 < η.  The output is not monotone at the range-reduction boundaries:
    the output at t = z·L − 1 is 8.7e-5 (relative) below the output at t = z·L."""
    x = _int64(q)
    if bool((x > 0).any()):
        raise ValueError("exp: inputs must be <= 0 (subtract the row maximum first, as softmax does)")
    return _int64(_exp_of_magnitude(-_clip(x, -plan.input_limit, 0), plan))


# ---- softmax ---------------------------------------------------------------------------------------------
_SOFTMAX_INPUT_LIMIT = 1 << 62  # |q| < 2^62: max(q) − q fits in int64
_SOFTMAX_MAX_ROW = 1 << 31  # N·2^31 (the row sum) <= 2^62
_MAX_OUTPUT_BITS = 30  # (e << k) + sum/2 <= 2^61 + 2^61


@dataclass(frozen=True)
class SoftmaxPlan:
    """:func:`softmax`'s exp plan and the output's fractional bits k (output scale 2^-k).  Build with
    :func:`softmax_plan`."""

    exp: ExpPlan
    output_bits: int

    @property
    def output_scale(self) -> float:
        return 2.0**-self.output_bits

    def error_bound(self, row_length: int) -> float:
        """2^-(k+1) + (ρ/2 + N·η) / (1 − ρ − N·η) for rows of N = ``row_length`` (see :func:`softmax`)."""
        rho, spread = self.exp.relative_error, row_length * EXP_ROUNDING_ERROR
        return self.output_scale / 2 + (rho / 2 + spread) / (1 - rho - spread)


def softmax_plan(scale_in: float, output_bits: int = 15) -> SoftmaxPlan:
    """:class:`SoftmaxPlan` for inputs at ``scale_in`` and outputs at 2^-``output_bits`` (1..30)."""
    if not 1 <= output_bits <= _MAX_OUTPUT_BITS:
        raise ValueError(f"softmax: output_bits must be in 1..{_MAX_OUTPUT_BITS}, got {output_bits}")
    return SoftmaxPlan(exp_plan(scale_in), output_bits)


def softmax(q, plan: SoftmaxPlan, axis: int = -1):
    """softmax(x) along ``axis`` for x = q·S_in, at output scale 2^-k (k = ``plan.output_bits``).

    Algebra::

        e_i = exp(−(max(q) − q_i))                  :func:`exp` at 2^-30, e_i < 2^31 (the max's e is P(0) >= 2^30)
        s   = Σ_i e_i                                 < N·2^31 <= 2^62
        out_i = ((e_i << k) + (s >> 1)) // s        e_i/s rounded to nearest at 2^-k; numerator <= 2^62

    Range: |q| < 2^62 (so max(q) − q_i fits; else ValueError), rows of 1 <= N <= 2^31 elements,
    k <= 30.  Outputs are in [0, 2^k]; a row's outputs sum to 2^k within ±N/2.  Adding a constant
    to a row does not change its integers.

    Error against the float softmax y_i = E_i / T (E_i = e^(x_i − max x), T = Σ E_j >= 1): with
    ê_j = E_j(1 + α_j) + β_j (:func:`exp`: |α_j| <= ρ, |β_j| <= η) and Ŝ = Σ ê_j,

        ê_i/Ŝ − y_i = [y_i(α_i − Σ_j y_j α_j) + (β_i − y_i Σ_j β_j)/T] · T/Ŝ,

    where |y_i(α_i − Σ y_j α_j)| <= 2ρ·y_i(1 − y_i) <= ρ/2, |β_i − y_i Σ β_j| <= N·η and
    Ŝ >= T(1 − ρ − N·η); rounding adds 2^-(k+1).  So |out·2^-k − y| <= 2^-(k+1) + (ρ/2 + N·η) /
    (1 − ρ − N·η) = ``plan.error_bound(N)`` (1.57e-3 for k = 15, N = 1024)."""
    x = _int64(q)
    n = x.shape[axis]
    if not 1 <= n <= _SOFTMAX_MAX_ROW:
        raise ValueError(f"softmax: rows of 1..2^31 elements expected, got {n}")
    if bool(((x >= _SOFTMAX_INPUT_LIMIT) | (x <= -_SOFTMAX_INPUT_LIMIT)).any()):
        raise ValueError("softmax: inputs must satisfy |q| < 2^62 (max(q) − q would overflow int64)")
    e = _exp_of_magnitude(_max_along(x, axis) - x, plan.exp)
    s = _sum_along(e, axis)
    return _int64(((e << plan.output_bits) + (s >> 1)) // s)


# ---- sigmoid ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SigmoidPlan:
    """:func:`sigmoid`'s exp plan and the output's fractional bits k (output scale 2^-k).  Build with
    :func:`sigmoid_plan`."""

    exp: ExpPlan
    output_bits: int

    @property
    def output_scale(self) -> float:
        return 2.0**-self.output_bits

    @property
    def error_bound(self) -> float:
        """2^-(k+1) + (ρ/4 + η) / (1 − ρ − η) (see :func:`sigmoid`)."""
        rho = self.exp.relative_error
        return self.output_scale / 2 + (rho / 4 + EXP_ROUNDING_ERROR) / (1 - rho - EXP_ROUNDING_ERROR)


def sigmoid_plan(scale_in: float, output_bits: int = 15) -> SigmoidPlan:
    """:class:`SigmoidPlan` for inputs at ``scale_in`` and outputs at 2^-``output_bits`` (1..30)."""
    if not 1 <= output_bits <= _MAX_OUTPUT_BITS:
        raise ValueError(f"sigmoid: output_bits must be in 1..{_MAX_OUTPUT_BITS}, got {output_bits}")
    return SigmoidPlan(exp_plan(scale_in), output_bits)


def sigmoid(q, plan: SigmoidPlan):
    """1 / (1 + e^−x) for x = q·S_in, at output scale 2^-k (k = ``plan.output_bits``), any int64 q.

    Algebra (one exp and one division, by the symmetry σ(−x) = 1 − σ(x))::

        e   = exp(−|x|)                              :func:`exp` at 2^-30, e < 2^31 (|q| clamped first)
        pos = ((2^(30+k)) + ((2^30 + e) >> 1)) // (2^30 + e)    σ(|x|) rounded to nearest at 2^-k;
                                                                numerator <= 2^60 + 2^31
        out = pos if x >= 0 else 2^k − pos

    so out(q) + out(−q) = 2^k exactly, and outputs lie in [0, 2^k].

    Error: σ(|x|) = 1/(1 + E), E = e^−|x| <= 1, and the computed ê = E(1 + α) + β >= 0; then
    |1/(1 + ê) − 1/(1 + E)| = |ê − E| / ((1 + E)(1 + ê)) <= (ρE + η) / ((1 + E)²(1 − ρ − η))
    <= (ρ/4 + η) / (1 − ρ − η), as E/(1 + E)² <= 1/4.  Rounding adds 2^-(k+1); the reflection is
    exact.  Total: ``plan.error_bound`` (7.9e-4 for k = 15)."""
    x = _int64(q)
    limit = plan.exp.input_limit
    e = _exp_of_magnitude(abs(_clip(x, -limit, limit)), plan.exp)
    denominator = EXP_ONE + e
    k = plan.output_bits
    positive = ((EXP_ONE << k) + (denominator >> 1)) // denominator
    return _int64(_where(x < 0, (1 << k) - positive, positive))


# ---- GELU and ReLU -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GeluPlan:
    """The integer constants of :func:`gelu` for inputs at ``scale_in``: w = |x|/√2 at 2^-30 is
    ``(|q| · multiplier) >> shift``; from |q| >= ``saturation`` on, erf_IBERT(w) = ±1 and the output
    is q (x > 0) or 0 (x < 0).  Build with :func:`gelu_plan`."""

    scale_in: float
    multiplier: int
    shift: int
    saturation: int

    @property
    def error_bound(self) -> float:
        """GELU_POLY_ERROR + S_in/2 + (X/2)·(1.022·Δw + 4·2^-30), X = saturation·S_in ≈ 2.502 the
        largest |x| not saturated, Δw = (X/√2)·κ + 2^-30 the argument's error (see :func:`gelu`)."""
        unit = 2.0**-GELU_FRAC_BITS
        kappa = _relative_error(self.multiplier, self.shift, self.scale_in * _ERF_ONE / math.sqrt(2))
        largest = self.saturation * self.scale_in
        argument_error = largest / math.sqrt(2) * kappa + unit
        return GELU_POLY_ERROR + self.scale_in / 2 + largest / 2 * (_ERF_LIPSCHITZ * argument_error + 4 * unit)


def gelu_plan(scale_in: float) -> GeluPlan:
    """:class:`GeluPlan` for inputs at ``scale_in`` (scale_in >= 1.2e-9, so that saturation < 2^31,
    else ValueError)."""
    multiplier, shift, saturation = _multiplier(scale_in * _ERF_ONE / math.sqrt(2), _ERF_CLIP, "gelu")
    if saturation >= _GELU_SATURATION_LIMIT:
        raise ValueError(f"gelu: scale {scale_in:g} too small (|x| <= 2.5 spans more than 2^31 steps)")
    return GeluPlan(float(scale_in), multiplier, shift, saturation)


def gelu(q, plan: GeluPlan):
    """GELU(x) = x·Φ(x) = x/2·(1 + erf(x/√2)) for x = q·S_in, any int64 q, at output scale S_in.

    Algebra (I-BERT's i-GELU: erf(w) ≈ sign(w)·[a(min(|w|, −b) + b)² + 1], a = −0.2888,
    b = −1.769, here at a fixed internal scale 2^-30)::

        c   = clip(q, −saturation, saturation)
        w   = min((|c| · multiplier) >> shift, C)          |x|/√2 at 2^-30; C = round(1.769·2^30)
        m   = 2^30 − ((A · ((C − w)² >> 30)) >> 30)        |erf_IBERT| at 2^-30, in [0.096, 1]·2^30
        h   = 2^30 + sign(c)·m                               1 + erf at 2^-30, in [0, 2^31]
        out = q if q > saturation else (c·h + 2^30) >> 31   x/2·(1 + erf) rounded at S_in

    A = round(0.2888·2^30).  Intermediates: |c|·multiplier < 2^62, (C − w)² < 1.6·2^61,
    A·((C − w)² >> 30) < 0.91·2^60, |c·h| <= 2^31·2^31.  At q = ±saturation, out = q or 0, so the
    two branches meet.  erf_IBERT(0±) = ±0.096 (the fit is to GELU, not to erf); q = 0 gives 0.

    Error: |out·S_in − GELU(x)| <= GELU_POLY_ERROR (the float i-GELU's, 0.018152 at x ≈ 2.35)
    + S_in/2 (the output rounding) + (|x|/2)·|Δerf| for |x| <= X = saturation·S_in ≈ 2.502 (beyond,
    erf is exactly ±1), |Δerf| <= 1.022·Δw (erf_IBERT's Lipschitz constant 2|a||b| times the
    argument's error Δw = (X/√2)·κ + 2^-30) + 4·2^-30 (the rounding of A, C and two floors):
    ``plan.error_bound``."""
    x = _int64(q)
    c = _clip(x, -plan.saturation, plan.saturation)
    w = _minimum((abs(c) * plan.multiplier) >> plan.shift, _ERF_CLIP)
    d = _ERF_CLIP - w
    magnitude = _ERF_ONE - ((_ERF_A * ((d * d) >> GELU_FRAC_BITS)) >> GELU_FRAC_BITS)
    one_plus_erf = _where(c < 0, _ERF_ONE - magnitude, _ERF_ONE + magnitude)
    half_gelu = (c * one_plus_erf + _ERF_ONE) >> (GELU_FRAC_BITS + 1)
    return _int64(_where(x > plan.saturation, x, half_gelu))


def relu(q):
    """max(q, 0): exact, at the input's scale."""
    x = _int64(q)
    return _where(x > 0, x, 0)


# ---- square root --------------------------------------------------------------------------------------------
_ISQRT_NEWTON_STEPS = 5


def isqrt(x):
    """floor(√x), exactly, for int64 0 <= x <= 2^63 − 1 (negative x raise ValueError).

    Algebra (integer Newton iteration from above)::

        j  = floor(log2 max(x, 1))                      binary search: six shifts and comparisons
        y0 = 2^(j // 2 + 1)                             √x < y0 <= 2√x, y0 <= 2^32
        y  ← (y + max(x, 1) // y) >> 1                  five times; y + x // y < 2^33
        y  ← y − 1 where y > x // y                     i.e. where y² > x (no y² is formed)

    Exactness.  Let r = floor(√x) for x >= 1 and f(y) = (y + x/y)/2; the integer step is floor(f(y))
    (nested floors of integer divisions combine).  In reals, y = √x(1 + ε) maps to
    √x(1 + ε²/(2(1 + ε))); from ε0 <= 1 the bounds are 1/4, 0.025, 3.1e-4, 4.7e-8, 1.1e-15, so the
    real iterate after five steps is within 3.1e9 · 1.1e-15 < 1 of √x (√x < 2^31.5).  The integer
    iterate never falls below r (f(y) >= √x by AM-GM), stays in {r, r + 1} once it reaches r + 1 or
    less (floor(f(r + 1)) <= r + 1 and floor(f(r)) <= r + 1), and while it is above r + 1 it is at
    most the real iterate (f is increasing on [√x, ∞)).  So after five steps y is r or r + 1, and the
    last step (y > x // y ⇔ y² > x for integers y >= 1) leaves r.  x = 0: the iteration runs on 1,
    gives y = 1, and the last step gives 0."""
    x = _int64(x)
    if bool((x < 0).any()):
        raise ValueError("isqrt: inputs must be >= 0")
    x1 = _where(x > 0, x, 1)
    top_bit = 0 * x
    for step in (32, 16, 8, 4, 2, 1):
        top_bit = _where((x1 >> (top_bit + step)) > 0, top_bit + step, top_bit)  # shifts <= 63
    y = (1 + 0 * x) << ((top_bit >> 1) + 1)
    for _ in range(_ISQRT_NEWTON_STEPS):
        y = (y + x1 // y) >> 1
    return _int64(_where(y > x // y, y - 1, y))


# ---- layer norm ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerNormPlan:
    """The integer constants of :func:`layer_norm` over rows of ``row_length`` inputs at scale
    ``scale_in`` with |q| < 2^``input_bits``, output at ``output_scale``.  ``mean_shift`` (m): the
    mean, the centred values and the variance carry m more fractional bits than the input;
    ``eps_units``: eps in the variance's units (S_in·2^-m)², at least 1; ``gamma_int``: γ_i / S_out at
    2^-h; ``offset_int``: β_i / S_out + 1/2 at 2^-(24+h), h = ``affine_shift``.  Build with
    :func:`layer_norm_plan`."""

    row_length: int
    input_bits: int
    scale_in: float
    eps: float
    output_scale: float
    mean_shift: int
    eps_units: int
    affine_shift: int
    gamma_abs_max: float
    gamma_int: tuple[int, ...] = field(repr=False)
    offset_int: tuple[int, ...] = field(repr=False)

    def error_bound(self, variance: float) -> float:
        """The bound of :func:`layer_norm`'s error (real units) on a row whose inputs x = q·S_in have
        population variance ``variance``: |γ|max · err_n(σ) + S_out·(1/2 + (√(3N) + 1)·2^-(h+1)),
        with σ = √(variance + eps)·2^m / S_in, τ = 1 + 2/σ and
        err_n(σ) = 2^-24 + (1 + √(N − 1)·τ) / (σ − τ)  (infinite when σ <= 2, i.e. σ <= τ)."""
        sigma = math.sqrt(variance + self.eps) * 2.0**self.mean_shift / self.scale_in
        if sigma <= 2:
            return math.inf
        tau = 1 + 2 / sigma
        n = self.row_length
        normalised_error = 2.0**-LAYER_NORM_FRAC_BITS + (1 + math.sqrt(n - 1) * tau) / (sigma - tau)
        affine_rounding = 0.5 + (math.sqrt(3 * n) + 1) * 2.0 ** -(self.affine_shift + 1)
        return self.gamma_abs_max * normalised_error + self.output_scale * affine_rounding


def layer_norm_plan(scale_in: float, gamma, beta, *, eps: float = 1e-5, input_bits: int, output_scale: float) -> LayerNormPlan:
    """:class:`LayerNormPlan` for rows of len(gamma) inputs at ``scale_in`` with |q| < 2^input_bits,
    float affine ``gamma``, ``beta`` and ``eps`` (as torch.nn.LayerNorm), output at ``output_scale``.

    m is the largest with N·2^(2(B+1+m)) <= 2^62 (Σ of the squared centred values fits) and
    eps_units = max(1, round(eps·4^m / S_in²)) <= 2^61; ValueError if even m = 0 does not fit
    (2·(B + 1) + ceil(log2 N) > 62).  The affine shift h is the largest with
    (isqrt(3N) + 1)·2^24·max|gamma_int| + max|offset_int| <= 2^62."""
    gamma = np.asarray(gamma, dtype=np.float64).reshape(-1)
    beta = np.asarray(beta, dtype=np.float64).reshape(-1)
    n = gamma.size
    if n < 1 or beta.size != n:
        raise ValueError(f"layer_norm: gamma and beta must have the same length >= 1, got {gamma.size} and {beta.size}")
    if eps < 0:
        raise ValueError(f"layer_norm: eps must be >= 0, got {eps}")
    largest_mean_shift = (62 - (n - 1).bit_length()) // 2 - input_bits - 1
    if largest_mean_shift < 0:
        raise ValueError(f"layer_norm: {input_bits}-bit inputs in rows of {n} overflow int64 "
                         f"(Σ(x − mean)² needs 2·(input_bits + 1) + ceil(log2 N) <= 62)")
    for mean_shift in range(largest_mean_shift, -1, -1):
        eps_units = max(1, round(eps * 4.0**mean_shift / scale_in**2))
        if eps_units <= 1 << 61:
            break
    else:
        raise ValueError(f"layer_norm: eps {eps:g} is more than 2^61 units of S_in² (S_in = {scale_in:g} too small)")
    k = LAYER_NORM_FRAC_BITS
    normalised_limit = (math.isqrt(3 * n) + 1) << k
    gamma_max, beta_max = float(np.abs(gamma).max()) / output_scale, float(np.abs(beta).max()) / output_scale
    for affine_shift in range(62 - k, -k, -1):
        offset_max = round(beta_max * 2.0 ** (k + affine_shift)) + (1 << (k + affine_shift - 1))
        if normalised_limit * round(gamma_max * 2.0**affine_shift) + offset_max <= _INT64_HEADROOM:
            break
    else:
        raise ValueError(f"layer_norm: output_scale {output_scale:g} too small for gamma, beta (outputs overflow int64)")
    gamma_int = tuple(round(g / output_scale * 2.0**affine_shift) for g in gamma)
    offset_int = tuple(round(b / output_scale * 2.0 ** (k + affine_shift)) + (1 << (k + affine_shift - 1)) for b in beta)
    return LayerNormPlan(n, input_bits, float(scale_in), float(eps), float(output_scale), mean_shift, eps_units,
                         affine_shift, float(np.abs(gamma).max()), gamma_int, offset_int)


def layer_norm(q, plan: LayerNormPlan):
    """γ·(x − μ)/√(σ² + eps) + β over the last axis (N = ``plan.row_length``) for x = q·S_in with
    |q| < 2^B (B = ``plan.input_bits``; else ValueError), at output scale S_out = ``plan.output_scale``.

    Algebra (m = ``plan.mean_shift``, h = ``plan.affine_shift``, K = 24)::

        mean   = (Σ q << m) // N                     μ at S_in·2^-m, floor: μ·2^m − δ, δ in [0, 1)
        c      = (q << m) − mean                     x − μ at S_in·2^-m (+δ); |c| < 2^(B+1+m) <= 2^31
        var    = (Σ c²) // N                         σ²(x) at (S_in·2^-m)², floor; Σ c² <= N·2^(2(B+1+m)) <= 2^62
        std    = isqrt(var + eps_units)               √(σ² + eps) at S_in·2^-m, >= 1; var + eps_units < 2^63
        n      = (c << K) // std                      the normalised value at 2^-24 (floor); |n| <= √(3N)·2^24 + 1
        out    = (n · gamma_int + offset_int) >> (K + h)   γn + β rounded at S_out; |n·gamma_int| + |offset_int| <= 2^62

    eps enters as eps_units = max(1, round(eps·4^m / S_in²)) in the variance's units; the floor of
    1 keeps std >= 1, so no row divides by zero.  A row of equal values has mean exact and c = 0 and
    returns round(β / S_out) (the float op returns β).  Adding a constant to a row does not change
    its integers.

    Error.  In units of S_in·2^-m let σ = √(V + E) be the float op's denominator (V the row's
    variance, E = eps·4^m/S_in²).  Σ c = Nδ makes var = floor(V + δ²), so |var + eps_units − σ²| < 2
    and std = isqrt(·) lies in (σ − τ, σ + τ), τ = 1 + 2/σ.  With the true n = (x − μ)/σ,
    |n| <= √(N − 1), c/std − n = (δ + n(σ − std)) / std, so
    |n·2^-24 − n| <= err_n(σ) = 2^-24 + (1 + √(N − 1)·τ) / (σ − τ).  The affine step adds
    |γ|·err_n(σ) and S_out·(1/2 + (√(3N) + 1)·2^-(h+1)) (the rounding of the output, of γ at 2^-h
    and of β): ``plan.error_bound(variance)``.  The error grows as the row's spread approaches the
    input's resolution S_in (the normalised value of a nearly constant row is ill-conditioned)."""
    x = _int64(q)
    n = plan.row_length
    if x.shape[-1] != n:
        raise ValueError(f"layer_norm: rows of {n} expected (the plan's), got {x.shape[-1]}")
    limit = 1 << plan.input_bits
    if bool(((x >= limit) | (x <= -limit)).any()):
        raise ValueError(f"layer_norm: inputs must satisfy |q| < 2^{plan.input_bits} (the plan's input_bits)")
    m, k = plan.mean_shift, LAYER_NORM_FRAC_BITS
    mean = (_sum_along(x, -1) << m) // n
    centred = (x << m) - mean
    variance = _sum_along(centred * centred, -1) // n
    std = isqrt(variance + plan.eps_units)
    normalised = (centred << k) // std
    affine = normalised * _constant(plan.gamma_int, x) + _constant(plan.offset_int, x)
    return _int64(affine >> (k + plan.affine_shift))
