"""Meta-SpikeFormer's BN-aware padding (``BNAndPadLayer`` of the RepConv block) as one op.

The layer computes ``BN(x)`` and pads it with, per channel, the value BN gives a zero input
(``β − μ·γ/σ``) by writing slices in place — a pattern that does not survive tracing as one
operation.  Before tracing, each such module is swapped for :class:`TracedBNAndPad`, which runs
the same batch norm and then the custom op ``spikec::channel_pad`` (constant padding with one
value per channel), which becomes one IR :class:`~spikec.ir.PadNode`.

Recognised by class name ``BNAndPadLayer`` with attributes ``bn`` (BatchNorm2d) and
``pad_pixels`` (the BICLab Spike-Driven-Transformer-V2 code).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..runtime.float_interpreter import pad_with_values


@torch.library.custom_op("spikec::channel_pad", mutates_args=())
def channel_pad(x: torch.Tensor, pad: int, values: torch.Tensor) -> torch.Tensor:
    """Pad the last two axes of ``x`` [N, C, H, W] by ``pad`` with ``values[c]`` in channel c."""
    return pad_with_values(x, ((pad, pad), (pad, pad)), values.detach().cpu().numpy().astype(np.float32))


@channel_pad.register_fake
def _channel_pad_fake(x, pad, values):
    return x.new_empty((*x.shape[:-2], x.shape[-2] + 2 * pad, x.shape[-1] + 2 * pad))


def bn_zero_response(bn: nn.BatchNorm2d) -> torch.Tensor:
    """What ``bn`` outputs for a zero input, computed as BNAndPadLayer computes it."""
    if bn.affine:
        return (bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)).float()
    return (-bn.running_mean / torch.sqrt(bn.running_var + bn.eps)).float()


class TracedBNAndPad(nn.Module):
    def __init__(self, bn: nn.BatchNorm2d, pad: int):
        super().__init__()
        self.bn = bn
        self.pad = int(pad)
        self.register_buffer("pad_values", bn_zero_response(bn).clone())

    def forward(self, x):
        y = self.bn(x)
        return channel_pad(y, self.pad, self.pad_values) if self.pad > 0 else y


def replace_bn_and_pad(model: nn.Module) -> int:
    """Swap every BNAndPadLayer of ``model`` (in place); returns how many."""
    count = 0
    for _, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            if type(child).__name__ == "BNAndPadLayer" and isinstance(getattr(child, "bn", None), nn.BatchNorm2d):
                setattr(parent, name, TracedBNAndPad(child.bn, getattr(child, "pad_pixels", 0)))
                count += 1
    return count
