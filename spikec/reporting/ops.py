"""Counting synaptic operations (SOPs) and multiply-accumulates (MACs) from a recorded run.

The counts are exact for the recorded inputs: each rule evaluates, on the values the float IR
computed, how many accumulations the operation performs.  Everything is summed over all time steps
and samples; :class:`~spikec.reporting.Report` divides by the number of samples.

Synaptic layers (``conv``, ``linear``, and the integer ``synapse``), weights ``W`` static:

* **spike or count input** ``s`` (kinds SPIKE / COUNT): every spike adds its weight to each of its
  targets, and a target exists where the weight is non-zero (a zero weight is no synapse)::

      SOPs = Σ |s| @ (W ≠ 0)

  computed as the same convolution / linear map with the 0/1 mask ``W ≠ 0`` as weights, applied to
  ``|s|`` and summed.  For a convolution this is, for every output position, the number of input
  spikes in its receptive field times the connected weights — stride, padding (zeros add nothing),
  dilation and groups included.  A count ``c`` (a sum of spike trains, such as Spikformer's residual
  stream ``x + SSA(x)``) counts ``c`` events: it is what the integer targets realise
  (``fold_sums_into_synapses`` gives every summand its own connection).  So a classifier on spike
  counts summed over tokens and time counts every spike it sums (evaluated on the host as one
  dense product it would cost ``in × out`` MACs instead).
* **integer input** (kind INT: graded payloads): one event per non-zero value,
  ``SOPs = Σ (s ≠ 0) @ (W ≠ 0)``.
* **real input** (kind REAL: the analog image of the first layer, or any other real-valued input):
  dense multiply-accumulates, every weight once per output position, zeros and padding included::

      MACs = output elements × C_in/groups × kernel elements     (linear: positions × in × out)

  Bias additions are not counted (neither is batch norm: folded into the weights by the passes).

Products of two activations (``matmul``, and its spike-driven form ``addressed_acc``, per time step
and sample, leading axes broadcast):

* **both operands spikes** (e.g. Spikformer's Q Kᵀ): a product is an accumulation only where both
  spikes are present (AND, then sum)::

      SOPs = Σ A @ B

* **one operand spikes** (``addressed_acc``'s ``spike_operand``; e.g. (Q Kᵀ) V with V spikes): every
  spike adds a whole row (column) of the graded operand — its fan-out is that length::

      spikes in A [.., N, K]:  SOPs = nnz(A) · J        spikes in B [.., K, J]:  SOPs = nnz(B) · N

* **no spike operand** (real or count × real or count): dense MACs, ``N · K · J`` per product.

Not counted (not synaptic operations, as in spikingjelly's ``SynOpCounter``): element-wise adds (the
residual stream), AND masks (Hadamard products of spikes), pooling, reductions (token / time sums),
shifts and scales, and the neuron updates themselves.

Compared with spikingjelly 2.0.0's ``op_counter.SynOpCounter`` (``DispatchCounterMode``): identical
rules for binary inputs, except that spikingjelly's convolution rule counts every weight of the
kernel (``C_out/groups`` per covered input) where these rules skip zero weights (equal for trained
weights, which are never exactly zero); spikingjelly counts nothing for a layer whose input is not
binary (counts, reals), where these rules count events (counts) or MACs (reals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from spikec import ir
from spikec.ir.types import Kind
from spikec.runtime.execute import align_features

SYNAPSE_TYPES = (ir.ConvNode, ir.LinearNode, ir.SynapseNode)
PRODUCT_TYPES = (ir.MatMulNode, ir.AddressedAccumulationNode)
COUNTED_TYPES = SYNAPSE_TYPES + PRODUCT_TYPES


@dataclass
class Counts:
    """What one operation did on one batch (summed over time steps and samples)."""

    sops: float = 0.0
    macs: float = 0.0
    rule: str = ""  # which rule of this module applied

    def __iadd__(self, other: "Counts") -> "Counts":
        self.sops += other.sops
        self.macs += other.macs
        self.rule = self.rule or other.rule
        return self


def _layout(node) -> str:
    if isinstance(node, ir.SynapseNode):
        return node.layout
    return "conv" if isinstance(node, ir.ConvNode) else "linear"


def _events(x: torch.Tensor, kind: Kind) -> torch.Tensor:
    """The events an input carries, as float64: |value| for spikes and counts, 1 per non-zero value
    for graded integers."""
    x = x.double()
    return (x != 0).double() if kind is Kind.INT else x.abs()


def _conv(node, s: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``node``'s convolution (its geometry) of ``s`` ``[T, B, C, *spatial]`` with ``weight``."""
    fn = {3: F.conv1d, 4: F.conv2d, 5: F.conv3d}[weight.dim()]
    T, B = s.shape[:2]
    y = fn(s.reshape(T * B, *s.shape[2:]), weight, None, list(node.stride), list(node.padding), list(node.dilation),
           node.groups)
    return y.reshape(T, B, *y.shape[1:])


def _mask(node) -> torch.Tensor:
    return torch.from_numpy((np.asarray(node.weight) != 0).astype(np.float64))


def synapse_counts(node, x: torch.Tensor, kind: Kind) -> Counts:
    """SOPs (spike / count / integer input) or MACs (real input) of a synaptic layer on input ``x``
    ``[T, B, *features]`` of kind ``kind``."""
    w = np.asarray(node.weight)
    T, B = x.shape[:2]
    if kind is Kind.REAL:
        if _layout(node) == "conv":
            out = _conv(node, x[:1, :1].double(), torch.zeros(w.shape, dtype=torch.float64))
            per_product = int(np.prod(w.shape[1:]))
            return Counts(macs=float(T * B * out[0, 0].numel() * per_product), rule="dense MACs (real input)")
        positions = int(np.prod(x.shape[2:-1])) if x.dim() > 3 else 1
        return Counts(macs=float(T * B * positions * w.shape[0] * w.shape[1]), rule="dense MACs (real input)")
    s = _events(x, kind)
    rule = "nnz(input) @ (W != 0)" if kind is Kind.INT else "|input| @ (W != 0)"
    if _layout(node) == "conv":
        return Counts(sops=float(_conv(node, s, _mask(node)).sum()), rule=rule)
    fan_out = _mask(node).sum(0)  # per input feature: its non-zero weights
    return Counts(sops=float((s * fan_out).sum()), rule=rule)


def product_counts(node, a: torch.Tensor, b: torch.Tensor, ka: Kind, kb: Kind) -> Counts:
    """SOPs or MACs of a product ``A @ B`` of two activations (``[T, B, *lead, N, K]`` and
    ``[T, B, *lead, K, J]``, leading axes broadcast)."""
    nf = max(a.dim(), b.dim()) - 2
    a, b = align_features(a, nf), align_features(b, nf)
    lead = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = a.expand(*lead, *a.shape[-2:])
    b = b.expand(*lead, *b.shape[-2:])
    spikes_a, spikes_b = ka is Kind.SPIKE, kb is Kind.SPIKE  # addressed_acc's spike_operand is one of them
    if spikes_a and spikes_b:
        return Counts(sops=float(torch.matmul(a.double(), b.double()).sum()), rule="AND then sum (spikes x spikes)")
    if spikes_a:
        return Counts(sops=float(torch.count_nonzero(a)) * b.shape[-1], rule="nnz(A spikes) x row length")
    if spikes_b:
        return Counts(sops=float(torch.count_nonzero(b)) * a.shape[-2], rule="nnz(B spikes) x column length")
    n_products = int(np.prod(lead)) * a.shape[-2] * b.shape[-1]
    return Counts(macs=float(n_products * a.shape[-1]), rule="dense MACs (no spike operand)")


def count_node(node: ir.Node, graph: ir.Graph, values: dict) -> Counts:
    """The counts of one counted node (:data:`COUNTED_TYPES`) from the recorded ``values``."""
    kinds = [graph.types[i].kind for i in node.inputs]
    ins = [values[i] for i in node.inputs]
    if isinstance(node, SYNAPSE_TYPES):
        return synapse_counts(node, ins[0], kinds[0])
    return product_counts(node, ins[0], ins[1], kinds[0], kinds[1])


def unrolled_synapses(node, in_type: ir.TensorType) -> int:
    """Synapses of a synaptic layer per time step: one per connected (input, output) pair with a
    non-zero weight (a convolution's shared kernel counted at every position it is applied; padding
    connects nothing)."""
    if _layout(node) == "conv":
        ones = torch.ones((1, 1, *in_type.features), dtype=torch.float64)
        return int(_conv(node, ones, _mask(node)).sum())
    positions = int(np.prod(in_type.features[:-1])) if len(in_type.features) > 1 else 1
    return positions * int(np.count_nonzero(node.weight))
