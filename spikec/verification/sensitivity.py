"""The float model's own sensitivity: how many top-1 predictions change when every weight moves by a
small relative amount, the yardstick for the float-vs-integer agreement.

A spiking network is a threshold circuit: a membrane close to its threshold flips on any change, and
one flip can cascade.  So even a float implementation that differs from the model only in the last
bits (another summation order, another library) changes some predictions.  ``spikec verify
--perturb REL`` runs the float IR once more with every conv / linear weight multiplied by
``1 + REL·N(0, 1)`` (seeded) and reports its top-1 agreement with the unperturbed float IR (and its
accuracy): an integer model that agrees with the float one about as well as a 1e-3 perturbation does
is as close as the model itself allows; one far below it has a quantization problem.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from spikec import ir
from spikec.errors import SpikecError
from spikec.runtime.float_interpreter import run_float

SEED = 0


def perturbed(graph: ir.Graph, relative: float, seed: int = SEED) -> ir.Graph:
    """``graph`` with every conv / linear weight multiplied by ``1 + relative·N(0, 1)`` (float32)."""
    rng = np.random.default_rng(seed)
    nodes = []
    for n in graph.nodes:
        if isinstance(n, (ir.ConvNode, ir.LinearNode)):
            noise = rng.standard_normal(n.weight.shape)
            n = n.replace(weight=(n.weight.astype(np.float64) * (1 + relative * noise)).astype(n.weight.dtype))
        nodes.append(n)
    return graph.rewrite(nodes)


def perturbed_agreement(graph: ir.Graph, x, y_float, top1, relative: float, labels=None, chunk: int = 32) -> dict:
    """{"relative", "top1_agreement" (perturbed vs unperturbed float IR: ``y_float``, the outputs of
    ``graph`` itself), "accuracy" (perturbed, with labels)}; ``top1`` maps outputs to predicted
    classes.  Runs ``chunk`` samples at a time (memory as verify's own runs)."""
    import torch

    if not (np.isfinite(relative) and relative >= 0):
        raise SpikecError(f"--perturb takes a finite relative size >= 0, got {relative:g}")
    g = perturbed(graph, relative)
    sequence = graph.inputs[0].layout != "static"
    n = x.shape[1] if sequence else x.shape[0]
    parts = [run_float(g, x[:, i:i + chunk] if sequence else x[i:i + chunk]).outputs[0] for i in range(0, n, chunk)]
    y = torch.cat(parts, dim=1 if graph.outputs[0].layout == "split" else 0)
    pred = top1(y)
    out: dict[str, Optional[float]] = {"relative": float(relative),
                                       "top1_agreement": float((pred == top1(y_float)).float().mean()),
                                       "accuracy": None}
    if labels is not None:
        out["accuracy"] = float((pred == torch.as_tensor(labels)).float().mean())
    return out
