"""The compile driver: traced IR -> the target's pass pipeline -> (quantize) -> compiled model.

It names no target: what it runs comes from the :class:`~spikec.targets.base.Target` (its pipeline,
whether it is an integer target).  Emitting the artifact is the target's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
import torch

from . import ir


@dataclass
class CompileResult:
    """What the passes made of a traced graph for one target."""

    traced: ir.Graph
    optimized: ir.Graph
    pipeline: object  # passes.pipelines.PipelineResult
    quantized: Optional[ir.Graph] = None
    quant_report: Optional[object] = None  # passes.quantize.QuantReport
    pipeline_lines: list[str] = field(default_factory=list)
    quant_lines: list[str] = field(default_factory=list)
    target: object = None  # targets.base.Target
    calib: Optional[np.ndarray] = None
    input_range: tuple[float, float] = (0.0, 1.0)
    skip: tuple[str, ...] = ()

    @property
    def lines(self) -> list[str]:
        """The compile report: what every pass did, then the quantization table (integer targets)."""
        return self.pipeline_lines + self.quant_lines

    @property
    def graph(self) -> ir.Graph:
        """The graph the target emits: quantized for integer targets, else the optimised float IR."""
        return self.quantized if self.quantized is not None else self.optimized


def compile_graph(graph: ir.Graph, target, calib: Optional[np.ndarray] = None,
                  input_range: Sequence[float] = (0.0, 1.0), skip: Iterable[str] = (),
                  dump_after: Optional[str] = None, on_dump: Optional[Callable] = None,
                  integer: bool = True, on_pass: Optional[Callable] = None) -> CompileResult:
    """Run ``target``'s pass pipeline and, for integer targets (unless ``integer=False``), quantize.

    ``target`` is a Target or a registered target name; ``on_pass(report, nodes)`` sees each pass's
    report as it finishes."""
    from .passes.pipelines import run_pipeline
    from .passes.quantize import quantize
    from .targets import get_target

    t = get_target(target)
    skip = tuple(skip)
    pr = run_pipeline(graph, t.pipeline, skip=skip, dump_after=dump_after, on_dump=on_dump,
                      options=t.pass_options or None, on_pass=on_pass)
    label = t.pipeline if isinstance(t.pipeline, str) else "custom"
    res = CompileResult(graph, pr.graph, pr, pipeline_lines=[f"pipeline '{label}':"] + ["  " + ln for ln in pr.summary_lines()],
                        target=t, calib=calib, input_range=tuple(input_range), skip=skip)
    if integer and t.integer:
        q = quantize(pr.graph, calib=None if calib is None else torch.as_tensor(calib).float(), input_range=input_range)
        q.graph.validate()
        res.quantized, res.quant_report = q.graph, q.quant
        res.quant_lines = ["quantization (Loihi 2 fixed point):"] + ["  " + ln for ln in q.quant.lines()]
    return res
