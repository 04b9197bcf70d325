"""The operations that are not spike-driven (layer norm, softmax, ReLU, sigmoid, GELU) and added
constants: traced into their IR nodes, run by the float IR exactly as torch runs them, refused across
the time axis and by NIR (the integer targets: tests/passes/quantize/test_kernels.py)."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn
from torch.nn import functional as F

import spikec
from spikec import ir
from spikec.errors import IRError, UnsupportedError
from spikec.frontend import trace
from spikec.runtime.float_interpreter import run_float


class RealValuedBlock(nn.Module):
    """Spikeformer-style: LayerNorm, float attention with softmax and 1/sqrt(d), gated by a sigmoid,
    GELU / ReLU, then a LIF and a head."""

    def __init__(self, approximate="none"):
        super().__init__()
        self.embed = nn.Linear(16, 8)
        self.norm = nn.LayerNorm(4)
        self.fc = nn.Linear(4, 4)
        self.lif = neuron.LIFNode(step_mode="m")
        self.head = nn.Linear(4, 10)
        self.approximate = approximate

    def forward(self, x):  # x: [T, B, 1, 4, 4]
        T, B = x.shape[:2]
        y = self.norm(self.embed(x.flatten(2)).reshape(T, B, 2, 4))
        attn = torch.softmax(y @ y.transpose(-1, -2) / 4 ** 0.5, dim=-1)
        z = attn @ y
        z = torch.sigmoid(z) * F.relu(self.fc(z)) + F.gelu(z, approximate=self.approximate)
        return self.head(self.lif(z).mean(2))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_float_ir_equals_torch_bit_for_bit(approximate):
    torch.manual_seed(0)
    model = RealValuedBlock(approximate).eval()
    graph = trace(model, (1, 4, 4), time_steps=4)
    ops = [n.op for n in graph.nodes]
    assert ops.count("layernorm") == 1 and ops.count("softmax") == 1 and ops.count("activation") == 3
    acts = {n.function: n for n in graph.nodes if isinstance(n, ir.ActivationNode)}
    assert set(acts) == {"sigmoid", "relu", "gelu"} and acts["gelu"].approximate == approximate
    assert graph["norm"].weight.shape == (4,) and graph["norm"].eps == 1e-5
    x = torch.rand(4, 5, 1, 4, 4)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(graph, x).outputs[0], want)


def test_ir_round_trip(tmp_path):
    graph = trace(RealValuedBlock().eval(), (1, 4, 4), time_steps=4)
    ir.save(graph, tmp_path / "g")
    back = ir.load(tmp_path / "g")
    x = torch.rand(4, 2, 1, 4, 4)
    assert torch.equal(run_float(back, x).outputs[0], run_float(graph, x).outputs[0])


def test_kinds_and_bad_parameters():
    t = ir.TensorType(2, (3, 4), ir.Kind.INT)
    assert ir.ActivationNode("r", ("x",), function="relu").infer([t]).kind is ir.Kind.COUNT
    assert ir.ActivationNode("s", ("x",), function="sigmoid").infer([t]).kind is ir.Kind.REAL
    with pytest.raises(IRError, match="weight has shape"):
        ir.LayerNormNode("n", ("x",), weight=np.ones(3, np.float32)).infer([t])
    with pytest.raises(IRError, match="function must be one of"):
        ir.ActivationNode("a", ("x",), function="tanh").infer([t])
    with pytest.raises(IRError, match="GELU option"):
        ir.ActivationNode("a", ("x",), function="relu", approximate="tanh").infer([t])


class SoftmaxOverTime(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, 4]: attention across the time steps of a sample
        return self.lif(torch.softmax(x, dim=0))


def test_softmax_across_time_is_refused():
    with pytest.raises(UnsupportedError, match="a softmax along the time axis"):
        trace(SoftmaxOverTime(), (4,), time_steps=4)


class Normed(nn.Module):
    def __init__(self, norm):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.norm = norm
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        y = self.fc(x.flatten(2))
        return self.lif(self.norm(y.flatten(0, 1)).reshape(y.shape))


def test_nir_refuses_layer_norm_naming_the_module():
    with pytest.raises(UnsupportedError, match=r"no NIR form for layernorm .*module 'norm'"):
        spikec.compile(Normed(nn.LayerNorm(8)).eval(), "nir", input_shape=(1, 4, 4), time_steps=2)


def test_group_norm_is_still_refused_with_its_module_path():
    with pytest.raises(UnsupportedError, match=r"aten.group_norm in module 'norm' \(torch.nn.modules.normalization.GroupNorm\)"):
        spikec.compile(Normed(nn.GroupNorm(2, 8)).eval(), "intref", input_shape=(1, 4, 4), time_steps=2)


class PositionEmbedded(nn.Module):
    """A per-step position embedding, a bias, ``c − x`` and a scalar: all constants added."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 8)
        self.pos = nn.Parameter(torch.randn(4, 1, 8))
        self.shift = nn.Parameter(torch.randn(8))
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):
        y = self.fc(x.flatten(2)) + self.pos
        y = 0.5 - (y - self.shift)
        return self.lif(y * 3 + 1.0)


def test_added_constants_per_step_or_not():
    torch.manual_seed(0)
    model = PositionEmbedded().eval()
    graph = trace(model, (1, 4, 4), time_steps=4)
    adds = [n for n in graph.nodes if isinstance(n, ir.AddConstantNode)]
    assert [n.constant.shape for n in adds] == [(4, 8), (1, 8), (1, 1), (1, 1)]
    np.testing.assert_array_equal(adds[1].constant, model.shift.detach().numpy()[None])
    assert [n.alpha for n in adds] == [1.0, -1.0, 1.0, 1.0]
    x = torch.rand(4, 5, 1, 4, 4)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(graph, x).outputs[0], want)


class BatchConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")
        self.noise = nn.Parameter(torch.zeros(1, 3, 4))

    def forward(self, x):  # [T, B=3, 4] + a constant over the batch
        return self.lif(x + self.noise)


def test_constant_varying_over_the_batch_is_refused():
    with pytest.raises(UnsupportedError, match="a constant that varies over the batch"):
        trace(BatchConstant(), (4,), time_steps=2)


class Alpha(nn.Module):
    def __init__(self, constant_first):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.c = nn.Parameter(torch.randn(4))
        self.lif = neuron.LIFNode(step_mode="m")
        self.constant_first = constant_first

    def forward(self, x):
        y = self.fc(x)
        return self.lif(torch.sub(self.c, y, alpha=0.3) if self.constant_first else torch.add(y, self.c, alpha=0.3))


def test_add_with_alpha_is_one_rounding_as_in_torch():
    torch.manual_seed(0)
    model = Alpha(False).eval()
    graph = trace(model, (4,), time_steps=3)
    x = torch.randn(3, 64, 4) * 3
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(graph, x).outputs[0], want)
    with pytest.raises(UnsupportedError, match=r"a constant minus 0.3 times an activation"):
        trace(Alpha(True).eval(), (4,), time_steps=3)


class ConstantPlusScaled(nn.Module):
    def __init__(self, alpha):
        super().__init__()
        self.c = nn.Parameter(torch.randn(4))
        self.lif = neuron.LIFNode(step_mode="m")
        self.alpha = alpha

    def forward(self, x):
        return self.lif(torch.add(self.c, x, alpha=self.alpha))


def test_constant_plus_a_power_of_two_times_an_activation_is_exact():
    torch.manual_seed(0)
    model = ConstantPlusScaled(2.0).eval()
    x = torch.randn(3, 16, 4)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(trace(model, (4,), time_steps=3), x).outputs[0], want)
    with pytest.raises(UnsupportedError, match=r"a constant plus 3 times an activation"):
        trace(ConstantPlusScaled(3.0).eval(), (4,), time_steps=3)
