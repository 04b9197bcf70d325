"""Factories for every supported model family, in tiny configurations, plus weight preparation.

Each factory returns a model in eval mode.  ``prepare(model, example)`` gives random weights a
realistic scale and calibrates batch-norm statistics on an example batch, so that every neuron
layer actually fires (random models with the libraries' default init are nearly silent, which
would make spike-level equivalence tests vacuous).
"""

from __future__ import annotations

import re

import torch
from torch import nn


def sj_spikformer(T: int = 2, img: int = 16, embed_dims: int = 32, num_heads: int = 2, depths: int = 1,
                  num_classes: int = 10) -> nn.Module:
    """spikingjelly 2.0.0's own Spikformer (activation_based.model.spikformer)."""
    from spikingjelly.activation_based.model.spikformer import Spikformer

    return Spikformer(T=T, in_channels=3, img_size_h=img, img_size_w=img, patch_size=4,
                      num_classes=num_classes, embed_dims=embed_dims, num_heads=num_heads, depths=depths).eval()


def sj_sdt(T: int = 2, embed_dims: int = 32, num_heads: int = 2, depths: int = 1, num_classes: int = 10,
           pooling_stat: str = "1100") -> nn.Module:
    """spikingjelly 2.0.0's SpikeDrivenTransformer (v1, SDSA-1)."""
    from spikingjelly.activation_based.model.spike_driven_transformer import SpikeDrivenTransformer

    return SpikeDrivenTransformer(T=T, in_channels=3, num_classes=num_classes, embed_dims=embed_dims,
                                  num_heads=num_heads, depths=depths, pooling_stat=pooling_stat).eval()


def sj_qkformer(T: int = 4, embed_dims: int = 64, num_heads=(1, 2, 4), depths=(1, 1, 1), num_classes: int = 10) -> nn.Module:
    """spikingjelly 2.0.0's QKFormer (hierarchical, token and channel Q-K attention), 32x32 input."""
    from spikingjelly.activation_based.model.qkformer import QKFormer

    return QKFormer(T=T, num_classes=num_classes, embed_dims=embed_dims, num_heads=tuple(num_heads),
                    depths=tuple(depths)).eval()


def sj_maxformer(T: int = 4, embed_dims: int = 64, depths=(1, 1, 2), num_classes: int = 10, cifar: bool = True) -> nn.Module:
    """spikingjelly 2.0.0's MaxFormer (the CIFAR variant by default), 32x32 input."""
    from spikingjelly.activation_based.model.maxformer import MaxFormer

    return MaxFormer(T=T, num_classes=num_classes, embed_dims=embed_dims, depths=tuple(depths), cifar=cifar).eval()


def spikformer_digits(**kw) -> nn.Module:
    """The project's own Spikformer (official-code style, legacy neurons) for 1x8x8 digits."""
    from .spikformer import spikformer_digits as f

    return f(**kw).eval()


FAMILIES = {
    "sj_spikformer": (sj_spikformer, (3, 16, 16)),
    "sj_sdt": (sj_sdt, (3, 16, 16)),
    "spikformer_digits": (spikformer_digits, (1, 8, 8)),
}


@torch.no_grad()
def prepare(model: nn.Module, example: torch.Tensor, seed: int = 0, gain: float = 1.0,
            attention_boost: float = 0.8) -> nn.Module:
    """Random weights with unit-scale activations and BN statistics measured on ``example``.

    Weights: Kaiming-normal (fan-in) for conv / linear.  BN: running stats set to the batch
    statistics of one forward pass (momentum=None, train mode), affine parameters drawn so that a
    good fraction of each LIF layer fires (gamma in [0.8, 1.6], beta in [0.2, 1.0]); the batch norms of
    q / k / v projections get ``attention_boost`` more bias.  Returns the model in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * gain * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.reset_running_stats()
            m.momentum = None
            m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.8 + 0.8)
            m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.8 + 0.2)
    model.train()
    _reset(model)
    model(example)
    model.eval()
    _reset(model)
    # q / k / v neurons fire more, so that the attention neurons (threshold on Q K^T V) fire too
    for path, m in model.named_modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and re.search(r"(^|\.)(q|k|v|qkv)_(conv|bn|conv_bn)(\.\d+)?$", path):
            m.bias.add_(attention_boost)
    return model


def _reset(model: nn.Module) -> None:
    try:
        from spikingjelly.activation_based import functional

        functional.reset_net(model)
    except ImportError:
        pass


def build(family: str, seed: int = 0, batch: int = 16, **kw) -> tuple[nn.Module, torch.Tensor]:
    """A prepared tiny model of ``family`` and an input batch for it, the same for the same ``seed``
    whatever the global random state: parameters that :func:`prepare` does not draw (e.g. a
    position encoding, a convolution over time) and training-mode randomness in its forward pass
    (e.g. STAA-SNN's step dropout) draw from torch's global generator, seeded here and restored."""
    factory, shape = FAMILIES[family]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = factory(**kw)
        g = torch.Generator().manual_seed(seed + 1)
        T = SEQUENCE_INPUT.get(family)
        x = torch.rand(((T,) if T else ()) + (batch, *shape), generator=g) * 2.0
        prepare(model, x, seed=seed)
    return model, x


def neuron_variants(**kw) -> nn.Module:
    """Every supported neuron variant in one small sequential SNN ([T, B, 2, 8, 8] input)."""
    from .neuron_variants import neuron_variants as f

    return f(**kw)


def meta_spikformer(**kw) -> nn.Module:
    """Meta-SpikeFormer (SDT v2) in the authors' code form: RepConv, SepConv, SDSA-3."""
    from .meta_spikformer import meta_spikformer_tiny as f

    return f(**kw).eval()


def staa_snn(**kw) -> nn.Module:
    """STAA-SNN: a VGG-like CNN SNN with the global-context block, step attention and per-step position
    encoding (sigmoid, layer norm, ReLU, products of real values: not spike-driven)."""
    from .staa_snn import staa_snn as f

    return f(**kw).eval()


FAMILIES["neuron_variants"] = (neuron_variants, (2, 8, 8))
FAMILIES["meta_spikformer"] = (meta_spikformer, (3, 32, 32))
def stformer(**kw) -> nn.Module:
    """STFormer: spiking conv tokenizer, a temporal core of causal convolutions over time (time mixing),
    spiking guided attention (the project's reading of the paper: examples/models/stformer.py)."""
    from .stformer import stformer as f

    return f(**kw).eval()


def spikeformer(**kw) -> nn.Module:
    """Spikeformer: SEW convolutional tokenizer (PLIF), learnable spatio-temporal position embedding, divided
    space-time attention (a real-valued transformer: layer norm, softmax, attention over the T steps of
    each token), sequence pooling (examples/models/spikeformer_st.py)."""
    from .spikeformer_st import spikeformer_st as f

    return f(**kw).eval()


FAMILIES["staa_snn"] = (staa_snn, (1, 8, 8))
FAMILIES["stformer"] = (stformer, (1, 8, 8))
FAMILIES["spikeformer"] = (spikeformer, (1, 8, 8))
# the targets a family compiles to, where that is not every target (the README support table says so too):
# NIR has no node for the operations that are not spike-driven (STAA-SNN, Spikeformer); STFormer's time mixing
# is causal convolutions over time, which NIR writes with Delay nodes
FAMILY_TARGETS = {"staa_snn": ("intref", "lava", "onnx"), "spikeformer": ("intref", "lava", "onnx")}
SEQUENCE_INPUT = {"neuron_variants": 4}  # families that take [T, B, ...] input: their T
# sizes for the example scripts and the NIR tests: attention of 16 tokens x 8 channels per head keeps
# NIR's coincidence expansion (tokens^2 x head-dim^2 neurons per head) small
EXAMPLE_KWARGS = {"sj_spikformer": dict(embed_dims=16, num_heads=2), "sj_sdt": dict(embed_dims=16, num_heads=2),
                  "spikformer_digits": dict(embed_dims=16, num_heads=2), "stformer": dict(embed_dims=16, num_heads=2)}


def input_shape_of(family: str) -> tuple[int, ...]:
    return FAMILIES[family][1]
