"""Small models written the way the seed papers' published code writes them (spikec's own code,
re-creating each code pattern that needed work in spikec; see the README's "published models"
table):

* ``linear_bn_spikformer``: ZK-Zhou/spikformer ``cifar10/model.py``: attention and MLP as
  ``nn.Linear`` over channels on a token-major ``[T*B, N, C]`` tensor, each followed by a
  ``BatchNorm1d`` applied between two transposes (``bn(linear(x).transpose(-1, -2)).transpose(-1, -2)``);
* ``tuple_output_sdt``: BICLab/Spike-Driven-Transformer ``model/spikeformer.py``: ``forward`` returns
  ``(logits, hook)`` with ``hook = None`` unless asked for;
* ``merged_lif_qkformer``: zhouchenlin2096/QKFormer ``cifar10/model.py``: a multi-step LIF run over
  a ``[T*B, C, N]`` tensor (time merged into the batch), whose upstream output depends on the batch;
* ``batch_time_spikeformer``: Loydian/Spikeformer ``dvsgesture/spikeformer.py``: batch-first event
  input ``[B, T, C, H, W]``, einops ``rearrange`` patterns that merge the batch with the time steps or
  the tokens behind it (``(b t) n m``, ``(b n) t m``, ``b (n t) m``), softmax attention across the T
  steps of each token and across the tokens of each step, layer norms, sequence pooling over all
  tokens and steps, and neuron classes subclassing the legacy single-step API.

All use the legacy ``spikingjelly.clock_driven`` neurons (spikec's stand-in when spikingjelly 2.x
is installed), as the published code does.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from spikec.compat import legacy_spikingjelly

legacy_spikingjelly.install_if_missing()
from spikingjelly.clock_driven import layer  # noqa: E402
from spikingjelly.clock_driven.neuron import MultiStepLIFNode, MultiStepParametricLIFNode  # noqa: E402


def _lif(th: float = 1.0) -> nn.Module:
    return MultiStepLIFNode(tau=2.0, v_threshold=th, detach_reset=True, backend="cupy")


class ConvStem(nn.Module):
    """[T, B, C, H, W] -> tokens [T, B, N, D]: conv3x3 - BN - LIF, max pool 2."""

    def __init__(self, cin: int, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, dim, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(dim)
        self.lif = _lif()
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        T, B = x.shape[:2]
        x = self.bn(self.conv(x.flatten(0, 1)))
        x = self.lif(x.reshape(T, B, *x.shape[1:])).flatten(0, 1)
        x = self.pool(x)
        return x.reshape(T, B, x.shape[1], -1).transpose(-1, -2).contiguous()  # [T, B, N, D]


class LinearBNAttention(nn.Module):
    """Spiking self-attention with token-major Linear + transposed BatchNorm1d (q, k, v, proj)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, 0.125
        for name in ("q", "k", "v"):
            setattr(self, f"{name}_linear", nn.Linear(dim, dim))
            setattr(self, f"{name}_bn", nn.BatchNorm1d(dim))
            setattr(self, f"{name}_lif", _lif())
        self.attn_lif = _lif(0.5)
        self.proj_linear = nn.Linear(dim, dim)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = _lif()

    def _branch(self, x, name, T, B, N, C):
        linear, bn, lif = (getattr(self, f"{name}_{part}") for part in ("linear", "bn", "lif"))
        y = bn(linear(x).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C).contiguous()
        return lif(y).reshape(T, B, N, self.heads, C // self.heads).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, N, C = x.shape
        flat = x.flatten(0, 1)
        q, k, v = (self._branch(flat, n, T, B, N, C) for n in ("q", "k", "v"))
        y = (q @ k.transpose(-2, -1) @ v) * self.scale
        y = self.attn_lif(y.transpose(2, 3).reshape(T, B, N, C).contiguous()).flatten(0, 1)
        y = self.proj_bn(self.proj_linear(y).transpose(-1, -2)).transpose(-1, -2).reshape(T, B, N, C)
        return self.proj_lif(y)


class LinearBNMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1_linear, self.fc1_bn, self.fc1_lif = nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), _lif()
        self.fc2_linear, self.fc2_bn, self.fc2_lif = nn.Linear(hidden, dim), nn.BatchNorm1d(dim), _lif()

    def forward(self, x):
        T, B, N, C = x.shape
        y = self.fc1_bn(self.fc1_linear(x.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        y = self.fc1_lif(y.reshape(T, B, N, -1).contiguous())
        y = self.fc2_bn(self.fc2_linear(y.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        return self.fc2_lif(y.reshape(T, B, N, C).contiguous())


class LinearBNSpikformer(nn.Module):
    def __init__(self, in_channels=3, dim=16, heads=2, num_classes=10, T=2):
        super().__init__()
        self.T = T
        self.stem = ConvStem(in_channels, dim)
        self.attn = LinearBNAttention(dim, heads)
        self.mlp = LinearBNMLP(dim, 2 * dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return self.head(x.mean(2)).mean(0)


class TupleOutputSDT(nn.Module):
    """Spike-driven head whose forward returns ``(logits, hook)``; ``hook`` is None unless asked for."""

    def __init__(self, in_channels=3, dim=16, num_classes=10, T=2):
        super().__init__()
        self.T = T
        self.stem = ConvStem(in_channels, dim)
        self.fc = nn.Linear(dim, dim)
        self.fc_bn = nn.BatchNorm1d(dim)
        self.fc_lif = _lif()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x, hook=None):
        x = self.stem(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))  # [T, B, N, D]
        T, B, N, D = x.shape
        y = self.fc_bn(self.fc(x.flatten(0, 1)).transpose(-1, -2)).transpose(-1, -2)
        x = x + self.fc_lif(y.reshape(T, B, N, D).contiguous())
        return self.head(x.mean(2)).mean(0), hook


class MergedLIFQKFormer(nn.Module):
    """A token attention whose projection LIF runs over the [T*B, C, N] tensor (time merged into
    batch), as QKFormer's published code does."""

    def __init__(self, in_channels=3, dim=16, num_classes=10, T=2):
        super().__init__()
        self.T = T
        self.stem = ConvStem(in_channels, dim)
        self.q_conv, self.q_bn, self.q_lif = nn.Conv1d(dim, dim, 1, bias=False), nn.BatchNorm1d(dim), _lif()
        self.proj_conv, self.proj_bn, self.proj_lif = nn.Conv1d(dim, dim, 1), nn.BatchNorm1d(dim), _lif()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)).transpose(-1, -2).contiguous()  # [T, B, C, N]
        T, B, C, N = x.shape
        q = self.q_lif(self.q_bn(self.q_conv(x.flatten(0, 1))).reshape(T, B, C, N))
        y = self.proj_lif(self.proj_bn(self.proj_conv((q * x).flatten(0, 1))))  # LIF over [T*B, C, N]
        x = x + y.reshape(T, B, C, N)
        return self.head(x.mean(3)).mean(0)


class _AnalogLIF(legacy_spikingjelly.LIFNode):
    """A subclass of the legacy single-step neuron, defined at import as the published ``neuron.py``
    defines its LIAF neurons (the model below does not use it: an analog neuron is not a spike)."""

    def forward(self, x):
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        out = torch.relu(self.v)
        self.neuronal_reset(spike)
        return out


class _SoftmaxAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim)

    def forward(self, x):  # [rows, L, D]: attention along L
        from einops import rearrange

        q, k, v = rearrange(self.qkv(x), "r l (three h d) -> three r h l d", three=3, h=self.heads)
        attn = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return self.proj(rearrange(attn @ v, "r h l d -> r l (h d)"))


class BatchTimeSpikeformer(nn.Module):
    """Divided space-time attention written with einops over batch-merged layouts (Loydian/Spikeformer)."""

    sample_shape = (4, 2, 16, 16)  # [T, C, H, W] per sample: the model reads [B, T, C, H, W]

    def __init__(self, dim=16, heads=2, num_classes=10):
        super().__init__()
        T, C, H, W = self.sample_shape
        self.tokens = nn.Sequential(layer.SeqToANNContainer(nn.Conv2d(C, dim, 3, 2, 1, bias=False), nn.BatchNorm2d(dim),
                                                            nn.AvgPool2d(2)),
                                    MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True))
        n = (H // 4) * (W // 4)
        self.pos = nn.Parameter(torch.randn(1, n, dim) * 0.1)
        self.time = nn.Parameter(torch.randn(1, T, dim) * 0.1)
        self.t_norm, self.t_attn, self.t_fc = nn.LayerNorm(dim, eps=1e-6), _SoftmaxAttention(dim, heads), nn.Linear(dim, dim)
        self.s_norm, self.s_attn = nn.LayerNorm(dim, eps=1e-6), _SoftmaxAttention(dim, heads)
        self.m_norm, self.fc1, self.fc2 = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.m_lif = MultiStepParametricLIFNode(init_tau=2.0, detach_reset=True)
        self.norm, self.pool, self.head = nn.LayerNorm(dim, eps=1e-6), nn.Linear(dim, 1), nn.Linear(dim, num_classes)

    def forward(self, x):  # [B, T, C, H, W]
        from einops import rearrange

        B, T = x.shape[:2]
        x = self.tokens(rearrange(x, "b t c h w -> t b c h w"))
        x = rearrange(x, "t b c h w -> (b t) (h w) c") + self.pos
        x = rearrange(x, "(b t) n m -> (b n) t m", b=B, t=T) + self.time
        x = rearrange(x, "(b n) t m -> b (n t) m", b=B, t=T)
        xt = rearrange(x, "b (n t) m -> (b n) t m", b=B, t=T)
        x = x + self.t_fc(rearrange(self.t_attn(self.t_norm(xt)), "(b n) t m -> b (n t) m", b=B, t=T))
        xs = rearrange(x, "b (n t) m -> (b t) n m", b=B, t=T)
        x = x + rearrange(self.s_attn(self.s_norm(xs)), "(b t) n m -> b (n t) m", b=B, t=T)
        res = rearrange(x, "b (n t) m -> t b n m", b=B, t=T)
        res = self.fc2(self.m_lif(self.fc1(self.m_norm(res))))
        x = self.norm(x + rearrange(res, "t b n m -> b (n t) m"))
        return self.head((self.pool(x).softmax(dim=1).transpose(-1, -2) @ x).squeeze(-2))


class UnfoldableBN(nn.Module):
    """A BatchNorm on spikes (no synapse to fold it into): the integer targets refuse it (tests)."""

    def __init__(self):
        super().__init__()
        self.stem = ConvStem(3, 8)
        self.bn = nn.BatchNorm1d(8)
        self.lif = _lif()

    def forward(self, x):
        x = self.stem(x.unsqueeze(0).repeat(2, 1, 1, 1, 1)).transpose(-1, -2)  # [T, B, C, N]
        T, B, C, N = x.shape
        return self.lif(self.bn(x.flatten(0, 1)).reshape(T, B, C, N)).mean((0, 3))


def linear_bn_spikformer(**kw) -> LinearBNSpikformer:
    return LinearBNSpikformer(**kw)


def tuple_output_sdt(**kw) -> TupleOutputSDT:
    return TupleOutputSDT(**kw)


def merged_lif_qkformer(**kw) -> MergedLIFQKFormer:
    return MergedLIFQKFormer(**kw)


def batch_time_spikeformer(**kw) -> BatchTimeSpikeformer:
    return BatchTimeSpikeformer(**kw)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BatchNorm statistics and affine parameters so that the layers fire."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.3 + 0.8)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()
