"""Save / load an IR graph as a directory: ``graph.json`` (structure, attributes, metadata) and
``arrays.npz`` (every numpy parameter, dtype preserved).  The round trip is exact: floats go
through JSON with shortest-repr (lossless for IEEE doubles), arrays through npz.

Writes go to a temporary sibling directory that is renamed into place, so a failed save never
leaves a half-written artifact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IRError
from ..outputs import atomic_directory
from .graph import Graph
from .nodes import NODE_TYPES

FORMAT = "spikec-ir"
FORMAT_VERSION = 1


def _to_json(v: Any) -> Any:
    if isinstance(v, tuple):
        return {"__tuple__": [_to_json(x) for x in v]}
    if isinstance(v, (list,)):
        return [_to_json(x) for x in v]
    if isinstance(v, dict):
        return {k: _to_json(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


def _from_json(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__tuple__"}:
            return tuple(_from_json(x) for x in v["__tuple__"])
        return {k: _from_json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_from_json(x) for x in v]
    return v


def graph_to_dict(graph: Graph) -> tuple[dict, dict[str, np.ndarray]]:
    """JSON-able description and the array table of ``graph``."""
    arrays: dict[str, np.ndarray] = {}
    nodes = []
    for idx, n in enumerate(graph.nodes):
        attrs, array_fields = {}, []
        for k, v in n.attrs().items():
            if isinstance(v, np.ndarray):
                arrays[f"{idx}.{k}"] = v
                array_fields.append(k)
            else:
                attrs[k] = _to_json(v)
        nodes.append(
            {
                "op": n.op,
                "name": n.name,
                "inputs": list(n.inputs),
                "source": n.source,
                "attrs": attrs,
                "arrays": array_fields,
            }
        )
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": graph.name,
        "metadata": _to_json(graph.metadata),
        "nodes": nodes,
    }
    return doc, arrays


def graph_from_dict(doc: dict, arrays: dict[str, np.ndarray]) -> Graph:
    if doc.get("format") != FORMAT:
        raise IRError(f"not a spikec IR document (format={doc.get('format')!r})")
    if doc.get("format_version") != FORMAT_VERSION:
        raise IRError(
            f"IR format version {doc.get('format_version')} is not supported "
            f"(this spikec reads version {FORMAT_VERSION})"
        )
    nodes = []
    for idx, nd in enumerate(doc["nodes"]):
        cls = NODE_TYPES.get(nd["op"])
        if cls is None:
            raise IRError(f"node '{nd['name']}': unknown op {nd['op']!r}")
        kwargs = {k: _from_json(v) for k, v in nd["attrs"].items()}
        for k in nd["arrays"]:
            kwargs[k] = arrays[f"{idx}.{k}"]
        nodes.append(cls(name=nd["name"], inputs=tuple(nd["inputs"]), source=nd["source"], **kwargs))
    return Graph(nodes, name=doc["name"], metadata=_from_json(doc["metadata"]))


def write_graph_files(graph: Graph, directory: Path) -> None:
    """Write graph.json + arrays.npz into an existing directory."""
    doc, arrays = graph_to_dict(graph)
    (directory / "graph.json").write_text(json.dumps(doc, indent=1))
    np.savez(directory / "arrays.npz", **arrays)


def save(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to directory ``path`` (replacing it)."""
    return atomic_directory(path, lambda d: write_graph_files(graph, d))


def load(path: str | os.PathLike) -> Graph:
    """Read a graph written by :func:`save`."""
    path = Path(path)
    try:
        doc = json.loads((path / "graph.json").read_text())
        with np.load(path / "arrays.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError as e:
        raise IRError(f"{path}: not a spikec IR directory ({e.filename} missing)") from None
    except (json.JSONDecodeError, ValueError, OSError) as e:
        raise IRError(f"{path}: corrupt IR directory ({e})") from None
    return graph_from_dict(doc, arrays)
