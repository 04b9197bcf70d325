"""IR node kinds: one frozen dataclass per operation, one module per family.

Every node produces exactly one value, named like the node.  ``inputs`` name the values it reads,
``source`` names the module of the original model it came from (e.g. ``blocks.1.attn.q_lif``).
Array parameters are numpy arrays; everything else is plain JSON-able data.

All operations act on values of layout ``[T, B, *features]`` (see :mod:`spikec.ir.types`); axes
in node attributes are *feature* axes (0 = first feature axis) unless the field says otherwise.
Each class states its semantics in its docstring; :meth:`Node.infer` computes the output type and
raises :class:`~spikec.errors.IRError` when inputs do not fit.

Families: :mod:`.base` (the :class:`Node` base and shared typing helpers), :mod:`.io` (graph
boundary, input quantization, dequantization), :mod:`.synapses` (conv, linear, batch norm, integer
synapses), :mod:`.neurons` (float and Loihi neurons), :mod:`.elementwise` (add, mul, scale, and,
shift), :mod:`.matmul` (matmul, addressed accumulation), :mod:`.pooling` (reduce, max / avg pool),
:mod:`.shape` (repeat over time, delay, reshape, permute, slice, pad, concatenation, time mixing), :mod:`.nonlinear` (layer norm, softmax,
activation functions: the operations that are not spike-driven).  :data:`NODE_TYPES` maps each
``op`` to its class (the serializer looks node kinds up there).
"""

from .base import Node, Scalar
from .elementwise import AddConstantNode, AddNode, AndNode, MulNode, ScaleNode, ShiftNode
from .io import DequantizeNode, InputNode, OutputNode, QuantizeInputNode
from .matmul import AddressedAccumulationNode, MatMulNode
from .neurons import LoihiNeuronNode, NeuronNode
from .nonlinear import ActivationNode, IntegerKernelNode, LayerNormNode, SoftmaxNode
from .pooling import AvgPoolNode, MaxPoolNode, ReduceNode
from .shape import (
    ConcatNode,
    DelayNode,
    FeaturesToTimeNode,
    PadNode,
    PermuteNode,
    RepeatTimeNode,
    ReshapeNode,
    SliceNode,
    TimeToFeaturesNode,
)
from .synapses import BatchNormNode, ConvNode, LinearNode, SynapseNode

NODE_TYPES: dict[str, type[Node]] = {
    cls.op: cls
    for cls in (
        InputNode, OutputNode, ConvNode, LinearNode, BatchNormNode, NeuronNode, AddNode, MulNode,
        MatMulNode, ScaleNode, ReduceNode, MaxPoolNode, AvgPoolNode, RepeatTimeNode, ReshapeNode,
        PermuteNode, SliceNode, AndNode, AddressedAccumulationNode, PadNode, QuantizeInputNode,
        SynapseNode, ShiftNode, LoihiNeuronNode, DequantizeNode, LayerNormNode, SoftmaxNode, ActivationNode,
        IntegerKernelNode, AddConstantNode, TimeToFeaturesNode, FeaturesToTimeNode, ConcatNode, DelayNode,
    )
}

__all__ = [
    "NODE_TYPES", "ActivationNode", "AddConstantNode", "AddNode", "AddressedAccumulationNode", "AndNode",
    "AvgPoolNode", "BatchNormNode", "ConcatNode", "ConvNode", "DelayNode", "DequantizeNode", "FeaturesToTimeNode", "InputNode",
    "IntegerKernelNode", "LayerNormNode", "LinearNode", "LoihiNeuronNode", "MatMulNode", "MaxPoolNode", "MulNode",
    "NeuronNode", "Node", "OutputNode", "PadNode", "PermuteNode", "QuantizeInputNode", "ReduceNode",
    "RepeatTimeNode", "ReshapeNode", "Scalar", "ScaleNode", "ShiftNode", "SliceNode", "SoftmaxNode", "SynapseNode",
    "TimeToFeaturesNode",
]
