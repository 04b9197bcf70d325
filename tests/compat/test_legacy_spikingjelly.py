"""spikec's stand-in for the removed spikingjelly.clock_driven API: the single-step neuron classes that
published code subclasses (Loydian/Spikeformer's neuron.py) step exactly as the multi-step ones run."""

import pytest
import torch

from spikec.compat import legacy_spikingjelly as L


@pytest.mark.parametrize("single,multi", [
    (lambda: L.LIFNode(tau=3.0, v_reset=0.0), lambda: L.MultiStepLIFNode(tau=3.0, v_reset=0.0)),
    (lambda: L.LIFNode(tau=2.0, decay_input=False, v_reset=None), lambda: L.MultiStepLIFNode(tau=2.0, decay_input=False,
                                                                                              v_reset=None)),
    (lambda: L.ParametricLIFNode(init_tau=2.5), lambda: L.MultiStepParametricLIFNode(init_tau=2.5)),
])
def test_single_step_neurons_step_as_the_multi_step_ones(single, multi):
    x = torch.rand(6, 4, 5, generator=torch.Generator().manual_seed(0)) * 3.0
    node = single()
    with torch.no_grad():
        steps = torch.stack([node(xt) for xt in x])
        want = multi()(x)
    assert torch.equal(steps, want) and 0 < float(want.mean()) < 1
    L.reset_net(node)
    with torch.no_grad():
        assert torch.equal(node(x[0]), want[0])  # the initial membrane is back


def test_published_subclasses_of_the_single_step_api_import_and_run():
    """Published code defines neurons on the legacy base class at import (an analog LIAF here)."""
    assert L.install_if_missing() in (True, False)
    from spikingjelly.clock_driven import surrogate
    from spikingjelly.clock_driven.neuron import ParametricLIFNode

    class LIAF(ParametricLIFNode):
        def __init__(self, init_tau=2.0, decay_input=True, v_threshold=1.0, v_reset=0.0,
                     surrogate_function=surrogate.Sigmoid(), detach_reset=False):
            super().__init__(init_tau, decay_input, v_threshold, v_reset, surrogate_function, detach_reset)
            self.register_memory("v_seq", None)

        def forward(self, x):
            self.neuronal_charge(x)
            spike = self.neuronal_fire()
            out = torch.relu(self.v)
            self.neuronal_reset(spike)
            return out

    node = LIAF()
    x = torch.tensor([0.5, 1.5, 3.0])
    with torch.no_grad():
        assert torch.allclose(node(x), torch.relu(x * 0.5))  # v = x / tau from v = 0
        assert node.v_seq is None and torch.equal(node.v, torch.tensor([0.25, 0.75, 0.0]))  # 3.0 / 2 fired: reset
