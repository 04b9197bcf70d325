"""The compile driver: traced IR -> target pipeline -> (quantize) -> target artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from . import ir
from .errors import SpikecError

INTEGER_TARGETS = ("intref", "lava", "onnx")


@dataclass
class CompileResult:
    traced: ir.Graph
    optimized: ir.Graph
    pipeline: object  # passes.pipelines.PipelineResult
    quantized: Optional[ir.Graph] = None
    quant_report: Optional[object] = None  # passes.quantize.QuantReport
    lines: list[str] = field(default_factory=list)


def load_array(path: str | Path, what: str) -> np.ndarray:
    """A user's .npy array: numeric (bool / int / float), non-empty, without NaN."""
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SpikecError(f"{what} {path}: no such file") from None
    except (ValueError, OSError) as e:
        raise SpikecError(f"{what} {path}: not a readable .npy array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise SpikecError(f"{what} {path}: holds {a.dtype} values; expected numbers (float, int or bool)")
    if a.size == 0:
        raise SpikecError(f"{what} {path}: is empty (shape {list(a.shape)})")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise SpikecError(f"{what} {path}: contains {int(np.isnan(a).sum())} NaN values; clean the data")
    return a


def compile_graph(graph: ir.Graph, target: str, calib: Optional[np.ndarray] = None,
                  input_range: Sequence[float] = (0.0, 1.0), skip: Iterable[str] = (),
                  dump_after: Optional[str] = None, on_dump: Optional[Callable] = None,
                  integer: bool = True) -> CompileResult:
    """Run ``target``'s pass pipeline and, for integer targets (unless ``integer=False``), quantize."""
    from .passes.pipelines import run_pipeline
    from .passes.quantize import quantize

    pipeline = {"onnx": "intref"}.get(target, target if target in ("intref", "lava", "nir") else "float")
    pr = run_pipeline(graph, pipeline, skip=skip, dump_after=dump_after, on_dump=on_dump)
    res = CompileResult(graph, pr.graph, pr, lines=[f"pipeline '{pipeline}':"] + ["  " + l for l in pr.summary_lines()])
    if integer and target in INTEGER_TARGETS:
        q = quantize(pr.graph, calib=None if calib is None else torch.as_tensor(calib).float(), input_range=input_range)
        q.graph.validate()
        res.quantized, res.quant_report = q.graph, q.quant
        res.lines += ["quantization (Loihi 2 fixed point):"] + ["  " + l for l in q.quant.lines()]
    return res
