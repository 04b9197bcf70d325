"""intref's integer recurrences == Lava 0.10.0's fixed_pt process models, bit for bit.

Each case builds a tiny Lava network (RingBuffer -> [Dense ->] LIF -> sink), runs it in
Loihi2SimCfg(select_tag="fixed_pt") and compares with targets.intref.kernels on the same integers.
"""

import numpy as np
import pytest
import torch
from loihi_reference import RESETS, ref_run

from spikec.compat.lava311 import ensure_lava
from spikec.targets.intref import kernels as K

ensure_lava()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.sink import RingBuffer as Sink  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lava.proc.lif.process import LIF  # noqa: E402
from lava.proc.monitor.process import Monitor  # noqa: E402

CFG = Loihi2SimCfg(select_tag="fixed_pt")


def run_lava_lif(a: np.ndarray, process=LIF, **params):
    """a: [n, T] int currents into the neuron process's a_in (stock LIF, or spikec's own); returns
    spikes, v, u as [T, n]."""
    n, T = a.shape
    src = Source(data=a.astype(np.int32))
    lif = process(shape=(n,), **params)
    sink = Sink(shape=(n,), buffer=T)
    mon_v, mon_u = Monitor(), Monitor()
    src.s_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    mon_v.probe(lif.v, T)
    mon_u.probe(lif.u, T)
    lif.run(condition=RunSteps(num_steps=T), run_cfg=CFG)
    s = sink.data.get().T.astype(np.int64)
    v = np.asarray(mon_v.get_data()[lif.name]["v"]).astype(np.int64)
    u = np.asarray(mon_u.get_data()[lif.name]["u"]).astype(np.int64)
    lif.stop()
    return s, v, u


LIF_CASES = {
    "plain": dict(du=4095, dv=2048, vth=10, bias=0, amp=2000),
    "du0_dv0": dict(du=0, dv=0, vth=50, bias=-3, amp=500),
    "slow_decays": dict(du=1, dv=1, vth=200, bias=7, amp=800),
    "random_decays_neg_bias": dict(du=1234, dv=3071, vth=5, bias=-900, amp=3000),
    "u_wraps": dict(du=4095, dv=100, vth=131071, bias=0, amp=1 << 17),  # a << 6 reaches 2^23: wrap
    "v_saturates": dict(du=0, dv=0, vth=131071, bias=4095, amp=60000),  # accumulating u drives v to the clip
}


@pytest.mark.parametrize("case", list(LIF_CASES))
def test_lif_matches_lava(case):
    p = LIF_CASES[case]
    rng = np.random.default_rng(hash(case) % 2**32)
    n, T = 7, 25
    a = rng.integers(-p["amp"], p["amp"], size=(n, T))
    bias_mant = np.full(n, p["bias"]) if p["bias"] else 0
    bias_exp = rng.integers(0, 4, size=n) if p["bias"] else 0
    s, v, u = run_lava_lif(a, du=p["du"], dv=p["dv"], vth=p["vth"], bias_mant=bias_mant, bias_exp=bias_exp)
    bias = torch.as_tensor(np.asarray(bias_mant) * (1 << np.asarray(bias_exp)), dtype=torch.int64) * torch.ones(n, dtype=torch.int64)
    s2, v2, u2 = K.lif_run(torch.as_tensor(a.T[:, None, :], dtype=torch.int64), p["du"], p["dv"], p["vth"], bias,
                           "zero", 0, 0, record=True)
    np.testing.assert_array_equal(s2[:, 0].numpy(), s)
    np.testing.assert_array_equal(v2[:, 0].numpy(), v)
    np.testing.assert_array_equal(u2[:, 0].numpy(), u)
    if case == "u_wraps":
        assert (np.abs(u) > (1 << 22)).any() and (np.sign(u[1:]) != np.sign(u[:-1])).any()
    if case == "v_saturates":
        assert (np.abs(v) == (1 << 23) - 1).any()
    if case in ("plain", "random_decays_neg_bias"):
        assert 0 < s.mean() < 1


@pytest.mark.parametrize("mode", ["mixed_odd", "exc", "inh", "mixed_big"])
@pytest.mark.parametrize("weight_exp", [0, 2, -3])
def test_dense_matches_lava(mode, weight_exp):
    rng = np.random.default_rng(abs(hash((mode, weight_exp))) % 2**32)
    n_in, n_out, T = 9, 6, 12
    if mode == "mixed_odd":
        w = rng.integers(-128, 128, (n_out, n_in)) * 2 + 1  # odd: Lava drops the LSB
    elif mode == "exc":
        w = rng.integers(0, 256, (n_out, n_in))
    elif mode == "inh":
        w = -rng.integers(0, 256, (n_out, n_in))
    else:
        w = rng.integers(-400, 400, (n_out, n_in))  # beyond 8 bits: Lava clips
    spikes = (rng.random((n_in, T)) < 0.4).astype(np.int32)
    src = Source(data=spikes)
    dense = Dense(weights=w, weight_exp=weight_exp, num_weight_bits=8)
    sink = Sink(shape=(n_out,), buffer=T)
    src.s_out.connect(dense.s_in)
    dense.a_out.connect(sink.a_in)
    dense.run(condition=RunSteps(num_steps=T), run_cfg=CFG)
    lava_out = sink.data.get().T.astype(np.int64)  # [T, n_out], delayed by one step
    dense.stop()
    w_eff = torch.as_tensor(K.lava_effective_weights(w))
    acc = K.exact_linear(torch.as_tensor(spikes.T, dtype=torch.int64), w_eff)
    ours = K.shift(acc, weight_exp).numpy()
    np.testing.assert_array_equal(lava_out[1:], ours[:-1])
    assert (lava_out[0] == 0).all()
    if mode == "mixed_odd":
        assert (K.lava_effective_weights(w) % 2 == 0).all()


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_trunc_decay_fast_paths_equal_lavas_formula(dtype):
    """Power-of-two decays use shifts, others a wide product: both equal sign(p)·(|p| >> 12)."""
    x = torch.randint(-(1 << 23), 1 << 23, (50_000,), dtype=dtype, generator=torch.Generator().manual_seed(1))
    for factor in (0, 1, 2, 1024, 2048, 3000, 4095, 4096):
        p = x.to(torch.int64) * factor
        ref = torch.sign(p) * (p.abs() >> 12)
        assert torch.equal(K.trunc_decay(x, factor).to(torch.int64), ref), factor


@pytest.mark.parametrize("reset", RESETS)
def test_lava_reset_lif_process_equals_the_reference(reset):
    """spikec's ResetLIF process model, run by Lava (fixed_pt), equals the reference: all reset
    modes, decays, per-neuron biases with exponents, the 24-bit wrap, and the periodic state reset."""
    from spikec.targets.lava.procs.process import ResetLIF

    rng = np.random.default_rng(RESETS.index(reset))
    n, T, interval = 6, 24, 10
    a = rng.integers(-(1 << 17), 1 << 17, size=(T, n))
    bias_mant, bias_exp = rng.integers(-4096, 4096, size=n), rng.integers(0, 8, size=n)
    du, dv, vth, rv, v_init = 1000, 300, 20000, -1234, 77
    s, v, u = run_lava_lif(a.T, ResetLIF, du=du, dv=dv, vth=vth, bias_mant=bias_mant, bias_exp=bias_exp, reset=reset,
                           reset_value=rv, v_init=v_init, reset_interval=interval, reset_offset=1)
    bias = bias_mant << bias_exp
    S, V, U = [], [], []
    for start in range(0, T, interval):  # time_step % 10 == 1: state restored at steps 1, 11, 21
        s_, v_, u_ = ref_run(a[start:start + interval], du, dv, vth, bias, reset, rv, v_init)
        S.append(s_), V.append(v_), U.append(u_)
    np.testing.assert_array_equal(s, np.concatenate(S))
    np.testing.assert_array_equal(v, np.concatenate(V))
    np.testing.assert_array_equal(u, np.concatenate(U))
    assert 0 < s.mean() < 1 and (np.abs(u) > 1 << 22).any()
