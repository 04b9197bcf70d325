"""``verify`` over many samples: the samples cut into fixed chunks, each chunk run in this process
or in a worker process, and what the chunks found merged into one report, exactly.

Algorithm.

1. The main process compiles the model once (compiling does not look at the data).
2. The samples are cut into consecutive chunks of ``chunk`` samples (the last one shorter).  The
   chunk size, not the number of workers, decides which samples run together, so every kernel sees
   the same batches whatever ``workers`` is and the report is the same bit for bit.
3. Each chunk (:func:`run_chunk`) runs the torch model, the traced and the optimised float IR, the
   integer reference and the teacher-forced integer model, and keeps only what merges exactly:
   per neuron layer the numbers of spikes and of equal spikes (:class:`~.compare.Agreement`), the
   earliest divergence (t, b) with b numbered over the whole data, the largest float membrane |H|,
   every teacher-forced first flip with its margin |H − θ| (:class:`~.compare.FirstFlips`); the
   input rounding error (a maximum), the overflow counts and the outputs.  Warnings of the reference
   run count what they saw (clipped inputs, overflowing currents): when a chunk warns, ``verify``
   runs the reference once more on all samples for the warnings of the whole data (only then).
4. :func:`merge` adds the counts, takes the earliest divergences and the largest maxima, and
   concatenates flips and outputs in sample order.  The error bounds depend on two maxima over the
   whole data (the input rounding error, the largest |H|): ``verify`` computes them from the merged
   maxima and only then judges the flips against them.
5. The target's own run (Lava's simulator, nirtorch, onnxruntime) runs once, in the main process,
   on all samples, against the merged reference run: its checks measure the whole run (NIR's output
   tolerance is relative to the largest output), and Lava starts processes of its own.  A target
   that is its own reference (intref) has no run to check, and the chunks keep no reference run.

Workers: ``workers`` > 1 runs the chunks in a :class:`~concurrent.futures.ProcessPoolExecutor`
started by a fork server where the platform has one (else spawned): a worker never inherits the
parent's torch threads.  Each worker unpickles the job (graph, compiled model, target) once, opens
the torch model once from its :class:`ModelRecipe` (the user's checkpoint re-opened, or the
``nn.Module`` unpickled), runs torch on its share of the cores, and stays silent: warnings and
prints of the model code were shown by the main process already.  A job that does not pickle, or a
model a worker cannot rebuild (a class defined in a notebook, a model file loaded by path) runs in
this process instead, with a warning; the report is the same.  Assumed, and tested on the bundled
model: a sample's float results do not depend on the number of torch threads.

``workers`` 0 or 1, the default, runs in this process: a worker costs seconds to start and a copy
of the model, worth it from a few hundred samples on.  As for any Python multiprocessing, a script
that calls ``verify`` with workers needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from spikec import ir

from .compare import Agreement, FirstFlips, agreement_counts, first_flips

DEFAULT_CHUNK = 32  # samples run together (fixes the batches, so the report is the same for any worker count)


@dataclass(frozen=True)
class ModelRecipe:
    """How a worker process gets the torch model: the user's checkpoint re-opened (``path`` and the
    options of :func:`spikec.frontend.open_model`, relative to ``cwd``) or an ``nn.Module`` unpickled."""

    path: Optional[str] = None
    factory: Optional[str] = None
    model_kwargs: Any = None  # a dict or JSON object text
    trust_checkpoint: bool = False
    cwd: str = field(default_factory=os.getcwd)
    pickled: Optional[bytes] = None

    @classmethod
    def of_module(cls, module: torch.nn.Module) -> "ModelRecipe":
        """The module pickled; raises what pickling raises (a local class, a lambda attribute ...)."""
        return cls(pickled=pickle.dumps(module))

    def open(self) -> Optional[torch.nn.Module]:
        if self.pickled is not None:
            return pickle.loads(self.pickled)
        from spikec.frontend import open_model

        os.chdir(self.cwd)  # this worker's own working directory: relative paths as the user gave them
        return open_model(self.path, factory=self.factory, model_kwargs=self.model_kwargs,
                          trust_checkpoint=self.trust_checkpoint).module


@dataclass
class Job:
    """What every chunk runs (picklable; the torch model travels as a :class:`ModelRecipe`)."""

    graph: ir.Graph  # the traced float IR
    compiled: Any = None  # spikec.compiler.CompileResult; None when compiling failed
    model_output: Any = None
    keep_reference: bool = False  # return the reference run itself (the target's check compares with it)

    @property
    def sample_axis(self) -> int:
        return 0 if self.graph.inputs[0].layout == "static" else 1

    @property
    def per_sample(self) -> Optional[int]:
        """The batch axis when the torch model must run one sample at a time (see :func:`run_torch`)."""
        return self.sample_axis if self.graph.metadata.get("batch_dependent") else None

    @property
    def output_axis(self) -> int:
        return 1 if self.graph.outputs[0].layout == "split" else 0

    def slim(self) -> "Job":
        """This job without what chunks never read (the pass reports, the calibration data)."""
        if self.compiled is None:
            return self
        return replace(self, compiled=replace(self.compiled, pipeline=None, calib=None))


def _add(a, b):
    return b if a is None else a if b is None else a + b


def _max(a, b):
    return b if a is None else a if b is None else max(a, b)


@dataclass
class LayerCounts:
    """One neuron layer over some samples, in figures that merge exactly."""

    spikes: float  # sum of the layer's spikes in the float run (integer-valued: exact in float64)
    positions: int
    torch_vs_ir: Optional[Agreement] = None  # traced float IR vs the torch model
    passes: Optional[Agreement] = None  # optimised vs traced float IR
    float_int: Optional[Agreement] = None  # integer reference vs optimised float IR
    local: Optional[Agreement] = None  # teacher-forced integer vs float spikes
    flips: Optional[FirstFlips] = None  # the teacher-forced first flips, to judge against the layer's bound
    max_h: Optional[float] = None  # largest float |H|

    @property
    def rate(self) -> float:
        return self.spikes / self.positions if self.positions else 0.0

    def __add__(self, o: "LayerCounts") -> "LayerCounts":
        return LayerCounts(self.spikes + o.spikes, self.positions + o.positions, _add(self.torch_vs_ir, o.torch_vs_ir),
                           _add(self.passes, o.passes), _add(self.float_int, o.float_int), _add(self.local, o.local),
                           _add(self.flips, o.flips), _max(self.max_h, o.max_h))


@dataclass
class ChunkResult:
    """What one chunk of samples (or, merged, all of them) found."""

    samples: int
    traced: dict[str, LayerCounts] = field(default_factory=dict)  # the traced graph's neuron layers
    layers: dict[str, LayerCounts] = field(default_factory=dict)  # the compiled graph's neuron layers
    outputs: dict[str, Any] = field(default_factory=dict)  # "torch" / "float" / "reference": first outputs
    input_error: Optional[float] = None  # max |x − x̂| (teacher-forced runs only)
    overflows: dict[str, int] = field(default_factory=dict)  # the reference run's details["overflows"], added
    warnings: list[str] = field(default_factory=list)  # the reference run's warnings (counts of the chunk's samples)
    reference: Any = None  # the reference RunOutput, with Job.keep_reference
    failure: Optional[tuple[str, str]] = None  # (stage, message) of a SpikecError


def taught_counts(target, compiled, r_opt, x, sample_offset: int = 0) -> dict[str, tuple]:
    """Every Loihi neuron layer of ``compiled.quantized`` run by the integer executor on the float
    model's own spikes of the layers upstream (``r_opt``: the optimised float IR's recorded run), in
    one pass.  Per layer: (agreement with the float spikes, the first flips with their margins or
    None without a float membrane, the largest float |H| or None)."""
    names = [n.name for n in compiled.quantized.nodes if isinstance(n, ir.LoihiNeuronNode) and n.name in r_opt.values]
    run = target.reference_run(compiled, x, teacher={k: r_opt.values[k] for k in names})
    out = {}
    for k in names:
        ref, local, h = r_opt.values[k], torch.as_tensor(run.taught[k]), r_opt.membranes.get(k)
        flips = first_flips(ref, local, h, float(compiled.optimized[k].v_threshold), sample_offset) if h is not None else None
        out[k] = (agreement_counts(ref, local, sample_offset), flips,
                  float(h.abs().max()) if h is not None and h.numel() else None)
    return out


def run_chunk(job: Job, module: Optional[torch.nn.Module], start: int, x: np.ndarray) -> ChunkResult:
    """Everything ``verify`` measures before the target's own run, on the samples ``x`` (the
    ``start``-th onwards): a SpikecError after the traced run is returned in ``failure`` with its stage."""
    from spikec.errors import SpikecError
    from spikec.runtime.float_interpreter import run_float

    from . import float_run_output, run_torch
    from .bounds import input_rounding_error

    out = ChunkResult(x.shape[job.sample_axis])
    xt = torch.as_tensor(x)
    torch_spikes: dict[str, torch.Tensor] = {}
    if module is not None:
        y_torch, torch_spikes = run_torch(module, x, job.model_output, job.per_sample, job.output_axis)
        out.outputs["torch"] = y_torch.numpy()
    r_traced = run_float(job.graph, xt, record=True)
    for n in job.graph.nodes:  # what holds before the target's passes: the traced float IR against the torch model
        if isinstance(n, ir.NeuronNode):
            v = r_traced.values[n.name]
            vs_torch = agreement_counts(v, torch_spikes[n.source], start) if n.source in torch_spikes else None
            out.traced[n.name] = LayerCounts(float(v.sum(dtype=torch.float64)), v.numel(), vs_torch)
    res = job.compiled
    if res is None:
        return out
    t = res.target
    stage = "run the optimised and the integer models"
    try:
        r_opt = run_float(res.optimized, xt, record=True)
        out.outputs["float"] = r_opt.outputs[0].numpy()
        ref = t.reference_run(res, x)  # the integer reference model (integer targets), else None
        local = {}
        if ref is not None:
            out.outputs["reference"] = np.asarray(ref.outputs[0])
            out.overflows, out.warnings = dict(ref.details.get("overflows", {})), list(ref.warnings)
            if res.quant_report is not None:
                stage = "run the integer model teacher-forced with the float spikes"
                local = taught_counts(t, res, r_opt, x, start)
                out.input_error = input_rounding_error(res.quantized, x)
        for n in res.graph.nodes:
            if not isinstance(n, (ir.LoihiNeuronNode if t.integer else ir.NeuronNode)):
                continue
            opt, traced = r_opt.values[n.name], r_traced.values.get(n.name)
            c = LayerCounts(float(opt.sum(dtype=torch.float64)), opt.numel())
            if traced is not None:
                c.passes = Agreement(int((traced == opt).sum()), opt.numel())
                if n.source in torch_spikes:
                    c.torch_vs_ir = agreement_counts(traced, torch_spikes[n.source], start)
            if ref is not None:
                c.float_int = agreement_counts(opt, ref.values[n.name], start)
            if n.name in local:
                c.local, c.flips, c.max_h = local[n.name]
            out.layers[n.name] = c
        if job.keep_reference:
            out.reference = replace(ref, taught={}) if ref is not None else float_run_output(res.optimized, r_opt)
    except SpikecError as e:
        out.failure = (stage, str(e))
    return out


def join_outputs(parts: list, layout: str, time: int) -> np.ndarray:
    """Outputs of consecutive chunks as one output of all samples, in the model's output layout
    (``split`` [T, B, ...], ``merged`` [T·B, ...], ``batch`` [B, ...])."""
    parts = [np.asarray(p) for p in parts]
    if layout == "split":
        return np.concatenate(parts, 1)
    if layout == "merged":
        rest = parts[0].shape[1:]
        return np.concatenate([p.reshape(time, -1, *rest) for p in parts], 1).reshape(-1, *rest)
    return np.concatenate(parts, 0)


def _join_runs(runs: list, join: Callable) -> Any:
    """Reference runs of consecutive chunks as one run (values [T, B, ...] along B)."""
    first = runs[0]
    cat = lambda k, attr: np.concatenate([np.asarray(getattr(r, attr)[k]) for r in runs], 1)  # noqa: E731
    return replace(first, outputs=[join([r.outputs[i] for r in runs]) for i in range(len(first.outputs))],
                   layers={k: cat(k, "layers") for k in first.layers}, values={k: cat(k, "values") for k in first.values},
                   warnings=[], details={})


def merge(parts: list[ChunkResult], job: Job) -> ChunkResult:
    """The chunks' results (in sample order) as one result of all samples: counts added, earliest
    divergences and largest maxima kept, flips, outputs and reference runs concatenated."""
    out_node = job.graph.outputs[0]
    join = lambda ps: join_outputs(ps, out_node.layout, job.graph.types[out_node.name].time)  # noqa: E731
    total = ChunkResult(sum(p.samples for p in parts))
    for p in parts:
        for mine, theirs in ((total.traced, p.traced), (total.layers, p.layers)):
            for k, c in theirs.items():
                mine[k] = _add(mine.get(k), c)
        for k, v in p.overflows.items():
            total.overflows[k] = total.overflows.get(k, 0) + v
        total.input_error = _max(total.input_error, p.input_error)
        total.warnings += p.warnings
        total.failure = total.failure or p.failure
    for key in parts[0].outputs:
        if all(key in p.outputs for p in parts):
            total.outputs[key] = join([p.outputs[key] for p in parts])
    if all(p.reference is not None for p in parts):
        total.reference = _join_runs([p.reference for p in parts], join)
    return total


@contextlib.contextmanager
def progress_bar(enabled: bool, total: int, what: str, console=None) -> Iterator[Callable[[int], None]]:
    """``update(done)`` for a rich progress bar of ``total`` samples on stderr (or ``console``); a
    no-op when not ``enabled`` (the CLI enables it when stderr is a terminal).  Transient: gone
    when done, like the bar of ``spikec run`` on Lava."""
    if not enabled:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import MofNCompleteColumn, Progress

    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console or Console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda done: bar.update(task, completed=done)


class WorkerSetupError(Exception):
    """A worker could not rebuild the job or the model (raised in the worker, caught by the parent)."""


_WORKER: dict = {}  # in a worker process: the job and the torch model, built at its first chunk


def _worker_init(payload: bytes, threads: int) -> None:
    import sys

    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")  # the main process ran the same code on the same model and showed them
    sys.stdout = open(os.devnull, "w")  # prints of the model code: shown by the main process
    _WORKER["payload"] = payload


def _worker_chunk(start: int, x: np.ndarray) -> ChunkResult:
    if "job" not in _WORKER:
        try:
            job, recipe = pickle.loads(_WORKER["payload"])
            module = recipe.open() if recipe is not None else None
        except Exception as e:  # whatever unpickling or the model code raises: the parent falls back
            raise WorkerSetupError(f"{type(e).__name__}: {e}") from None
        _WORKER.update(job=job, module=module)
    return run_chunk(_WORKER["job"], _WORKER["module"], start, x)


def _in_pool(payload: bytes, pieces: list, workers: int, update) -> list[ChunkResult]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload([__name__])  # torch and spikec imported once, by the server
    parts: list = [None] * len(pieces)
    done = 0
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(payload, max(1, torch.get_num_threads() // workers)))
    try:
        futures = {pool.submit(_worker_chunk, start, x): i for i, (start, x) in enumerate(pieces)}
        for f in as_completed(futures):
            i = futures[f]
            parts[i] = f.result()
            done += parts[i].samples
            update(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return parts


def run_chunks(job: Job, x: np.ndarray, module: Optional[torch.nn.Module] = None, recipe: Optional[ModelRecipe] = None,
               workers: int = 1, chunk: int = DEFAULT_CHUNK, progress: bool = False) -> ChunkResult:
    """Run ``job`` on the samples of ``x`` in chunks of ``chunk`` samples, in ``workers`` processes
    (0 or 1: this one, with ``module``; more: a pool, the torch model rebuilt from ``recipe``, or
    ``module`` pickled), and merge.  The result does not depend on ``workers``."""
    from concurrent.futures.process import BrokenProcessPool

    from spikec.errors import SpikecError

    if chunk < 1:
        raise SpikecError(f"chunk must be a positive number of samples, got {chunk}")
    axis = job.sample_axis
    n = x.shape[axis]
    pieces = [(s, np.ascontiguousarray(np.take(x, range(s, min(s + chunk, n)), axis=axis))) for s in range(0, n, chunk)]
    workers = min(max(workers, 1), len(pieces))
    parts = None
    with progress_bar(progress, n, "verify") as update:
        if workers > 1:
            try:
                if module is not None and recipe is None:
                    recipe = ModelRecipe.of_module(module)
                payload = pickle.dumps((job.slim(), recipe if module is not None else None))
            except Exception as e:  # pickling raises PicklingError, TypeError, AttributeError ... (a local class)
                why = f"the model or the target does not pickle ({type(e).__name__}: {e})"
            else:
                try:
                    parts, why = _in_pool(payload, pieces, workers, update), None
                except WorkerSetupError as e:
                    why = f"a worker cannot rebuild the model or the target ({e})"
                except BrokenProcessPool as e:  # a worker died, e.g. re-running a script's unguarded top level
                    why = (f"a worker process died ({e}; a script that calls verify with workers needs the "
                           "`if __name__ == \"__main__\":` guard of Python multiprocessing)")
            if why is not None:
                warnings.warn(f"verify: running in this process instead of {workers} workers (the report is the same): "
                              f"{why}", RuntimeWarning, stacklevel=3)
        if parts is None:
            parts = []
            for start, piece in pieces:
                parts.append(run_chunk(job, module, start, piece))
                update(sum(p.samples for p in parts))
    return merge(parts, job)
