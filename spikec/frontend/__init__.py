"""Frontend: open the model a user has (module, checkpoint, program, saved IR) and trace PyTorch
spiking models into the IR."""

from .load import LoadedModel, load_checkpoint
from .source import model_graph, open_model
from .trace import trace

__all__ = ["LoadedModel", "load_checkpoint", "model_graph", "open_model", "trace"]
