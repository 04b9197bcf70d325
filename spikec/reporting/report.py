"""What ``spikec report`` found: per layer and in total, as a rich table, markdown and JSON.

A *layer* is a stage of the compiled network, as the Lava target maps it: a neuron layer together
with the synaptic operations that feed it without passing another stage (its convolution / linear
map, or the products of an attention), or a custom stage (addressed accumulation, AND, max pool).
Synaptic operations after the last stage (a classifier on spike counts) form a *host tail* row.

Columns: ``neurons`` (elements per time step; for a custom stage, the units of its process),
``synapses`` (incoming, unrolled: one per connected input-output pair, per time step), ``rate``
(firing rate of the layer's spikes in the float IR), ``SOPs`` / ``MACs`` / ``energy`` per sample
(:mod:`.ops`, :mod:`.energy`), ``float=int`` (spike agreement of the integer reference model with
the float IR), ``w err`` (largest relative weight rounding error of the incoming synapses),
``θ err`` (relative error of the threshold the integer neuron realises), ``cores`` (Loihi 2
cores, lower bound, from the Lava target's resource model; "n/a" when it refused, with the reason
in the summary).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from . import energy
from .output import FORMAT, VERSION, write_report_dir


@dataclass
class OpRecord:
    """One counted operation (a synaptic layer or a product of activations)."""

    name: str
    source: str  # the user's module path
    op: str  # conv | linear | synapse | matmul | addressed_acc
    layer: str  # the row it belongs to
    input_kinds: list[str]
    sops: float  # per sample
    macs: float  # per sample
    rule: str  # the counting rule applied (spikec.reporting.ops)
    synapses: int = 0  # unrolled, per time step (synaptic layers)


@dataclass
class LayerRow:
    name: str
    source: str
    op: str  # the stage's node kind, or "host" for the host tail
    neurons: int
    synapses: int
    rate: Optional[float]  # None: the layer's output is not spikes
    sops: float
    macs: float
    float_vs_int: Optional[float] = None
    weight_error: Optional[float] = None
    threshold_error: Optional[float] = None
    cores: Optional[int] = None  # None: no resource figures for this row
    ops: list[str] = field(default_factory=list)

    @property
    def energy_pj(self) -> float:
        return energy.energy_pj(self.sops, self.macs)


@dataclass
class Report:
    samples: int
    time_steps: int
    layers: list[LayerRow] = field(default_factory=list)
    ops: list[OpRecord] = field(default_factory=list)
    loihi: dict = field(default_factory=dict)  # LoihiResources.to_dict()
    quantization: dict = field(default_factory=dict)  # synapse -> relative weight error, neuron -> threshold error
    top1_agreement: Optional[float] = None  # float IR vs integer model
    accuracy: dict = field(default_factory=dict)  # "float IR" / "integer" -> accuracy (with labels)
    notes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # what save() wrote

    # --- totals ------------------------------------------------------------------------------------
    @property
    def sops(self) -> float:
        """Synaptic operations per sample."""
        return sum(r.sops for r in self.layers)

    @property
    def macs(self) -> float:
        """Multiply-accumulates per sample (layers with real-valued input)."""
        return sum(r.macs for r in self.layers)

    @property
    def energy_pj(self) -> float:
        """Energy per sample in pJ (E_MAC·MACs + E_AC·SOPs)."""
        return energy.energy_pj(self.sops, self.macs)

    @property
    def energy_mj(self) -> float:
        return self.energy_pj / 1e9

    @property
    def cores(self) -> Optional[int]:
        """Loihi 2 cores (lower bound), None when the Lava target refused (see ``loihi['reason']``)."""
        return self.loihi.get("total_cores")

    def summary_lines(self) -> list[str]:
        out = [energy.summary_line(self.sops, self.macs)]
        neurons = sum(r.neurons for r in self.layers if r.op != "host")
        syn = sum(r.synapses for r in self.layers)
        out.append(f"network: {len(self.layers)} layers, {neurons} neurons, {syn} synapses (unrolled, per step), "
                   f"T = {self.time_steps}, {self.samples} samples")
        if self.cores is not None:
            out.append(f"Loihi 2: >= {self.cores} cores (lower bound, resource model of the Lava target)")
        else:
            out.append(f"Loihi 2 cores: n/a ({self.loihi.get('reason') or 'not computed'})")
        if self.top1_agreement is not None:
            out.append(f"top-1 agreement float vs integer: {self.top1_agreement:.4%}")
        out += [f"accuracy {k}: {v:.4%}" for k, v in self.accuracy.items()]
        return out + [f"NOTE: {n}" for n in self.notes]

    # --- table -------------------------------------------------------------------------------------
    HEADER = ("layer", "op", "neurons", "synapses", "rate", "SOPs", "MACs", "energy", "float=int", "w err", "θ err",
              "cores")

    def _cells(self, r: LayerRow) -> list[str]:
        def opt(v, fmt):
            return "-" if v is None else format(v, fmt)

        cores = ("n/a" if self.cores is None else "-") if r.cores is None else str(r.cores)
        return [r.name, r.op, str(r.neurons), str(r.synapses), opt(r.rate, ".4f"), energy.format_count(r.sops),
                energy.format_count(r.macs), energy.format_energy(r.energy_pj), opt(r.float_vs_int, ".4%"),
                opt(r.weight_error, ".4f"), opt(r.threshold_error, ".4f"), cores]

    def _total_cells(self) -> list[str]:
        return ["total (per sample)", "", str(sum(r.neurons for r in self.layers if r.op != "host")),
                str(sum(r.synapses for r in self.layers)), "", energy.format_count(self.sops),
                energy.format_count(self.macs), energy.format_energy(self.energy_pj), "", "", "",
                "n/a" if self.cores is None else str(self.cores)]

    def table(self):
        """The per-layer rows as a rich Table."""
        from rich.table import Table

        t = Table(title=f"spikec report: {self.samples} samples, T = {self.time_steps} (SOPs, MACs, energy per sample)")
        for i, col in enumerate(self.HEADER):
            t.add_column(col, justify="left" if i < 2 else "right", no_wrap=i == 0)
        for r in self.layers:
            t.add_row(*self._cells(r))
        t.add_row(*self._total_cells(), style="bold")
        return t

    def markdown(self) -> str:
        """The table and the summary as markdown (report.md)."""
        rows = [list(self.HEADER), ["---"] * len(self.HEADER)] + [self._cells(r) for r in self.layers]
        rows.append([f"**{c}**" if c else "" for c in self._total_cells()])
        lines = [f"# spikec report ({self.samples} samples, T = {self.time_steps})", ""]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        lines += [""] + [f"- {s}" for s in self.summary_lines()]
        lines += ["", "SOPs, MACs and energy are per sample (all time steps); energy = E_MAC·MACs + E_AC·SOPs "
                  f"({energy.SOURCE}). Counting rules: `spikec.reporting.ops`."]
        if self.loihi.get("lines"):
            lines += ["", "## Loihi 2 resources (Lava target)", "", "```"] + self.loihi["lines"] + ["```"]
        return "\n".join(lines) + "\n"

    def lines(self) -> list[str]:
        widths = [36, 10, 8, 9, 7, 11, 11, 11, 10, 7, 7, 6]
        fmt = lambda cells: " ".join(c[:w].ljust(w) if i < 2 else c.rjust(w)  # noqa: E731
                                     for i, (c, w) in enumerate(zip(cells, widths)))
        return ([fmt(list(self.HEADER))] + [fmt(self._cells(r)) for r in self.layers] + [fmt(self._total_cells())]
                + self.summary_lines())

    def __rich__(self):
        from rich.console import Group

        return Group(self.table(), *self.summary_lines())

    def _repr_pretty_(self, p, cycle):  # IPython / Jupyter
        p.text("\n".join(self.lines()))

    # --- JSON and files ----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"format": FORMAT, "version": VERSION, "samples": self.samples, "time_steps": self.time_steps,
             "constants": energy.constants(),
             "totals": {"sops": self.sops, "macs": self.macs, "energy_pJ": self.energy_pj, "energy_mJ": self.energy_mj,
                        "cores": self.cores},
             "summary": self.summary_lines()[0]}
        d.update({k: v for k, v in asdict(self).items() if k not in ("samples", "time_steps", "files")})
        for row, r in zip(d["layers"], self.layers):
            row["energy_pJ"] = r.energy_pj
        return d

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **{"indent": 1, "ensure_ascii": False, **kwargs})

    def save(self, path, protect: tuple = ()):
        """Write report.json, report.md and the plots (:mod:`.plots`) to the directory ``path``,
        atomically (:func:`.output.write_report_dir`); returns the path."""
        from .plots import write_plots

        def write(tmp):
            (tmp / "report.json").write_text(self.to_json())
            (tmp / "report.md").write_text(self.markdown())
            write_plots(self, tmp)

        out = write_report_dir(path, write, protect=protect)
        self.files = sorted(p.name for p in out.iterdir())
        return out
