"""The Target interface: what every backend implements, and the registry that names them.

A target turns a compiled model into an artifact and runs it::

    compiled = compile_graph(graph, target)          # the target's pass pipeline (+ quantization)
    artifact = target.emit(compiled, options)        # in memory; may refuse with a SpikecError
    target.save(artifact, path) / target.load(path)  # on disk, atomically
    target.run(artifact, x)                          # RunOutput: real outputs, per-layer spikes
    target.check(compiled, artifact, x, reference)   # TargetCheck against intref or the float IR

The compile driver, ``spikec verify`` and the CLI speak only this interface: adding a backend is
one package with a :class:`Target` subclass plus one :func:`register` call (or one line in
:data:`BUILTIN`).  The registry is explicit: :data:`BUILTIN` maps names to ``module:Class``
strings, imported on first use, so importing spikec imports no backend.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import numpy as np

from spikec.errors import SpikecError


@dataclass(frozen=True)
class Option:
    """A target-specific compile option: a keyword of ``spikec.compile`` and a CLI flag."""

    name: str  # Python keyword, e.g. "max_nir_neurons"
    default: Any
    help: str
    type: Callable = str
    flag: Optional[str] = None  # CLI flag (default: --name-with-dashes)
    metavar: str = "N"
    action: Optional[str] = None  # "store_true" for switches
    verify: bool = False  # also an option of `spikec verify`

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


@dataclass
class Artifact:
    """A compiled model for one target, in memory.

    ``payload`` is the target's own object (a quantized graph, an ONNX ModelProto, a NIR graph ...);
    ``graph`` the IR it was made from; ``meta`` what the target records beside it (manifest)."""

    target: "Target"
    payload: Any
    graph: Any = None  # spikec.ir.Graph (quantized for integer targets)
    meta: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)  # what emit reported (resources, notes)
    path: Optional[Path] = None  # where it was saved / loaded from
    cache: dict = field(default_factory=dict, repr=False)  # what the target may reuse between calls

    def run(self, x, **kwargs) -> np.ndarray:
        """The model's (real-valued) first output for input ``x`` (numpy or torch, model layout)."""
        return self.target.run(self, x, **kwargs).outputs[0]

    def run_all(self, x, **kwargs) -> "RunOutput":
        """Every output plus per-layer spikes and the target's notes."""
        return self.target.run(self, x, **kwargs)

    def save(self, path) -> Path:
        self.path = self.target.save(self, path)
        return self.path

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return f"<spikec Artifact target={self.target.name!r}{where}>"


@dataclass
class RunOutput:
    outputs: list[np.ndarray]  # real values, source-model layout
    layers: dict[str, np.ndarray] = field(default_factory=dict)  # neuron layer -> spikes [T, B, *features]
    sources: dict[str, str] = field(default_factory=dict)  # neuron layer -> source module path
    lines: list[str] = field(default_factory=list)  # what the run reports (engine, timing, scale)
    warnings: list[str] = field(default_factory=list)  # input clipping, overflow ...
    details: dict = field(default_factory=dict)  # JSON-able figures (steps, steps/s ...)
    values: dict[str, np.ndarray] = field(default_factory=dict)  # every recorded node value (references)
    taught: dict[str, np.ndarray] = field(default_factory=dict)  # teacher-forced layers: their own computed value


@dataclass
class TargetCheck:
    """The target's run against its reference (intref for integer targets, else the float IR)."""

    reference: str  # "intref" | "float IR"
    exact: bool  # every compared layer and output equal (bit for bit / spike for spike)
    layers: dict[str, float] = field(default_factory=dict)  # neuron layer -> agreement with the reference
    outputs_equal: Optional[bool] = None
    outputs: Optional[np.ndarray] = None  # the target's first output (real), for top-1
    details: dict = field(default_factory=dict)  # JSON-able extras (steps, steps/s, node count ...)
    lines: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "exact": self.exact, "layers": self.layers,
                "outputs_equal": self.outputs_equal, **self.details}


class Target:
    """Base class of every backend.  Subclasses set the class attributes and implement
    :meth:`emit`, :meth:`save`, :meth:`load` and :meth:`run`; :meth:`check` has a default that
    compares :meth:`run` with the reference run layer by layer."""

    name: ClassVar[str]
    description: ClassVar[str]
    integer: ClassVar[bool] = False  # compiled from the quantized (Loihi fixed-point) graph
    pipeline: ClassVar[str | Sequence[str]] = "float"  # a named pass pipeline or a list of pass names
    pass_options: ClassVar[dict] = {}  # pass name -> keyword arguments
    artifact: ClassVar[str] = "directory"  # "directory" | "file"
    options: ClassVar[tuple[Option, ...]] = ()

    # --- compile ---------------------------------------------------------------------------
    def emit(self, compiled, **options) -> Artifact:
        raise NotImplementedError

    # --- files -----------------------------------------------------------------------------
    def save(self, artifact: Artifact, path) -> Path:
        raise NotImplementedError

    def recognizes(self, path: Path) -> bool:
        """Whether ``path`` holds an artifact of this target (for ``spikec run`` / ``spikec.load``)."""
        return False

    def load(self, path) -> Artifact:
        raise NotImplementedError

    # --- run -------------------------------------------------------------------------------
    def run(self, artifact: Artifact, x, *, progress: bool = False) -> RunOutput:
        raise NotImplementedError

    def reference_run(self, compiled, x, teacher: Optional[dict] = None) -> Optional[RunOutput]:
        """The run this target is checked against, when it is not the float IR: integer targets
        are checked against the integer reference model (intref's executor on the quantized graph,
        every node value recorded, overflows in ``details``).  With ``teacher`` (layer -> spikes),
        those layers are computed as usual (their values in ``taught``) but their users get the
        teacher's values: each layer's local error, free of cascades."""
        if not self.integer:
            return None
        from .intref.target import run_integer_graph

        return run_integer_graph(compiled.quantized, x, teacher=teacher)

    @property
    def reference_name(self) -> str:
        return REFERENCE if self.integer else "float IR"

    def check(self, compiled, artifact: Artifact, x, reference: RunOutput) -> Optional[TargetCheck]:
        """Compare the target's run on ``x`` with ``reference`` (:meth:`reference_run`, or the
        optimised float IR's run) layer by layer and at the output; None: nothing to check."""
        return compare_with_reference(self.run(artifact, x), reference, self.reference_name, exact=self.integer)

    def option_values(self, given: dict) -> dict:
        """This target's options: the defaults, overridden by ``given`` (unknown keys refused)."""
        known = {o.name: o.default for o in self.options}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SpikecError(f"target {self.name!r} has no option {', '.join(unknown)}; "
                              f"its options: {', '.join(known) or 'none'}")
        return {**known, **given}

    def __repr__(self) -> str:
        return f"<spikec target {self.name!r}>"


def compare_with_reference(got: RunOutput, reference: RunOutput, name: str, exact: bool) -> TargetCheck:
    """Per-layer agreement of ``got`` with ``reference`` (every layer / stage ``got`` exposes that the
    reference recorded), outputs equal bit for bit (``exact``) or to 1e-5."""
    layers = {}
    for layer, spikes in got.layers.items():
        ref = reference.values.get(layer, reference.layers.get(layer))
        if ref is None:
            continue
        ref = np.asarray(ref)
        layers[layer] = float((np.asarray(spikes).reshape(ref.shape) == ref).mean())
    ref_out, out = np.asarray(reference.outputs[0], np.float64), np.asarray(got.outputs[0], np.float64)
    equal = out.shape == ref_out.shape and (np.array_equal(out, ref_out) if exact
                                           else bool(np.abs(out - ref_out).max(initial=0.0) <= 1e-5))
    return TargetCheck(name, all(a == 1.0 for a in layers.values()) and equal, layers, equal, got.outputs[0],
                       details=dict(got.details), lines=list(got.lines))


# --- the registry -------------------------------------------------------------------------------

REFERENCE = "intref"  # the integer reference every integer target is checked against; verify's default

BUILTIN: dict[str, str] = {
    "intref": "spikec.targets.intref.target:IntrefTarget",
    "lava": "spikec.targets.lava.target:LavaTarget",
    "nir": "spikec.targets.nir.target:NirTarget",
    "onnx": "spikec.targets.onnx.target:OnnxTarget",
}

_REGISTERED: dict[str, Target] = {}


def register(target: Target | type) -> Target:
    """Make ``target`` (an instance or a Target subclass) available under ``target.name``."""
    t = target() if isinstance(target, type) else target
    if not getattr(t, "name", None):
        raise SpikecError(f"{type(t).__name__}: a target needs a name")
    _REGISTERED[t.name] = t
    return t


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def names() -> list[str]:
    return sorted(set(BUILTIN) | set(_REGISTERED))


def get(name: "str | Target") -> Target:
    """The target named ``name`` (a Target instance is returned as it is)."""
    if isinstance(name, Target):
        return name
    if name not in _REGISTERED:
        spec = BUILTIN.get(name)
        if spec is None:
            raise SpikecError(f"unknown target {name!r}; targets: {', '.join(names())}")
        module, _, cls = spec.partition(":")
        _REGISTERED[name] = getattr(importlib.import_module(module), cls)()
    return _REGISTERED[name]


def all_targets() -> list[Target]:
    return [get(n) for n in names()]


def for_artifact(path) -> Target:
    """The target whose artifact ``path`` is (a directory or a single file)."""
    path = Path(path)
    if not path.exists():
        raise SpikecError(f"{path}: no such file or directory")
    for t in all_targets():
        if t.recognizes(path):
            return t
    raise SpikecError(f"{path}: not a spikec artifact (targets: {', '.join(names())}: an intref / lava "
                      "directory, a .onnx or a .nir file)")
