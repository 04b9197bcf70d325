"""Float32 neuron recurrences, written exactly as spikingjelly 2.0.0's CPU kernels compute them
(``spikingjelly/_ops/{lif,plif,if_}/cpu.py``), operation for operation, so that spike trains are
bit-identical to the source model's.  See :class:`spikec.ir.NeuronNode` for the equations.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

from .execute import scan_time


def _as_tensor_or_float(v: Union[float, np.ndarray], like: torch.Tensor):
    if isinstance(v, np.ndarray):
        return torch.as_tensor(v, dtype=torch.float32, device=like.device)
    return float(v)


def neuron_forward(
    x: torch.Tensor,
    model: str,
    v_threshold: Union[float, np.ndarray],
    v_reset: Optional[float],
    tau: Optional[float],
    decay_input: bool,
    leak_rate: Optional[float],
    v_init: float,
    return_membrane: bool = False,
):
    """Run a neuron layer over ``x`` of shape ``[T, B, *features]``; returns spikes (same shape)
    and, if asked, the post-reset membrane ``V[t]`` and the pre-spike ``H[t]`` sequences."""
    xf = x.float()
    threshold = _as_tensor_or_float(v_threshold, xf)
    v = torch.full_like(xf[0], float(v_init))
    reset_value = 0.0 if v_reset is None else v_reset
    rate = None if leak_rate is None else torch.tensor(leak_rate, dtype=torch.float32)

    def step(v, current):
        if model == "IF":
            h = v + current
        elif rate is not None:
            h = v + (current - (v - reset_value)) * rate if decay_input else v - (v - reset_value) * rate + current
        else:
            h = v + (current - (v - reset_value)) / tau if decay_input else v - (v - reset_value) / tau + current
        spike = (h >= threshold).to(torch.float32)
        v = h - spike * threshold if v_reset is None else spike * v_reset + (1 - spike) * h
        return v, spike, (v, h)

    spikes, membranes = scan_time(step, xf, v, record=return_membrane)
    s = spikes.to(x.dtype)
    return (s, *membranes) if return_membrane else s


def run_neuron_node(x: torch.Tensor, node, return_membrane: bool = False):
    """:func:`neuron_forward` with the parameters of a :class:`spikec.ir.NeuronNode`."""
    return neuron_forward(
        x,
        node.model,
        node.v_threshold,
        node.v_reset,
        node.tau,
        node.decay_input,
        node.leak_rate,
        node.v_init,
        return_membrane=return_membrane,
    )
