"""spikec.loihi, the one home of Loihi 2 fixed-point semantics, against slow pure-Python references
written here from the recurrences in the notes (lava-fixed-point.md); and its users (intref kernels,
spikec's Lava process models) against it.

spikec's Lava process models keep no copy of the arithmetic (they call spikec.loihi, which imports
numpy only): the Lava test below runs the real ResetLIF process model in Lava for every reset mode.
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from loihi_reference import RESETS, TWO23, ref_run, ref_trunc0  # noqa: E402

from spikec import loihi
from spikec.targets.intref import kernels as K

DECAYS = [(4095, 0), (4095, 2048), (0, 0), (1, 1), (1234, 3071), (4095, 4095), (2047, 1024)]


def random_case(seed, du, dv, amp, n=9, T=30):
    rng = np.random.default_rng(seed)
    a = rng.integers(-amp, amp + 1, size=(T, n))
    a[0, 0], a[1, 1] = amp, -amp  # the extremes
    bias = rng.integers(-4096, 4096, size=n) << rng.integers(0, 8, size=n)
    vth = int(rng.integers(0, 1 << 17)) if amp > 1 << 12 else int(rng.integers(0, 64))
    return a, bias, vth


# ---- the rounding rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [0, 1, 2, 3, 64, 1024, 2048, 3000, 4094, 4095, 4096])
def test_trunc0_decay_rounds_toward_zero(factor):
    xs = [0, 1, -1, 4095, -4095, 4096, -4096, 4097, -4097, TWO23, -TWO23, TWO23 - 1, -(TWO23 - 1), 12345, -12345]
    xs += list(np.random.default_rng(factor).integers(-(1 << 24), 1 << 24, 500))
    ref = np.array([ref_trunc0(int(x), factor) for x in xs])
    x64 = np.array(xs, np.int64)
    np.testing.assert_array_equal(loihi.trunc0_decay(x64, factor), ref)
    np.testing.assert_array_equal(loihi.trunc0_decay(x64.astype(np.int32), factor), ref)
    for dt in (torch.int64, torch.int32):
        out = loihi.trunc0_decay(torch.as_tensor(xs, dtype=dt), factor)
        assert out.dtype == dt  # the fast paths keep the state's dtype
        np.testing.assert_array_equal(out.numpy(), ref)
    assert K.trunc_decay is loihi.trunc0_decay


def test_decay_factors_threshold_and_vth_rule():
    assert loihi.u_decay_factor(4095) == 0 and loihi.u_decay_factor(0) == 4095  # du + 1: du = 0 still decays
    assert loihi.v_decay_factor(0) == 4096 and loihi.v_decay_factor(4095) == 1
    assert loihi.threshold(3) == 192 and loihi.first_spiking_v(3) == 193
    for theta_v in (0.0, 1.0, 64.0, 65.0, 65.5, 128.9, 129.0, 1e6):
        vth = loihi.vth_at_most(theta_v)
        assert vth >= 0
        assert vth == 0 or loihi.first_spiking_v(vth) <= theta_v < loihi.first_spiking_v(vth + 1)
    assert [loihi.decay_to_dv(d) for d in (0.0, 0.5, 1 / 3, 1.0)] == [0, 2048, 1365, 4096]


def test_floor_shift_and_bias_value():
    x = np.array([-5, -4, -1, 0, 3, 7])
    np.testing.assert_array_equal(loihi.floor_shift(x, 2), x * 4)
    np.testing.assert_array_equal(loihi.floor_shift(x, -1), np.floor(x / 2).astype(np.int64))  # floor, not trunc
    np.testing.assert_array_equal(loihi.bias_value([3, -3, 5, -5], [2, 0, -1, -1]), [12, -3, 2, -3])
    assert int(loihi.bias_value(-4096, 7)) == -4096 * 128


def test_split_bias_mantissa_exponent():
    b = np.array([0.0, 4095.0, -4094.6, 4096.0, 10000.0, -70000.0, 4095 * 128.0, 4095 * 129.0, 1e9])
    mant, exp, sat = loihi.split_bias(b)
    assert (np.abs(mant) <= loihi.BIAS_MANT_MAX).all() and ((exp >= 0) & (exp <= loihi.BIAS_EXP_MAX)).all()
    assert sat == 2  # 4095·129 and 1e9 need exponent 8+
    ok = np.abs(b) <= 4095 * 128
    assert (np.abs(mant * 2.0 ** exp - b)[ok] <= 2.0 ** exp[ok] / 2).all()  # rounded to nearest
    assert list(exp[:4]) == [0, 0, 0, 1]  # the smallest exponent that fits


def test_wrap_and_saturation_edges():
    u = np.array([TWO23, TWO23 + 1, TWO23 + 64, -TWO23, -TWO23 + 1, -TWO23 - 5, 0, 3 * TWO23 + 1])
    want = [TWO23, -TWO23 + 1, -TWO23 + 64, TWO23, -TWO23 + 1, TWO23 - 5, 0, TWO23 + 1]  # one wrap only
    np.testing.assert_array_equal(loihi.wrap_u(u), want)
    np.testing.assert_array_equal(loihi.wrap_u(torch.as_tensor(u)).numpy(), want)
    v = np.array([TWO23, TWO23 - 1, -TWO23, 5 * TWO23, -5 * TWO23, 17])
    np.testing.assert_array_equal(loihi.saturate_v(v), [TWO23 - 1, TWO23 - 1, -(TWO23 - 1), TWO23 - 1, -(TWO23 - 1), 17])


# ---- weights ------------------------------------------------------------------------------------------
def test_sign_modes_and_effective_weights():
    assert loihi.sign_mode([0, 3]) == "exc" and loihi.sign_mode([0, -3]) == "inh" and loihi.sign_mode([-1, 1]) == "mixed"
    assert loihi.sign_mode([0, 0]) == "exc"
    w = np.array([-257, -256, -3, -1, 0, 1, 3, 254, 255, 300])
    np.testing.assert_array_equal(loihi.effective_weights(w), [-256, -256, -4, -2, 0, 0, 2, 254, 254, 254])  # MIXED: LSB floored
    np.testing.assert_array_equal(loihi.effective_weights([0, 3, 255, 300]), [0, 3, 255, 255])
    np.testing.assert_array_equal(loihi.effective_weights([0, -3, -255, -300]), [0, -3, -255, -255])
    np.testing.assert_array_equal(loihi.effective_weights([0, 3, 7], "exc", num_weight_bits=7), [0, 2, 6])
    assert K.lava_effective_weights is loihi.effective_weights and K.lava_sign_mode is loihi.sign_mode


@pytest.mark.parametrize("mode", ["exc", "inh", "mixed"])
def test_weight_mantissas_are_what_lava_keeps(mode):
    rng = np.random.default_rng(len(mode))
    scaled = rng.normal(0, 120, 2000)
    scaled = np.abs(scaled) if mode == "exc" else -np.abs(scaled) if mode == "inh" else scaled
    q, clipped = loihi.weight_mantissas(scaled, mode)
    wmax, step = loihi.weight_mantissa_grid(mode)
    assert 0 < clipped < 0.1 and (np.abs(q) <= wmax).all() and (q % step == 0).all()
    assert loihi.sign_mode(q) == mode or not q.any()
    np.testing.assert_array_equal(loihi.effective_weights(q.astype(np.int64), mode), q)  # exact in Lava
    inside = np.abs(scaled) < wmax
    assert (np.abs(q - scaled)[inside] <= step / 2 + 1e-9).all()  # nearest grid value
    e = loihi.min_weight_exp(float(np.abs(scaled).max()), mode)
    assert np.abs(scaled / 2.0 ** e).max() <= wmax < np.abs(scaled / 2.0 ** (e - 1)).max()


# ---- the LIF step -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("du,dv", DECAYS)
@pytest.mark.parametrize("amp", [50, 3000, 1 << 17, (1 << 18) + 7])  # 2^17: a << 6 reaches 2^23 (wrap)
def test_lif_step_equals_the_reference(reset, du, dv, amp):
    a, bias, vth = random_case(hash((reset, du, dv, amp)) % 2**32, du, dv, amp)
    S, V, U = ref_run(a, du, dv, vth, bias, reset, -77, v_init=5)
    for backend in ("numpy", "torch64", "torch32"):
        if backend == "torch32" and amp > 1 << 17:
            continue
        conv = {"numpy": lambda z: np.asarray(z, np.int64), "torch64": lambda z: torch.as_tensor(z, dtype=torch.int64),
                "torch32": lambda z: torch.as_tensor(z, dtype=torch.int32)}[backend]
        u, v, b = conv(np.zeros(a.shape[1])), conv(np.full(a.shape[1], 5)), conv(bias)
        for t in range(a.shape[0]):
            u, v, s = loihi.lif_step(u, v, conv(a[t]), du=du, dv=dv, vth=vth, bias=b, reset=reset, reset_value=-77)
            np.testing.assert_array_equal(np.asarray(s), S[t].astype(bool), err_msg=f"{backend} spikes t={t}")
            np.testing.assert_array_equal(np.asarray(v), V[t], err_msg=f"{backend} v t={t}")
            np.testing.assert_array_equal(np.asarray(u), U[t], err_msg=f"{backend} u t={t}")
    if amp == 1 << 17 and du == 4095:
        assert (np.abs(U) == TWO23).any()  # the wrap edge was reached
    if amp > 1 << 17 and (du, dv) == (0, 0):
        assert (np.abs(V) == TWO23 - 1).any()  # saturation reached


def test_lif_step_edges():
    kw = dict(du=4095, dv=0, vth=0, bias=0)
    u, v, s = loihi.lif_step(np.int64(0), np.int64(0), np.array([1 << 17, (1 << 17) + 1, -(1 << 17)]), **kw)
    np.testing.assert_array_equal(u, [TWO23, -TWO23 + 64, TWO23])  # u = 2^23 stays, beyond wraps once
    np.testing.assert_array_equal(s, [True, False, True])  # v = clip(u) = 2^23 − 1 > 0: spike
    np.testing.assert_array_equal(v, [0, -TWO23 + 64, 0])  # reset zero: v = 0 after the spike (u is kept)
    _, v, s = loihi.lif_step(np.int64(0), np.int64(TWO23 - 100), np.array([1 << 16]), du=4095, dv=0, vth=(1 << 17) - 1,
                             bias=0, reset="value", reset_value=-5)
    assert s[0] and v[0] == -5  # v saturated at 2^23 − 1 > (2^17 − 1) << 6, then reset to the value
    _, v, s = loihi.lif_step(np.int64(0), np.array([63, 64]), np.array([0, 0]), du=0, dv=0, vth=1, bias=0, reset="soft")
    np.testing.assert_array_equal(s, [False, False])  # strict: v > vth << 6
    _, v, s = loihi.lif_step(np.int64(0), np.array([65, 200]), np.array([0, 0]), du=0, dv=0, vth=1, bias=0, reset="soft")
    np.testing.assert_array_equal(s, [True, True])
    np.testing.assert_array_equal(v, [0, 135])  # soft: v − (64 + 1)
    with pytest.raises(ValueError):
        loihi.lif_step(0, 0, np.array([1]), du=0, dv=0, vth=0, bias=0, reset="bogus")


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("du,dv,amp", [(4095, 0, 200), (4095, 2048, 4000), (4095, 100, 1 << 17), (3, 1000, 5000)])
def test_intref_lif_run_equals_the_reference(reset, du, dv, amp):
    """intref's lif_run (int32 fast path when provably exact, wrap skipped when provably the
    identity) over [T, B, n] equals the reference."""
    a, bias, vth = random_case(hash((reset, du, dv, amp, 1)) % 2**32, du, dv, amp)
    S, V, U = ref_run(a, du, dv, vth, bias, reset, 9, v_init=-3)
    s, v, u = K.lif_run(torch.as_tensor(a[:, None, :]), du, dv, vth, torch.as_tensor(bias), reset, 9, -3, record=True)
    np.testing.assert_array_equal(s[:, 0].numpy(), S)
    np.testing.assert_array_equal(v[:, 0].numpy(), V)
    np.testing.assert_array_equal(u[:, 0].numpy(), U)
    assert torch.equal(K.lif_run(torch.as_tensor(a[:, None, :]), du, dv, vth, torch.as_tensor(bias), reset, 9, -3), s)


# ---- who may import what -------------------------------------------------------------------------------
def test_loihi_imports_no_torch():
    """Lava's process models import spikec.loihi: it (and spikec itself) must not pull torch in."""
    code = "import sys, spikec, spikec.loihi; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr[-2000:]


def test_lava_process_models_keep_no_copy():
    from pathlib import Path

    src = (Path(ROOT) / "targets/lava/procs/models.py").read_text()
    assert "loihi.lif_step(" in src
    for literal in ("4096", "<< 6", "left_shift(a, 6)", "1 << 23", "U_MAX", "V_LIMIT"):
        assert literal not in src, literal  # a copy of spikec.loihi would have to say so and be tested here
