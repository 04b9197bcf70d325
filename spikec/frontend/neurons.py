"""Recognising spiking-neuron modules and replacing them by one traceable operation.

Before tracing, every supported neuron module is swapped (in a copy of the model) for a
:class:`TracedNeuron` that calls the custom op ``spikec::neuron`` with the neuron's frozen
parameters as constant arguments.  ``torch.export`` keeps that op as one node, so each neuron
layer becomes one IR node instead of an unrolled time loop, whatever implementation (spikingjelly
2.x kernels, the legacy ``MultiStep*Node`` classes, a user's copy of them) the model used.

Supported: spikingjelly 2.0 ``activation_based.neuron`` ``LIFNode``, ``IFNode``,
``ParametricLIFNode`` (multi-step mode), and the legacy ``MultiStepLIFNode``,
``MultiStepIFNode``, ``MultiStepParametricLIFNode`` classes (``spikingjelly.clock_driven``, as
used by the published Spikformer / Spike-Driven Transformer code) recognised by class name and
attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from ..errors import UnsupportedError
from ..runtime.neuron_dynamics import neuron_forward

SUPPORTED_NEURONS = (
    "spikingjelly LIFNode / IFNode / ParametricLIFNode (step_mode='m'); "
    "legacy MultiStepLIFNode / MultiStepIFNode / MultiStepParametricLIFNode"
)

_SJ2_TYPES = {
    "spikingjelly.activation_based.neuron.lif.LIFNode": "LIF",
    "spikingjelly.activation_based.neuron.integrate_and_fire.IFNode": "IF",
    "spikingjelly.activation_based.neuron.plif.ParametricLIFNode": "PLIF",
}
_LEGACY_TYPES = {
    "MultiStepLIFNode": "LIF",
    "MultiStepIFNode": "IF",
    "MultiStepParametricLIFNode": "PLIF",
}


@dataclass(frozen=True)
class NeuronSpec:
    """Frozen parameters of one neuron layer (see :class:`spikec.ir.NeuronNode`)."""

    model: str
    v_threshold: float
    v_reset: Optional[float]
    tau: Optional[float]
    decay_input: bool
    leak_rate: Optional[float]
    v_init: float


def _qualname(m: nn.Module) -> str:
    t = type(m)
    return f"{t.__module__}.{t.__qualname__}"


def _is_spiking_module(m: nn.Module) -> bool:
    """Heuristic for 'this is some spiking neuron' (for naming unsupported ones)."""
    try:
        from spikingjelly.activation_based.neuron import BaseNode

        if isinstance(m, BaseNode):
            return True
    except ImportError:
        pass
    return hasattr(m, "v_threshold") and hasattr(m, "v_reset")


def neuron_spec(m: nn.Module, path: str) -> Optional[NeuronSpec]:
    """The spec of ``m`` if it is a supported neuron, None if it is not a neuron at all.
    Raises UnsupportedError for neurons spikec cannot compile."""
    qual = _qualname(m)
    kind = _SJ2_TYPES.get(qual)
    legacy = False
    if kind is None and type(m).__name__ in _LEGACY_TYPES:
        kind, legacy = _LEGACY_TYPES[type(m).__name__], True
    if kind is None:
        if _is_spiking_module(m):
            raise UnsupportedError(
                f"module '{path}' is a {qual}, a spiking neuron spikec does not support. "
                f"Supported neurons: {SUPPORTED_NEURONS}."
            )
        return None
    if not legacy and getattr(m, "step_mode", "m") != "m":
        raise UnsupportedError(
            f"module '{path}' ({type(m).__name__}) is in single-step mode; spikec compiles "
            "multi-step models. Call spikingjelly.activation_based.functional.set_step_mode(model, 'm') "
            "in your model factory."
        )
    v_th = m.v_threshold
    if isinstance(v_th, torch.Tensor):
        if v_th.numel() != 1:
            raise UnsupportedError(f"module '{path}': tensor-valued v_threshold is not supported")
        v_th = v_th.item()
    v_reset = getattr(m, "v_reset", 0.0)
    v_reset = None if v_reset is None else float(v_reset)
    decay_input = bool(getattr(m, "decay_input", True))
    tau, rate = None, None
    if kind == "LIF":
        tau = float(m.tau)
    elif kind == "PLIF":
        w = m.w.detach().float()
        rate_t = w.sigmoid()
        rate = float(rate_t.item())  # float32 value, exactly representable in a double
        tau = 1.0 / rate
    model = "IF" if kind == "IF" else "LIF"
    return NeuronSpec(
        model=model,
        v_threshold=float(v_th),
        v_reset=v_reset,
        tau=tau,
        decay_input=decay_input,
        leak_rate=rate,
        v_init=0.0 if v_reset is None else v_reset,
    )


# ------------------------------------------------------------------------------------------------
# The traceable neuron op
# ------------------------------------------------------------------------------------------------


@torch.library.custom_op("spikec::neuron", mutates_args=())
def neuron_op(
    x: torch.Tensor,
    model: str,
    v_threshold: float,
    v_reset: Optional[float],
    tau: Optional[float],
    decay_input: bool,
    leak_rate: Optional[float],
    v_init: float,
) -> torch.Tensor:
    """Multi-step neuron layer on ``[T, B, ...]`` (float semantics of NeuronNode)."""
    return neuron_forward(x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init)


@neuron_op.register_fake
def _neuron_fake(x, model, v_threshold, v_reset, tau, decay_input, leak_rate, v_init):
    return torch.empty_like(x)


class TracedNeuron(nn.Module):
    """Stand-in for a neuron module during tracing: one ``spikec::neuron`` call."""

    def __init__(self, spec: NeuronSpec, original_type: str, path: str = ""):
        super().__init__()
        self.spec = spec
        self.original_type = original_type
        self.path = path

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            from ..errors import UnsupportedError

            raise UnsupportedError(
                f"the model reads attribute {name!r} of neuron module '{self.path}' ({self.original_type}): a neuron's "
                "state (membrane v, ...) is not part of what spikec compiles; compute the output from the spikes"
            ) from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.spec
        return neuron_op(
            x, s.model, s.v_threshold, s.v_reset, s.tau, s.decay_input, s.leak_rate, s.v_init
        )

    def extra_repr(self) -> str:
        return f"{self.original_type.rpartition('.')[2]}: {self.spec}"


def replace_neurons(model: nn.Module) -> tuple[nn.Module, dict[str, NeuronSpec]]:
    """Swap every neuron module of ``model`` (in place) for a TracedNeuron.
    Returns the model and the spec of each replaced module path."""
    specs: dict[str, NeuronSpec] = {}
    for parent_path, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            path = f"{parent_path}.{child_name}" if parent_path else child_name
            spec = neuron_spec(child, path)
            if spec is not None:
                setattr(parent, child_name, TracedNeuron(spec, f"{type(child).__module__}.{type(child).__qualname__}", path))
                specs[path] = spec
    return model, specs
