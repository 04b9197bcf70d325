"""The Python API: compile, load, run and verify from a notebook or a training script.

::

    import spikec
    art = spikec.compile(model, "lava", input_shape=(1, 8, 8))   # nn.Module, checkpoint path, .pt2 or saved IR
    y = art.run(x)                                                # numpy or torch in, numpy out
    art.save("out/model.lava"); art = spikec.load("out/model.lava")
    rep = spikec.verify(model, "lava", x, input_shape=(1, 8, 8), labels=y_true)   # workers=4: 4 processes, same report
    rep.top1_agreement, rep.accuracy, rep.layers, rep.to_json()
    r = spikec.report(model, x, input_shape=(1, 8, 8), output="out/report")   # SOPs, energy, cores, plots
    r.sops, r.energy_mj, r.cores, r.layers, r.table()

The CLI is a thin layer over these functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from .compiler import CompileResult, compile_graph
from .data import as_array, check_inputs
from .frontend.source import ModelLike, model_graph, open_model
from .targets.base import REFERENCE, Artifact, Target, for_artifact
from .targets.base import get as get_target
from .verification import VerifyReport, verify_graph


def trace(model: ModelLike, *, input_shape: Optional[Sequence[int]] = None, time_steps: Optional[int] = None,
          factory: Optional[str] = None, model_kwargs=None, trust_checkpoint: bool = False, model_output=None):
    """The traced IR graph of ``model`` (see :func:`compile` for the forms it takes)."""
    loaded = open_model(model, factory=factory, model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint)
    return model_graph(loaded, input_shape, time_steps, output=model_output)


def compile(model: ModelLike, target: str | Target, *, input_shape: Optional[Sequence[int]] = None,
            time_steps: Optional[int] = None, factory: Optional[str] = None, model_kwargs=None,
            trust_checkpoint: bool = False, calib=None, input_range: Sequence[float] = (0.0, 1.0),
            skip: Iterable[str] = (), on_dump: Optional[Callable] = None, dump_after: Optional[str] = None,
            model_output=None, **options) -> Artifact:
    """Compile ``model`` for ``target`` and return the artifact (in memory; ``.save(path)`` writes it).

    ``model``: an ``nn.Module``, a checkpoint path (a state_dict needs ``factory=
    'pkg.module:fn'`` or ``'file.py:fn'``; a pickled module needs ``trust_checkpoint=True``), a
    ``.pt2`` program or a saved IR.  ``input_shape`` is the per-sample shape without batch;
    ``time_steps`` when the model takes a sequence ``[T, B, ...]``.  ``calib`` (array) picks
    fixed-point scales from measured currents; ``input_range`` bounds the analog input;
    ``model_output`` picks one of several model outputs (an index or a dict key).  Other keywords
    are the target's options (``spikec.targets.get_target(name).options``)."""
    t = get_target(target)
    opts = t.option_values(options)
    graph = trace(model, input_shape=input_shape, time_steps=time_steps, factory=factory,
                  model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint, model_output=model_output)
    res = compile_graph(graph, t, calib=None if calib is None else as_array(calib, "calib"),
                        input_range=input_range, skip=skip, dump_after=dump_after, on_dump=on_dump)
    return emit(res, source={"model": type(model).__name__ if not isinstance(model, (str, Path)) else str(model),
                             "factory": factory}, **opts)


def emit(compiled: CompileResult, source: Optional[dict] = None, **options) -> Artifact:
    """The artifact of an already compiled model (:func:`spikec.compiler.compile_graph`)."""
    t = compiled.target
    art = t.emit(compiled, source=source, **t.option_values(options))
    art.meta.setdefault("report", list(compiled.lines))
    return art


def load(path) -> Artifact:
    """An artifact that ``spikec compile`` or ``Artifact.save`` wrote (its target is recognised)."""
    return for_artifact(path).load(path)


def verify(model: ModelLike, target: str | Target = REFERENCE, x=None, *, input_shape: Optional[Sequence[int]] = None,
           time_steps: Optional[int] = None, labels=None, factory: Optional[str] = None, model_kwargs=None,
           trust_checkpoint: bool = False, calib=None, input_range: Sequence[float] = (0.0, 1.0),
           skip: Iterable[str] = (), model_output=None, workers: int = 1, chunk: Optional[int] = None,
           progress: bool = False, perturb: Optional[float] = None, **options) -> VerifyReport:
    """Compile ``model`` for ``target`` and compare, neuron layer by neuron layer on inputs ``x``:
    the torch model (when ``model`` is one or loads as one), the traced float IR, the optimised
    float IR, the integer model (integer targets) and the target's own run against its reference.

    The model is opened once.  ``workers`` > 1 runs the samples, in chunks of ``chunk`` (default
    32), in that many worker processes; the report is the same as with one (0 or 1: this process).
    A checkpoint path is re-opened in each worker; an ``nn.Module`` is pickled to them, and when it
    cannot be (a class defined in a notebook, a model file loaded by path) verify runs in this
    process with a RuntimeWarning.  ``progress``: a progress bar on stderr.  ``perturb``: also the float
    model's top-1 agreement with itself under that relative weight perturbation (its own sensitivity,
    :mod:`spikec.verification.sensitivity`).  Returns a :class:`~spikec.verification.VerifyReport`."""
    from .errors import SpikecError
    from .verification.chunks import ModelRecipe

    if x is None:
        raise SpikecError("verify needs inputs x (numpy / torch array in the model's input layout, or a .npy path)")
    loaded = open_model(model, factory=factory, model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint)
    x = as_array(x, "input").astype(np.float32)
    labels = None if labels is None else as_array(labels, "labels").astype(np.int64)
    graph = model_graph(loaded, input_shape, time_steps, output=model_output)
    check_inputs(graph, x, labels)
    recipe = (ModelRecipe(str(model), factory, model_kwargs, trust_checkpoint) if isinstance(model, (str, Path)) else None)
    return verify_graph(graph, target, x, module=loaded.module, labels=labels, model_output=model_output,
                        calib=None if calib is None else as_array(calib, "calib"), input_range=input_range,
                        skip=skip, workers=workers, chunk=chunk, progress=progress, recipe=recipe, perturb=perturb,
                        **options)


def report(model: ModelLike, x, *, input_shape: Optional[Sequence[int]] = None, time_steps: Optional[int] = None,
           labels=None, factory: Optional[str] = None, model_kwargs=None, trust_checkpoint: bool = False, calib=None,
           input_range: Sequence[float] = (0.0, 1.0), skip: Iterable[str] = (), model_output=None, cores: bool = True,
           max_memory=None, output=None):
    """Per-layer synaptic operations (SOPs), MACs of real-valued inputs, energy (E_AC 0.9 pJ, E_MAC
    4.6 pJ, 45 nm), firing rates, float vs integer spike agreement, quantization error and Loihi 2
    cores of ``model`` on inputs ``x`` (the forms of :func:`compile`).

    ``cores=False`` skips the Loihi 2 resource model; ``max_memory`` (e.g. ``"8G"``) bounds it.
    With ``output`` the report directory (report.md, report.json, four PNG plots) is written there
    (checked before any work).  Returns a :class:`~spikec.reporting.Report` (``.sops``, ``.energy_mj``,
    ``.cores``, ``.layers``, ``.table()``, ``.to_json()``, ``.save(dir)``)."""
    from .reporting import report_graph
    from .reporting.output import check_report_dir

    protect = tuple(str(p) for p in (model, x) if isinstance(p, (str, Path)))
    if output is not None:
        check_report_dir(output, protect=protect, option="output")
    loaded = open_model(model, factory=factory, model_kwargs=model_kwargs, trust_checkpoint=trust_checkpoint)
    x = as_array(x, "input").astype(np.float32)
    labels = None if labels is None else as_array(labels, "labels").astype(np.int64)
    graph = model_graph(loaded, input_shape, time_steps, output=model_output)
    check_inputs(graph, x, labels)
    rep = report_graph(graph, x, labels=labels, calib=None if calib is None else as_array(calib, "calib"),
                       input_range=input_range, skip=skip, cores=cores, max_memory=max_memory)
    if output is not None:
        rep.save(output, protect=protect)
    return rep
