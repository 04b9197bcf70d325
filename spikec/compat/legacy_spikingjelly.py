"""A stand-in for the removed ``spikingjelly.clock_driven`` API (spikingjelly < 0.0.0.0.15).

Published spiking-transformer code (Spikformer, Spike-Driven Transformer v1/v2) does
``from spikingjelly.clock_driven.neuron import MultiStepLIFNode`` and builds neurons with
``backend='cupy'``.  spikingjelly 2.x has no ``clock_driven``; :func:`install_if_missing`
registers this module's pure-torch versions under that name so such model code imports and runs
on a CPU.  The neurons follow spikingjelly's multi-step equations (see
:class:`spikec.ir.NeuronNode`); ``backend`` is accepted and ignored.  For training, the spike
function has the arctan surrogate gradient (the legacy default for these classes was
``Sigmoid``; it only matters for training).

Whole models pickled with the real legacy package unpickle into these classes (pickle names the
class ``spikingjelly.clock_driven.neuron.MultiStepLIFNode``, which resolves to the stand-in);
:meth:`_MultiStepNode.__setstate__` converts the real objects' state to the stand-in's.
"""

from __future__ import annotations

import math
import sys
import types
from typing import Optional

import torch
from torch import nn

from ..runtime.neuron_dynamics import neuron_forward


class _ATanSpike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


class ATan(nn.Module):
    def __init__(self, alpha: float = 2.0, spiking: bool = True):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        return _ATanSpike.apply(x, self.alpha)


Sigmoid = ATan  # accepted for compatibility; see module docstring


class _MultiStepNode(nn.Module):
    """Common part: eager forward uses the exact float recurrence when not training, and a
    differentiable loop with a surrogate gradient when training."""

    model = "LIF"

    def __init__(self, v_threshold=1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset=False, backend="torch", decay_input=True, **kwargs):
        super().__init__()
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate_function = surrogate_function if surrogate_function is not None else ATan()
        self.detach_reset = detach_reset
        self.backend = backend
        self.decay_input = decay_input

    # attributes __init__ sets that an unpickled real legacy object may lack (its IFNode has no decay_input)
    _PICKLE_DEFAULTS = {"decay_input": True, "detach_reset": False, "backend": "torch"}

    def __setstate__(self, state):
        """Accept an object pickled by the real legacy spikingjelly (<= 0.0.0.0.14).  Its
        ``MemoryModule`` keeps ``v_threshold`` and ``v_reset`` -- and the membrane state ``v`` /
        ``v_seq`` -- in a ``_memories`` dict (their initial values in ``_memories_rv``) that its
        ``__getattr__`` serves; here they are plain attributes (``neuron_spec`` and ``forward`` read
        them).  Take the two parameters out (current value, else the initial one) and drop the state:
        this class is stateless, every forward starts from the initial membrane (see ``reset_net``)."""
        super().__setstate__(state)
        memories = self.__dict__.pop("_memories", None) or {}
        initial = self.__dict__.pop("_memories_rv", None) or {}
        for name in ("v_threshold", "v_reset"):
            if name not in self.__dict__ and (name in memories or name in initial):
                value = memories[name] if name in memories else initial[name]
                if isinstance(value, torch.Tensor) and value.numel() == 1:
                    value = value.item()
                if value is not None and not isinstance(value, torch.Tensor):
                    value = float(value)  # as __init__ stores them; a tensor of several is left to neuron_spec to refuse
                setattr(self, name, value)
        if "backend" not in self.__dict__ and "_backend" in self.__dict__:  # later 0.0.0.0.13 dev builds
            self.backend = self.__dict__["_backend"]
        for name, value in self._PICKLE_DEFAULTS.items():
            if name not in self.__dict__:
                setattr(self, name, value)

    def _leak(self):
        return None, None  # (tau, rate)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        tau, rate = self._leak()
        if not torch.is_grad_enabled() or not x_seq.requires_grad:
            r = None if rate is None else float(rate.detach().float())
            return neuron_forward(x_seq, self.model, self.v_threshold, self.v_reset, tau,
                                  self.decay_input, r, 0.0 if self.v_reset is None else self.v_reset)
        vr = 0.0 if self.v_reset is None else self.v_reset
        v = torch.full_like(x_seq[0], vr)
        out = []
        for x in x_seq:
            if self.model == "IF":
                h = v + x
            elif rate is not None:
                h = v + (x - (v - vr)) * rate if self.decay_input else v - (v - vr) * rate + x
            else:
                h = v + (x - (v - vr)) / tau if self.decay_input else v - (v - vr) / tau + x
            s = self.surrogate_function(h - self.v_threshold)
            sr = s.detach() if self.detach_reset else s
            v = h - sr * self.v_threshold if self.v_reset is None else sr * vr + (1 - sr) * h
            out.append(s)
        return torch.stack(out)


class MultiStepLIFNode(_MultiStepNode):
    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset=False,
                 backend="torch", **kwargs):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, backend, decay_input)
        self.tau = float(tau)

    def _leak(self):
        return self.tau, None

    def extra_repr(self):
        return f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


class MultiStepParametricLIFNode(_MultiStepNode):
    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset=False,
                 backend="torch", **kwargs):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, backend, decay_input)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def _leak(self):
        return None, self.w.sigmoid()


class MultiStepIFNode(_MultiStepNode):
    model = "IF"


class _SingleStepNode(nn.Module):
    """The legacy single-step neuron API: the membrane ``v`` kept across calls (one call per step),
    ``neuronal_charge`` / ``neuronal_fire`` / ``neuronal_reset`` and ``register_memory``, as published
    code subclasses it (Spikeformer's ``neuron.py`` builds its analog LIAF neurons on these).  spikec
    compiles the multi-step classes; a model that runs these step by step is traced as its arithmetic,
    and an operation spikec does not compile is named with its module."""

    def __init__(self, v_threshold=1.0, v_reset: Optional[float] = 0.0, surrogate_function=None,
                 detach_reset=False, decay_input=True):
        super().__init__()
        self._memories: dict = {}
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate_function = surrogate_function if surrogate_function is not None else ATan()
        self.detach_reset = detach_reset
        self.decay_input = decay_input
        self.register_memory("v", 0.0 if v_reset is None else float(v_reset))

    def register_memory(self, name: str, value) -> None:
        self._memories[name] = value
        setattr(self, name, value)

    def reset(self) -> None:
        for name, value in self._memories.items():
            setattr(self, name, value)

    def _rate(self):
        raise NotImplementedError

    def neuronal_charge(self, x: torch.Tensor) -> None:
        v = torch.full_like(x, self.v) if isinstance(self.v, float) else self.v
        vr = 0.0 if self.v_reset is None else self.v_reset
        self.v = v + (x - (v - vr)) * self._rate() if self.decay_input else v - (v - vr) * self._rate() + x

    def neuronal_fire(self) -> torch.Tensor:
        return self.surrogate_function(self.v - self.v_threshold)

    def neuronal_reset(self, spike: torch.Tensor) -> None:
        s = spike.detach() if self.detach_reset else spike
        self.v = self.v - s * self.v_threshold if self.v_reset is None else (1 - s) * self.v + s * self.v_reset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.neuronal_charge(x)
        spike = self.neuronal_fire()
        self.neuronal_reset(spike)
        return spike


class LIFNode(_SingleStepNode):
    def __init__(self, tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset=False):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, decay_input)
        self.tau = float(tau)

    def _rate(self):
        return 1.0 / self.tau


class ParametricLIFNode(_SingleStepNode):
    def __init__(self, init_tau: float = 2.0, decay_input: bool = True, v_threshold: float = 1.0,
                 v_reset: Optional[float] = 0.0, surrogate_function=None, detach_reset=False):
        super().__init__(v_threshold, v_reset, surrogate_function, detach_reset, decay_input)
        self.w = nn.Parameter(torch.tensor(-math.log(init_tau - 1.0)))

    def _rate(self):
        return self.w.sigmoid()


class SeqToANNContainer(nn.Sequential):
    """Apply stateless layers to ``[T, B, ...]`` by merging T into the batch."""

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        y = super().forward(x_seq.flatten(0, 1))
        return y.reshape(x_seq.shape[0], x_seq.shape[1], *y.shape[1:])


def reset_net(net: nn.Module) -> None:
    """The multi-step neurons are stateless here (every forward starts from the initial membrane);
    the single-step ones get their initial membrane back."""
    for m in net.modules():
        if isinstance(m, _SingleStepNode):
            m.reset()


def install_if_missing() -> bool:
    """Register ``spikingjelly.clock_driven`` (and ``.neuron``, ``.surrogate``, ``.layer``,
    ``.functional``) if the installed spikingjelly lacks it.  Returns True if installed."""
    try:
        import spikingjelly.clock_driven  # noqa: F401

        return False
    except ImportError:
        pass
    try:
        import spikingjelly  # noqa: F401
    except ImportError:
        pkg = types.ModuleType("spikingjelly")
        pkg.__path__ = []
        sys.modules["spikingjelly"] = pkg
    this = sys.modules[__name__]
    cd = types.ModuleType("spikingjelly.clock_driven")
    cd.__path__ = []
    cd.__doc__ = "spikec stand-in for the legacy clock_driven API (see spikec.compat.legacy_spikingjelly)"
    for sub in ("neuron", "surrogate", "layer", "functional"):
        m = types.ModuleType(f"spikingjelly.clock_driven.{sub}")
        for name in ("MultiStepLIFNode", "MultiStepParametricLIFNode", "MultiStepIFNode", "LIFNode",
                     "ParametricLIFNode", "ATan", "Sigmoid", "SeqToANNContainer", "reset_net"):
            setattr(m, name, getattr(this, name))
        setattr(cd, sub, m)
        sys.modules[m.__name__] = m
    sys.modules["spikingjelly.clock_driven"] = cd
    sys.modules["spikingjelly"].clock_driven = cd
    return True
