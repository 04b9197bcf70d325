"""passes/quantize/domains.py and the emission of its scales (passes/quantize/__init__.py): the
integer units of exact values.  A negative constant is an integer negation (``s − f(s)``), a sum of
exact values of different scales is taken in their common unit (spikes + a 3×3 average pool of
spikes: Δ = 1/9, the spikes × 9), a domain that adds an exact value is anchored at its unit; the
synapse before a negation keeps a weight exponent >= 0; what remains refused names the module.

Positive cases: the integer model's spikes equal the float model's in every layer (exact counts,
no flips), ONNX equals intref bit for bit, and one tiny model runs in Lava bit-exact with intref
(the negation and the × 9 folded into the weights of the connections through them)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron
from torch import nn

import spikec
from spikec import ir
from spikec.compiler import compile_graph
from spikec.errors import UnsupportedError
from spikec.passes.quantize.domains import common_unit, integer_multiple
from spikec.passes.quantize.weights import folded_before_floor
from spikec.targets.intref.executor import run_int


def lif(**kw):
    return neuron.LIFNode(step_mode="m", **kw)


def _init(model: nn.Module, lo: float = -0.3, hi: float = 1.0, bias: float = 0.1, seed: int = 0) -> nn.Module:
    """Mostly positive weights: every neuron layer fires, so the paths under test carry spikes."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * (hi - lo) + lo)
                if m.bias is not None:
                    m.bias.fill_(bias)
    return model.eval()


def _frames(shape, t=4, batch=3, seed=0):
    return np.random.default_rng(seed).uniform(0, 2, (t, batch, *shape)).astype(np.float32)


def _quantized(model, x, input_shape):
    g = spikec.trace(model, input_shape=input_shape, time_steps=x.shape[0])
    return compile_graph(g, "intref", input_range=(0, 2)).quantized


def _check_exact(model, x, input_shape, target="onnx", firing=()):
    """The target equals intref bit for bit, every flip of the integer spikes against the float
    spikes is within its layer's quantization error bound (synapse weights round; exact paths do
    not flip), and the layers named in ``firing`` do fire (the path under test is exercised)."""
    rep = spikec.verify(model, target, x, input_shape=input_shape, time_steps=x.shape[0], input_range=(0, 2))
    assert rep.exact, rep.check
    layers = {r.layer: r for r in rep.layers}
    assert all(r.float_vs_int >= 0.98 and r.unexplained_flips == 0 for r in rep.layers), \
        [(r.layer, r.float_vs_int, r.unexplained_flips) for r in rep.layers]
    for name in firing:
        assert layers[name].rate > 0, f"{name} never fires: the test does not exercise its path"
    return rep


# ---- the units --------------------------------------------------------------------------------------

def test_common_unit_is_the_largest_unit_both_scales_are_integer_multiples_of():
    assert math.isclose(common_unit(1.0, 1 / 9), 1 / 9)
    assert math.isclose(common_unit(1 / 4, 1 / 9), 1 / 36)
    assert math.isclose(common_unit(1 / 9, 1 / 4), 1 / 36)
    assert common_unit(1.0, 0.25) == 0.25 and common_unit(2.0 ** -30, 1.0) == 2.0 ** -30
    assert math.isclose(common_unit(1.0, 2 / 255), 1 / 255)  # an input range (0, 2) against spikes
    assert common_unit(1.0, math.sqrt(0.5)) is None and common_unit(1.0, math.pi) is None


def test_integer_multiple_is_an_odd_integer_and_a_shift():
    assert integer_multiple(9.0) == (9, 0)
    assert integer_multiple(9 / 32) == (9, -5)
    assert integer_multiple(18.0) == (9, 1)
    assert integer_multiple(4.0) == (1, 2) and integer_multiple(0.25) == (1, -2)
    assert integer_multiple(1 / 9) is None  # a division by 9: no integer form
    assert integer_multiple(math.sqrt(2)) is None


# ---- spikes + an average pool of spikes (scales 1 and 1/9) -------------------------------------------

class PooledAdd(nn.Module):
    """``p + lif(conv(p))`` with ``p`` a 3×3 average pool of spikes, read by the model output."""

    def __init__(self):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.conv = nn.Conv2d(2, 2, 1)
        self.lif = lif(tau=2.0, v_threshold=0.2)

    def forward(self, x):
        t, b = x.shape[:2]
        p = self.pool(self.enc(x).flatten(0, 1))
        return (p + self.lif(self.conv(p).reshape(t, b, 2, 4, 4)).flatten(0, 1)).reshape(t, b, -1)


def test_spikes_plus_a_pool_of_spikes_sum_exactly_at_one_ninth():
    model, x = _init(PooledAdd()), _frames((2, 4, 4))
    q = _quantized(model, x, (2, 4, 4))
    times = [n for n in q.nodes if isinstance(n, ir.ScaleNode)]
    assert [(n.inputs, n.factor) for n in times] == [(("lif",), 9.0)]  # the spikes, in units of 1/9
    dq = next(n for n in q.nodes if isinstance(n, ir.DequantizeNode))
    assert math.isclose(dq.scale, 1 / 9)
    rep = _check_exact(model, x, (2, 4, 4), firing=["lif"])
    assert {r.layer: r.float_vs_int for r in rep.layers}["enc"] == 1.0
    # the output is exact: the 3x3 average of the integer model's own input spikes plus its own lif spikes
    run = run_int(q, x, record=True)
    enc, spikes = (run.values[v].double() for v in ("enc", "lif"))
    pooled = torch.nn.functional.avg_pool2d(enc.flatten(0, 1), 3, 1, 1).reshape(spikes.shape)
    np.testing.assert_allclose(run.real_outputs()[0].numpy(), (pooled + spikes).flatten(2).numpy(), rtol=0, atol=1e-12)


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.lif = lif(tau=2.0, v_threshold=0.3)

    def forward(self, x):
        t, b = x.shape[:2]
        return x + self.lif(self.conv(x.flatten(0, 1)).reshape(t, b, *x.shape[2:]))


class Pool(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 2, 1)

    def forward(self, x):
        y = self.pool(x.flatten(0, 1))
        return y.reshape(*x.shape[:2], *y.shape[1:])


class Blocks(nn.Module):
    """The random-graph tests' form: a residual ``x + lif(conv(x))`` after AvgPool2d(3, 2, 1) of
    spikes (the sum's module is ``blocks.1``), then a Linear and a neuron reading the sum."""

    def __init__(self):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.blocks = nn.ModuleList([Pool(), Residual(2)])
        self.head = nn.Linear(2 * 3 * 3, 3)
        self.out = lif(tau=2.0, v_threshold=0.3)

    def forward(self, x):
        x = self.enc(x)
        for b in self.blocks:
            x = b(x)
        return self.out(self.head(x.flatten(2)))


def test_pooled_residual_in_a_block_feeds_a_synapse_exactly():
    model, x = _init(Blocks(), lo=-0.2, hi=0.6), _frames((2, 6, 6))
    q = _quantized(model, x, (2, 6, 6))
    assert any(isinstance(n, ir.ScaleNode) and n.factor == 9.0 and n.source == "blocks.1" for n in q.nodes)
    _check_exact(model, x, (2, 6, 6), firing=["blocks.1.lif", "out"])


class ResReal(PooledAdd):
    """``lif(conv(p) + p)``: a synapse domain that adds an exact value of scale 1/9."""

    def forward(self, x):
        t, b = x.shape[:2]
        p = self.pool(self.enc(x).flatten(0, 1))
        return self.lif((self.conv(p) + p).reshape(t, b, 2, 4, 4))


def test_a_domain_adding_a_pool_of_spikes_is_a_power_of_two_times_one_ninth():
    model, x = _init(ResReal()), _frames((2, 4, 4))
    g = spikec.trace(model, input_shape=(2, 4, 4), time_steps=4)
    res = compile_graph(g, "intref", input_range=(0, 2))
    delta_a = res.quant_report.neurons[-1].delta_v * 64  # the neuron's input units
    k = math.log2(delta_a * 9)
    assert math.isclose(k, round(k), abs_tol=1e-9)  # Δa = 2^k / 9: the pool enters by a shift
    assert not any(isinstance(n, ir.ScaleNode) for n in res.quantized.nodes)
    _check_exact(model, x, (2, 4, 4), firing=["lif"])


# ---- negations: s − f(s), a(s) − b(s) ----------------------------------------------------------------

class SpikeDifference(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.fc = nn.Linear(4, 4)
        self.lif = lif(tau=2.0, v_threshold=0.3)
        self.head = nn.Linear(4, 3)
        self.out = lif(tau=2.0, v_threshold=0.3)

    def forward(self, x):
        s = self.enc(x)
        return self.out(self.head(s - self.lif(self.fc(s))))


def test_a_spike_difference_is_an_integer_negation():
    model, x = _init(SpikeDifference()), _frames((4,))
    q = _quantized(model, x, (4,))
    neg = [n for n in q.nodes if isinstance(n, ir.ScaleNode)]
    assert [(n.inputs, n.factor) for n in neg] == [(("lif",), -1.0)]
    assert q.types[neg[0].name].kind is ir.Kind.INT
    _check_exact(model, x, (4,), firing=["lif", "out"])


class SynapseDifference(nn.Module):
    def __init__(self, v_threshold=0.3):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        self.lif = lif(tau=2.0, v_threshold=v_threshold)

    def forward(self, x):
        s = self.enc(x)
        return self.lif(self.a(s) - self.b(s))


def test_a_difference_of_synapse_outputs_is_exact():
    model, x = _init(SynapseDifference(), lo=-0.5, hi=0.5, bias=0.2), _frames((4,))
    model.a.bias.data.fill_(0.5)
    model.b.bias.data.fill_(0.0)  # a constant current of 0.5 through a − b
    q = _quantized(model, x, (4,))
    assert [n.inputs for n in q.nodes if isinstance(n, ir.ScaleNode)] == [("b",)]
    _check_exact(model, x, (4,), firing=["lif"])


def test_the_synapse_before_a_negation_keeps_a_non_negative_exponent():
    """Lava folds the negation into the weights, before the exponent's floor: −⌊y/2^k⌋ ≠ ⌊−y/2^k⌋, so
    the negated synapse keeps e >= 0 where the other one, alike, floors (a huge threshold makes the
    current scale fine, the weights coarse)."""
    model = _init(SynapseDifference(v_threshold=1000.0), lo=0.2, hi=0.5)
    g = spikec.trace(model, input_shape=(4,), time_steps=4)
    opt = compile_graph(g, "intref", input_range=(0, 2), integer=False).optimized
    assert folded_before_floor(opt, "b") and not folded_before_floor(opt, "a")
    exps = {s.name: s.weight_exp for s in compile_graph(g, "intref", input_range=(0, 2)).quant_report.synapses}
    assert exps["a"] < 0 and exps["b"] == 0


class BiasedHead(nn.Module):
    """``out(head(s − lif(fc(s))))`` (or ``out(head(s))``) with a large constant current into ``out``:
    its coarse current scale would give ``head`` a negative weight exponent."""

    def __init__(self, difference=True):
        super().__init__()
        self.difference = difference
        self.enc = lif(tau=2.0)
        self.fc = nn.Linear(4, 4)
        self.lif = lif(tau=2.0, v_threshold=0.3)
        self.head = nn.Linear(4, 3)
        self.out = lif(tau=2.0, v_threshold=50.0)

    def forward(self, x):
        s = self.enc(x)
        return self.out(self.head(s - self.lif(self.fc(s)) if self.difference else s))


def _biased_head(difference):
    model = _init(BiasedHead(difference), lo=-0.3, hi=1.0)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([100.0, 99.7, 99.3]))
    return model


def test_a_synapse_reading_a_sum_keeps_a_non_negative_exponent_and_lava_is_exact():
    """Lava reads the two terms of ``s − lif(fc(s))`` through two connections, each flooring its own
    part for a negative exponent; the integer synapse floors the sum once.  So ``head`` keeps e >= 0
    when it reads the sum (with e = −2, as it gets reading ``s`` alone, Lava's ``out`` disagrees with
    intref in about one spike in ten)."""
    x = _frames((4,), t=8)
    exps = {}
    for difference in (False, True):
        g = spikec.trace(_biased_head(difference), input_shape=(4,), time_steps=8)
        exps[difference] = {s.name: s.weight_exp for s in compile_graph(g, "lava", input_range=(0, 2)).quant_report.synapses}
    assert exps[False]["head"] < 0 and exps[True]["head"] == 0
    rep = _check_exact(_biased_head(True), x, (4,), target="lava", firing=["lif", "out"])
    assert all(r.target == 1.0 for r in rep.layers)


# ---- Lava: the × 9 and the negation folded into connection weights -----------------------------------

class PooledDifference(nn.Module):
    """``z = p + lif1(conv1(p))`` (× 9), then ``z − lif2(conv2(z))`` (× −9), read by a synapse."""

    def __init__(self):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.pool = nn.AvgPool2d(3, 1, 1)
        self.conv1 = nn.Conv2d(2, 2, 1)
        self.lif1 = lif(tau=2.0, v_threshold=0.2)
        self.conv2 = nn.Conv2d(2, 2, 1)
        self.lif2 = lif(tau=2.0, v_threshold=0.2)
        self.conv3 = nn.Conv2d(2, 3, 1)
        self.lif3 = lif(tau=2.0, v_threshold=0.1)

    def forward(self, x):
        t, b = x.shape[:2]
        p = self.pool(self.enc(x).flatten(0, 1))
        z = p + self.lif1(self.conv1(p).reshape(t, b, 2, 4, 4)).flatten(0, 1)
        d = z - self.lif2(self.conv2(z).reshape(t, b, 2, 4, 4)).flatten(0, 1)
        return self.lif3(self.conv3(d).reshape(t, b, 3, 4, 4))


def test_lava_folds_integer_multiples_and_negations_into_connections():
    model, x = _init(PooledDifference(), lo=0.0, hi=1.0), _frames((2, 4, 4), batch=2)
    q = _quantized(model, x, (2, 4, 4))
    assert sorted(n.factor for n in q.nodes if isinstance(n, ir.ScaleNode)) == [-1.0, 9.0, 9.0]
    rep = _check_exact(model, x, (2, 4, 4), target="lava", firing=["lif1", "lif2", "lif3"])
    assert all(r.target == 1.0 for r in rep.layers)


def test_lava_runs_a_multiple_of_a_floored_value_in_a_region():
    """No folded connection holds it (Lava applies the exponent after the weights): a region process runs it."""
    from spikec.targets.intref.executor import run_int
    from spikec.targets.lava import build_netspec
    from spikec.targets.lava.runner import run_lava

    nodes = [ir.InputNode("x", (), features=(3,), time=2, layout="sequence"),
             ir.QuantizeInputNode("q", ("x",), scale=1 / 255),
             ir.SynapseNode("syn", ("q",), "fc", layout="linear", weight=np.full((4, 3), 2, np.int32), weight_exp=-2),
             ir.ScaleNode("neg", ("syn",), "fc", factor=-1.0),
             ir.LoihiNeuronNode("n", ("neg",), "lif", dv=2048, vth=1),
             ir.DequantizeNode("dq", ("n",)), ir.OutputNode("o", ("dq",))]
    g = ir.Graph(nodes).validate()
    spec = build_netspec(g)
    assert [r.nodes for r in spec.regions.values()] == [["neg"]]
    x = np.random.default_rng(0).random((2, 4, 3), dtype=np.float32)
    assert torch.equal(run_lava(spec, x).values["n"], run_int(g, x, record=True).values["n"])


# ---- what remains refused names the module -------------------------------------------------------------

class Gain(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("g", torch.tensor([1.0, -2.0, 3.0, 0.5]))

    def forward(self, x):
        return x * self.g


class PerChannel(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = lif(tau=2.0)
        self.gain = Gain()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.gain(self.enc(x)))


class Irrational(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = lif(tau=2.0)
        self.b = lif(tau=4.0)

    def forward(self, x):
        return self.a(x) * math.sqrt(0.5) + self.b(x)


@pytest.mark.parametrize("model,modules,reason", [
    (PerChannel, ["'gain'"], "per-channel factor"),
    (Irrational, ["'a'", "'b'"], "not a ratio of integers"),  # a top-level sum: the modules it reads
])
def test_refusals_name_the_module_and_no_ir_node(model, modules, reason):
    g = spikec.trace(model().eval(), input_shape=(4,), time_steps=2)
    with pytest.raises(UnsupportedError) as e:
        compile_graph(g, "intref", input_range=(0, 2))
    msg = str(e.value)
    assert reason in msg and all(m in msg for m in modules), msg
    assert not re.search(r"[\w.]+:[a-z_]+\d*\b", msg.split(": ", 1)[1]), msg  # no qualified IR node ("gain:scale")
    assert "power of two" not in msg and "\n" not in msg
