"""What quantization did, per layer: weight rounding / clipping, threshold placement, decay,
bias saturation and state headroom (:class:`QuantReport`, printed by the compile report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SynapseReport:
    name: str
    source: str
    sign_mode: str
    weight_exp: int  # the lowest of its channels' exponents
    delta_in: float
    delta_out: float
    clipped: float  # fraction of weights clipped to the mantissa range
    rel_error: float  # rms weight rounding error / rms weight
    channel_exp: Optional[tuple] = None  # each output channel's exponent (None: weight_exp for all)
    connections: int = 1  # Loihi connections: one per distinct channel exponent

    @property
    def max_exp(self) -> int:
        return self.weight_exp if self.channel_exp is None else max(self.channel_exp)

    @property
    def exponents(self) -> str:
        return str(self.weight_exp) if self.channel_exp is None else f"{self.weight_exp}..{self.max_exp}"


@dataclass
class NeuronReport:
    name: str
    source: str
    delta_v: float
    vth: int
    threshold: float
    threshold_int: float  # (64·vth + 1)·Δv: the real threshold the integer neuron implements
    dv: int
    decay: float
    bias_saturated: int
    headroom_v: float  # bound on |v| / 2^23
    headroom_u: float  # bound on |u| / 2^23
    # (additive fields, for error bounds: spikec.verification.bounds)
    bias_error: float = 0.0  # max |constant input − (bias_mant << bias_exp)·Δv| (real units): rounding + saturation
    membrane_bound: float = 0.0  # the bound on |V| the scales were chosen for (worst-case, or measured × margin)
    input_bound: float = 0.0  # the bound on |X| (real units) the scales were chosen for
    # the mean floor error of the input current that the bias adds back (real units, >= 0, per feature or
    # a scalar 0.0; .neurons.floor_compensation): part of the constant the bias realises (bias_error)
    floor_compensation: object = 0.0
    # calibrated bounds only (--calib): measured on the calibration data in the float model
    calib_values: int = 0  # input currents measured (elements over positions, steps, samples)
    calib_beyond: int = 0  # of them above the calibrated bound (the percentile)
    calib_wrapped: int = 0  # currents the chosen scale cannot hold: u = a << 6 would wrap (|a| >= 2^17)
    calib_saturated: int = 0  # membranes beyond v's 24-bit saturation at the chosen scale

    @property
    def saturation(self) -> int:
        """Calibration values the integer layer clips or wraps (as Loihi would)."""
        return self.calib_wrapped + self.calib_saturated


@dataclass
class QuantReport:
    input_scale: float = 1.0
    synapses: list[SynapseReport] = field(default_factory=list)
    neurons: list[NeuronReport] = field(default_factory=list)
    calibrated: bool = False
    percentile: Optional[float] = None  # calibrated bounds: the percentile of |value| per layer
    scales: dict[str, float] = field(default_factory=dict)  # float value name -> its fixed-point scale Δ (value ≈ q·Δ)
    kernels: list = field(default_factory=list)  # the integer kernels in use (.kernels.KernelReport)

    def approximations(self) -> list[str]:
        """The ops run by integer approximations (kernels.LABELS), each once, in graph order."""
        from .kernels import LABELS

        return list(dict.fromkeys(LABELS[k.kernel] for k in self.kernels if k.kernel != "relu"))

    def lines(self) -> list[str]:
        how = (f"calibrated ({self.percentile:g}th percentile of |current| per layer)" if self.calibrated
               else "worst-case")
        out = [f"input: 8-bit, scale {self.input_scale:.6g}; bounds: {how}"]
        out.append(f"{'synapse':44s} {'mode':5s} {'exp':>6s} {'conn':>4s} {'clip%':>6s} {'w err':>7s}")
        for s in self.synapses:
            out.append(f"{s.name[:44]:44s} {s.sign_mode:5s} {s.exponents:>6s} {s.connections:4d} {100 * s.clipped:6.2f} "
                       f"{s.rel_error:7.4f}")
        cal = f" {'>bound':>8s} {'sat':>6s}" if self.calibrated else ""
        out.append(f"{'neuron':44s} {'vth':>7s} {'dv':>5s} {'theta':>8s} {'theta_q':>9s} {'|v|/max':>8s} {'|u|/max':>8s}" + cal)
        for n in self.neurons:
            c = f" {n.calib_beyond:8d} {n.saturation:6d}" if self.calibrated else ""
            out.append(f"{n.name[:44]:44s} {n.vth:7d} {n.dv:5d} {n.threshold:8.4g} {n.threshold_int:9.5g} "
                       f"{n.headroom_v:8.3f} {n.headroom_u:8.3f}" + c
                       + (f"  bias saturated x{n.bias_saturated}" if n.bias_saturated else ""))
        if self.kernels:
            approx = self.approximations()
            out.append("integer approximation of: " + (", ".join(approx) if approx else "none (ReLU is exact)"))
            out.append(f"{'kernel':44s} {'op':10s} {'scale in':>10s} {'scale out':>10s} {'err bound':>10s}")
            out += [k.line() for k in self.kernels]
        if self.calibrated:
            total = sum(n.calib_values for n in self.neurons)
            out.append(f"calibration: {sum(n.calib_beyond for n in self.neurons)} of {total} measured currents above "
                       f"their layer's bound (>bound), {sum(n.saturation for n in self.neurons)} clipped or wrapped at "
                       "the chosen scales (sat: u wraps / v saturates, as on Loihi)")
        return out + self.warnings()

    def warnings(self) -> list[str]:
        """Layers whose quantization is too coarse to trust: weights that mostly round away
        (relative error >= 0.25) or thresholds off by more than 10 %.  Typically one value with a
        far larger range (e.g. a sum over many tokens) shares its scale with the layers named."""
        out = [f"WARNING: synapse {s.name} ({s.source}): weights quantized with relative error {s.rel_error:.2f}"
               for s in self.synapses if s.rel_error >= 0.25]
        out += [f"WARNING: neuron {n.name} ({n.source}): threshold {n.threshold:.4g} realised as {n.threshold_int:.4g}"
                for n in self.neurons if abs(n.threshold_int - n.threshold) > 0.1 * abs(n.threshold)]
        coarse = bool(out)
        out += [f"WARNING: neuron {n.name} ({n.source}): on the calibration data {n.calib_wrapped} input currents wrap u "
                f"and {n.calib_saturated} membranes saturate v at the calibrated scale (as Loihi would): calibrate "
                "with a higher percentile or use worst-case bounds"
                for n in self.neurons if n.saturation]
        if coarse:
            out.append("WARNING: the integer model will disagree with the float model in these layers; they share a "
                       "fixed-point scale with a value of far larger range (see the |v|/max column); verify with "
                       "spikec verify, try --calib with representative inputs")
        return out
