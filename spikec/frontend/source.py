"""What a user hands spikec as "the model", opened once: an ``nn.Module`` in memory, a checkpoint
path (state_dict + factory, pickled module, ``.pt2`` program), an ``ExportedProgram`` or a saved IR
(directory or :class:`~spikec.ir.Graph`); then the IR graph of it.

``spikec verify`` needs both the torch module (to run it) and the graph (to compile it): it opens
the model once and traces that same object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

from torch import nn

from .. import ir
from ..errors import CheckpointError
from .finite import refuse_nonfinite_graph
from .load import LoadedModel, load_checkpoint, parse_model_kwargs

ModelLike = Union[nn.Module, str, Path, LoadedModel, ir.Graph, Any]


def open_model(model: ModelLike, *, factory: Optional[str] = None,
               model_kwargs: Optional[Union[dict, str]] = None, trust_checkpoint: bool = False) -> LoadedModel:
    """Open ``model`` (see module docstring).  ``model_kwargs`` may be a dict or a JSON object text."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, nn.Module):
        return LoadedModel(module=model, origin=type(model).__name__)
    if isinstance(model, ir.Graph):
        refuse_nonfinite_graph(model, "the IR graph")
        return LoadedModel(graph=model, origin=model.name)
    if type(model).__name__ == "ExportedProgram":
        return LoadedModel(exported=model, origin="ExportedProgram")
    if not isinstance(model, (str, Path)):
        raise CheckpointError(f"cannot compile a {type(model).__name__}: give an nn.Module, a checkpoint path, "
                              "a torch.export program or a saved spikec IR")
    path = Path(model)
    if path.is_dir() and (path / "graph.json").exists():
        graph = ir.load(path)
        refuse_nonfinite_graph(graph, f"saved IR {path}")
        return LoadedModel(graph=graph, origin=str(path))
    kwargs = model_kwargs if isinstance(model_kwargs, dict) else parse_model_kwargs(model_kwargs)
    return load_checkpoint(path, factory=factory, model_kwargs=kwargs, trust_checkpoint=trust_checkpoint)


def model_graph(loaded: LoadedModel, input_shape: Optional[Sequence[int]] = None,
                time_steps: Optional[int] = None, name: Optional[str] = None, output=None) -> ir.Graph:
    """The IR graph of an opened model (traced now, or the saved IR it is); ``output`` picks one of
    several model outputs (see :mod:`.outputs`)."""
    if loaded.graph is not None:
        return loaded.graph
    from .trace import trace

    return trace(loaded, input_shape, time_steps, name=name or (Path(loaded.origin).stem if loaded.origin else "model"),
                 output=output)

