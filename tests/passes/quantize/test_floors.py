"""The floors of negative weight exponents: their width (floor_span), the mean the neuron's bias
adds back (floor compensation), and the verification bound's account of both."""

import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import nn

from spikec import ir, loihi
from spikec.passes.quantize.weights import expected_floor_error, floor_span
from spikec.targets.intref.executor import run_int
from spikec.verification.bounds import layer_bounds


def test_floor_span_counts_the_mantissas_shared_trailing_zeros():
    """acc = Σ w·x is a multiple of 2^g (g: the trailing zero bits all a channel's mantissas share),
    so ⌊acc / 2^k⌋ errs by at most 1 − 2^(g − k) output units, by (1 − 2^(g − k)) / 2 on average
    for uniform remainders; exponents >= 0 and channels that are all zero are exact."""
    m = np.array([[2, -4, 6], [4, 8, -12], [1, 2, 3], [0, 0, 0], [16, -32, 48]])
    np.testing.assert_allclose(floor_span(m, -3), [1 - 2 ** -2, 1 - 2 ** -1, 1 - 2 ** -3, 0.0, 0.0])
    np.testing.assert_allclose(expected_floor_error(m, -3), -0.5 * floor_span(m, -3))
    np.testing.assert_array_equal(floor_span(m, 0), 0.0)
    np.testing.assert_array_equal(floor_span(m, 2), 0.0)
    # the bound on the error is attained: the largest remainder of a multiple of 2^g below 2^k
    acc = np.arange(0, 64, 2)  # multiples of 2 (g = 1), k = 3
    err = np.floor(acc / 8) - acc / 8
    assert err.min() == -floor_span(np.array([[2]]), -3)[0] and err.max() == 0.0
    assert np.isclose(err.mean(), expected_floor_error(np.array([[2]]), -3)[0])


class Wide(nn.Module):
    """A wide linear layer (fan-in 1024) into IF neurons: its weights need a negative exponent."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1024, 16)
        self.lif = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x):  # [T, B, 1, 32, 32]
        return self.lif(self.fc(x.flatten(2)))


def _compile(model):
    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets import get_target

    return compile_graph(trace(model.eval(), (1, 32, 32), time_steps=2), get_target("intref"))


def test_the_bias_adds_back_the_floors_mean_and_the_current_error_is_zero_mean():
    """The integer current ⌊acc / 2^k⌋ is low by (s/2)·Δa on average on random inputs (the uniform
    remainder assumption holds there), and the neuron's bias adds exactly that back (to its 13-bit
    rounding): the mean floor error of the drive is ~0 instead of −s/2 units."""
    torch.manual_seed(0)
    res = _compile(Wide())
    q = res.quantized
    syn = next(n for n in q.nodes if isinstance(n, ir.SynapseNode))
    lif = next(n for n in q.nodes if isinstance(n, ir.LoihiNeuronNode))
    assert syn.weight_exp < 0  # the case under test
    srep = next(s for s in res.quant_report.synapses if s.name == syn.name)
    nrep = next(n for n in res.quant_report.neurons if n.name == lif.name)
    span = floor_span(syn.weight, syn.weight_exp)
    assert np.all(span > 0.5)
    np.testing.assert_allclose(nrep.floor_compensation, 0.5 * span * srep.delta_out, rtol=1e-12)

    x = np.random.default_rng(0).random((2, 512, 1, 32, 32), dtype=np.float32)
    r = run_int(q, x, record=True)
    levels = r.values[syn.inputs[0]].double()  # the synapse's integer input
    exact = (levels.flatten(2) @ torch.from_numpy(syn.weight.astype(np.float64)).T) * 2.0 ** syn.weight_exp
    floor_err = (r.values[syn.name].double() - exact).numpy()  # in units Δa, in [−s, 0]
    assert floor_err.min() >= -span.max() - 1e-9 and floor_err.max() <= 1e-9
    np.testing.assert_allclose(floor_err.mean(axis=(0, 1)), -0.5 * span, atol=0.05)
    # the bias: the synapse bias (X0) plus the floors' mean, in membrane units
    dvv = nrep.delta_v
    bias = loihi.bias_value(np.broadcast_to(lif.bias_mant, span.shape), np.broadcast_to(lif.bias_exp, span.shape)) * dvv
    x0 = res.optimized[syn.name].bias.astype(np.float64)
    added = (bias - x0) / srep.delta_out  # what the bias adds beyond X0, in units Δa
    np.testing.assert_allclose(added, 0.5 * span, atol=1.0 / (1 << loihi.CURRENT_SHIFT))
    assert abs(float((floor_err + added).mean())) < 0.02  # zero-mean drive (was −s/2 ≈ −0.4 units)


def test_the_bound_charges_half_the_floor_once_compensated():
    """The verification bound's current term for a floor the bias compensates is ε + max(S − C, C)
    (C = S/2: S/2), not ε + S; the rest of the bound is unchanged."""
    torch.manual_seed(0)
    res = _compile(Wide())
    b = next(iter(layer_bounds(res.optimized, res.quantized, res.quant_report).values()))
    srep = res.quant_report.synapses[0]
    syn = next(n for n in res.quantized.nodes if isinstance(n, ir.SynapseNode))
    half = 0.5 * float(np.max(floor_span(syn.weight, syn.weight_exp))) * srep.delta_out
    assert np.isclose(b.terms["floors"], half, rtol=1e-9)


class Difference(nn.Module):
    """l2 reads fa(s) − fb(s): a floored term added and one subtracted (negations hold exponent 0)."""

    def __init__(self):
        super().__init__()
        self.f1, self.l1 = nn.Linear(64, 1024), neuron.IFNode(v_threshold=0.3, step_mode="m")
        self.fa, self.fb = nn.Linear(1024, 16, bias=False), nn.Linear(1024, 16, bias=False)
        self.l2 = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x):
        y = self.l1(self.f1(x))
        return self.l2(self.fa(y) - self.fb(y))


class NegatedPool(nn.Module):
    """l2 reads −maxpool(ca(s)): a floored term through a max pool, then negated."""

    def __init__(self):
        super().__init__()
        self.c1, self.l1 = nn.Conv2d(3, 64, 3, padding=1), neuron.IFNode(v_threshold=0.5, step_mode="m")
        self.ca, self.pool = nn.Conv2d(64, 16, 3, padding=1, bias=False), nn.MaxPool2d(2)
        self.l2 = neuron.IFNode(v_threshold=0.5, step_mode="m")

    def forward(self, x):  # [B, 3, 16, 16]
        x = x.unsqueeze(0).repeat(4, 1, 1, 1, 1)
        y = self.l1(self.c1(x.flatten(0, 1)).unflatten(0, (4, -1)))
        p = self.pool(self.ca(y.flatten(0, 1))).unflatten(0, (4, -1))
        return self.l2(0.5 - p)


def _compensation_of(model, shape, time_steps, floored: str, sign: float):
    from spikec.compiler import compile_graph
    from spikec.frontend import trace

    torch.manual_seed(0)
    res = compile_graph(trace(model.eval(), shape, time_steps=time_steps), "intref", input_range=(0, 2))
    syn = res.quantized[floored]
    assert syn.weight_exp < 0  # the case under test
    d_out = next(s for s in res.quant_report.synapses if s.name == floored).delta_out
    comp = np.asarray(next(n for n in res.quant_report.neurons if n.name == "l2").floor_compensation)
    want = sign * 0.5 * floor_span(syn.weight, syn.weight_exp) * d_out  # per channel
    assert np.any(want != 0)
    np.testing.assert_allclose(comp, want.reshape(want.shape + (1,) * (comp.ndim - 1)) * np.ones_like(comp), rtol=1e-9)


def test_a_subtracted_sum_compensates_only_the_floored_term_it_adds():
    _compensation_of(Difference(), (64,), 4, "fa", +1.0)


def test_a_floor_through_a_max_pool_then_negated_is_compensated_with_its_sign():
    _compensation_of(NegatedPool(), (3, 16, 16), None, "ca", -1.0)
