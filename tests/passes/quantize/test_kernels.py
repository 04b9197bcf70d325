"""The operations that are not spike-driven in the quantizer and on intref: integer kernels (layer
norm, softmax, sigmoid, GELU, ReLU) and products of two real values, their scales, their reported
error bounds, and how close intref runs them to the float model."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn
from torch.nn import functional as F

import spikec
from spikec import ir
from spikec.errors import UnsupportedError
from spikec.passes.quantize.kernels import GELU_TANH_GAP, REAL_BITS
from spikec.targets.intref.executor import run_int
from spikec.verification.bounds import current_errors


class Head(nn.Module):
    """x -> linear -> one op -> host output (no neuron: the op's integer error reaches the output)."""

    def __init__(self, op):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.norm = nn.LayerNorm(8)
        self.op = op

    def forward(self, x):  # [T, B, 1, 4, 4]
        y = self.fc(x.flatten(2)) * 4
        return {"sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, -1), "gelu": F.gelu,
                "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"), "relu": F.relu, "layer_norm": self.norm,
                "square": lambda z: z * z}[self.op](y)


def _compile(model, target="intref", **kw):
    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets import get_target

    return compile_graph(trace(model.eval(), (1, 4, 4), time_steps=2), get_target(target), **kw)


@pytest.mark.parametrize("op", ["sigmoid", "softmax", "gelu", "gelu_tanh", "relu", "layer_norm", "square"])
def test_intref_output_within_the_propagated_error_bound(op):
    """intref's output differs from the float model's by at most the bound that verification
    propagates (synapse rounding, the kernel's slope times its input error, the kernel's own bound,
    the output's rounding), on random inputs over the input range; the bound is finite except after
    a layer norm (its slope is unbounded), where the kernel's own accuracy is checked instead."""
    torch.manual_seed(0)
    model = Head(op)
    if op == "layer_norm":
        with torch.no_grad():
            model.norm.weight.uniform_(0.5, 1.5)
            model.norm.bias.uniform_(-0.5, 0.5)
    res = _compile(model)
    x = np.random.default_rng(1).random((2, 256, 1, 4, 4), dtype=np.float32)
    got = np.asarray(spikec.emit(res).run(x), dtype=np.float64)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).double().numpy()
    err = np.abs(got - want).max()
    bound = float(current_errors(res.optimized, res.quantized, res.quant_report)[0][res.optimized.outputs[0].name].max())
    out_unit = res.quant_report.scales[res.optimized.outputs[0].inputs[0]]
    if op == "layer_norm":  # the bound is ∞; the kernel itself: within its plan's bound of the float op on its input
        assert bound == np.inf
        node = res.quantized["norm"]
        run = run_int(res.quantized, x, record=True)
        q_in = run.values[node.inputs[0]].double() * node.scale_in
        float_ln = F.layer_norm(q_in, (8,), torch.from_numpy(node.gamma).double(), torch.from_numpy(node.beta).double(),
                                node.eps)
        kernel_err = float((run.values["norm"].double() * node.output_scale - float_ln).abs().max())
        variance = float(q_in.var(-1, unbiased=False).min())
        assert 0 < kernel_err <= node.plan().error_bound(variance), kernel_err
        assert err < 0.1, err  # what the 8-bit weights of fc leave of the normalised rows
    else:
        assert np.isfinite(bound) and err <= bound + out_unit, (err, bound)
    assert err > 0 or op in ("relu", "square")  # an approximation, measured (relu and products are exact here)


def test_report_names_each_approximation_with_its_bound():
    res = _compile(Head("gelu_tanh"))
    q = res.quant_report
    assert q.approximations() == ["GELU"]
    (k,) = q.kernels
    assert k.kernel == "gelu" and "tanh form" in k.note and k.error_bound > GELU_TANH_GAP
    text = "\n".join(q.lines())
    assert "integer approximation of: GELU" in text
    assert _compile(Head("relu")).quant_report.approximations() == []


def test_gelu_tanh_gap_is_measured():
    x = torch.linspace(-12, 12, 1_200_001, dtype=torch.float64)
    gap = float((F.gelu(x) - F.gelu(x, approximate="tanh")).abs().max())
    assert 4.5e-4 < gap <= GELU_TANH_GAP


def test_kernel_inputs_fit_their_bit_budget():
    """The domain feeding a kernel picks a scale at which its bound fits REAL_BITS; the product's
    integers are floored into REAL_BITS too."""
    for op in ("sigmoid", "square"):
        res = _compile(Head(op))
        q = res.quantized
        node = next(n for n in q.nodes if isinstance(n, (ir.IntegerKernelNode, ir.MulNode)))
        from spikec.passes.quantize.bounds import worst_case_bounds

        bounds = worst_case_bounds(res.optimized, 1.0)
        for v in res.optimized[node.name].inputs:
            assert bounds[v] / res.quant_report.scales[v] < 2 ** (REAL_BITS - 1)
        if op == "square":
            assert any(isinstance(n, ir.ShiftNode) and n.shift < 0 for n in q.nodes)


class GatedAttention(nn.Module):
    """STAA-style sigmoid gate (a product of two real values) and float attention (softmax) before a LIF."""

    def __init__(self):
        super().__init__()
        self.fc, self.gate, self.q, self.k = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 8)
        self.lif = neuron.LIFNode(step_mode="m")
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = x.flatten(2)
        u = self.fc(x) * torch.sigmoid(self.gate(x))
        a = torch.softmax(self.q(u).unsqueeze(-1) @ self.k(u).unsqueeze(-2) / 8 ** 0.5, -1)
        z = (a @ u.unsqueeze(-1)).squeeze(-1) + F.relu(u)
        return self.head(self.lif(z * 12))


def test_verify_judges_layers_behind_kernels():
    torch.manual_seed(0)
    model = GatedAttention().eval()
    x = np.random.default_rng(0).random((4, 64, 1, 4, 4), dtype=np.float32)
    r = spikec.verify(model, "intref", x, input_shape=(1, 4, 4), time_steps=4, calib=x)
    (lif,) = r.layers
    assert r.approximations == ["sigmoid", "softmax"]
    assert lif.rate > 0.01 and lif.local_agreement >= 0.99 and lif.unexplained_flips == 0
    assert np.isfinite(lif.error_bound)
    assert r.to_dict()["approximations"] == ["sigmoid", "softmax"]
    functional.reset_net(model)


def test_lava_runs_kernels_and_products_bit_for_bit_as_intref():
    """Lava runs the kernels and products in a region process (tests/targets/lava/test_regions.py)."""
    torch.manual_seed(0)
    model = GatedAttention().eval()
    x = np.random.default_rng(0).random((4, 8, 1, 4, 4), dtype=np.float32)
    lava, intref = (spikec.compile(model, t, input_shape=(1, 4, 4), time_steps=4) for t in ("lava", "intref"))
    assert np.array_equal(np.asarray(lava.run(x)), np.asarray(intref.run(x)))


@pytest.mark.parametrize("op", ["relu", "sigmoid", "softmax", "gelu", "gelu_tanh", "layer_norm"])
def test_onnx_runs_every_kernel_bit_for_bit_as_intref(op):
    """targets/onnx/kernels.py writes spikec.integer_approx's algebra in ONNX ops: the same integers."""
    torch.manual_seed(0)
    model = Head(op).eval()
    if op == "layer_norm":
        with torch.no_grad():
            model.norm.weight.uniform_(0.5, 1.5)
            model.norm.bias.uniform_(-0.5, 0.5)
    x = np.random.default_rng(1).random((2, 64, 1, 4, 4), dtype=np.float32) * 1.5 - 0.25  # beyond the range too
    onnx, intref = (spikec.compile(model, t, input_shape=(1, 4, 4), time_steps=2) for t in ("onnx", "intref"))
    assert np.array_equal(np.asarray(onnx.run(x)), np.asarray(intref.run(x)))


class PerStepBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.pos = nn.Parameter(torch.randn(4, 1, 8) * 0.5)
        self.lif = neuron.LIFNode(step_mode="m")
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.lif((self.fc(x.flatten(2)) + self.pos) * 3))


def test_per_step_constant_is_an_explicit_integer_addend():
    """A position embedding per time step cannot be a Loihi bias (constant in time): intref adds it as
    integers at the sum's scale, within its rounding; the synapse keeps its full precision."""
    torch.manual_seed(0)
    model = PerStepBias().eval()
    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets import get_target

    res = compile_graph(trace(model, (1, 4, 4), time_steps=4), get_target("intref"))
    node = next(n for n in res.quantized.nodes if isinstance(n, ir.AddConstantNode))
    scale = res.quant_report.scales[node.name]
    assert node.constant.dtype == np.int64 and node.constant.shape == (4, 8)
    assert np.abs(node.constant * scale - model.pos.detach().numpy()[:, 0]).max() <= scale / 2
    assert {s.name: s for s in res.quant_report.synapses}["fc"].rel_error < 0.02
    x = np.random.default_rng(0).random((4, 64, 1, 4, 4), dtype=np.float32)
    r = spikec.verify(model, "intref", x, input_shape=(1, 4, 4), time_steps=4)
    (lif,) = r.layers
    assert lif.rate > 0.05 and lif.local_agreement >= 0.99 and lif.unexplained_flips == 0 and np.isfinite(lif.error_bound)
    onnx = spikec.compile(model, "onnx", input_shape=(1, 4, 4), time_steps=4)  # onnx runs added constants
    assert np.array_equal(np.asarray(onnx.run(x)), np.asarray(spikec.compile(model, "intref", input_shape=(1, 4, 4),
                                                                             time_steps=4).run(x)))
    lava = spikec.compile(model, "lava", input_shape=(1, 4, 4), time_steps=4)  # so does lava (a region process)
    assert np.array_equal(np.asarray(lava.run(x[:, :8])), np.asarray(onnx.run(x[:, :8])))


class FoldAfterKernel(nn.Module):
    def __init__(self, through_kernel: bool):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.lif = neuron.LIFNode(step_mode="m")
        self.through_kernel = through_kernel

    def forward(self, x):
        y = self.fc(x.flatten(2))
        y = torch.sigmoid(y) if self.through_kernel else y
        return self.lif(y.reshape(*y.shape[:2], 2, 4).mean(-1) * 4)


@pytest.mark.parametrize("through_kernel", [False, True])
def test_weight_exponent_hold_only_where_lava_folds_before_the_floor(through_kernel):
    """A mean after a synapse and before a neuron is folded into Lava's connection before the
    exponent's floor, so the exponent is held at 0; after a kernel the synapse output is materialised
    (one integer at its own scale) and the mean is not folded into it: no hold."""
    from spikec.passes.quantize.weights import folded_before_floor

    res = _compile(FoldAfterKernel(through_kernel))
    assert folded_before_floor(res.optimized, "fc") is (not through_kernel)


# ---- regressions from the review of the first version (each failed before its fix) ------------------------
def _max_error_and_bound(model, x, time_steps=2):
    from spikec.compiler import compile_graph
    from spikec.frontend import trace
    from spikec.targets import get_target

    res = compile_graph(trace(model.eval(), (1, 4, 4), time_steps=time_steps), get_target("intref"))
    got = np.asarray(spikec.emit(res).run(x), dtype=np.float64)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).double().numpy()
    functional.reset_net(model)
    out = res.optimized.outputs[0].name
    bound = float(current_errors(res.optimized, res.quantized, res.quant_report)[0][out].max())
    return float(np.abs(got - want).max()), bound, res


class SharedSynapse(nn.Module):
    """y = fc(x) read by a LIF and by a second linear: fc's bias must reach both."""

    def __init__(self):
        super().__init__()
        self.fc, self.fc2, self.head = nn.Linear(16, 8), nn.Linear(8, 4), nn.Linear(8, 4)
        self.lif = neuron.LIFNode(step_mode="m")
        with torch.no_grad():
            self.fc.bias.fill_(1.0)

    def forward(self, x):
        y = self.fc(x.flatten(2))
        return self.head(self.lif(y)) + self.fc2(y)


def test_bias_of_a_synapse_also_read_materialised_stays_in_the_synapse():
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((2, 16, 1, 4, 4), dtype=np.float32)
    err, bound, res = _max_error_and_bound(SharedSynapse(), x)
    assert res.quantized["fc"].bias is not None and err <= bound, (err, bound)


class SumIntoKernel(nn.Module):
    """A kernel reading a sum of two products of different ranges (a value of fixed scale)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c, self.d = (nn.Linear(16, 8) for _ in range(4))

    def forward(self, x):
        x = x.flatten(2)
        return torch.sigmoid(self.a(x) * self.b(x) * 8 + self.c(x) * self.d(x) / 64)


def test_kernel_reads_a_fixed_scale_sum_shifted_into_its_bit_budget():
    torch.manual_seed(0)
    x = np.random.default_rng(1).random((2, 16, 1, 4, 4), dtype=np.float32)
    err, bound, res = _max_error_and_bound(SumIntoKernel(), x)
    kernel = next(n for n in res.quantized.nodes if isinstance(n, ir.IntegerKernelNode))
    shift = res.quantized.producer(kernel.inputs[0])
    assert isinstance(shift, ir.ShiftNode) and shift.shift < 0
    q = run_int(res.quantized, x, record=True).values[kernel.inputs[0]]
    assert int(q.abs().max()) < 2 ** (REAL_BITS - 1) and err <= bound, (err, bound)


class ZeroGate(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.gate, self.fc = nn.Linear(16, 8), nn.Linear(16, 8)
        self.op = op
        with torch.no_grad():
            self.gate.weight.zero_()
            self.gate.bias.zero_()

    def forward(self, x):
        x = x.flatten(2)
        f = {"sigmoid": torch.sigmoid, "gelu": F.gelu, "softmax": lambda t: torch.softmax(t, -1),
             "layer_norm": lambda t: F.layer_norm(t, (8,))}[self.op]
        return self.fc(x) * f(self.gate(x))


@pytest.mark.parametrize("op", ["sigmoid", "gelu", "softmax", "layer_norm"])
def test_a_zero_initialised_gate_compiles(op):
    spikec.compile(ZeroGate(op).eval(), "intref", input_shape=(1, 4, 4), time_steps=2)


class AddedBack(nn.Module):
    def __init__(self, op):
        super().__init__()
        self.fc, self.fc2, self.head = nn.Linear(16, 8), nn.Linear(8, 8), nn.Linear(8, 4)
        self.lif = neuron.LIFNode(step_mode="m")
        self.op = op

    def forward(self, x):
        y = self.fc(x.flatten(2))
        f = {"relu": F.relu, "sigmoid": torch.sigmoid, "softmax": lambda z: torch.softmax(z, -1)}[self.op]
        return self.head(self.lif(self.fc2(y + f(y)) * 4))


def test_an_output_added_back_into_its_input_is_refused_only_where_its_scale_follows_the_input():
    for op in ("sigmoid", "softmax"):  # output scale 2^-15 of its own: no cycle
        spikec.compile(AddedBack(op).eval(), "intref", input_shape=(1, 4, 4), time_steps=2)
    with pytest.raises(UnsupportedError, match=r"the relu .* is added back into the value it reads"):
        spikec.compile(AddedBack("relu").eval(), "intref", input_shape=(1, 4, 4), time_steps=2)


class SpikeSumSynapse(nn.Module):
    """Spike-driven: fc2 reads s0 + s1/4, a sum of fixed scale that Lava reads by one connection per
    term (each floors on its own): the weight exponent stays >= 0."""

    def __init__(self):
        super().__init__()
        self.fc0, self.fc1, self.fc2 = nn.Linear(16, 64), nn.Linear(16, 64), nn.Linear(64, 32)
        self.lif0, self.lif1 = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m")
        self.lif2 = neuron.IFNode(step_mode="m", v_threshold=0.1)
        with torch.no_grad():
            self.fc2.weight.mul_(0.05)

    def forward(self, x):
        x = x.flatten(2)
        return self.lif2(self.fc2(self.lif0(self.fc0(x) * 4) + self.lif1(self.fc1(x) * 4) / 4))


def test_a_synapse_reading_a_fixed_scale_sum_keeps_the_exponent_hold():
    torch.manual_seed(0)
    res = _compile(SpikeSumSynapse(), "lava")
    assert {s.name: s for s in res.quant_report.synapses}["fc2"].weight_exp >= 0


class PaddedThenConvolved(nn.Module):
    """conv -> pad(0.75) -> conv with no neuron between: the pad value must reach the second conv."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 2, 1, bias=False)
        self.c2 = nn.Conv2d(2, 2, 3, bias=False)

    def forward(self, x):  # [T, B, 1, 4, 4]
        T, B = x.shape[:2]
        y = F.pad(self.c1(x.flatten(0, 1)), (1, 1, 1, 1), value=0.75)
        return self.c2(y).reshape(T, B, 2, 4, 4)


def test_a_pad_value_read_by_a_synapse_stays_in_the_integer_graph():
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((2, 8, 1, 4, 4), dtype=np.float32)
    err, bound, res = _max_error_and_bound(PaddedThenConvolved(), x)
    pad = next(n for n in res.quantized.nodes if isinstance(n, ir.PadNode))
    assert np.any(pad.value) and err <= bound, (err, bound)


class Products(nn.Module):
    """Elementwise and matrix products of two real values, read back on the host."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.q = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(8, 8)

    def forward(self, x):
        x = x.flatten(2)
        u = self.a(x) * self.b(x)
        return u * 2 + (self.q(u).unsqueeze(-1) @ u.unsqueeze(-2)).sum(-1) / 8


def test_onnx_runs_products_of_real_values_bit_for_bit_as_intref():
    torch.manual_seed(0)
    x = np.random.default_rng(0).random((2, 16, 1, 4, 4), dtype=np.float32)
    model = Products().eval()
    onnx, intref = (spikec.compile(model, t, input_shape=(1, 4, 4), time_steps=2) for t in ("onnx", "intref"))
    y = np.asarray(intref.run(x))
    assert np.abs(y).max() > 0 and np.array_equal(np.asarray(onnx.run(x)), y)
