"""The operations that are not spike-driven: integer kernels (layer norm, softmax, sigmoid, GELU, ReLU)
and products of two real values, with their fixed-point scales.

*Materialised* values.  A kernel or a product reads its real inputs as integers at their own scale
(value ≈ q·Δ) with |q| < 2^(REAL_BITS − 1): the domain feeding it chooses Δ for that, as it does
for a neuron's headroom (:class:`~.domains.Scales`).  Its output is a value of a fixed scale of its
own, derived from the input scales:

    relu        max(q, 0)                                  Δ_out = Δ_in            exact
    gelu        integer erf polynomial                     Δ_out = Δ_in            spikec.integer_approx.gelu
    sigmoid     integer exp, one division                  Δ_out = 2^-OUTPUT_BITS  spikec.integer_approx.sigmoid
    softmax     integer exp, sum, one division per row     Δ_out = 2^-OUTPUT_BITS  spikec.integer_approx.softmax
    layer norm  integer mean / variance / square root      Δ_out = S, the power of two with bound/S < 2^(REAL_BITS−1)
    a·b, a @ b  the integer product                        Δ_out = Δa·Δb·2^j       exact, then floor(q / 2^j)

j >= 0 is the smallest shift that brings the product's bound under 2^(REAL_BITS − 1) (a floor: an
error below one output unit).  A kernel reading a value of fixed scale whose bound does not fit
REAL_BITS (a sum of products, a reduction) reads it shifted right the same way.  The errors of the
kernels against the float ops are the plans' ``error_bound`` (:mod:`spikec.integer_approx`, where they
are derived and tested); the report lists each kernel in use with its bound.  A synapse whose output
is also read materialised (by a kernel, a product or another synapse) keeps its bias as an integer
addend: those readers must see it, so it cannot move into the neurons' biases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from spikec import ir

REAL_BITS = 16  # a materialised real value: |q| < 2^15 (Loihi 2 graded spikes carry up to 24 bits)
GELU_TANH_GAP = 5e-4  # max |GELU_tanh(x) − GELU(x)| over the reals (measured: 4.73e-4; tested)
OUTPUT_BITS = 15  # sigmoid and softmax outputs at 2^-15
MIN_INPUT_SCALE = 2.0 ** -24  # the finest input scale of a kernel (inside every plan's range: exp's 2^-38, GELU's 1.2e-9)
KERNEL_OPS = (ir.LayerNormNode, ir.SoftmaxNode, ir.ActivationNode)
PRODUCT_OPS = (ir.MulNode, ir.MatMulNode)  # left after spike_matmul_to_addressed_accumulation: no binary operand
MATERIALISED_OPS = KERNEL_OPS + PRODUCT_OPS
LABELS = {"layer_norm": "layer norm", "softmax": "softmax", "sigmoid": "sigmoid", "gelu": "GELU", "relu": "ReLU"}


def kernel_name(n: ir.Node) -> str:
    """The :mod:`spikec.integer_approx` kernel of a kernel node."""
    if isinstance(n, ir.LayerNormNode):
        return "layer_norm"
    if isinstance(n, ir.SoftmaxNode):
        return "softmax"
    return n.function


def input_budget(bound: float) -> float:
    """The smallest scale at which a materialised value of bound ``bound`` fits REAL_BITS (never
    below MIN_INPUT_SCALE: a value of (nearly) zero range, e.g. a zero-initialised gate, still gets a
    scale the kernels' plans accept)."""
    return max(bound / 2 ** (REAL_BITS - 1), MIN_INPUT_SCALE)


def fit_shift(bound: float, scale: float) -> int:
    """j >= 0: integers of a value of bound ``bound`` at ``scale`` (a product's Δa·Δb, or any value of
    fixed scale a kernel reads), shifted right by j (a floor), fit REAL_BITS."""
    units = bound / scale
    return max(0, math.ceil(math.log2(units / 2 ** (REAL_BITS - 1)))) if units > 0 else 0


def output_scale(n: ir.Node, scale_in, bound_out: float) -> float:
    """Δ_out of kernel node ``n``; ``scale_in()`` gives its input scale, asked for only where the output
    scale follows it (ReLU, GELU): sigmoid, softmax and layer norm have output scales of their own."""
    k = kernel_name(n)
    if k in ("relu", "gelu"):
        return scale_in()
    if k in ("sigmoid", "softmax"):
        return 2.0 ** -OUTPUT_BITS
    from .domains import pow2_ceil  # (domains imports this module)

    return pow2_ceil(input_budget(bound_out))


def integer_kernel(graph: ir.Graph, n: ir.Node, q_in: str, scale_in: float, scale_out: float) -> ir.IntegerKernelNode:
    """The integer kernel node of kernel node ``n`` reading the integers ``q_in`` at ``scale_in``."""
    k = kernel_name(n)
    attrs = dict(kernel=k, scale_in=scale_in, output_scale=scale_out, input_bits=REAL_BITS - 1, output_bits=OUTPUT_BITS)
    if isinstance(n, ir.SoftmaxNode):
        attrs["axis"] = n.axis
    elif isinstance(n, ir.LayerNormNode):
        features = graph.types[n.inputs[0]].features
        shape = features[len(features) - n.normalized_ndim:]
        attrs.update(normalized_ndim=n.normalized_ndim, eps=n.eps,
                     gamma=np.ones(shape, np.float32) if n.weight is None else n.weight,
                     beta=np.zeros(shape, np.float32) if n.bias is None else n.bias)
    return ir.IntegerKernelNode(n.name, (q_in,), n.source, **attrs)


@dataclass
class KernelReport:
    """One integer kernel in use: the node, the user's module, the op, the scales and its error bound
    against the float op (real units)."""

    name: str
    source: str
    kernel: str
    scale_in: float
    scale_out: float
    error_bound: float
    note: str = ""

    def line(self) -> str:
        return (f"{self.name[:44]:44s} {LABELS.get(self.kernel, self.kernel):10s} {self.scale_in:10.4g} {self.scale_out:10.4g} "
                f"{self.error_bound:10.3g}" + (f"  {self.note}" if self.note else ""))


def kernel_report(node: ir.IntegerKernelNode, source: str, row_length: int) -> KernelReport:
    """The report of an integer kernel node: its plan's error bound (layer norm: for rows whose standard
    deviation spans 256 input steps; the bound grows as the spread shrinks, see LayerNormPlan)."""
    plan = node.plan()
    note = ""
    if node.kernel == "relu":
        bound = 0.0
    elif node.kernel == "softmax":
        bound = plan.error_bound(row_length)
    elif node.kernel == "layer_norm":
        bound = plan.error_bound((256 * node.scale_in) ** 2)
        note = "bound for rows of standard deviation 256 input steps"
    else:
        bound = plan.error_bound
    return KernelReport(node.name, source, node.kernel, node.scale_in, node.output_scale, float(bound), note)
