"""Spiking neuron layers, stateful over time: the float neuron (spikingjelly semantics) and the
bit-accurate Loihi 2 LIF neuron produced by the quantize pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Union

import numpy as np

from ... import loihi
from ..types import Kind, TensorType, TimeBehaviour
from .base import Node, Scalar, _check_arity, _same_time, _scalar_or_array_str


@dataclass(frozen=True, eq=False)
class NeuronNode(Node):
    """Spiking neuron layer, stateful over time (spikingjelly multi-step semantics, float32).

    With input current X[t], membrane V (initial value ``v_init``), reset value V_r
    (``v_reset``, or 0 for soft reset) and threshold θ (``v_threshold``, scalar or per-channel
    array broadcastable to the features)::

        IF :                      H = V + X
        LIF, decay_input:         H = V + (X - (V - V_r)) / tau      (PLIF: ... * leak_rate)
        LIF, not decay_input:     H = V - (V - V_r) / tau + X        (PLIF: ... * leak_rate)
        S = [H >= θ]                         (fires at equality)
        hard reset (v_reset set): V = S * V_r + (1 - S) * H
        soft reset (v_reset None): V = H - S * θ

    ``leak_rate`` is set for parametric LIF (= sigmoid(w), multiplied instead of dividing by tau;
    ``tau`` then holds 1 / leak_rate for reference).
    """

    model: str = "LIF"
    v_threshold: Scalar = 1.0
    v_reset: Optional[float] = 0.0
    tau: Optional[float] = 2.0
    decay_input: bool = True
    leak_rate: Optional[float] = None
    v_init: float = 0.0

    op: ClassVar[str] = "neuron"

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.STATEFUL

    def infer(self, ins):
        _check_arity(self, ins)
        (x,) = ins
        if self.model not in ("LIF", "IF"):
            raise self.fail(f"unknown neuron model {self.model!r}")
        if self.model == "LIF" and self.leak_rate is None and (self.tau is None or self.tau <= 0):
            raise self.fail("LIF needs tau > 0 or a leak_rate")
        if isinstance(self.v_threshold, np.ndarray):
            try:
                np.broadcast_shapes(self.v_threshold.shape, x.features)
            except ValueError:
                raise self.fail(
                    f"threshold shape {self.v_threshold.shape} does not broadcast to {x.features}"
                ) from None
        return x.with_(kind=Kind.SPIKE)

    @property
    def soft_reset(self) -> bool:
        return self.v_reset is None

    def summary(self):
        th = _scalar_or_array_str(self.v_threshold)
        reset = "soft" if self.v_reset is None else f"hard->{self.v_reset:g}"
        if self.model == "IF":
            return f"IF th={th} reset={reset}"
        leak = f"rate={self.leak_rate:.4g}" if self.leak_rate is not None else f"tau={self.tau:g}"
        di = "" if self.decay_input else " no-decay-input"
        return f"LIF {leak} th={th} reset={reset}{di}"


# ------------------------------------------------------------------------------------------------
# Integer (quantized) forms, produced by the quantize pass; semantics are Loihi 2 / Lava fixed_pt
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoihiNeuronNode(Node):
    """Loihi 2 LIF neuron (Lava ``PyLifModelBitAcc``, tag fixed_pt), integer state.

    The input current ``a`` is the sum of all inputs (int32).  Per time step::

        u = trunc0(u · (4096 − (du + 1)) / 4096) + (a << 6);  24-bit wrap of u (once: u > 2^23 →
            u − 2^24; u <= −2^23 → u + 2^24)
        v = clip(trunc0(v · (4096 − dv) / 4096) + u + (bias_mant << bias_exp), −(2^23 − 1), 2^23 − 1)
        s = v > (vth << 6)
        reset  "zero":  v = 0 where s          (Lava LIF)
               "soft":  v = v − ((vth << 6) + 1) where s      (custom process)
               "value": v = reset_value where s               (custom process)

    trunc0 truncates toward zero.  ``v`` starts at ``v_init``, ``u`` at 0.  bias_mant / bias_exp
    are per neuron (arrays broadcast to the features) or scalars."""

    du: int = 4095
    dv: int = 0
    vth: int = 0
    bias_mant: Union[int, np.ndarray] = 0
    bias_exp: Union[int, np.ndarray] = 0
    reset: str = "zero"
    reset_value: int = 0
    v_init: int = 0

    op: ClassVar[str] = "loihi_lif"
    arity: ClassVar[Optional[int]] = None

    def time_behaviour(self) -> TimeBehaviour:
        return TimeBehaviour.STATEFUL

    def infer(self, ins):
        if not ins:
            raise self.fail("needs at least one input")
        t = _same_time(self, ins)
        feats = ins[0].features
        for x in ins:
            if x.features != feats:
                raise self.fail(f"inputs have different features {x.features} vs {feats}")
            if x.kind is Kind.REAL:
                raise self.fail("inputs must be integers")
        if not (0 <= self.du <= loihi.DECAY_MAX and 0 <= self.dv <= loihi.DECAY_MAX):
            raise self.fail(f"du, dv must be 12-bit (0..{loihi.DECAY_MAX}), got {self.du}, {self.dv}")
        if not 0 <= self.vth < loihi.VTH_LIMIT:
            raise self.fail(f"vth must be {loihi.VTH_BITS}-bit unsigned, got {self.vth}")
        if self.reset not in ("zero", "soft", "value"):
            raise self.fail(f"unknown reset {self.reset!r}")
        for nm in ("bias_mant", "bias_exp"):
            a = np.asarray(getattr(self, nm))
            try:
                np.broadcast_shapes(a.shape, feats)
            except ValueError:
                raise self.fail(f"{nm} shape {a.shape} does not broadcast to {feats}") from None
        if np.any(np.abs(np.asarray(self.bias_mant)) > loihi.BIAS_MANT_MAX + 1) or np.any(np.asarray(self.bias_exp) < 0) \
                or np.any(np.asarray(self.bias_exp) > loihi.BIAS_EXP_MAX):
            raise self.fail(f"bias must be a 13-bit signed mantissa with exponent 0..{loihi.BIAS_EXP_MAX}")
        return TensorType(t, feats, Kind.SPIKE)

    def summary(self):
        b = np.asarray(self.bias_mant)
        bias = "" if not np.any(b) else (f" bias={int(b)}<<{int(np.asarray(self.bias_exp))}" if b.ndim == 0 else f" bias=<{list(b.shape)}>")
        return f"du={self.du} dv={self.dv} vth={self.vth} reset={self.reset}{bias}"
