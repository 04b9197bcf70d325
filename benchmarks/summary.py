"""One summary of every benchmark (``make bench``): ``summary.md`` (a table) and ``summary.png`` (charts).

Each benchmark script has a ``run(argv)`` that prints its own report, as its command line does, and
returns its figures as a list of ``Figure``: one number each (which benchmark, which model / size,
what is measured, the value and, where the project sets one, the goal).  ``benchmarks/run_all.py``
calls them and hands the figures to ``write``; nothing here reads printed text.

Goals (README, issue 15): intref time / float torch time <= 1.0 (wall and CPU); Lava stepping time
of the compiled network / a hand-built stock network of the same sizes <= 1.2.  Compile time and
memory have no goal: they are reported as a least-squares line against the parameter count.

The chart has three panels: intref / float per model with the 1.0 goal line, Lava steps/s per
model, and compile time against parameters (each benchmark's points, its fitted line, and peak
memory on the right axis).  A panel whose benchmark did not run says so.
"""

from __future__ import annotations

import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

# metric names the chart looks for; any other metric goes to the table only
INTREF_WALL = "intref / float time"
INTREF_CPU = "intref / float CPU time"
LAVA_STEPS = "Lava steps/s"
LAVA_RATIO = "stepping time compiled / hand-built"
COMPILE_S = "compile s"
COMPILE_SLOPE = "compile s per M params"
COMPILE_INTERCEPT = "compile s at 0 params (fit)"
PEAK_GB = "peak GB"

INTREF_GOAL = 1.0
LAVA_RATIO_GOAL = 1.2


@dataclass(frozen=True)
class Figure:
    """One measured number.  ``goal`` bounds ``value`` from above (or from below with ``at_least``);
    ``params`` is the model's parameter count where known (the x axis of the compile chart)."""

    bench: str
    subject: str
    metric: str
    value: float
    goal: float | None = None
    at_least: bool = False
    params: int | None = None

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        return self.value >= self.goal if self.at_least else self.value <= self.goal


def _num(v: float) -> str:
    if v != v:  # NaN
        return "-"
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def markdown(figures: list[Figure], notes: list[str] = ()) -> str:
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    lines = [
        "# spikec benchmarks: summary",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, load average at the end {load}.  "
        "Each benchmark's own table is in its printed output (compile_scale also in compile_scale.md).",
        "",
    ]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")
    if not figures:
        return "\n".join(lines + ["No benchmark returned figures."]) + "\n"
    lines += ["| benchmark | model / size | metric | value | goal | met |", "|---|---|---|---:|---|---|"]
    for f in figures:
        goal = "" if f.goal is None else f"{'>=' if f.at_least else '<='} {f.goal:.1f}"
        met = {None: "", True: "yes", False: "**no**"}[f.met]
        lines.append(f"| {f.bench} | {f.subject} | {f.metric} | {_num(f.value)} | {goal} | {met} |")
    with_goal = [f for f in figures if f.goal is not None]
    if with_goal:
        n_met = sum(bool(f.met) for f in with_goal)
        lines += ["", f"{n_met} of {len(with_goal)} figures with a goal meet it."]
    return "\n".join(lines) + "\n"


def _empty(ax, title: str, what: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, f"{what}: not run", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(ax, figs: list[Figure], label) -> None:
    """Horizontal bars, first figure at the top; red where a goal is missed."""
    ys = range(len(figs))
    ax.barh(ys, [f.value for f in figs], color=["C3" if f.met is False else "C0" for f in figs])
    ax.set_yticks(list(ys), [textwrap.fill(label(f), 34) for f in figs], fontsize=7)
    ax.set_ylim(max(len(figs), 4) - 0.5, -0.5)  # top down; bars as thick with one figure as with four
    for y, f in zip(ys, figs):
        ax.annotate(f" {_num(f.value)}", (f.value, y), ha="left", va="center", fontsize=7)
    ax.margins(x=0.15)


def plot(figures: list[Figure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(16, 5.5))

    ratios = [f for f in figures if f.metric in (INTREF_WALL, INTREF_CPU)]
    if ratios:
        _bars(ax, ratios, lambda f: f"{f.subject}{' (CPU)' if f.metric == INTREF_CPU else ''}")
        ax.axvline(INTREF_GOAL, color="gray", ls="--", label=f"goal <= {INTREF_GOAL:.1f}")
        ax.set_xlabel("intref time / float torch time")
        ax.set_title("intref / float (red: goal missed)")
        ax.legend(fontsize=8, loc="lower right")
    else:
        _empty(ax, "intref / float", "intref_speed, intref_scale")

    steps = [f for f in figures if f.metric == LAVA_STEPS]
    if steps:
        _bars(bx, steps, lambda f: f"{f.subject} [{f.bench}]")
        bx.set_xlabel("steps / s (Loihi2SimCfg fixed_pt)")
        bx.set_title("Lava steps/s")
    else:
        _empty(bx, "Lava steps/s", "lava_speed, lava_scale")

    points = [f for f in figures if f.metric == COMPILE_S and f.params]
    if points:
        benches = list(dict.fromkeys(f.bench for f in points))
        for i, b in enumerate(benches):
            pts = sorted((f for f in points if f.bench == b), key=lambda f: f.params)
            pm = np.array([f.params / 1e6 for f in pts])
            cx.plot(pm, [f.value for f in pts], "o-", color=f"C{i}", label=f"{b}: compile s")
            fit = {f.metric: f.value for f in figures if f.bench == b and f.metric in (COMPILE_SLOPE, COMPILE_INTERCEPT)}
            if len(fit) == 2 and len(pm) >= 2:
                xs = np.linspace(pm.min(), pm.max(), 50)
                cx.plot(xs, fit[COMPILE_SLOPE] * xs + fit[COMPILE_INTERCEPT], "--", color=f"C{i}", alpha=0.6,
                        label=f"fit {fit[COMPILE_SLOPE]:.3f} s/M + {fit[COMPILE_INTERCEPT]:.2f} s")
        cx.set_xlim(left=0)
        cx.set_xlabel("parameters (M)")
        cx.set_ylim(bottom=0)
        cx.set_ylabel("compile seconds (wall)")
        peaks = sorted((f for f in figures if f.metric == PEAK_GB and f.params), key=lambda f: f.params)
        handles, labels = cx.get_legend_handles_labels()
        if peaks:
            px = cx.twinx()
            h = px.plot([f.params / 1e6 for f in peaks], [f.value for f in peaks], "s:", color="gray", label="peak GB")
            px.set_ylabel("peak resident set (GB)")
            px.set_ylim(bottom=0)
            handles, labels = handles + h, labels + ["peak GB"]
        cx.legend(handles, labels, fontsize=7, loc="lower right")
        cx.set_title("compile time vs parameters")
        cx.grid(True, which="both", alpha=0.3)
    else:
        _empty(cx, "compile time vs parameters", "compile_scale")

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(figures: list[Figure], out_dir: Path, notes: list[str] = ()) -> tuple[Path, Path]:
    """Write ``out_dir/summary.md`` and ``out_dir/summary.png``; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md, png = out_dir / "summary.md", out_dir / "summary.png"
    md.write_text(markdown(figures, notes))
    plot(figures, png)
    return md, png
