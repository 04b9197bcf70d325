"""The spikec IR: typed dataflow graphs over time-stepped tensors ``[T, B, *features]``."""

from .graph import Graph, dead_code_elimination, last_reads, topological_order
from .nodes import (
    NODE_TYPES,
    ActivationNode,
    AddConstantNode,
    AddNode,
    AddressedAccumulationNode,
    AndNode,
    AvgPoolNode,
    BatchNormNode,
    ConcatNode,
    ConvNode,
    DelayNode,
    DequantizeNode,
    FeaturesToTimeNode,
    InputNode,
    IntegerKernelNode,
    LayerNormNode,
    LinearNode,
    LoihiNeuronNode,
    MatMulNode,
    MaxPoolNode,
    MulNode,
    NeuronNode,
    Node,
    OutputNode,
    PadNode,
    PermuteNode,
    QuantizeInputNode,
    ReduceNode,
    RepeatTimeNode,
    ReshapeNode,
    ScaleNode,
    ShiftNode,
    SliceNode,
    SoftmaxNode,
    SynapseNode,
    TimeToFeaturesNode,
)
from .printer import format_graph, graph_table
from .serialize import load, save
from .types import Kind, TensorType, TimeBehaviour

__all__ = [
    "NODE_TYPES", "ActivationNode", "AddConstantNode", "AddNode", "AddressedAccumulationNode", "AndNode",
    "AvgPoolNode", "BatchNormNode", "ConcatNode", "ConvNode", "DelayNode", "DequantizeNode", "FeaturesToTimeNode", "Graph",
    "InputNode", "IntegerKernelNode", "Kind", "LayerNormNode", "LinearNode", "LoihiNeuronNode", "MatMulNode",
    "MaxPoolNode", "MulNode", "NeuronNode", "Node", "OutputNode", "PadNode", "PermuteNode", "QuantizeInputNode",
    "ReduceNode", "RepeatTimeNode", "ReshapeNode", "ScaleNode", "ShiftNode", "SliceNode", "SoftmaxNode",
    "SynapseNode", "TensorType", "TimeBehaviour", "TimeToFeaturesNode", "dead_code_elimination", "format_graph",
    "graph_table", "last_reads", "load", "save", "topological_order",
]
