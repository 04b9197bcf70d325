"""Meta-SpikeFormer / Spike-Driven Transformer V2 (Yao et al., ICLR 2024), in the form of the
authors' code (BICLab/Spike-Driven-Transformer-V2, ``sdt_v2``), scaled down.

What it exercises:

* membrane shortcuts (residuals add real-valued pre-neuron values; every branch starts with a LIF);
* Conv blocks: ``U' = U + SepConv(U)`` with SepConv = pw1 → BN → LIF → depthwise k×k → pw2 → BN
  (no neuron between the depthwise and pw2 convs), ``U'' = U' + Conv3x3(SN(BN(Conv3x3(SN(U')))))``;
* RepConv: 1×1 conv → BN with BN-aware padding (``BNAndPadLayer``) → depthwise 3×3 → 1×1 → BN,
  wrapped as ``Sequential(RepConv, BatchNorm2d)`` for q / k / v / proj;
* SDSA-3 attention: ``x = (q @ (kᵀ @ v)) * 0.125`` then an attention LIF with threshold 0.5;
* head: spatial mean, LIF, Linear, mean over time.

Neurons use the legacy ``MultiStepLIFNode`` API, as the published code does.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from spikec.compat import legacy_spikingjelly

legacy_spikingjelly.install_if_missing()
from spikingjelly.clock_driven.neuron import MultiStepLIFNode  # noqa: E402


def _lif(**kw):
    return MultiStepLIFNode(tau=2.0, detach_reset=True, backend="cupy", **kw)


class BNAndPadLayer(nn.Module):
    def __init__(self, pad_pixels, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)
        self.pad_pixels = pad_pixels

    def forward(self, input):
        output = self.bn(input)
        if self.pad_pixels > 0:
            if self.bn.affine:
                pad_values = self.bn.bias.detach() - self.bn.running_mean * self.bn.weight.detach() / torch.sqrt(
                    self.bn.running_var + self.bn.eps)
            else:
                pad_values = -self.bn.running_mean / torch.sqrt(self.bn.running_var + self.bn.eps)
            output = F.pad(output, [self.pad_pixels] * 4)
            pad_values = pad_values.view(1, -1, 1, 1)
            output[:, :, 0:self.pad_pixels, :] = pad_values
            output[:, :, -self.pad_pixels:, :] = pad_values
            output[:, :, :, 0:self.pad_pixels] = pad_values
            output[:, :, :, -self.pad_pixels:] = pad_values
        return output


class RepConv(nn.Module):
    def __init__(self, in_channel, out_channel, bias=False):
        super().__init__()
        conv1x1 = nn.Conv2d(in_channel, in_channel, 1, 1, 0, bias=False, groups=1)
        bn = BNAndPadLayer(pad_pixels=1, num_features=in_channel)
        conv3x3 = nn.Sequential(
            nn.Conv2d(in_channel, in_channel, 3, 1, 0, groups=in_channel, bias=False),
            nn.Conv2d(in_channel, out_channel, 1, 1, 0, groups=1, bias=False),
            nn.BatchNorm2d(out_channel),
        )
        self.body = nn.Sequential(conv1x1, bn, conv3x3)

    def forward(self, x):
        return self.body(x)


class SepConv(nn.Module):
    def __init__(self, dim, expansion_ratio=2, bias=False, kernel_size=7, padding=3):
        super().__init__()
        med = int(expansion_ratio * dim)
        self.lif1 = _lif()
        self.pwconv1 = nn.Conv2d(dim, med, kernel_size=1, stride=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(med)
        self.lif2 = _lif()
        self.dwconv = nn.Conv2d(med, med, kernel_size=kernel_size, padding=padding, groups=med, bias=bias)
        self.pwconv2 = nn.Conv2d(med, dim, kernel_size=1, stride=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.lif1(x)
        x = self.bn1(self.pwconv1(x.flatten(0, 1))).reshape(T, B, -1, H, W)
        x = self.lif2(x)
        x = self.dwconv(x.flatten(0, 1))
        x = self.bn2(self.pwconv2(x)).reshape(T, B, -1, H, W)
        return x


class MS_ConvBlock(nn.Module):
    def __init__(self, dim, mlp_ratio=4.0, sep_kernel=7):
        super().__init__()
        self.Conv = SepConv(dim=dim, kernel_size=sep_kernel, padding=sep_kernel // 2)
        self.mlp_ratio = mlp_ratio
        self.lif1 = _lif()
        self.conv1 = nn.Conv2d(dim, int(dim * mlp_ratio), kernel_size=3, padding=1, groups=1, bias=False)
        self.bn1 = nn.BatchNorm2d(int(dim * mlp_ratio))
        self.lif2 = _lif()
        self.conv2 = nn.Conv2d(int(dim * mlp_ratio), dim, kernel_size=3, padding=1, groups=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x):
        T, B, C, H, W = x.shape
        x = self.Conv(x) + x
        x_feat = x
        x = self.bn1(self.conv1(self.lif1(x).flatten(0, 1))).reshape(T, B, int(self.mlp_ratio * C), H, W)
        x = self.bn2(self.conv2(self.lif2(x).flatten(0, 1))).reshape(T, B, C, H, W)
        x = x_feat + x
        return x


class MS_MLP(nn.Module):
    def __init__(self, in_features, hidden_features=None):
        super().__init__()
        hidden_features = hidden_features or in_features
        self.fc1_conv = nn.Conv1d(in_features, hidden_features, kernel_size=1, stride=1)
        self.fc1_bn = nn.BatchNorm1d(hidden_features)
        self.fc1_lif = _lif()
        self.fc2_conv = nn.Conv1d(hidden_features, in_features, kernel_size=1, stride=1)
        self.fc2_bn = nn.BatchNorm1d(in_features)
        self.fc2_lif = _lif()
        self.c_hidden = hidden_features

    def forward(self, x):
        T, B, C, H, W = x.shape
        N = H * W
        x = x.flatten(3)
        x = self.fc1_lif(x)
        x = self.fc1_conv(x.flatten(0, 1))
        x = self.fc1_bn(x).reshape(T, B, self.c_hidden, N).contiguous()
        x = self.fc2_lif(x)
        x = self.fc2_conv(x.flatten(0, 1))
        x = self.fc2_bn(x).reshape(T, B, C, H, W).contiguous()
        return x


class MS_Attention_RepConv_qkv_id(nn.Module):
    def __init__(self, dim, num_heads=8):
        super().__init__()
        assert dim % num_heads == 0
        self.dim = dim
        self.num_heads = num_heads
        self.scale = 0.125
        self.head_lif = _lif()
        self.q_conv = nn.Sequential(RepConv(dim, dim, bias=False), nn.BatchNorm2d(dim))
        self.k_conv = nn.Sequential(RepConv(dim, dim, bias=False), nn.BatchNorm2d(dim))
        self.v_conv = nn.Sequential(RepConv(dim, dim, bias=False), nn.BatchNorm2d(dim))
        self.q_lif = _lif()
        self.k_lif = _lif()
        self.v_lif = _lif()
        self.attn_lif = _lif(v_threshold=0.5)
        self.proj_conv = nn.Sequential(RepConv(dim, dim, bias=False), nn.BatchNorm2d(dim))

    def _heads(self, x, T, B, C, N):
        return x.flatten(3).transpose(-1, -2).reshape(T, B, N, self.num_heads, C // self.num_heads) \
            .permute(0, 1, 3, 2, 4).contiguous()

    def forward(self, x):
        T, B, C, H, W = x.shape
        N = H * W
        x = self.head_lif(x)
        q = self.q_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        k = self.k_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        v = self.v_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        q = self._heads(self.q_lif(q), T, B, C, N)
        k = self._heads(self.k_lif(k), T, B, C, N)
        v = self._heads(self.v_lif(v), T, B, C, N)
        x = k.transpose(-2, -1) @ v
        x = (q @ x) * self.scale
        x = x.transpose(3, 4).reshape(T, B, C, N).contiguous()
        x = self.attn_lif(x).reshape(T, B, C, H, W)
        x = self.proj_conv(x.flatten(0, 1)).reshape(T, B, C, H, W)
        return x


class MS_Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.attn = MS_Attention_RepConv_qkv_id(dim, num_heads=num_heads)
        self.mlp = MS_MLP(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(x)
        x = x + self.mlp(x)
        return x


class MS_DownSampling(nn.Module):
    def __init__(self, in_channels=2, embed_dims=256, kernel_size=3, stride=2, padding=1, first_layer=True):
        super().__init__()
        self.encode_conv = nn.Conv2d(in_channels, embed_dims, kernel_size=kernel_size, stride=stride, padding=padding)
        self.encode_bn = nn.BatchNorm2d(embed_dims)
        if not first_layer:
            self.encode_lif = _lif()

    def forward(self, x):
        T, B, _, _, _ = x.shape
        if hasattr(self, "encode_lif"):
            x = self.encode_lif(x)
        x = self.encode_conv(x.flatten(0, 1))
        _, _, H, W = x.shape
        x = self.encode_bn(x).reshape(T, B, -1, H, W).contiguous()
        return x


class MetaSpikeFormer(nn.Module):
    """Stages: downsample -> conv block -> downsample -> conv block -> downsample -> transformer block."""

    def __init__(self, in_channels=3, num_classes=10, embed_dim=(8, 16, 32), num_heads=2, mlp_ratio=4.0,
                 T=2, sep_kernel=7):
        super().__init__()
        self.T = T
        self.downsample1 = MS_DownSampling(in_channels, embed_dim[0], 3, 2, 1, first_layer=True)
        self.ConvBlock1 = nn.ModuleList([MS_ConvBlock(embed_dim[0], mlp_ratio, sep_kernel)])
        self.downsample2 = MS_DownSampling(embed_dim[0], embed_dim[1], 3, 2, 1, first_layer=False)
        self.ConvBlock2 = nn.ModuleList([MS_ConvBlock(embed_dim[1], mlp_ratio, sep_kernel)])
        self.downsample3 = MS_DownSampling(embed_dim[1], embed_dim[2], 3, 2, 1, first_layer=False)
        self.block3 = nn.ModuleList([MS_Block(embed_dim[2], num_heads, mlp_ratio)])
        self.head_lif = _lif()
        self.head = nn.Linear(embed_dim[2], num_classes)

    def forward_features(self, x):
        x = self.downsample1(x)
        for blk in self.ConvBlock1:
            x = blk(x)
        x = self.downsample2(x)
        for blk in self.ConvBlock2:
            x = blk(x)
        x = self.downsample3(x)
        for blk in self.block3:
            x = blk(x)
        return x

    def forward(self, x):
        x = x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1)
        x = self.forward_features(x)
        x = x.flatten(3).mean(3)
        x = self.head_lif(x)
        x = self.head(x).mean(0)
        return x


def meta_spikformer_tiny(T: int = 2, num_classes: int = 10) -> MetaSpikeFormer:
    """3xHxW input, downsampled 8x before the transformer stage (the zoo's 3x32x32 gives 4x4 = 16
    tokens); SepConv kernel 3."""
    return MetaSpikeFormer(in_channels=3, num_classes=num_classes, embed_dim=(8, 16, 32), num_heads=2, T=T,
                           sep_kernel=3)
