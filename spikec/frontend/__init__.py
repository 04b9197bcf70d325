"""Frontend: load checkpoints and trace PyTorch spiking models into the IR."""

from .load import LoadedModel, load_checkpoint
from .trace import trace

__all__ = ["LoadedModel", "load_checkpoint", "trace"]
