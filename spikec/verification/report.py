"""What ``spikec verify`` found, per neuron layer and at the outputs, as text, a rich table and JSON.

Columns of the per-layer table:

* ``torch=IR``: spike agreement of the traced float IR with the torch model (expected 100 %);
* ``passes``: agreement after the target's float pass pipeline (re-association flips only);
* ``float=int`` (integer targets): agreement of the integer reference model with the optimised float
  IR, and the first (time step, sample) where they diverge;
* ``<target>=<reference>``: the target's own run against its reference (the integer reference bit
  for bit for integer targets; the float IR for others), where the target exposes the layer.

Teacher-forced columns (integer targets): every Loihi neuron layer run by the integer executor on the
float model's own spikes of the layers upstream (no cascades), so what remains is that layer's own
quantization error:

* ``local``: agreement of those teacher-forced integer spikes with the float spikes;
* ``bound/θ``: the layer's error bound (:mod:`.bounds`: |float membrane − integer membrane·Δv| plus
  the threshold placement, from what quantization did to the layer), relative to θ;
* ``unexpl.``: teacher-forced flips whose float membrane lies farther from θ than the bound. Each is
  a bug, not rounding; ``spikec verify`` fails on any (:attr:`VerifyReport.flips_explained`).

Warnings (input clipping, currents past Lava's int32 datapath) are in ``warnings``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from spikec.errors import SpikecError


@dataclass
class LayerRecord:
    layer: str
    source: str  # the user's module path
    rate: float  # firing rate in the reference (optimised float IR)
    torch_vs_ir: Optional[float]  # None: no torch module (a .pt2 program or a saved IR)
    passes: Optional[float]  # None: the target's passes did not run (a failure)
    float_vs_int: Optional[float] = None  # integer targets only
    first_divergence: Optional[tuple[int, int]] = None  # (t, b) of the first float vs integer flip
    target: Optional[float] = None  # agreement of the target's run with its reference
    local_agreement: Optional[float] = None  # teacher-forced integer vs float spikes (integer targets)
    error_bound: Optional[float] = None  # the layer's flip bound relative to θ (spikec.verification.bounds)
    unexplained_flips: Optional[int] = None  # teacher-forced flips beyond the bound (bugs)
    unexplained_at: list = field(default_factory=list)  # the first few of them, (t, b, *features)
    off_rule: list = field(default_factory=list)  # integer parameters of the layer that differ from the quantization rules
    # the data drive |H| beyond what the layer's 24-bit membrane holds at its scale (calibrated bounds exceeded):
    # the integer layer saturates, so its flips are not judged against the error bound (None: not judged)
    out_of_range: Optional[float] = None  # largest float |H| / the membrane's range, when above 1


@dataclass
class VerifyReport:
    samples: int
    target: str
    integer: bool = True
    layers: list[LayerRecord] = field(default_factory=list)
    top1_agreement: float = 0.0  # float IR vs the integer model (integer targets) or the target's run
    top1_torch: Optional[float] = None  # torch model vs the same
    accuracy: dict = field(default_factory=dict)  # "torch" / "float IR" / "integer" / target -> accuracy
    first_divergent_layer: Optional[str] = None
    check: Optional[dict] = None  # TargetCheck.to_dict(): the target against its reference
    check_lines: list[str] = field(default_factory=list)
    overflows: dict = field(default_factory=dict)  # neuron layer -> currents beyond Lava's int32 datapath
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what qualifies a figure (e.g. a vacuous top-1 agreement)
    top1_vacuous: bool = False  # top1_agreement says nothing (see notes)
    failure: Optional[str] = None  # the stage that failed and why; the records hold what was checked before
    approximations: list[str] = field(default_factory=list)  # ops the integer model runs by integer approximations
    perturbed: Optional[dict] = None  # the float IR against itself with perturbed weights (.sensitivity)

    @property
    def exact(self) -> bool:
        """The target agrees with its reference (True when the target has no check of its own)."""
        return self.check is None or bool(self.check["exact"])

    @property
    def unexplained_layers(self) -> list[str]:
        """Layers with teacher-forced flips that their quantization error bound does not explain."""
        return [r.layer for r in self.layers if r.unexplained_flips]

    @property
    def flips_explained(self) -> bool:
        """Every teacher-forced flip lies within its layer's error bound (True without integer model)."""
        return not self.unexplained_layers

    @property
    def compared(self) -> str:
        """What ``top1_agreement`` compares with the float IR."""
        return "integer" if self.integer else self.target

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("check_lines")
        return d

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 1, **kwargs})

    def _ref(self) -> str:
        return "int" if self.integer else "float"

    def _target_column(self) -> Optional[str]:
        if self.check is None or not any(r.target is not None for r in self.layers):
            return None
        return f"{self.target}={self._ref()}"

    def _cells(self, r: LayerRecord) -> list[str]:
        def pct(v):
            return "-" if v is None else f"{v:.4%}"

        cells = [r.layer, f"{r.rate:.3f}", pct(r.torch_vs_ir), pct(r.passes)]
        if self.integer:
            cells.append(pct(r.float_vs_int))
            cells += [pct(r.local_agreement), "-" if r.error_bound is None else f"{r.error_bound:.4f}",
                      "-" if r.unexplained_flips is None else str(r.unexplained_flips)]
        if self._target_column():
            cells.append("-" if r.target is None else ("yes" if r.target == 1.0 else f"NO {r.target:.4%}"))
        cells.append("-" if r.first_divergence is None else str(r.first_divergence))
        return cells

    def _header(self) -> list[str]:
        cols = ["neuron layer", "rate", "torch=IR", "passes"] + (["float=int", "local", "bound/θ", "unexpl."]
                                                                  if self.integer else [])
        return cols + ([self._target_column()] if self._target_column() else []) + ["first divergence (t, b)"]

    def summary_lines(self) -> list[str]:
        if self.failure:
            return [f"checked before the failure: torch model vs traced float IR in {len(self.layers)} neuron layers; "
                    f"failed at: {self.failure}"]
        out = []
        if self.approximations:
            out.append(f"integer approximation of: {', '.join(self.approximations)} (spikec.integer_approx; error "
                       "bounds in the compile report)")
        if self.first_divergent_layer:
            out.append(f"first divergence float vs integer: layer {self.first_divergent_layer}")
        if self.check is not None:
            what = "bit for bit" if self.integer else "spike for spike"
            layers = (f"every compared layer equal: {'yes' if all(v == 1.0 for v in self.check['layers'].values()) else 'NO'}; "
                      if self.check["layers"] else "")
            out += self.check_lines
            out.append(f"{self.target} vs {self.check['reference']} ({what}): {layers}"
                       f"outputs equal {self.check['reference']}: {'yes' if self.check['outputs_equal'] else 'NO'}")
        if self.integer and any(r.unexplained_flips is not None for r in self.layers):
            bad = self.unexplained_layers
            out.append("teacher-forced flips within each layer's quantization error bound: "
                       + ("yes" if not bad else f"NO ({', '.join(bad)})"))
            for r in self.layers:
                if r.unexplained_flips:
                    out.append(f"  {r.layer}: {r.unexplained_flips} unexplained flips, first at (t, b, ...) "
                               f"{[list(p) for p in r.unexplained_at]}")
                out += [f"  {r.layer}: {d}" for d in r.off_rule]
            weak = [r.layer for r in self.layers if r.error_bound is not None and r.error_bound >= 1.0]
            if weak:
                out.append(f"NOTE: error bound >= θ in {', '.join(weak)}: only flips of membranes far outside [0, 2θ] "
                           "can be judged there (a worst-case bound: many inputs, large weight sums)")
        out.append(f"top-1 agreement float vs {self.compared}: {self.top1_agreement:.4%}"
                   + ("" if self.top1_torch is None else f"  (torch vs {self.compared}: {self.top1_torch:.4%})"))
        if self.perturbed is not None:
            p = self.perturbed
            out.append(f"top-1 agreement float vs float with weights x (1 + {p['relative']:g}·N(0,1)): "
                       f"{p['top1_agreement']:.4%}  (the model's own sensitivity, beside float vs {self.compared})"
                       + ("" if p["accuracy"] is None else f"; its accuracy {p['accuracy']:.4%}"))
        out += [f"accuracy {k}: {v:.4%}" for k, v in self.accuracy.items()]
        return out + [f"NOTE: {n}" for n in self.notes]

    def lines(self) -> list[str]:
        """Plain text: a header, a line per neuron layer, then the summary."""
        widths = [44, 6, 9, 9] + ([10, 9, 8, 7] if self.integer else []) + ([11] if self._target_column() else []) + [0]
        fmt = lambda cells: " ".join(c[:w].ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                     for i, (c, w) in enumerate(zip(cells, widths)))
        out = [f"verify ({self.target}) on {self.samples} samples", fmt(self._header())]
        out += [fmt(self._cells(r)) for r in self.layers]
        return out + self.summary_lines()

    def table(self):
        """The per-layer records as a rich Table (print it with a rich Console, or show it in Jupyter)."""
        from rich.table import Table

        t = Table(title=f"spikec verify ({self.target}) on {self.samples} samples")
        for i, col in enumerate(self._header()):
            t.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
        for r in self.layers:
            t.add_row(*self._cells(r))
        return t

    def __rich__(self):
        from rich.console import Group

        return Group(self.table(), *self.summary_lines())

    def _repr_pretty_(self, p, cycle):  # IPython / Jupyter
        p.text("\n".join(self.lines()))


class VerifyError(SpikecError):
    """A stage of ``verify`` failed; ``report`` holds what was checked before it."""

    def __init__(self, message: str, report: VerifyReport):
        super().__init__(message)
        self.report = report
