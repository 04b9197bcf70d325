"""spikec.integer_approx against float64 references (numpy, torch): the measured maximum error of
every kernel stays within its documented bound, on random inputs over the kernel's range at several
scales and on adversarial inputs (range extremes, zero, range-reduction boundaries, constant rows,
outliers); numpy and torch inputs give identical int64 outputs of their own kind; one hypothesis
property per kernel.  Run with ``-s`` to see the measured maxima next to the bounds."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikec import integer_approx as ia

SCALES = [2.0**-4, 2.0**-10, 0.0173, 2.0**-20]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
LN2 = math.log(2)
FEW = settings(max_examples=150, deadline=None)

MEASURED: dict[str, tuple[float, float]] = {}  # case -> (measured max error, documented bound)


def check_error(case: str, measured: float, bound: float):
    """Assert ``measured <= bound``; record and print both."""
    MEASURED[case] = (measured, bound)
    print(f"{case}: max error {measured:.4g} (bound {bound:.4g})")
    assert measured <= bound, f"{case}: measured max error {measured:.6g} exceeds the documented bound {bound:.6g}"


def ln2_boundaries(scale: float, count: int = 33) -> np.ndarray:
    """Inputs at and next to −j·ln 2 (the range-reduction boundaries of exp), j = 0..count − 1."""
    centres = np.round(-np.arange(count) * LN2 / scale).astype(np.int64)
    return np.unique(np.concatenate([centres - 1, centres, centres + 1]).clip(max=0))


# ---- the float fits the bounds rest on ----------------------------------------------------------------
def test_polynomial_error_constants_bound_the_float_fits():
    # dense grids: the maxima move by less than the constants' margins between grid points
    p = np.linspace(-LN2 - 2.0**-30, 0, 2_000_001)
    fit = ia.IBERT_EXP_A * (p + ia.IBERT_EXP_B) ** 2 + ia.IBERT_EXP_C
    check_error("exp polynomial (relative)", float(np.abs(fit / np.exp(p) - 1).max()), ia.EXP_POLY_RELATIVE_ERROR)
    x = np.linspace(-12, 12, 2_000_001)
    w = np.abs(x) / math.sqrt(2)
    erf = np.sign(x) * (ia.IBERT_ERF_A * (np.minimum(w, -ia.IBERT_ERF_B) + ia.IBERT_ERF_B) ** 2 + 1)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    check_error("i-GELU float fit", float(np.abs(x / 2 * (1 + erf) - exact).max()), ia.GELU_POLY_ERROR)


# ---- exp ------------------------------------------------------------------------------------------------
def exp_errors(q: np.ndarray, plan: ia.ExpPlan) -> tuple[np.ndarray, np.ndarray]:
    """(|out·2^-30 − e^x|, the elementwise bound ρ·e^x + η)."""
    exact = np.exp(q.astype(np.float64) * plan.scale_in)
    error = np.abs(ia.exp(q, plan) * 2.0**-ia.EXP_FRAC_BITS - exact)
    return error, plan.relative_error * exact + ia.EXP_ROUNDING_ERROR


@pytest.mark.parametrize("scale", SCALES)
def test_exp_random_and_adversarial(scale):
    plan = ia.exp_plan(scale)
    rng = np.random.default_rng(1)
    random = -rng.integers(0, int(25 / scale), 200_000)
    limit = plan.input_limit
    adversarial = np.concatenate([ln2_boundaries(scale), [0, -1, -limit + 1, -limit, -limit - 1, -(2**62), INT64_MIN]])
    for name, q in (("random", random), ("adversarial", adversarial)):
        error, bound = exp_errors(q, plan)
        assert (error <= bound).all(), f"exp ({name}): ρ·e^x + η exceeded at q = {q[error > bound][:5]}"
        check_error(f"exp {name} S={scale:g}", float(error.max()), plan.error_bound)
    assert ia.exp(np.array([-limit, INT64_MIN]), plan).tolist() == [0, 0]


def test_exp_internal_scale_dense_near_the_polynomial_extremes():
    """At S_in = 2^-30 the argument reaches the polynomial unrounded: every integer input within
    50000 of the polynomial's worst point (and of it 5 octaves down) and of both ends of (−ln 2, 0]."""
    plan = ia.exp_plan(2.0**-30)
    p = np.linspace(-LN2, 0, 2001)
    fit = ia.IBERT_EXP_A * (p + ia.IBERT_EXP_B) ** 2 + ia.IBERT_EXP_C
    worst = round(p[np.argmax(np.abs(fit / np.exp(p) - 1))] * 2**30)
    centres = (worst, worst - round(5 * LN2 * 2**30), 0, -round(LN2 * 2**30))
    q = np.concatenate([np.arange(c - 50_000, min(c + 50_000, 0) + 1) for c in centres])
    error, bound = exp_errors(q, plan)
    assert (error <= bound).all()
    check_error("exp dense S=2^-30", float(error.max()), plan.error_bound)


def test_exp_rejects_positive_and_float_inputs():
    plan = ia.exp_plan(2.0**-10)
    with pytest.raises(ValueError, match="<= 0"):
        ia.exp(np.array([-3, 1]), plan)
    with pytest.raises(TypeError, match="integer input"):
        ia.exp(np.array([-1.5]), plan)
    with pytest.raises(TypeError, match="integer input"):
        ia.exp(torch.tensor([-1.5]), plan)


@FEW
@given(q=st.integers(INT64_MIN, 0), scale=st.sampled_from(SCALES + [2.0**-30, 1.0]))
def test_exp_property_relative_bound(q, scale):
    error, bound = exp_errors(np.array([q]), ia.exp_plan(scale))
    assert error[0] <= bound[0]


# ---- softmax ---------------------------------------------------------------------------------------------
def softmax_error(q: np.ndarray, plan: ia.SoftmaxPlan, axis: int = -1) -> float:
    out = ia.softmax(q, plan, axis)
    centred = torch.from_numpy(q - q.max(axis=axis, keepdims=True)).double() * plan.exp.scale_in
    exact = torch.softmax(centred, dim=axis).numpy()
    return float(np.abs(out * plan.output_scale - exact).max())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("output_bits", [8, 15, 30])
def test_softmax_random(scale, output_bits):
    plan = ia.softmax_plan(scale, output_bits)
    rng = np.random.default_rng(output_bits)
    for n in (1, 7, 128, 1024):
        q = rng.integers(-int(12 / scale), int(12 / scale), (64, n))
        check_error(f"softmax random S={scale:g} k={output_bits} N={n}", softmax_error(q, plan), plan.error_bound(n))


@pytest.mark.parametrize("scale", SCALES)
def test_softmax_adversarial(scale):
    plan = ia.softmax_plan(scale)
    big = 2**62 - 1
    n = 16
    boundaries = ln2_boundaries(scale, n)[-n:]  # differences of −j·ln 2 (and ±1) from the row max
    rows = {
        "all equal": np.full((3, n), [[0], [big], [-big]]),
        "huge outlier": np.array([[big] + [-big] * (n - 1), [-big] * (n - 1) + [big], [0] * (n - 1) + [big]]),
        "ln 2 boundaries": np.stack([boundaries, boundaries + big - 1, boundaries[::-1]]),
        "two maxima": np.array([[5, 5] + [0] * (n - 2), [0] * (n - 2) + [big, big]]),
        "spread to the exp clamp": np.linspace(0, -2 * plan.exp.input_limit, n).astype(np.int64)[None],
    }
    for name, q in rows.items():
        check_error(f"softmax {name} S={scale:g}", softmax_error(q, plan), plan.error_bound(n))
    out = ia.softmax(rows["all equal"], plan)
    assert (out == round(2**plan.output_bits / n)).all()
    assert ia.softmax(np.array([[big]]), plan).tolist() == [[2**plan.output_bits]]


def test_softmax_axis_and_batch_dims():
    plan = ia.softmax_plan(2.0**-8)
    q = np.random.default_rng(3).integers(-2000, 2000, (4, 5, 6))
    np.testing.assert_array_equal(ia.softmax(q, plan, axis=1), np.moveaxis(ia.softmax(np.moveaxis(q, 1, -1), plan), -1, 1))
    check_error("softmax axis=1", softmax_error(q, plan, axis=1), plan.error_bound(5))


def test_softmax_rejects_out_of_range():
    plan = ia.softmax_plan(2.0**-8)
    with pytest.raises(ValueError, match="2\\^62"):
        ia.softmax(np.array([[2**62, 0]]), plan)
    with pytest.raises(ValueError, match="rows of"):
        ia.softmax(np.zeros((3, 0), np.int64), plan)
    with pytest.raises(ValueError, match="output_bits"):
        ia.softmax_plan(2.0**-8, 31)


@FEW
@given(row=st.lists(st.integers(-(2**61), 2**61), min_size=1, max_size=40), shift=st.integers(-(2**60), 2**60),
       scale=st.sampled_from(SCALES))
def test_softmax_property_shift_invariant_within_bound(row, shift, scale):
    plan = ia.softmax_plan(scale)
    q = np.array([row])
    out = ia.softmax(q, plan)
    np.testing.assert_array_equal(ia.softmax(q + shift, plan), out)
    assert abs(int(out.sum()) - 2**plan.output_bits) <= len(row) / 2
    assert softmax_error(q, plan) <= plan.error_bound(len(row))


# ---- sigmoid ---------------------------------------------------------------------------------------------
def sigmoid_error(q: np.ndarray, plan: ia.SigmoidPlan) -> float:
    exact = torch.sigmoid(torch.from_numpy(q).double() * plan.exp.scale_in).numpy()
    return float(np.abs(ia.sigmoid(q, plan) * plan.output_scale - exact).max())


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("output_bits", [8, 15, 30])
def test_sigmoid_random_and_adversarial(scale, output_bits):
    plan = ia.sigmoid_plan(scale, output_bits)
    random = np.random.default_rng(5).integers(-int(30 / scale), int(30 / scale), 200_000)
    limit = plan.exp.input_limit
    boundaries = ln2_boundaries(scale)
    adversarial = np.concatenate([boundaries, -boundaries, [0, 1, -1, limit, -limit, limit + 1, INT64_MAX, INT64_MIN]])
    for name, q in (("random", random), ("adversarial", adversarial)):
        check_error(f"sigmoid {name} S={scale:g} k={output_bits}", sigmoid_error(q, plan), plan.error_bound)
    assert ia.sigmoid(np.array([INT64_MIN, INT64_MAX]), plan).tolist() == [0, 2**output_bits]


@FEW
@given(q=st.integers(-INT64_MAX, INT64_MAX), scale=st.sampled_from(SCALES), output_bits=st.integers(1, 30))
def test_sigmoid_property_symmetric_within_bound(q, scale, output_bits):
    plan = ia.sigmoid_plan(scale, output_bits)
    pair = ia.sigmoid(np.array([q, -q]), plan)
    assert pair.sum() == 2**output_bits  # σ(x) + σ(−x) = 1 exactly
    assert sigmoid_error(np.array([q]), plan) <= plan.error_bound


# ---- GELU and ReLU -------------------------------------------------------------------------------------
def gelu_error(q: np.ndarray, plan: ia.GeluPlan) -> float:
    x = torch.from_numpy(q).double() * plan.scale_in
    exact = torch.nn.functional.gelu(x).numpy()
    return float(np.abs(ia.gelu(q, plan) * plan.scale_in - exact).max())


@pytest.mark.parametrize("scale", SCALES + [2.0**-29])
def test_gelu_random_and_adversarial(scale):
    plan = ia.gelu_plan(scale)
    random = np.random.default_rng(7).integers(-int(8 / scale), int(8 / scale), 200_000)
    s = plan.saturation
    worst = round(2.35 / scale)  # where the float fit is worst
    adversarial = np.array([0, 1, -1, s, -s, s - 1, -s + 1, s + 1, -s - 1, worst, -worst, INT64_MAX, INT64_MIN])
    for name, q in (("random", random), ("adversarial", adversarial)):
        check_error(f"gelu {name} S={scale:g}", gelu_error(q, plan), plan.error_bound)
    assert ia.gelu(np.array([INT64_MAX, INT64_MIN, 0, s, -s]), plan).tolist() == [INT64_MAX, 0, 0, s, 0]


def test_gelu_plan_rejects_too_fine_scales():
    with pytest.raises(ValueError, match="too small"):
        ia.gelu_plan(2.0**-32)


@FEW
@given(q=st.integers(INT64_MIN, INT64_MAX), scale=st.sampled_from(SCALES))
def test_gelu_and_relu_property(q, scale):
    plan = ia.gelu_plan(scale)
    assert gelu_error(np.array([q]), plan) <= plan.error_bound
    assert ia.relu(np.array([q])).tolist() == [max(q, 0)]


# ---- square root -------------------------------------------------------------------------------------------
def test_isqrt_matches_math_isqrt():
    rng = np.random.default_rng(9)
    log_uniform = (2.0 ** rng.uniform(0, 63, 100_000)).astype(np.uint64).clip(max=INT64_MAX).astype(np.int64)
    roots = np.concatenate([rng.integers(0, 3037000499, 20_000), np.arange(0, 300), 2**31 + np.arange(-3, 4),
                            3037000499 - np.arange(5)])
    squares = roots * roots
    edges = [0, 1, 2, 3, 2**62 - 1, 2**62, 2**62 + 1, INT64_MAX, INT64_MAX - 1]
    x = np.concatenate([log_uniform, squares - 1, squares, squares + 1, edges]).clip(0, INT64_MAX)
    expected = np.array([math.isqrt(int(v)) for v in x], dtype=np.int64)
    np.testing.assert_array_equal(ia.isqrt(x), expected)
    np.testing.assert_array_equal(ia.isqrt(torch.from_numpy(x)).numpy(), expected)
    check_error("isqrt", float(np.abs(ia.isqrt(x) - expected).max()), 0.0)


def test_isqrt_rejects_negative_inputs():
    with pytest.raises(ValueError, match=">= 0"):
        ia.isqrt(np.array([4, -1]))
    with pytest.raises(ValueError, match=">= 0"):
        ia.isqrt(torch.tensor([INT64_MIN]))


@settings(max_examples=200, deadline=None)
@given(x=st.integers(0, INT64_MAX))
def test_isqrt_property_exact(x):
    assert ia.isqrt(np.array([x])).tolist() == [math.isqrt(x)]


# ---- layer norm ---------------------------------------------------------------------------------------------
class LayerNormCase:
    """A plan over rows of ``n`` inputs of ``bits`` bits at ``scale``, with random float γ, β."""

    def __init__(self, n: int, bits: int, scale: float, output_scale: float = 2.0**-10, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.gamma = rng.uniform(0.5, 2, n) * rng.choice([-1, 1], n)
        self.beta = rng.uniform(-1, 1, n)
        self.plan = ia.layer_norm_plan(scale, self.gamma, self.beta, input_bits=bits, output_scale=output_scale)

    def errors(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per row: (max |out·S_out − float layer norm|, the documented bound for the row's variance)."""
        plan = self.plan
        x = torch.from_numpy(q).double() * plan.scale_in
        exact = torch.nn.functional.layer_norm(x, (plan.row_length,), torch.from_numpy(self.gamma),
                                               torch.from_numpy(self.beta), plan.eps).numpy()
        error = np.abs(ia.layer_norm(q, plan) * plan.output_scale - exact).max(axis=-1)
        bound = np.array([plan.error_bound(v) for v in x.var(dim=-1, unbiased=False).numpy()])
        return error, bound

    def check(self, name: str, q: np.ndarray):
        error, bound = self.errors(q)
        assert (error <= bound).all(), f"{name}: rows {np.flatnonzero(error > bound)[:5]} exceed their bounds"
        check_error(name, float(error.max()), float(bound.max()))


LAYER_NORM_CASES = [(1, 8, 2.0**-4), (8, 8, 2.0**-4), (384, 16, 2.0**-8), (384, 24, 2.0**-20), (1024, 16, 0.0173)]
OUTPUT_SCALES = [2.0**-10, 2.0**-24]  # coarse: the output rounding dominates; fine: the normalisation's error shows


@pytest.mark.parametrize("output_scale", OUTPUT_SCALES)
@pytest.mark.parametrize("n, bits, scale", LAYER_NORM_CASES)
def test_layer_norm_random(n, bits, scale, output_scale):
    case = LayerNormCase(n, bits, scale, output_scale)
    rng = np.random.default_rng(11)
    top = 2**bits - 1
    q = rng.integers(-top, top + 1, (32, n))
    narrow = rng.integers(-top // 256, top // 256 + 1, (32, n)) + rng.integers(-top // 2, top // 2, (32, 1))
    case.check(f"layer_norm random N={n} B={bits} S={scale:g} S_out={output_scale:g}", q)
    case.check(f"layer_norm narrow rows N={n} B={bits} S={scale:g} S_out={output_scale:g}", narrow)


@pytest.mark.parametrize("output_scale", OUTPUT_SCALES)
@pytest.mark.parametrize("n, bits, scale", LAYER_NORM_CASES)
def test_layer_norm_adversarial(n, bits, scale, output_scale):
    case = LayerNormCase(n, bits, scale, output_scale)
    top = 2**bits - 1
    constant = np.array([[0] * n, [top] * n, [-top] * n, [12345 % top] * n])
    outlier = np.zeros((3, n), np.int64)
    outlier[0, 0], outlier[1, :], outlier[1, -1], outlier[2, n // 2] = top, -top, top, -top
    alternating = np.where(np.arange(n) % 2 == 0, top, -top)[None]
    one_unit = np.zeros((2, n), np.int64)
    one_unit[0, 0], one_unit[1, ::3] = 1, -1  # the smallest nonzero variance the inputs can show
    for name, q in (("constant rows", constant), ("outlier", outlier), ("alternating extremes", alternating),
                    ("one-unit spread", one_unit)):
        case.check(f"layer_norm {name} N={n} B={bits} S={scale:g} S_out={output_scale:g}", q)
    # variance 0: no division by zero, the output is β on the output grid
    beta_grid = np.round(case.beta / case.plan.output_scale).astype(np.int64)
    np.testing.assert_array_equal(ia.layer_norm(constant, case.plan), np.broadcast_to(beta_grid, constant.shape))


def test_layer_norm_with_eps_zero_still_never_divides_by_zero():
    beta = np.array([0.5, -0.25, 0, 1])
    plan = ia.layer_norm_plan(2.0**-8, np.ones(4), beta, eps=0.0, input_bits=12, output_scale=2.0**-8)
    assert plan.eps_units == 1  # the floor that keeps isqrt(var + eps_units) >= 1
    out = ia.layer_norm(np.full((2, 4), [[7], [-4095]]), plan)
    np.testing.assert_array_equal(out, np.broadcast_to(np.round(beta * 2**8).astype(np.int64), (2, 4)))
    assert plan.error_bound(0.0) == math.inf  # the float op is 0/0 there


def test_layer_norm_rejects_out_of_range():
    case = LayerNormCase(8, 12, 2.0**-6)
    with pytest.raises(ValueError, match="2\\^12"):
        ia.layer_norm(np.full((1, 8), 2**12), case.plan)
    with pytest.raises(ValueError, match="rows of 8"):
        ia.layer_norm(np.zeros((1, 9), np.int64), case.plan)
    with pytest.raises(ValueError, match="overflow int64"):
        ia.layer_norm_plan(2.0**-8, np.ones(384), np.zeros(384), input_bits=27, output_scale=2.0**-8)
    with pytest.raises(ValueError, match="eps"):
        ia.layer_norm_plan(2.0**-40, np.ones(4), np.zeros(4), input_bits=8, output_scale=2.0**-8)
    with pytest.raises(ValueError, match="same length"):
        ia.layer_norm_plan(2.0**-8, np.ones(4), np.zeros(3), input_bits=8, output_scale=2.0**-8)


@FEW
@given(row=st.lists(st.integers(-(2**15) + 1, 2**15 - 1), min_size=16, max_size=16), shift=st.integers(-(2**15), 2**15))
def test_layer_norm_property_shift_invariant_within_bound(row, shift):
    case = LayerNormCase(16, 16, 2.0**-8, seed=1)
    q = np.array([row])
    error, bound = case.errors(q)
    assert error[0] <= bound[0]
    shifted = np.clip(q + shift, -(2**16) + 1, 2**16 - 1)
    if (shifted == q + shift).all():
        np.testing.assert_array_equal(ia.layer_norm(shifted, case.plan), ia.layer_norm(q, case.plan))


# ---- one integer semantics for numpy and torch ---------------------------------------------------------------
KERNELS = {
    "exp": (lambda q: ia.exp(-abs(q), ia.exp_plan(0.0173)), 40_000),
    "softmax": (lambda q: ia.softmax(q, ia.softmax_plan(0.0173), axis=0), 1_000),
    "sigmoid": (lambda q: ia.sigmoid(q, ia.sigmoid_plan(0.0173)), 3_000),
    "gelu": (lambda q: ia.gelu(q, ia.gelu_plan(0.0173)), 1_000),
    "relu": (ia.relu, 1_000),
    "isqrt": (lambda q: ia.isqrt(abs(q)), 2**62),
    "layer_norm": (lambda q: ia.layer_norm(q, LayerNormCase(16, 20, 2.0**-8).plan), 2**20 - 1),
}


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_numpy_and_torch_give_identical_int64(kernel):
    run, high = KERNELS[kernel]
    q = np.random.default_rng(13).integers(-high, high + 1, (64, 16))
    q[0] = 0
    out_numpy, out_torch = run(q), run(torch.from_numpy(q))
    assert isinstance(out_numpy, np.ndarray) and out_numpy.dtype == np.int64
    assert isinstance(out_torch, torch.Tensor) and out_torch.dtype == torch.int64
    np.testing.assert_array_equal(out_numpy, out_torch.numpy())
    out_int32 = run(torch.from_numpy(q.astype(np.int32)) if high < 2**31 else torch.from_numpy(q))
    np.testing.assert_array_equal(out_int32.numpy(), out_numpy)


def test_scalar_and_list_inputs_give_int64_arrays():
    out = ia.isqrt(17)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64 and out.shape == () and out == 4
    out = ia.gelu([0, 400, -400], ia.gelu_plan(2.0**-8))
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert isinstance(ia.relu(np.int32(-3)), np.ndarray)
