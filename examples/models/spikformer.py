"""Spikformer (Zhou et al., ICLR 2023), written the way the authors' CIFAR code is written.

This is the project's own Spikformer example and deliberately keeps the published code's form, so
it exercises what users' checkpoints contain:

* legacy neurons: ``from spikingjelly.clock_driven.neuron import MultiStepLIFNode`` with
  ``backend='cupy'`` (spikec's compat layer provides ``clock_driven`` on spikingjelly 2.x);
* Spiking Patch Splitting with the max-pool *after* the LIF (pooling spikes = OR);
* relative position embedding ``x + LIF(BN(Conv(x)))`` (a sum of two spike tensors);
* SSA with Conv1d + BN1d projections, ``attn = (q @ kᵀ) * 0.125; x = attn @ v`` and an
  attention LIF with threshold 0.5, no softmax;
* head: mean over tokens, Linear, mean over time.

Tiny configurations (``spikformer_digits``) are used by the tests, the demo and the benchmarks.
"""

from __future__ import annotations

import torch.nn as nn

from spikec.compat import legacy_spikingjelly

legacy_spikingjelly.install_if_missing()
from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402


class MLP(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        self.c_hidden = hidden_features
        self.c_output = in_features

    def forward(self, x):
        T, B, C, N = x.shape
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, N).contiguous()
        x = self.fc1_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, C, N).contiguous()
        return self.fc2_lif(x)


class SSA(nn.Module):
    def __init__(self, dim, num_heads=8):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} should be divided by num_heads {num_heads}."
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.q_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.q_bn = nn.BatchNorm1d(dim)
        self.q_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        self.k_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.k_bn = nn.BatchNorm1d(dim)
        self.k_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        self.v_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1, bias=False)
        self.v_bn = nn.BatchNorm1d(dim)
        self.v_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")
        self.attn_lif = MultiStepLIFNode(tau=2.0, v_threshold=0.5, detach_reset=True, backend="cupy")
        self.proj_conv = nn.Conv1d(dim, dim, kernel_size=1, stride=1)
        self.proj_bn = nn.BatchNorm1d(dim)
        self.proj_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")

    def _heads(self, x, conv, bn, lif, T, B, C, N):
        x = bn(conv(x)).reshape(T, B, C, N).contiguous()
        x = lif(x)
        return x.transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads).permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, C, N = x.shape
        x_for_qkv = x.flatten(0, 1)
        q = self._heads(x_for_qkv, self.q_conv, self.q_bn, self.q_lif, T, B, C, N)
        k = self._heads(x_for_qkv, self.k_conv, self.k_bn, self.k_lif, T, B, C, N)
        v = self._heads(x_for_qkv, self.v_conv, self.v_bn, self.v_lif, T, B, C, N)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        x = attn @ v
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x)
        x = x.flatten(0, 1)
        x = self.proj_lif(self.proj_bn(self.proj_conv(x)).reshape(T, B, C, N))
        return x


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.attn = SSA(dim, num_heads=num_heads)
        self.mlp = MLP(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return x


class SPS(nn.Module):
    """Spiking Patch Splitting: 4 x (conv3x3 - BN - LIF [- maxpool]) and the RPE conv."""

    def __init__(self, in_channels=2, embed_dims=256, pool_stages=(False, False, True, True)):
        super().__init__()
        dims = [embed_dims // 8, embed_dims // 4, embed_dims // 2, embed_dims]
        self.convs = nn.ModuleList()
        self.bns = nn.ModuleList()
        self.lifs = nn.ModuleList()
        self.pools = nn.ModuleList()
        c_in = in_channels
        for c_out, pool in zip(dims, pool_stages):
            self.convs.append(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=False))
            self.bns.append(nn.BatchNorm2d(c_out))
            self.lifs.append(MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy"))
            self.pools.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if pool else nn.Identity())
            c_in = c_out
        self.rpe_conv = nn.Conv2d(embed_dims, embed_dims, kernel_size=3, stride=1, padding=1, bias=False)
        self.rpe_bn = nn.BatchNorm2d(embed_dims)
        self.rpe_lif = MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy")

    def forward(self, x):
        T, B, _, H, W = x.shape
        for conv, bn, lif, pool in zip(self.convs, self.bns, self.lifs, self.pools):
            x = bn(conv(x.flatten(0, 1)))
            x = lif(x.reshape(T, B, *x.shape[1:]).contiguous())
            x = pool(x.flatten(0, 1))
            x = x.reshape(T, B, *x.shape[1:])
        x_feat = x
        x = self.rpe_bn(self.rpe_conv(x.flatten(0, 1)))
        x = self.rpe_lif(x.reshape(T, B, *x.shape[1:]).contiguous())
        x = x + x_feat
        return x.flatten(-2)  # T, B, C, N


class Spikformer(nn.Module):
    def __init__(self, in_channels=3, num_classes=10, embed_dims=64, num_heads=4, mlp_ratio=4.0,
                 depths=1, T=4, pool_stages=(False, False, True, True)):
        super().__init__()
        self.T = T
        self.patch_embed = SPS(in_channels=in_channels, embed_dims=embed_dims, pool_stages=pool_stages)
        self.block = nn.ModuleList([Block(embed_dims, num_heads, mlp_ratio) for _ in range(depths)])
        self.head = nn.Linear(embed_dims, num_classes)

    def forward_features(self, x):
        x = self.patch_embed(x)
        for blk in self.block:
            x = blk(x)
        return x.mean(3)

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        x = self.head(x.mean(0))
        return x


def spikformer_digits(embed_dims: int = 32, num_heads: int = 2, depths: int = 1, T: int = 4,
                      num_classes: int = 10) -> Spikformer:
    """Tiny Spikformer for 1x8x8 images (scikit-learn digits): 8x8 -> 2x2 = 4 tokens... by
    default only one pool, giving 4x4 = 16 tokens."""
    return Spikformer(in_channels=1, num_classes=num_classes, embed_dims=embed_dims, num_heads=num_heads,
                      depths=depths, T=T, pool_stages=(False, False, False, True))


def spikformer_cifar_tiny(embed_dims: int = 32, num_heads: int = 2, depths: int = 1, T: int = 2) -> Spikformer:
    """Small CIFAR-shaped (3x32x32) configuration: 8x8 = 64 tokens."""
    return Spikformer(in_channels=3, num_classes=10, embed_dims=embed_dims, num_heads=num_heads,
                      depths=depths, T=T, pool_stages=(False, False, True, True))
