"""A small multi-step SNN that uses every neuron variant spikec supports, through spikingjelly
2.0's ``layer.*`` wrappers and ``SeqToANNContainer``: IF, parametric LIF, LIF without
``decay_input``, soft reset (``v_reset=None``), a non-zero reset value and a threshold != 1."""

from torch import nn


def neuron_variants(T: int = 4, channels: int = 8, num_classes: int = 5) -> nn.Module:
    from spikingjelly.activation_based import functional, layer, neuron

    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(2, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)),
        neuron.IFNode(v_threshold=0.8),
        layer.Conv2d(channels, channels, 3, padding=1),
        layer.BatchNorm2d(channels),
        neuron.ParametricLIFNode(init_tau=3.0, v_reset=None),
        layer.MaxPool2d(2),
        layer.Conv2d(channels, channels, 1),
        neuron.LIFNode(tau=1.5, decay_input=False, v_reset=-0.25, v_threshold=0.6),
        layer.AvgPool2d(2),
        layer.Flatten(),
        layer.Linear(channels * 2 * 2, num_classes),
        neuron.LIFNode(tau=2.0, v_reset=None),
    )
    functional.set_step_mode(net, "m")
    return net.eval()
