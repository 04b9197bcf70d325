"""Where time and batch sit (spikec.frontend.layouts): the batch merged with feature axes behind it
([B*N, T, D], attention over the T steps of each token), feature axes in front of the batch
([3, T*B, H, N, d], a q / k / v axis), the front feature made time again when the code merges it into
the batch; each traced to IR values of layout [T, B, *f] and run by the float IR bit for bit as torch."""

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

import spikec
from spikec import ir
from spikec.errors import UnsupportedError
from spikec.frontend import trace
from spikec.runtime.float_interpreter import run_float


def _same_as_torch(model, x, **kw):
    g = trace(model, tuple(x.shape[2:] if kw.get("time_steps") else x.shape[1:]), **kw)
    with torch.no_grad():
        want = model(x)
    functional.reset_net(model)
    got = run_float(g, x).outputs[0]
    assert got.shape == want.shape and torch.equal(got, want)
    return g


class Attention(nn.Module):
    """Softmax attention over axis 1 of [B', L, D], q / k / v split off in front of the batch."""

    def __init__(self, dim=8, heads=2, unbind=False):
        super().__init__()
        self.heads, self.unbind = heads, unbind
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # [3, B', H, L, d]
        q, k, v = qkv.unbind(0) if self.unbind else (qkv[0], qkv[1], qkv[2])
        attn = torch.softmax((q @ k.transpose(-2, -1)) * 0.5, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, L, D))


class DividedSpaceTime(nn.Module):
    """Attention over the T steps of each token, then over the N tokens of each step, on [T, B, N, D]."""

    def __init__(self, unbind=False):
        super().__init__()
        self.time_attn, self.space_attn = Attention(unbind=unbind), Attention(unbind=unbind)
        self.pos = nn.Parameter(torch.randn(4, 8) * 0.1)  # one row per step, added to [B*N, T, D]
        self.lif = neuron.LIFNode(step_mode="m", v_threshold=0.3)

    def forward(self, x):
        T, B, N, D = x.shape
        xt = x.permute(1, 2, 0, 3).reshape(B * N, T, D) + self.pos
        x = x + self.time_attn(xt).reshape(B, N, T, D).permute(2, 0, 1, 3)
        x = x + self.space_attn(x.reshape(T * B, N, D)).reshape(T, B, N, D)
        return self.lif(x)


@pytest.mark.parametrize("unbind", [False, True])
def test_divided_space_time_attention(unbind):
    torch.manual_seed(0)
    model = DividedSpaceTime(unbind).eval()
    g = _same_as_torch(model, torch.randn(4, 3, 5, 8), time_steps=4)
    ops = [n.op for n in g.nodes]
    assert ops.count("time_to_features") == 1 and ops.count("features_to_time") == 1
    # the temporal attention runs on one-step values whose features hold the tokens and the T steps
    soft = [g.types[n.name] for n in g.nodes if isinstance(n, ir.SoftmaxNode)]
    assert [(t.time, t.features) for t in soft] == [(1, (5, 2, 4, 4)), (4, (2, 5, 5))]
    add_c = next(n for n in g.nodes if isinstance(n, ir.AddConstantNode))
    assert add_c.constant.shape == (1, 1, 4, 8)  # broadcast over the tokens merged into the batch


def test_intref_and_onnx_run_divided_space_time_attention_alike():
    torch.manual_seed(0)
    model = DividedSpaceTime().eval()
    x = np.random.default_rng(1).random((4, 6, 5, 8), dtype=np.float32)  # the default input range [0, 1]
    intref, onnx = (spikec.compile(model, t, input_shape=(5, 8), time_steps=4) for t in ("intref", "onnx"))
    y = np.asarray(intref.run(x))
    assert np.array_equal(np.asarray(onnx.run(x)), y)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert np.mean(y == want) > 0.95  # spikes: only flips on the threshold


class QkvInFrontOfTimeBatch(nn.Module):
    """Spikformer-style attention on [T*B, N, D] with the q / k / v axis in front of the merged axis."""

    def __init__(self):
        super().__init__()
        self.attn = Attention()
        self.lif = neuron.LIFNode(step_mode="m", v_threshold=0.3)

    def forward(self, x):  # [T, B, N, D]
        T, B, N, D = x.shape
        return self.lif(self.attn(x.flatten(0, 1)).reshape(T, B, N, D))


def test_features_in_front_of_time_merged_into_the_batch():
    torch.manual_seed(0)
    g = _same_as_torch(QkvInFrontOfTimeBatch().eval(), torch.randn(2, 3, 4, 8), time_steps=2)
    assert not any(isinstance(n, (ir.TimeToFeaturesNode, ir.FeaturesToTimeNode)) for n in g.nodes)


class ConvOnMergedRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 4, 1)

    def forward(self, x):  # [T, B, N, D] -> [B*N, D, T]: a convolution over time per token
        T, B, N, D = x.shape
        return self.conv(x.permute(1, 2, 3, 0).reshape(B * N, D, T))


class BatchLast(nn.Module):
    def forward(self, x):  # [B, N, D] -> [N, D, B]
        return torch.softmax(x.permute(1, 2, 0), dim=-1)


def test_refusals_name_the_axis():
    with pytest.raises(UnsupportedError, match=r"a convolution on a tensor whose axis 0 is the batch \(merged with 1 "
                                               r"feature axes\) axis .* in module 'conv'"):
        trace(ConvOnMergedRows(), (3, 4), time_steps=2)
    with pytest.raises(UnsupportedError, match=r"a softmax along the batch axis in the model's top-level forward"):
        trace(BatchLast(), (3, 4))


# ---- regressions from the review of the first version ---------------------------------------------------
class OneStepBroadcast(nn.Module):
    def forward(self, x):  # [B, N, D] + [1, B, N, D] -> [1, B, N, D]: the result has the time axis
        y = x + x.unsqueeze(0)
        return y.permute(0, 1, 3, 2).sum(-1).squeeze(0)


class TransposeOf1d(nn.Module):
    def forward(self, x):  # .t() of a 1-d tensor is the tensor
        return x.sum(-1).t() * 2


class NeuronOnTokensMergedIntoBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = neuron.LIFNode(step_mode="m")

    def forward(self, x):  # [T, B, N, D] -> [T, B*N, D]: a neuron per position, whatever the batch holds
        T, B, N, D = x.shape
        return self.lif(x.reshape(T, B * N, D) * 2).reshape(T, B, N, D)


@pytest.mark.parametrize("model,x,kw", [
    (OneStepBroadcast(), torch.rand(2, 3, 3), {}),
    (TransposeOf1d(), torch.rand(2, 3), {}),
    (NeuronOnTokensMergedIntoBatch(), torch.rand(2, 5, 3, 4), {"time_steps": 2}),
])
def test_layouts_found_by_review(model, x, kw):
    _same_as_torch(model.eval(), x, **kw)


def test_a_one_feature_value_is_not_made_time():
    class Transposed(nn.Module):
        def forward(self, x):  # [B, D] -> [D, B]
            return x.t() * 2

    with pytest.raises(UnsupportedError, match=r"a model output on a tensor whose axis 1 is the batch axis \(expected "
                                               r"the batch axis first\)"):
        trace(Transposed(), (4,))


class QkvMergedIntoBatch(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 12)

    def forward(self, x):  # [B, N, D] -> [3, B, N, D] -> [3*B, N, D]: the q / k / v axis merged into the batch
        B, N, D = x.shape
        qkv = self.lin(x).reshape(B, N, 3, D).permute(2, 0, 1, 3)
        q, k, v = qkv.reshape(3 * B, N, D).softmax(-1).reshape(3, B, N, D).unbind(0)
        return (q @ k.transpose(-1, -2)) @ v


def test_a_feature_merged_into_the_batch_from_the_front_is_read_as_time_and_said_so():
    with pytest.raises(UnsupportedError, match=r"an unbind along the time axis \(a feature axis the code merged into the "
                                               r"batch in front of it, which spikec reads as time\)"):
        trace(QkvMergedIntoBatch(), (5, 4))
