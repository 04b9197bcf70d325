"""Issue 13's fidelity bar on random-weight models: spikingjelly's zoo SDT v1 (embed 64, 2 blocks),
QKFormer (token and channel attention) and MaxFormer (CIFAR variant) at 32x32, and every example family,
with batch norms of weight ~U(0.5, 1.5) and bias ~N(0.8, 0.3), on 16 random inputs: every synapse's
rms weight rounding error at most 2 %, every threshold realised within 1 %, no unexplained flip and a
teacher-forced agreement of at least 98 % in every neuron layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import spikec
from examples.models import zoo
from spikec.compiler import compile_graph
from spikec.verification import verify_graph

CASES = {
    "sj_sdt": (lambda: zoo.sj_sdt(T=2, embed_dims=64, num_heads=2, depths=2), (3, 32, 32)),
    "sj_qkformer": (lambda: zoo.sj_qkformer(T=2, embed_dims=64), (3, 32, 32)),
    "sj_maxformer": (lambda: zoo.sj_maxformer(T=2, embed_dims=64), (3, 32, 32)),
    "sj_spikformer": (lambda: zoo.sj_spikformer(T=2, img=32, embed_dims=64), (3, 32, 32)),
    "meta_spikformer": (lambda: zoo.meta_spikformer(T=2), (3, 32, 32)),
    "spikformer_digits": (lambda: zoo.spikformer_digits(embed_dims=32, num_heads=2, depths=1, T=4), (1, 8, 8)),
    "staa_snn": (lambda: zoo.staa_snn(T=4, channels=32), (1, 8, 8)),
    "stformer": (lambda: zoo.stformer(T=4, embed_dims=32, num_heads=2, depths=1), (1, 8, 8)),
    "spikeformer": (lambda: zoo.spikeformer(T=4, embed_dims=32, num_heads=2, depths=1), (1, 8, 8)),
}
INPUT_RANGE = (0.0, 2.0)


def _random_model(name: str):
    make, shape = CASES[name]
    torch.manual_seed(0)
    model = make()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.3 + 0.8)
    x = (torch.rand((16, *shape), generator=g) * 2).numpy()
    return model.eval(), x, shape


@pytest.mark.parametrize("name", list(CASES))
def test_weights_thresholds_and_teacher_forced_agreement(name):
    model, x, shape = _random_model(name)
    graph = spikec.trace(model, input_shape=shape)
    quant = compile_graph(graph, "intref", input_range=INPUT_RANGE).quant_report
    worst_weight = max(quant.synapses, key=lambda s: s.rel_error)
    assert worst_weight.rel_error <= 0.02, (worst_weight.source, worst_weight.rel_error)
    for n in quant.neurons:
        assert abs(n.threshold_int - n.threshold) <= 0.01 * n.threshold, (n.source, n.threshold, n.threshold_int)
    report = verify_graph(graph, "intref", x, module=model, input_range=INPUT_RANGE)
    assert report.layers and report.flips_explained, report.lines()
    low = min(report.layers, key=lambda r: r.local_agreement)
    assert low.local_agreement >= 0.98, (low.layer, low.local_agreement)
    assert np.mean([r.rate for r in report.layers]) > 0.01, "the model is silent: the test would say little"
