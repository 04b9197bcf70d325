"""fold_batchnorm through layout nodes, on models written the way the published Spikformer code is.

ZK-Zhou/spikformer writes every projection as ``q_bn(q_linear(x).transpose(-1, -2)).transpose(-1, -2)``
(Linear over the channels of a token-major ``[T*B, N, C]`` value, BatchNorm1d over the channels of the
channel-major view); other family members use Conv1d (kernel 1) + BatchNorm1d on ``[T*B, C, N]``.
Positive cases (fired count, float IR == torch spike for spike before and after the pass, no BN left
for intref / nir), negative cases (the reason the pass gives for each BN it leaves).
"""

import numpy as np
import pytest
import torch
from conftest import neuron_outputs
from torch import nn

from spikec import ir
from spikec.compat import legacy_spikingjelly
from spikec.compiler import compile_graph
from spikec.frontend import trace
from spikec.passes.fold_batchnorm import fold_batchnorm
from spikec.runtime.float_interpreter import run_float
from spikec.verification import compare_graphs

legacy_spikingjelly.install_if_missing()
from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402


def _lif(**kw):
    return MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy", **kw)


class LinearMLP(nn.Module):
    """Token-major MLP: ``fc_bn(fc_linear(x).transpose(-1, -2)).transpose(-1, -2)``."""

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1_linear = nn.Linear(dim, hidden)
        self.fc1_bn = nn.BatchNorm1d(hidden)
        self.fc1_lif = _lif()
        self.fc2_linear = nn.Linear(hidden, dim)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = _lif()
        self.hidden = hidden

    def forward(self, x):
        T, B, N, C = x.shape
        x = self.fc1_linear(x.flatten(0, 1))
        x = self.fc1_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, self.hidden).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_linear(x.flatten(0, 1))
        x = self.fc2_bn(x.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        return self.fc2_lif(x)


class LinearSSA(nn.Module):
    """Spiking self-attention with Linear + BN1d-on-the-transposed-view projections."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, 0.125
        for p in ("q", "k", "v"):
            setattr(self, f"{p}_linear", nn.Linear(dim, dim))
            setattr(self, f"{p}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{p}_lif", _lif())
        self.attn_lif = _lif(v_threshold=0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif()

    def _project(self, x, p, T, B, N, C):
        y = getattr(self, f"{p}_linear")(x)
        y = getattr(self, f"{p}_bn")(y.transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        y = getattr(self, f"{p}_lif")(y)
        return y.reshape(T, B, N, self.heads, C // self.heads).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, N, C = x.shape
        x_for_qkv = x.flatten(0, 1)
        q, k, v = (self._project(x_for_qkv, p, T, B, N, C) for p in ("q", "k", "v"))
        x = (q @ k.transpose(-2, -1)) * self.scale @ v
        x = self.attn_lif(x.transpose(2, 3).reshape(T, B, N, C).contiguous())
        x = x.flatten(0, 1)
        return self.proj_lif(self.proj_bn(self.proj_linear(x).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C))


class LinearSpikformer(nn.Module):
    """Conv stem (Conv2d + BN2d + LIF + max-pool), one token-major block, mean-over-tokens head."""

    def __init__(self, dim=16, heads=2, T=4):
        super().__init__()
        self.T = T
        self.stem_conv = nn.Conv2d(1, dim, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(dim)
        self.stem_lif = _lif()
        self.pool = nn.MaxPool2d(2)
        self.attn = LinearSSA(dim, heads)
        self.mlp = LinearMLP(dim, 2 * dim)
        self.head = nn.Linear(dim, 4)

    def forward(self, img):
        x = img.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        T, B = x.shape[:2]
        x = self.stem_bn(self.stem_conv(x.flatten(0, 1)))
        x = self.stem_lif(x.reshape(T, B, *x.shape[1:]).contiguous())
        x = self.pool(x.flatten(0, 1))
        x = x.reshape(T, B, *x.shape[1:]).flatten(-2).transpose(-1, -2)  # T, B, N, C
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return self.head(x.mean(2)).mean(0)


class Conv1dBlock(nn.Module):
    """Channel-major [T*B, C, N] Conv1d (kernel 1) + BatchNorm1d + spikingjelly LIF, as other family
    members write their projections."""

    def __init__(self, c_in=6, dim=12):
        super().__init__()
        from spikingjelly.activation_based import neuron

        self.fc1_conv = nn.Conv1d(c_in, dim, kernel_size=1)
        self.fc1_bn = nn.BatchNorm1d(dim)
        self.fc1_lif = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)
        self.fc2_conv = nn.Conv1d(dim, dim, kernel_size=1, bias=False)
        self.fc2_bn = nn.BatchNorm1d(dim)
        self.fc2_lif = neuron.LIFNode(tau=2.0, step_mode="m", detach_reset=True)

    def forward(self, x):  # [T, B, C, N]
        T, B, _, N = x.shape
        x = self.fc1_lif(self.fc1_bn(self.fc1_conv(x.flatten(0, 1))).reshape(T, B, -1, N).contiguous())
        return self.fc2_lif(self.fc2_bn(self.fc2_conv(x.flatten(0, 1))).reshape(T, B, -1, N).contiguous())


class ViewInsteadOfTranspose(nn.Module):
    """Negative: ``reshape`` [N, C] -> [C, N] (not a transpose) mixes the channel axis with the tokens."""

    def __init__(self, n=5, c=8):
        super().__init__()
        self.q_linear = nn.Linear(c, c)
        self.q_bn = nn.BatchNorm1d(c)
        self.q_lif = _lif()

    def forward(self, x):
        T, B, N, C = x.shape
        y = self.q_linear(x.flatten(0, 1)).reshape(T * B, C, N)
        return self.q_lif(self.q_bn(y).reshape(T, B, C, N).contiguous())


class SharedLinear(nn.Module):
    """Negatives: a linear read by its BN chain and by a second neuron; and a transpose between a
    linear and its BN that a second neuron reads too."""

    def __init__(self, c=8):
        super().__init__()
        self.a_linear = nn.Linear(c, c)
        self.a_bn = nn.BatchNorm1d(c)
        self.b_linear = nn.Linear(c, c)
        self.b_bn = nn.BatchNorm1d(c)
        self.lifs = nn.ModuleList([_lif() for _ in range(4)])

    def forward(self, x):
        T, B, N, C = x.shape
        x = x.flatten(0, 1)
        a = self.a_linear(x)
        a_bn = self.a_bn(a.transpose(-1, -2)).transpose(-1, -2)
        bt = self.b_linear(x).transpose(-1, -2)
        b_bn = self.b_bn(bt).transpose(-1, -2)
        outs = [a_bn, a, b_bn, bt.transpose(-1, -2)]
        s = [lif(o.reshape(T, B, N, C).contiguous()) for lif, o in zip(self.lifs, outs)]
        return s[0] + s[1] + s[2] + s[3]


@torch.no_grad()
def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fan-in-scaled weights; random BN statistics (γ ~ U(0.5, 1.5), β ~ N(0.8, 0.3), random running
    mean / var) so that every layer fires; q / k / v batch norms get more bias (attention fires)."""
    g = torch.Generator().manual_seed(seed)
    for path, m in model.named_modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.weight.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.copy_(torch.randn(c, generator=g) * 0.3 + 0.8 + (0.8 if path.split(".")[-1] in ("q_bn", "k_bn", "v_bn") else 0.0))
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(c, generator=g) * 0.6 + 0.4)
    return model.eval()


def _frames(batch=6, seed=1):
    return torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 3


def _sequence(shape, batch=6, T=4, seed=2):
    return torch.rand(T, batch, *shape, generator=torch.Generator().manual_seed(seed)) * 2


def _assert_spikes_match_torch(model, graph, x):
    """Every neuron node of ``graph`` (float IR) spikes exactly as the torch module; outputs to 1e-5."""
    y, spikes = neuron_outputs(model, x)
    r = run_float(graph, x, record=True)
    neurons = [n for n in graph.nodes if n.op == "neuron"]
    assert len(neurons) == len(spikes)
    fired = 0
    for n in neurons:
        ours, theirs = r.values[n.name], spikes[n.source]
        assert torch.equal(ours, theirs.reshape(ours.shape)), f"spikes differ at {n.source}"
        fired += int(theirs.sum() > 0)
    assert fired == len(neurons), "every layer must fire (else spike equality is vacuous)"
    torch.testing.assert_close(r.outputs[0], y.reshape(r.outputs[0].shape), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def spikformer_linear():
    model = _randomise(LinearSpikformer())
    return model, trace(model, (1, 8, 8), name="spikformer_linear"), _frames()


def test_folds_through_transposes_in_the_published_spikformer_form(spikformer_linear):
    model, g, x = spikformer_linear
    assert g.count_ops()["batchnorm"] == 7  # stem + q, k, v, proj + fc1, fc2
    r = fold_batchnorm(g)
    assert r.report.fired == 7 and not r.report.not_applied, r.report.lines()
    assert "batchnorm" not in r.graph.count_ops()
    assert any("folded attn.q_bn through permute" in a for a in r.report.applied), r.report.applied
    for p in ("attn.q", "attn.k", "attn.v", "attn.proj", "mlp.fc1", "mlp.fc2"):  # BN readers read the chain's end
        (perm,) = [n for n in r.graph.nodes if n.op == "permute" and n.inputs == (f"{p}_linear",)]
        assert r.graph.users(f"{p}_linear") == [perm]
    _assert_spikes_match_torch(model, g, x)
    _assert_spikes_match_torch(model, r.graph, x)
    c = compare_graphs(g, r.graph, x)
    assert c.agreement == 1.0 and c.output_max_rel <= 1e-5, "\n".join(c.lines())


def test_transposed_form_compiles_for_integer_and_nir_targets(spikformer_linear):
    _, g, x = spikformer_linear
    res = compile_graph(g, "intref", calib=x.numpy())  # used to fail: "batch norm attn.q_bn is still in the graph"
    assert "batchnorm" not in res.optimized.count_ops() and res.quantized is not None
    assert not any(n.op == "batchnorm" for n in res.quantized.nodes)
    assert "batchnorm" not in compile_graph(g, "nir").optimized.count_ops()  # the graph NIR export reads


def test_conv1d_bn1d_channel_major():
    model = _randomise(Conv1dBlock())
    g = trace(model, (6, 10), time_steps=4)
    x = _sequence((6, 10))
    r = fold_batchnorm(g)
    assert r.report.fired == 2 and "batchnorm" not in r.graph.count_ops()
    assert r.graph["fc2_conv"].bias is not None  # b' = (0 - μ)·γ/σ + β for a bias-free conv
    _assert_spikes_match_torch(model, g, x)
    _assert_spikes_match_torch(model, r.graph, x)
    c = compare_graphs(g, r.graph, x)
    assert c.agreement == 1.0 and c.output_max_rel <= 1e-5, "\n".join(c.lines())
    assert "batchnorm" not in compile_graph(g, "intref", calib=x.numpy()).optimized.count_ops()


def test_reshape_that_mixes_the_channel_axis_is_left_with_a_reason():
    model = _randomise(ViewInsteadOfTranspose())
    g = trace(model, (5, 8), time_steps=4)
    r = fold_batchnorm(g)
    assert r.report.fired == 0 and r.graph.same_as(g)
    ((where, why),) = r.report.not_applied
    assert where.startswith("q_bn")
    assert "mixes the normalised axis 0 (size 8) with another" in why and "transpose / permute" in why, why
    with pytest.raises(Exception, match="batch norm q_bn"):
        compile_graph(g, "intref")


def test_other_users_of_the_linear_or_the_transpose_are_left_with_a_reason():
    model = _randomise(SharedLinear())
    g = trace(model, (5, 8), time_steps=4)
    r = fold_batchnorm(g)
    assert r.report.fired == 0 and r.graph.same_as(g)
    why = dict(r.report.not_applied)
    assert "the linear a_linear has other users" in why["a_bn"], why
    assert "between the batch norm and its producer has other users" in why["b_bn"], why
    x = _sequence((5, 8))
    _assert_spikes_match_torch(model, r.graph, x)


def test_bn_over_the_token_axis_is_not_folded():
    """BatchNorm1d(N) on a token-major linear output normalises the tokens, not the linear's outputs."""

    class TokenBN(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 8)
            self.bn = nn.BatchNorm1d(5)
            self.lif = _lif()

        def forward(self, x):
            T, B, N, C = x.shape
            return self.lif(self.bn(self.fc(x.flatten(0, 1))).reshape(T, B, N, C))

    g = trace(_randomise(TokenBN()), (5, 8), time_steps=2)
    r = fold_batchnorm(g)
    assert r.report.fired == 0
    assert "not the linear's output axis 1" in r.report.not_applied[0][1]


def _chain_graph(*layout, tokens=6):
    """x [tokens, 8] -> linear 8->4 -> layout nodes -> BN (4 channels) over axis 0 -> LIF."""
    rng = np.random.default_rng(3)
    nodes = [ir.InputNode("x", (), features=(tokens, 8), time=3, layout="sequence"),
             ir.LinearNode("fc", ("x",), "fc", weight=rng.normal(0, 0.5, (4, 8)).astype(np.float32),
                           bias=rng.normal(0, 0.1, 4).astype(np.float32))]
    for n in layout:
        nodes.append(n.replace(inputs=(nodes[-1].name,)))
    nodes += [ir.BatchNormNode("bn", (nodes[-1].name,), "bn", mean=rng.normal(0, 0.2, 4).astype(np.float32),
                               var=rng.uniform(0.4, 1.0, 4).astype(np.float32), weight=rng.uniform(0.5, 1.5, 4).astype(np.float32),
                               bias=rng.normal(0.8, 0.3, 4).astype(np.float32), axis=0),
              ir.NeuronNode("lif", ("bn",), "lif"), ir.OutputNode("out", ("lif",))]
    return ir.Graph(nodes).validate()


def test_reshapes_that_keep_the_channel_axis_whole_are_followed():
    """[6, 4] -> reshape [2, 3, 4] (split the tokens) -> permute [4, 2, 3] -> reshape [4, 6]: channel axis intact."""
    g = _chain_graph(ir.ReshapeNode("r1", (), features=(2, 3, 4)), ir.PermuteNode("p", (), perm=(2, 0, 1)),
                     ir.ReshapeNode("r2", (), features=(4, 6)))
    r = fold_batchnorm(g)
    assert r.report.fired == 1 and r.report.applied == ["fc: folded bn through reshape -> permute -> reshape"]
    assert r.graph["lif"].inputs == ("r2",)
    x = torch.rand(3, 5, 6, 8, generator=torch.Generator().manual_seed(4)) * 2
    a, b = run_float(g, x, record=True), run_float(r.graph, x, record=True)
    assert a.values["lif"].mean() > 0.05
    torch.testing.assert_close(b.values["r2"], a.values["bn"], rtol=1e-5, atol=1e-5)
    c = compare_graphs(g, r.graph, x)
    assert c.agreement == 1.0, "\n".join(c.lines())


def test_layout_chains_that_put_another_axis_under_the_bn_are_left():
    # permutes that bring the token axis (4 tokens, same size as the 4 channels) back under the BN
    g = _chain_graph(ir.PermuteNode("p1", (), perm=(1, 0)), ir.PermuteNode("p2", (), perm=(1, 0)), tokens=4)
    r = fold_batchnorm(g)
    assert r.report.fired == 0
    assert r.report.not_applied[0][1].startswith(
        "normalises feature axis 0 (axis 0 of the linear's output through permute p1 -> permute p2), not the linear's "
        "output axis 1"), r.report.not_applied
    # a reshape that splits the channels and regroups them with the tokens
    g = _chain_graph(ir.ReshapeNode("r1", (), features=(3, 2, 4)), ir.PermuteNode("p", (), perm=(1, 0, 2)),
                     ir.ReshapeNode("r2", (), features=(2, 12)), ir.PermuteNode("p2", (), perm=(1, 0)),
                     ir.ReshapeNode("r3", (), features=(4, 6)))
    r = fold_batchnorm(g)
    assert r.report.fired == 0
    assert "the reshape r3 [12, 2] -> [4, 6] mixes the normalised axis 0 (size 4) with another" in r.report.not_applied[0][1]
