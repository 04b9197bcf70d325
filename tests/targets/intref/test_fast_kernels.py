"""intref's fast paths against its references: int8 / float products == int64 products, the
time-batched memoryless LIF == :func:`spikec.loihi.lif_step` step by step, and whole models run
with every fast path == run with none (values and membranes, bit for bit)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import INTREF_FAMILIES

from spikec import ir, loihi
from spikec.passes.pipelines import run_pipeline
from spikec.passes.quantize import quantize
from spikec.targets.intref import int8
from spikec.targets.intref import kernels as K
from spikec.targets.intref.executor import run_int


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _spy(monkeypatch, name):
    """Count the calls of int8.<name> that returned a result (the int8 path fired)."""
    calls = []
    real = getattr(int8, name)

    def spy(*a, **kw):
        y = real(*a, **kw)
        calls.append(y is not None)
        return y

    monkeypatch.setattr(int8, name, spy)
    return calls


# ---- int8 products ---------------------------------------------------------------------------------
def test_int8_split_finds_the_power_of_two():
    mixed = torch.tensor([[-256, 254, 0, 2]])  # Lava MIXED mode: even values
    w = int8.split(mixed)
    assert w is not None and w.scales.tolist() == [2.0] and w.peak == 128
    assert torch.equal(w.w8.long() * 2, mixed)
    shifted = int8.split(mixed << 3)  # a folded weight exponent
    assert shifted.scales.tolist() == [16.0] and torch.equal(shifted.w8, w.w8)
    assert int8.split(torch.tensor([[255, 1]])) is None, "odd weights beyond int8 (Lava EXC mode) have no int8 form"


def test_int8_split_gives_each_channel_its_power_of_two():
    """A synapse whose channels have weight exponents of their own (channel 1 three above channel 0)."""
    w = torch.tensor([[-256, 254, 0, 2], [-256 << 3, 254 << 3, 0, 2 << 3], [3, -5, 7, 0]])
    s = int8.split(w)
    assert s is not None and s.scales.tolist() == [2.0, 16.0, 1.0]
    assert torch.equal(s.w8.long() * s.scales.long()[:, None], w)
    assert int8.split(torch.tensor([[2, 4], [255, 1]])) is None, "one channel without an int8 form: none"


def test_int8_usable_refuses_what_it_cannot_prove():
    w = int8.split(torch.tensor([[-256, 254]]))
    assert int8.usable(0, 1, w)  # spikes
    assert int8.usable(0, 127, w)  # counts: 2 · 127 · 128 <= 32767
    assert not int8.usable(-1, 1, w), "signed inputs are not u8"
    assert not int8.usable(0, 200, w), "u8 · s8 pairs could saturate int16 on CPUs without VNNI"
    assert not int8.usable(0, 1, None)


@pytest.mark.parametrize("case", [
    dict(shape=(6, 16, 9, 9), w=(24, 16, 3, 3), stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, xmax=1),
    dict(shape=(6, 16, 9, 9), w=(16, 4, 3, 3), stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=4, xmax=5),
    dict(shape=(5, 32, 20), w=(40, 32, 1), stride=[1], padding=[0], dilation=[1], groups=1, xmax=3),
    dict(shape=(5, 32, 20), w=(8, 32, 3), stride=[1], padding=[2], dilation=[2], groups=1, xmax=127),
])
def test_int8_convolution_equals_int64(monkeypatch, case):
    g = _gen(0)
    x = torch.randint(0, case["xmax"] + 1, case["shape"], generator=g)
    w = (torch.randint(-128, 128, case["w"], generator=g) * 2) << 2  # even mantissas, exponent 2 folded in
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    calls = _spy(monkeypatch, "conv")
    fast = K.exact_conv(x.to(torch.uint8) if case["xmax"] <= 1 else x, K.Weights(w), *args)
    fn = F.conv1d if w.dim() == 3 else F.conv2d
    assert calls == [True], "the int8 kernel ran"
    assert fast.dtype == torch.int32
    assert torch.equal(fast.long(), fn(x, w, None, *args))


def test_int8_linear_near_the_float32_limit_equals_int64(monkeypatch):
    """Partial sums up to ~2^23.99 (< 2^24): still exact through int32 and the float32 output."""
    x = torch.full((3, 512), 127)
    w = torch.full((4, 512), -128) * 2
    w[1] = 254
    assert (1 << 23) < 127 * 256 * 512 < K.EXACT_F32
    calls = _spy(monkeypatch, "linear")
    fast = K.exact_linear(x, K.Weights(w))
    assert calls == [True]
    assert torch.equal(fast.long(), x @ w.t())


def test_products_outside_int8_use_float_then_int64(monkeypatch):
    g = _gen(1)
    w = torch.randint(-255, 256, (8, 12), generator=g)  # odd weights: no int8 form
    calls = _spy(monkeypatch, "linear")
    for x in (torch.randint(-300, 300, (5, 12), generator=g), torch.randint(0, 2, (5, 12), generator=g).to(torch.uint8)):
        assert torch.equal(K.exact_linear(x, w).long(), x.long() @ w.t())
    huge = torch.full((2, 12), 1 << 45)  # bound beyond 2^53: the int64 kernel
    assert torch.equal(K.exact_linear(huge, w), huge @ w.t())
    assert calls == []
    monkeypatch.setattr(int8, "usable", lambda *a: True)
    monkeypatch.setitem(int8._state, "available", True)

    def refuse(*a):
        raise RuntimeError("no int8 kernel here")

    monkeypatch.setattr(torch.ops.onednn, "qlinear_pointwise", refuse)  # a torch / CPU that refuses the op
    x = torch.randint(0, 2, (5, 12), generator=g)
    assert torch.equal(K.exact_linear(x, K.Weights(w * 0 + 2)).long(), x @ (w * 0 + 2).t())
    assert not int8._state["available"], "a refused call switches the int8 path off (float kernels instead)"


def test_values_in_channels_last_memory_reduce_and_add_like_contiguous():
    x = torch.randint(-50, 50, (4, 6, 5, 7), generator=_gen(2)).to(torch.int32).contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous() and K.bounds(x) == (int(x.min()), int(x.max()))
    b = torch.randint(-9, 9, (6, 5, 7), generator=_gen(3)).to(torch.int32)
    lb = K.layout_like(b, x)
    assert torch.equal(lb, b) and lb.stride() != b.stride() and torch.equal(x + lb, x + b)


# ---- the memoryless LIF ----------------------------------------------------------------------------
LIF_CASES = [
    # dv, vth, reset, reset_value, v_init, a range, bias range
    (2048, 100, "zero", 0, 0, (-300, 600), (-4000, 4000)),  # Spikformer's LIF: int32, no wrap, no saturation
    (2048, 100, "zero", 0, 0, (-300, 600), (0, 0)),  # no bias
    (0, 3, "zero", 0, 0, (-200, 400), (-100, 100)),  # IF neuron (no leak)
    (1000, 50, "soft", 0, 77, (-500, 900), (-500, 500)),  # a decay that is not a power of two: int64 state
    (4095, 10, "value", -33, -5, (-100, 200), (-50, 50)),  # full decay, reset to a value
    (2048, 60000, "zero", 0, 0, (-(1 << 17), 1 << 17), (-(4095 << 7), 4095 << 7)),  # v saturates at ±(2^23 − 1)
    (512, 100, "zero", 0, 0, (-(1 << 18), 1 << 18), (0, 0)),  # u wraps at 2^23
    (2048, 100, "zero", 0, 0, (-(1 << 26), 1 << 26), (0, 0)),  # |a << 6| beyond 2^31: one wrap leaves |u| > 2^23
]


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_max_pool_of_channels_last_values_equals_contiguous(dtype):
    """int8 convolutions return channels-last tensors; torch's 8-bit max pool refuses that layout."""
    x = torch.randint(0, 3, (4, 8, 9, 9), generator=torch.Generator().manual_seed(0)).to(dtype)
    want = F.max_pool2d(x.long(), 3, 2, 1)
    got = K.max_pool(x.contiguous(memory_format=torch.channels_last), [3, 3], [2, 2], [1, 1], [1, 1], False)
    assert got.dtype == dtype and torch.equal(got.long(), want)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int32, torch.int64])
def test_one_dimensional_max_pool_of_integers(dtype):
    """torch 2.13 has no integer max_pool1d kernel: pooled as 2-d over a height of 1."""
    x = torch.randint(-3, 4, (3, 4, 11), generator=torch.Generator().manual_seed(1))
    x = x.clamp(min=0).to(dtype) if dtype == torch.uint8 else x.to(dtype)
    want = F.max_pool1d(x.double(), 3, 2, 1, 2, True)
    got = K.max_pool(x, [3], [2], [1], [2], True)
    assert got.dtype == dtype and torch.equal(got.double(), want)


@pytest.mark.parametrize("case", LIF_CASES)
@pytest.mark.parametrize("expanded", [False, True])
def test_memoryless_lif_equals_lif_step_by_step(case, expanded):
    dv, vth, reset, reset_value, v_init, (alo, ahi), (blo, bhi) = case
    g = _gen(dv + vth)
    T, shape = 6, (5, 3, 4)
    a = torch.randint(alo, ahi + 1, (1 if expanded else T, *shape), generator=g)
    a = a.expand(T, *shape) if expanded else a  # a time-invariant drive (direct encoding), time stride 0
    bias = torch.randint(blo, bhi + 1, shape[1:], generator=g)
    args = (loihi.MEMORYLESS_DU, dv, vth)
    kw = dict(reset=reset, reset_value=reset_value, v_init=v_init)
    ref_s, ref_v, ref_u = K.lif_steps(a, *args, bias, record=True, **kw)
    assert 0 < int(ref_s.sum()) < ref_s.numel(), "the case spikes, and not everywhere"
    for a_in in (a, a.to(torch.int32)):
        s, v, u = K.lif_run(a_in, *args, bias.to(torch.int32), record=True, **kw)
        assert torch.equal(s, ref_s) and torch.equal(v, ref_v) and torch.equal(u, ref_u)
        assert s.dtype == torch.uint8 and v.dtype == u.dtype == torch.int64
        assert torch.equal(K.lif_run(a_in, *args, bias, **kw), ref_s)


def test_membrane_bound_decides_saturation():
    assert K.v_peak(1000, 2048, 0, 0, 50) <= 2000, "halving each step: the membrane stays below 2 · drive"
    assert K.v_peak(1000, 0, 0, 0, 50) == 50_000, "no leak: it grows by the drive each step"
    assert K.v_peak(1 << 23, 2048, 0, 0, 4) > K.V_LIMIT


# ---- whole models ----------------------------------------------------------------------------------
def _reference_paths(monkeypatch):
    """Every fast path off: int64 products, the step-by-step int64 LIF."""
    monkeypatch.setattr(K, "_exact_dtype", lambda *a: None)
    monkeypatch.setattr(K, "_lif_memoryless", lambda a, bounds, *rest: K.lif_steps(a, loihi.MEMORYLESS_DU, *rest))


@pytest.mark.parametrize("family", INTREF_FAMILIES)
def test_models_with_fast_paths_equal_the_reference_paths(zoo_models, family, monkeypatch):
    model, x, g = zoo_models[family]
    q = quantize(run_pipeline(g, "intref").graph, input_range=(0, 2)).graph
    convs, linears = _spy(monkeypatch, "conv"), _spy(monkeypatch, "linear")
    fast = run_int(q, x, record=True)
    _reference_paths(monkeypatch)
    slow = run_int(q, x, record=True)
    neurons = [n.name for n in q.nodes if isinstance(n, ir.LoihiNeuronNode)]
    assert neurons and int(fast.values[neurons[0]].sum()) > 0
    assert any(convs + linears), "the int8 kernels ran"
    for k, v in slow.values.items():
        assert torch.equal(fast.values[k], v), k
    for k, (v, u) in slow.membranes.items():
        assert torch.equal(fast.membranes[k][0], v) and torch.equal(fast.membranes[k][1], u), k
    for a, b in zip(fast.outputs, slow.outputs):
        assert torch.equal(a, b)
