"""Spikeformer (Li, Lei & Yang, "Spikeformer: a novel architecture for training high-performance
low-latency spiking neural network", 2022), scaled down.

A hybrid: a spiking convolutional tokenizer followed by a *real-valued* transformer with divided
space-time attention (TimeSformer-style).  What it exercises:

* Convolutional tokenizer of SEW residual blocks (ADD connection), PLIF neurons throughout:
  ``SN(BN(Conv(SN(BN(Conv(x)))))) + shortcut(x)``, the shortcut the identity or, when the block
  downsamples or changes width, ``SN(BN(Conv1x1(AvgPool2x2(x))))``.  Block outputs are sums of two
  spike tensors (0..2); the first block sees the real-valued input (direct encoding).
* Learnable spatio-temporal position embedding: one parameter per (step, token, channel), added
  (the authors' code stores it factored, ``pos_embed[N, D] + time_embed[T, D]``; the sum is the
  same kind of constant).
* Transformer block (float residual stream, LayerNorm eps 1e-6, softmax attention with scale 1/√d,
  float Q / K / V from one bias-free Linear):
      z'   = z   + FC_t(TMSA(LN(z)))     attention across the T steps of each token
      z''  = z'  + SMSA(LN(z'))          attention across the N tokens of each step
      z''' = z'' + FC(SN(FC(LN(z''))))   MLP, SN = PLIF (multi-step over T)
  ``FC_t`` is TimeSformer's extra linear after the temporal attention (the authors' code has it).
  TMSA needs all T steps before it can produce step 0: the model cannot run online.
* Head: final LayerNorm, sequence pooling (Compact Convolutional Transformer): ``w = softmax over
  tokens of Linear(D -> 1)``, ``z = Σ_n w_n x_n``, then Linear -> classes.  ``pool="step"`` (default)
  pools the N tokens of each step and returns logits per step ``[T, B, classes]``;
  ``pool="spacetime"`` pools all N·T tokens at once as the authors' code does and returns ``[B, classes]``.

Input: ``[B, C, H, W]`` (a static image, repeated over the T steps inside the model) or
``[T, B, C, H, W]`` (event frames).  Tokens: a 4×4 grid (``img / 2^k`` with k stride-2 SEW blocks).

Trained example (``examples/train.py spikeformer_st_digits``: AdamW 3e-3, cosine, batch 64, 80 epochs,
about 4 minutes on one CPU thread): ``spikeformer_st()`` (33,266 parameters) reaches 95.56 % on the 360
held-out digits, 95.00 % as spikec's integer model (README table).  On event streams whose ten
classes only the order of the T = 8 steps tells apart (``spikeformer_st_events``, ``--dataset events``,
[T, B, 2, 16, 16], 40 epochs, about 5 minutes): 96.30 % float, 96.10 % integer on 1000 held-out streams.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from spikingjelly.activation_based import layer, neuron


def plif():
    return neuron.ParametricLIFNode(init_tau=2.0, detach_reset=True, step_mode="m")


class SEWBlock(nn.Module):
    """SEW-ResNet basic block with ADD connection, on [T, B, C, H, W]."""

    def __init__(self, in_channels, out_channels, stride=1, kernel_size=3):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = layer.SeqToANNContainer(
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=False), nn.BatchNorm2d(out_channels))
        self.sn1 = plif()
        self.conv2 = layer.SeqToANNContainer(
            nn.Conv2d(out_channels, out_channels, kernel_size, 1, pad, bias=False), nn.BatchNorm2d(out_channels))
        self.sn2 = plif()
        if stride != 1 or in_channels != out_channels:
            pool = [nn.AvgPool2d(stride, stride)] if stride != 1 else []
            self.shortcut = nn.Sequential(
                layer.SeqToANNContainer(*pool, nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                        nn.BatchNorm2d(out_channels)),
                plif())
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.sn2(self.conv2(self.sn1(self.conv1(x))))
        return out + self.shortcut(x)


class Tokenizer(nn.Module):
    def __init__(self, in_channels, embed_dims, strides=(1, 2), kernel_size=3):
        super().__init__()
        n = len(strides)
        dims = [embed_dims // 2 ** (n - 1 - i) for i in range(n)]
        blocks, c_in = [], in_channels
        for c_out, s in zip(dims, strides):
            blocks.append(SEWBlock(c_in, c_out, stride=s, kernel_size=kernel_size))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x):  # [T, B, C, H, W] -> [T, B, N, D]
        x = self.blocks(x)
        return x.flatten(3).transpose(2, 3)


class Attention(nn.Module):
    """Multi-head softmax self-attention over the second axis of [B', L, D]."""

    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, L, D = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, L, D)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.sn = plif()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):  # [T, B, N, D]: the neuron integrates over T
        return self.fc2(self.sn(self.fc1(x)))


class Block(nn.Module):
    """Divided space-time attention block on [T, B, N, D]."""

    def __init__(self, dim, num_heads, mlp_ratio=2.0):
        super().__init__()
        self.temporal_norm = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        T, B, N, D = x.shape
        # temporal: each token attends over its T steps
        xt = x.permute(1, 2, 0, 3).reshape(B * N, T, D)
        res = self.temporal_fc(self.temporal_attn(self.temporal_norm(xt)))
        x = x + res.reshape(B, N, T, D).permute(2, 0, 1, 3)
        # spatial: each step's tokens attend over each other
        res = self.attn(self.norm1(x.reshape(T * B, N, D)))
        x = x + res.reshape(T, B, N, D)
        return x + self.mlp(self.norm2(x))


class Spikeformer(nn.Module):
    def __init__(self, in_channels=2, num_classes=10, embed_dims=32, num_heads=2, mlp_ratio=2.0, depths=1, T=4,
                 img=16, strides=(2, 2), kernel_size=3, pool="step"):
        super().__init__()
        assert pool in ("step", "spacetime"), pool
        self.T = T
        self.pool = pool
        self.patch_embed = Tokenizer(in_channels, embed_dims, strides, kernel_size)
        side = img // math.prod(strides)
        self.pos_embed = nn.Parameter(torch.zeros(T, 1, side * side, embed_dims))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([Block(embed_dims, num_heads, mlp_ratio) for _ in range(depths)])
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.attention_pool = nn.Linear(embed_dims, 1)
        self.head = nn.Linear(embed_dims, num_classes)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)

    def forward_features(self, x):
        x = self.patch_embed(x) + self.pos_embed  # [T, B, N, D]
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        if self.pool == "spacetime":
            x = x.transpose(0, 1).flatten(1, 2)  # [B, T*N, D]
        w = torch.softmax(self.attention_pool(x), dim=-2)  # one weight per token
        return (w.transpose(-1, -2) @ x).squeeze(-2)  # [T, B, D] or [B, D]

    def forward(self, x):
        if x.dim() == 4:
            x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        return self.head(self.forward_features(x))


def spikeformer_st(T: int = 4, embed_dims: int = 32, num_heads: int = 2, depths: int = 1, in_channels: int = 1,
                   num_classes: int = 10, img: int = 8, mlp_ratio: float = 2.0, kernel_size: int = 3,
                   pool: str = "step") -> Spikeformer:
    """Tiny Spikeformer; the tokenizer has log2(img / 4) stride-2 SEW blocks (at least two blocks), so
    the transformer sees 4×4 = 16 tokens: img 8 -> strides (1, 2) (digits, 1×8×8), 16 -> (2, 2) (events,
    2×16×16), 32 -> (2, 2, 2) (digits32, 3×32×32)."""
    k = int(math.log2(img // 4))
    strides = (1,) * max(0, 2 - k) + (2,) * k
    return Spikeformer(in_channels=in_channels, num_classes=num_classes, embed_dims=embed_dims, num_heads=num_heads,
                       mlp_ratio=mlp_ratio, depths=depths, T=T, img=img, strides=strides, kernel_size=kernel_size,
                       pool=pool)
