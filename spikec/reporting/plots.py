"""The report's plots, as PNG files (matplotlib, Agg canvas; pyplot and its global state are not used).

* ``firing_rate.png``: firing rate of every spiking layer (float IR);
* ``sops.png``: synaptic operations (and MACs of real-valued inputs) per layer, per sample;
* ``agreement.png``: spike agreement of the integer reference model with the float IR per layer;
* ``quantization.png``: relative weight rounding error per synaptic layer and relative threshold
  error per neuron layer (the quantization report, ``passes/quantize/report.py``).
"""

from __future__ import annotations

from pathlib import Path

from spikec.errors import SpikecError

from .energy import format_count, format_energy

PLOTS = ("firing_rate.png", "sops.png", "agreement.png", "quantization.png")
BLUE, ORANGE, GREEN, RED = "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"


def _figure(rows: int, cols: int = 1):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SpikecError("spikec report draws its plots with matplotlib, which is not installed: "
                          "pip install 'spikec[report]' (or pip install matplotlib)") from None
    return Figure(figsize=(7.5 * cols, max(3.0, 0.32 * rows + 1.4)), dpi=100, layout="constrained")


def _bars(ax, names, values, color, xlabel, title, fmt="{:.3g}"):
    y = list(range(len(names)))
    ax.barh(y, values, color=color)
    ax.set_yticks(y, labels=names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    for i, v in enumerate(values):
        ax.annotate(fmt.format(v), (v, i), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)
    if not names:
        ax.text(0.5, 0.5, "nothing to show", ha="center", va="center", transform=ax.transAxes)


def firing_rate(report, path: Path) -> None:
    rows = [r for r in report.layers if r.rate is not None]
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    _bars(ax, [r.name for r in rows], [r.rate for r in rows], BLUE, "firing rate (spikes per neuron per step)",
          f"Firing rate per layer (float IR, {report.samples} samples)", "{:.3f}")
    ax.set_xlim(0, max([r.rate for r in rows] + [0.01]) * 1.25)
    fig.savefig(path)


def synaptic_operations(report, path: Path) -> None:
    rows = report.layers
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    y = list(range(len(rows)))
    sops, macs = [r.sops for r in rows], [r.macs for r in rows]
    ax.barh(y, sops, color=BLUE, label="SOPs (accumulates, E_AC)")
    ax.barh(y, macs, left=sops, color=ORANGE, label="MACs (real-valued input, E_MAC)")
    ax.set_yticks(y, labels=[r.name for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("operations per sample")
    ax.set_title(f"Synaptic operations per layer (per sample: {format_count(report.sops)} SOPs + "
                 f"{format_count(report.macs)} MACs, {format_energy(report.energy_pj)})", fontsize=10)
    ax.set_xlim(0, max([s + m for s, m in zip(sops, macs)] + [1.0]) * 1.08)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path)


def agreement(report, path: Path) -> None:
    rows = [r for r in report.layers if r.float_vs_int is not None]
    fig = _figure(len(rows))
    ax = fig.add_subplot()
    vals = [r.float_vs_int for r in rows]
    _bars(ax, [r.name for r in rows], vals, [GREEN if v == 1.0 else ORANGE for v in vals],
          "spike agreement integer model vs float IR", "Float vs integer agreement per layer", "{:.4%}")
    low = min(vals + [1.0])
    ax.set_xlim(max(0.0, low - 0.1 * (1.0 - low) - 0.01), 1.0 + 0.3 * (1.0 - low) + 0.005)
    fig.savefig(path)


def quantization(report, path: Path) -> None:
    syn = report.quantization.get("weight_error", {})
    neu = report.quantization.get("threshold_error", {})
    fig = _figure(max(len(syn), len(neu)), cols=2)
    a, b = fig.subplots(1, 2)
    _bars(a, list(syn), list(syn.values()), BLUE, "rms weight rounding error / rms weight", "Relative weight error")
    _bars(b, list(neu), [abs(v) for v in neu.values()], RED, "|θ realised − θ| / θ", "Relative threshold error")
    for ax, vals in ((a, list(syn.values())), (b, [abs(v) for v in neu.values()])):
        ax.set_xlim(0, max(vals + [1e-6]) * 1.3)
    fig.suptitle("Quantization error per layer (Loihi 2 fixed point)", fontsize=11)
    fig.savefig(path)


def write_plots(report, directory: Path) -> list[Path]:
    """The four plots of ``report`` in ``directory``."""
    paths = [Path(directory) / name for name in PLOTS]
    for draw, p in zip((firing_rate, synaptic_operations, agreement, quantization), paths):
        draw(report, p)
    return paths
