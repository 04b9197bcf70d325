"""Time mixing made explicit: a permutation that moves the time axis into the features (and back), a
concatenation, and a 3-d convolution over time (STFormer's temporal core): traced into their IR
nodes, run by the float IR bit for bit as torch runs them, and by intref over the whole sequence."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn
from torch.nn import functional as F

import spikec
from spikec import ir
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.runtime.float_interpreter import run_float


class TemporalConv(nn.Module):
    """Spikes -> [B, C, T, H, W] -> causal convolutions over time (kernels 1 and 3) -> concatenated ->
    back to [T, B, C, H, W] -> LIF."""

    def __init__(self):
        super().__init__()
        self.lif_in = neuron.LIFNode(step_mode="m")
        self.convs = nn.ModuleList([nn.Conv3d(2, 2, (k, 1, 1), bias=False) for k in (1, 3)])
        self.bns = nn.ModuleList([nn.BatchNorm3d(2) for _ in range(2)])
        self.lif = neuron.LIFNode(step_mode="m", v_threshold=0.5)

    def forward(self, x):  # [T, B, 2, 4, 4]
        s = self.lif_in(x * 2).permute(1, 2, 0, 3, 4)
        y = torch.cat([bn(conv(F.pad(s, (0, 0, 0, 0, k - 1, 0)))) for k, conv, bn in zip((1, 3), self.convs, self.bns)], 1)
        return self.lif(y.permute(2, 0, 1, 3, 4))


def _model():
    torch.manual_seed(0)
    m = TemporalConv()
    with torch.no_grad():
        for bn in m.bns:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.8, 1.6)
            bn.bias.uniform_(0.1, 0.5)
        for conv in m.convs:
            conv.weight.mul_(4)
    return m.eval()


def test_traced_as_time_mixing_nodes_and_run_bit_for_bit():
    model = _model()
    g = trace(model, (2, 4, 4), time_steps=6)
    ops = [n.op for n in g.nodes]
    assert ops.count("time_to_features") == 1 and ops.count("features_to_time") == 1 and ops.count("concat") == 1
    to_f = next(n for n in g.nodes if isinstance(n, ir.TimeToFeaturesNode))
    assert g.types[to_f.name].time == 1 and g.types[to_f.name].features == (6, 2, 4, 4)
    assert to_f.time_behaviour() is ir.TimeBehaviour.MIXES_STEPS
    assert all(n.weight.ndim == 5 for n in g.nodes if isinstance(n, ir.ConvNode))
    x = torch.rand(6, 5, 2, 4, 4)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(g, x).outputs[0], want)


def test_intref_runs_the_whole_sequence_causally():
    """The integer model fires like the float one, and (causal padding) its output at steps < 3 does
    not depend on inputs at steps >= 3."""
    model = _model()
    x = np.random.default_rng(0).random((6, 32, 2, 4, 4), dtype=np.float32)
    r = spikec.verify(model, "intref", x, input_shape=(2, 4, 4), time_steps=6)
    assert all(rec.rate > 0.02 and rec.local_agreement >= 0.99 and rec.unexplained_flips == 0 for rec in r.layers)
    art = spikec.compile(model, "intref", input_shape=(2, 4, 4), time_steps=6)
    y = np.asarray(art.run(x))
    x2 = x.copy()
    x2[3:] = np.random.default_rng(1).random(x2[3:].shape, dtype=np.float32)
    y2 = np.asarray(art.run(x2))
    assert np.array_equal(y[:3], y2[:3]) and not np.array_equal(y[3:], y2[3:])


def test_onnx_runs_time_mixing_bit_for_bit_as_intref():
    x = np.random.default_rng(2).random((6, 8, 2, 4, 4), dtype=np.float32)
    onnx, intref = (spikec.compile(_model(), t, input_shape=(2, 4, 4), time_steps=6) for t in ("onnx", "intref"))
    assert np.array_equal(np.asarray(onnx.run(x)), np.asarray(intref.run(x)))


def test_lava_runs_time_mixing_bit_for_bit_as_intref():
    """Lava buffers the T steps in a region process (tests/targets/lava/test_regions.py): the same integers."""
    x = np.random.default_rng(2).random((6, 4, 2, 4, 4), dtype=np.float32)
    lava, intref = (spikec.compile(_model(), t, input_shape=(2, 4, 4), time_steps=6) for t in ("lava", "intref"))
    assert np.array_equal(np.asarray(lava.run(x)), np.asarray(intref.run(x)))


class TokensFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, N, D] -> [N, B, T, D]: the tokens take the time axis's place
        return self.lif(x.permute(2, 1, 0, 3) * 2)


def test_a_permutation_giving_the_time_axis_to_tokens_steps_the_neuron_over_them():
    """torch's multi-step neuron steps over axis 0, whatever it held: here the N tokens."""
    model = TokensFirst().eval()
    g = trace(model, (3, 4), time_steps=2)
    ops = [n.op for n in g.nodes]
    assert ops.count("time_to_features") == 1 and ops.count("features_to_time") == 1
    assert g.types[next(n.name for n in g.nodes if isinstance(n, ir.NeuronNode))].time == 3
    x = torch.rand(2, 5, 3, 4)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    assert torch.equal(run_float(g, x).outputs[0], want)


class BatchMixing(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, N, D] -> [B, T*N, D]: time merged behind the batch, then read per row
        T, B, N, D = x.shape
        return self.lif(x.reshape(B, T * N, D))


class NeuronOnMergedRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, N, D] -> [B*N, T, D]: a neuron would step over samples and tokens
        T, B, N, D = x.shape
        return self.lif(x.permute(1, 2, 0, 3).reshape(B * N, T, D))


def test_reshapes_that_mix_the_batch_axis_are_refused():
    with pytest.raises(UnsupportedError, match=r"a tensor of shape \[B, 4, 4\] that mixes the batch axis with other "
                                               r"axes \(from \[T=2, B, 2, 4\]"):
        trace(BatchMixing(), (2, 4), time_steps=2)
    with pytest.raises(UnsupportedError, match=r"a spiking neuron layer on a tensor whose axis 0 is the batch \(merged "
                                               r"with 1 feature axes\) axis .* in module 'lif'"):
        trace(NeuronOnMergedRows(), (3, 4), time_steps=2)


# ---- regressions from the review of the first version ---------------------------------------------------
class OutBTC(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # [T, B, 4] -> per-step logits batch-first [B, T, 3]
        return self.fc(self.lif(x * 2)).transpose(0, 1)


def test_verify_accuracy_of_batch_first_per_step_logits():
    x = np.random.default_rng(0).random((4, 6, 4), dtype=np.float32)
    r = spikec.verify(OutBTC().eval(), "intref", x, input_shape=(4,), time_steps=4, labels=np.zeros(6, int))
    assert set(r.accuracy) == {"torch", "float IR", "integer"}


class CatSame(nn.Module):
    def __init__(self):
        super().__init__()
        self.l0, self.l1 = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m")
        self.fc, self.fc2 = nn.Linear(8, 4), nn.Linear(4, 4)

    def forward(self, x):
        s = self.l0(x * 2)
        return self.l1(self.fc(torch.cat([s, s], -1)) + self.fc2(s))


def test_a_value_read_twice_by_one_node_and_again_later():
    x = np.random.default_rng(0).random((4, 2, 4), dtype=np.float32)
    model = CatSame().eval()
    with torch.no_grad():
        want = model(torch.from_numpy(x))
    functional.reset_net(model)
    assert torch.equal(run_float(trace(model, (4,), time_steps=4), torch.from_numpy(x)).outputs[0], want)
    spikec.compile(model, "intref", input_shape=(4,), time_steps=4).run(x)


class BatchFirst(nn.Module):
    def __init__(self):
        super().__init__()
        self.l0, self.l1 = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m")
        self.fc = nn.Linear(4, 3)

    def forward(self, x):  # batch-first sequences [B, T, D]
        return self.l1(self.fc(self.l0(x.transpose(0, 1) * 2)))


def test_batch_first_sequences_on_lava_and_the_nir_refusal_of_3d_convs():
    x = np.random.default_rng(0).random((8, 6, 4), dtype=np.float32)
    model = BatchFirst().eval()
    g = trace(model, (6, 4))
    assert [n.op for n in g.nodes].count("features_to_time") == 1
    onnx, intref = (spikec.compile(model, t, input_shape=(6, 4)) for t in ("onnx", "intref"))
    assert np.array_equal(np.asarray(onnx.run(x)), np.asarray(intref.run(x)))
    lava = spikec.compile(model, "lava", input_shape=(6, 4))  # a region makes the time axis: no latency (a static input)
    assert np.array_equal(np.asarray(lava.run(x)), np.asarray(intref.run(x)))
    assert lava.meta["extra"]["lava"]["time_mixing_latency"] == 0
    with pytest.raises(UnsupportedError, match=r"nir: a 3-d convolution \(NIR has Conv1d and Conv2d\) at .*'conv'"):
        spikec.compile(PerStepConv3d().eval(), "nir", input_shape=(1, 2, 4, 4), time_steps=2)


class PerStepConv3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3, padding=1)
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, 1, 2, 4, 4]: a volume per step
        T, B = x.shape[:2]
        return self.lif(self.conv(x.flatten(0, 1)).reshape(T, B, 2, 2, 4, 4))


def test_report_runs_3d_convolutions(tmp_path):
    x = np.random.default_rng(0).random((6, 4, 2, 4, 4), dtype=np.float32)
    spikec.report(_model(), x, input_shape=(2, 4, 4), time_steps=6, output=tmp_path / "r")
