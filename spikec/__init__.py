"""spikec: compile trained PyTorch spiking transformers to neuromorphic targets."""

__version__ = "0.1.0"
