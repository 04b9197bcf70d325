"""passes/quantize/domains.py: a neuron whose threshold the half state range realises more than 1 % off
gets twice as fine a scale where its worst-case bounds fit the full range with an eighth to spare;
never where that makes the threshold worse, and never with calibrated bounds."""

from __future__ import annotations

import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import nn

import spikec
from spikec.passes.quantize import domains

TOLERANCE = domains.THRESHOLD_TOLERANCE
THRESHOLDS = np.round(np.linspace(0.003, 0.03, 28), 5)


class _SpikesToIF(nn.Module):
    def __init__(self, theta: float):
        super().__init__()
        self.l0 = neuron.IFNode(step_mode="m", v_threshold=0.5)
        self.fc1 = nn.Linear(256, 64)
        self.l1 = neuron.IFNode(step_mode="m", v_threshold=theta)

    def forward(self, x):
        return self.l1(self.fc1(self.l0(x)))


def _compiled(theta: float, calib=None):
    """(whether the quantizer reported the full state range, l1's relative threshold error, l1's report)."""
    from spikec.passes.pipelines import run_pipeline
    from spikec.passes.quantize import quantize

    torch.manual_seed(0)
    g = spikec.trace(_SpikesToIF(theta).eval(), input_shape=(256,), time_steps=1)
    q = quantize(run_pipeline(g, "intref").graph, calib=None if calib is None else torch.as_tensor(calib))
    l1 = next(n for n in q.quant.neurons if n.name == "l1")
    full = any("full 24-bit state range" in line for line in q.report.lines())
    return full, (l1.threshold - l1.threshold_int) / l1.threshold, l1


def test_threshold_within_one_percent_where_the_full_range_holds_it_and_never_worse(monkeypatch):
    with_rule = {th: _compiled(th) for th in THRESHOLDS}
    monkeypatch.setattr(domains, "THRESHOLD_TOLERANCE", float("inf"))
    without = {th: _compiled(th)[1] for th in THRESHOLDS}
    fired = [th for th in THRESHOLDS if with_rule[th][1] != without[th]]
    assert fired, "the sweep never reaches the rule: the test says little"
    for th in THRESHOLDS:
        full, err, l1 = with_rule[th]
        assert err <= without[th] + 1e-12, (th, err, without[th])  # never worse
        if th in fired:
            assert without[th] > TOLERANCE and full, th
            assert l1.headroom_v <= 1 / (1 + domains.FULL_RANGE_MARGIN), (th, l1.headroom_v)
        else:
            assert not full, th
    assert any(with_rule[th][1] <= TOLERANCE < without[th] for th in fired)


def test_calibrated_bounds_keep_the_half_range():
    x = np.random.default_rng(0).uniform(0, 1, (1, 64, 256)).astype(np.float32)
    full, err, l1 = _compiled(0.001, calib=x)  # 2.3 % off at the calibrated half range, and the full range would fit
    assert not full and err > TOLERANCE and l1.headroom_v < 0.5
