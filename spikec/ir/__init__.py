"""The spikec IR: typed dataflow graphs over time-stepped tensors ``[T, B, *features]``."""

from .graph import Graph, dead_code_elimination, topological_order
from .nodes import (
    NODE_TYPES,
    AddNode,
    AddressedAccumulationNode,
    AndNode,
    AvgPoolNode,
    BatchNormNode,
    ConvNode,
    DequantizeNode,
    InputNode,
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
    SynapseNode,
)
from .printer import format_graph, graph_table
from .serialize import load, save
from .types import Kind, TensorType, TimeBehaviour

__all__ = [
    "NODE_TYPES", "AddNode", "AddressedAccumulationNode", "AndNode", "AvgPoolNode", "BatchNormNode", "ConvNode",
    "DequantizeNode", "Graph", "InputNode",
    "Kind", "LinearNode", "LoihiNeuronNode", "MatMulNode", "MaxPoolNode", "MulNode", "NeuronNode", "Node",
    "OutputNode", "PadNode", "PermuteNode", "QuantizeInputNode", "ReduceNode", "RepeatTimeNode", "ReshapeNode", "ScaleNode",
    "ShiftNode", "SliceNode", "SynapseNode", "TensorType", "TimeBehaviour", "dead_code_elimination", "format_graph",
    "graph_table", "load", "save", "topological_order",
]
