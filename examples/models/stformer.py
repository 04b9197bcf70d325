"""STFormer (spatial core + temporal core + spiking guided attention), scaled down.

No public code exists; this follows the paper's description and builds, as the paper does, on
Spikingformer (membrane shortcut: every branch starts with a spiking neuron, residuals add
real-valued BN outputs).  Multi-step LIF neurons (tau 2, threshold 1, hard reset), tensors
[T, B, C, H, W].

Spatial core (tokenizer): large-kernel (5×5) spiking convolutions
``BN(Conv5x5(x))``, then ``[SN → Conv5x5 → BN (→ MaxPool 3/2/1)]`` per stage, widths D/4, D/2, D,
then the relative position embedding ``U = X + BN(Conv3x3(SN(X)))``.

Temporal core: ``n`` parallel 3-D convolutions over time on the spikes ``SN(U)``, branch ``i`` with
kernel ``(k_i, 1, 1)`` and ``2D / n`` output channels, each followed by BN; the branches are
concatenated into ``2D`` channels and split in halves:

    [X1 | Y] = concat_i BN_i(Conv3d_{k_i}(SN(U)))       X1: the first D channels (the short kernels),
                                                         Y:  the last D channels (the long kernels)

Padding keeps T steps.  It is *causal* by default: each branch pads ``k_i - 1`` zero steps in the
past and none in the future, so step t depends only on steps ≤ t and the whole model can run online
(step by step).  ``causal=False`` pads symmetrically (the paper's "same" padding; not online).

Spiking guided attention (SGA), our reading (the paper gives no formula).  The query is guided by the
spatial features X2 = U plus the first half X1 of the temporal features; keys and values come from
the other half Y; the attention itself is Spikformer's spike-driven SSA (no softmax):

    S_q = SN(U + X1),    S_y = SN(Y)
    Q = SN(BN(W_q S_q)),  K = SN(BN(W_k S_y)),  V = SN(BN(W_v S_y))     (1×1 convs, binary Q, K, V)
    A = SN_attn(Q Kᵀ V · s)        per step and head, s = 0.125, SN_attn threshold 0.5
    U' = U + BN(W_o A)

ST-MLP (a Spikingformer MLP applied to every step and token): ``U'' = U' + BN(W_2 SN(BN(W_1 SN(U'))))``.

Head: ``SN(U)``, global average pooling over the tokens, Linear; logits per step ``[T, B, classes]``.

Input: ``[B, C, H, W]`` (static image, repeated over the T steps inside the model) or
``[T, B, C, H, W]`` (event frames).

Measured (float, surrogate gradients, AdamW 3e-3, cosine, batch 64, 1 CPU thread): ``stformer()``
(44,226 parameters) reaches 95.8 % on the held-out digits after 30 epochs (3 s / epoch);
``stformer(T=8, img=16, in_channels=2)`` 100 % on :mod:`.events` after 10 epochs (15 s / epoch).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from spikingjelly.activation_based import layer, neuron


def lif(**kw):
    return neuron.LIFNode(tau=2.0, detach_reset=True, step_mode="m", **kw)


class SpatialCore(nn.Module):
    """Large-kernel spiking conv tokenizer and relative position embedding: [T, B, C, H, W] -> [T, B, D, h, w]."""

    def __init__(self, in_channels, embed_dims, kernel_size=5, pool_stages=(False, True, False)):
        super().__init__()
        dims = [embed_dims // 4, embed_dims // 2, embed_dims]
        pad = kernel_size // 2
        self.stem = layer.SeqToANNContainer(
            nn.Conv2d(in_channels, dims[0], kernel_size, 1, pad, bias=False), nn.BatchNorm2d(dims[0]),
            *([nn.MaxPool2d(3, 2, 1)] if pool_stages[0] else []))
        self.stages = nn.ModuleList()
        for c_in, c_out, pool in zip(dims[:-1], dims[1:], pool_stages[1:]):
            self.stages.append(nn.Sequential(
                lif(),
                layer.SeqToANNContainer(nn.Conv2d(c_in, c_out, kernel_size, 1, pad, bias=False), nn.BatchNorm2d(c_out),
                                        *([nn.MaxPool2d(3, 2, 1)] if pool else []))))
        self.rpe_lif = lif()
        self.rpe = layer.SeqToANNContainer(nn.Conv2d(embed_dims, embed_dims, 3, 1, 1, bias=False),
                                           nn.BatchNorm2d(embed_dims))

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x + self.rpe(self.rpe_lif(x))


class TemporalCore(nn.Module):
    """Parallel temporal convolutions (kernel (k, 1, 1)) over the spikes of U; returns (X1, Y)."""

    def __init__(self, dim, kernel_sizes=(1, 2, 3, 4), causal=True):
        super().__init__()
        assert (2 * dim) % len(kernel_sizes) == 0
        width = 2 * dim // len(kernel_sizes)
        self.kernel_sizes = tuple(kernel_sizes)
        self.causal = causal
        self.lif = lif()
        self.convs = nn.ModuleList([nn.Conv3d(dim, width, (k, 1, 1), bias=False) for k in kernel_sizes])
        self.bns = nn.ModuleList([nn.BatchNorm3d(width) for _ in kernel_sizes])

    def forward(self, u):
        s = self.lif(u).permute(1, 2, 0, 3, 4)  # [B, D, T, H, W]
        feats = []
        for k, conv, bn in zip(self.kernel_sizes, self.convs, self.bns):
            past, future = (k - 1, 0) if self.causal else ((k - 1) // 2, k // 2)
            feats.append(bn(conv(F.pad(s, (0, 0, 0, 0, past, future)))))
        y = torch.cat(feats, dim=1).permute(2, 0, 1, 3, 4)  # [T, B, 2D, H, W]
        return y.chunk(2, dim=2)


class SGA(nn.Module):
    """Spiking guided attention (see the module docstring)."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = 0.125
        self.q_in_lif = lif()
        self.y_lif = lif()
        self.q_conv = layer.SeqToANNContainer(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.q_lif = lif()
        self.k_conv = layer.SeqToANNContainer(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.k_lif = lif()
        self.v_conv = layer.SeqToANNContainer(nn.Conv2d(dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        self.v_lif = lif()
        self.attn_lif = lif(v_threshold=0.5)
        self.proj = layer.SeqToANNContainer(nn.Conv2d(dim, dim, 1), nn.BatchNorm2d(dim))

    def _heads(self, x):  # [T, B, C, H, W] -> [T, B, heads, N, C / heads]
        T, B, C, H, W = x.shape
        return x.flatten(3).transpose(2, 3).reshape(T, B, H * W, self.num_heads, C // self.num_heads).transpose(2, 3)

    def forward(self, u, x1, y):
        T, B, C, H, W = u.shape
        s_q = self.q_in_lif(u + x1)
        s_y = self.y_lif(y)
        q = self._heads(self.q_lif(self.q_conv(s_q)))
        k = self._heads(self.k_lif(self.k_conv(s_y)))
        v = self._heads(self.v_lif(self.v_conv(s_y)))
        x = (q @ k.transpose(-2, -1)) @ v * self.scale  # [T, B, heads, N, d]
        x = x.transpose(2, 3).reshape(T, B, H * W, C).transpose(2, 3).reshape(T, B, C, H, W)
        return self.proj(self.attn_lif(x))


class STMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.lif1 = lif()
        self.fc1 = layer.SeqToANNContainer(nn.Conv2d(dim, hidden, 1), nn.BatchNorm2d(hidden))
        self.lif2 = lif()
        self.fc2 = layer.SeqToANNContainer(nn.Conv2d(hidden, dim, 1), nn.BatchNorm2d(dim))

    def forward(self, x):
        return self.fc2(self.lif2(self.fc1(self.lif1(x))))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, kernel_sizes=(1, 2, 3, 4), causal=True):
        super().__init__()
        self.temporal = TemporalCore(dim, kernel_sizes, causal)
        self.attn = SGA(dim, num_heads)
        self.mlp = STMLP(dim, int(dim * mlp_ratio))

    def forward(self, u):
        x1, y = self.temporal(u)
        u = u + self.attn(u, x1, y)
        return u + self.mlp(u)


class STFormer(nn.Module):
    def __init__(self, in_channels=2, num_classes=10, embed_dims=32, num_heads=2, mlp_ratio=4.0, depths=1, T=4,
                 kernel_size=5, pool_stages=(False, True, False), kernel_sizes=(1, 2, 3, 4), causal=True):
        super().__init__()
        self.T = T
        self.spatial = SpatialCore(in_channels, embed_dims, kernel_size, pool_stages)
        self.blocks = nn.ModuleList([Block(embed_dims, num_heads, mlp_ratio, kernel_sizes, causal)
                                     for _ in range(depths)])
        self.head_lif = lif()
        self.head = nn.Linear(embed_dims, num_classes)

    def forward(self, x):
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        u = self.spatial(x)
        for blk in self.blocks:
            u = blk(u)
        x = self.head_lif(u).flatten(3).mean(3)  # [T, B, D]
        return self.head(x)


def stformer(T: int = 4, embed_dims: int = 32, num_heads: int = 2, depths: int = 1, in_channels: int = 1,
             num_classes: int = 10, img: int = 8, mlp_ratio: float = 4.0, kernel_sizes=(1, 2, 3, 4),
             causal: bool = True) -> STFormer:
    """Tiny STFormer with a 4×4 token grid: img 8 -> one max-pool (digits, 1×8×8), 16 -> two
    (events, 2×16×16), 32 -> three (digits32, 3×32×32)."""
    pools = {8: (False, True, False), 16: (False, True, True), 32: (True, True, True)}[img]
    return STFormer(in_channels=in_channels, num_classes=num_classes, embed_dims=embed_dims, num_heads=num_heads,
                    mlp_ratio=mlp_ratio, depths=depths, T=T, pool_stages=pools, kernel_sizes=tuple(kernel_sizes),
                    causal=causal)
