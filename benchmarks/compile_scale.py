"""Compile time and peak memory against parameter count, 0.16M to the 66M ImageNet Spikformer-8-768.

    python benchmarks/compile_scale.py [--set quick|full] [--out out/bench] [--points NAME,...]
    python benchmarks/compile_scale.py --profile sf8_768 [--out out/bench]     # cProfile of one compile

The series is spikingjelly 2.0.0's own ``Spikformer`` (T=4), unmodified: four CIFAR layouts
(32x32, patch 4, 10 classes; ``examples.models.zoo.sj_spikformer``) up to the published CIFAR-10
Spikformer-4-384, then the published ImageNet layouts (224x224, patch 16, 1000 classes; built from
spikingjelly's class directly, since the zoo factory fixes patch 4): Spikformer-8-384, -8-512 and
-8-768 (16.8M, 29.7M, 66.3M parameters, the counts of the paper).  ``quick`` is the points up to
~10M parameters, ``full`` all of them (default: ``quick``, or the environment's
``SPIKEC_COMPILE_SCALE``).  The ImageNet points also have 3x the tokens (14x14 against 8x8) and a
224x224 stem, so part of their extra time is activation size, not parameters.

Weights: ``examples.models.zoo.prepare`` (Kaiming weights, batch-norm statistics of one random
batch of one image, affine parameters that make the neurons fire), the same for every size.  Compile
time does not depend on the weight values: spikec quantizes from worst-case bounds (no ``calib``).

Every point runs in three fresh processes, so that one's memory never counts in another's:

1. ``prep``: build, prepare, write a state_dict to a temporary directory;
2. ``export``: load it, ``torch.export.export`` the model as it is (non-strict, the dynamic batch
   spikec uses): what the PyTorch tracer alone costs;
3. ``compile``: load it, ``spikec.compile(model, "intref", input_shape=...)``'s steps timed one by
   one (spikec's own export of the neuron-swapped copy, conversion to the IR, the intref pass
   pipeline, quantization, emit), then ``Artifact.save`` (timed apart, not in "compile").

Both timed steps start after a first ``torch.export`` of a one-layer module in the same process
(lazy imports and dynamo set-up, once a process, 4-9 s on the shared machine: reported apart as
"first export").

Peak memory is the compile process's own peak resident set (``ru_maxrss``: interpreter, torch,
the model's weights and everything the compiler builds), as a user running the compile would see
it.  A point whose estimated peak exceeds 80 % of the memory available now is skipped, with a
message.  The 1-minute load average is recorded before each point (the machine is shared).

Writes ``OUT/compile_scale.md`` (table, least-squares line of compile seconds against parameters),
``OUT/compile_scale.png`` (both series and the fit, log-log, and the peak memory) and
``OUT/compile_scale.json`` (every figure measured); ``--points`` runs write ``compile_scale_custom.*``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from summary import COMPILE_INTERCEPT, COMPILE_S, COMPILE_SLOPE, PEAK_GB, Figure  # noqa: E402

T = 4
CALIB_BATCH = 1
QUICK_MAX_PARAMS = 10e6


@dataclass(frozen=True)
class Point:
    name: str
    img: int
    patch: int
    embed: int
    heads: int
    depths: int
    classes: int
    note: str = ""

    def build(self):
        """The spikingjelly 2.0.0 Spikformer of this configuration (eval mode, untrained)."""
        if self.patch == 4:  # the zoo's factory: CIFAR layout
            from examples.models.zoo import sj_spikformer

            return sj_spikformer(T=T, img=self.img, embed_dims=self.embed, num_heads=self.heads,
                                 depths=self.depths, num_classes=self.classes)
        from spikingjelly.activation_based.model.spikformer import Spikformer

        return Spikformer(T=T, in_channels=3, img_size_h=self.img, img_size_w=self.img, patch_size=self.patch,
                          num_classes=self.classes, embed_dims=self.embed, num_heads=self.heads,
                          depths=self.depths).eval()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.img, self.img)

    @property
    def label(self) -> str:
        return f"{self.depths}-{self.embed} {self.img}x{self.img}/p{self.patch}"


POINTS = (
    Point("sf2_64", 32, 4, 64, 2, 2, 10),
    Point("sf2_128", 32, 4, 128, 4, 2, 10),
    Point("sf2_256", 32, 4, 256, 8, 2, 10),
    Point("sf4_384", 32, 4, 384, 12, 4, 10, "published CIFAR-10 Spikformer-4-384"),
    Point("sf8_384", 224, 16, 384, 12, 8, 1000, "published ImageNet Spikformer-8-384"),
    Point("sf8_512", 224, 16, 512, 8, 8, 1000, "published ImageNet Spikformer-8-512"),
    Point("sf8_768", 224, 16, 768, 12, 8, 1000, "published ImageNet Spikformer-8-768"),
)
BY_NAME = {p.name: p for p in POINTS}


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


# ------------------------------------------------------------------------------------------------
# Child processes (one job each; the last stdout line is a JSON object)
# ------------------------------------------------------------------------------------------------


def child_prep(p: Point, ckpt: Path) -> dict:
    import torch

    from examples.models.zoo import prepare

    torch.manual_seed(0)
    model = p.build()
    calib = torch.rand((CALIB_BATCH, *p.input_shape), generator=torch.Generator().manual_seed(1)) * 2.0
    t = time.perf_counter()
    prepare(model, calib, seed=0)
    t_prep = time.perf_counter() - t
    torch.save({"model": model.state_dict()}, ckpt)
    return {"params": n_params(model), "prepare_s": t_prep, "peak_bytes": peak_rss_bytes()}


def _load(p: Point, ckpt: Path):
    import torch

    model = p.build()
    model.load_state_dict(torch.load(ckpt, weights_only=True, mmap=True)["model"])
    return model.eval()


def warm_up_export() -> float:
    """Seconds of a first ``torch.export`` of a one-layer module: the once-a-process cost (lazy
    imports, dynamo set-up) that both timed exports would otherwise pay in their own figure."""
    import torch

    t = time.perf_counter()
    torch.export.export(torch.nn.Linear(2, 2), (torch.zeros(3, 2),), dynamic_shapes=({0: torch.export.Dim.AUTO},),
                        strict=False)
    return time.perf_counter() - t


def child_export(p: Point, ckpt: Path) -> dict:
    import torch

    from spikec.frontend.trace import TRACE_BATCH, example_input

    model = _load(p, ckpt)
    warm = warm_up_export()
    x = example_input(p.input_shape, None)
    t, c = time.perf_counter(), time.process_time()
    with torch.no_grad():
        try:
            torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim.AUTO},), strict=False)
            how = f"dynamic batch (example {TRACE_BATCH})"
        except Exception as e:  # the model as published may refuse a symbolic batch: static then
            print(f"dynamic-batch export failed ({type(e).__name__}); static batch", file=sys.stderr)
            t, c = time.perf_counter(), time.process_time()
            torch.export.export(model, (x,), strict=False)
            how = f"static batch {TRACE_BATCH}"
    return {"export_s": time.perf_counter() - t, "cpu_s": time.process_time() - c, "how": how, "warmup_s": warm,
            "peak_bytes": peak_rss_bytes()}


def child_compile(p: Point, ckpt: Path, out_dir: Path | None = None) -> dict:
    """``spikec.compile(model, "intref", input_shape=...)``, its steps timed apart."""
    import importlib

    from spikec import api
    from spikec.compiler import compile_graph
    from spikec.targets import get_target

    trace_mod = importlib.import_module("spikec.frontend.trace")  # the module (the package exports the function)

    model = _load(p, ckpt)
    base = peak_rss_bytes()
    times: dict[str, float] = {"compile_warmup_s": warm_up_export()}
    original_export = trace_mod.export_module

    def timed_export(*a, **kw):  # trace() = spikec's torch.export of the neuron-swapped copy + conversion
        t0 = time.perf_counter()
        try:
            return original_export(*a, **kw)
        finally:
            times["spikec_export_s"] = time.perf_counter() - t0

    trace_mod.export_module = timed_export
    last_pass = [0.0]
    t0, c0 = time.perf_counter(), time.process_time()
    graph = api.trace(model, input_shape=p.input_shape)
    t1 = time.perf_counter()
    res = compile_graph(graph, get_target("intref"), on_pass=lambda *_: last_pass.__setitem__(0, time.perf_counter()))
    t2 = time.perf_counter()
    art = api.emit(res, source={"model": type(model).__name__, "factory": None})
    t3, c3 = time.perf_counter(), time.process_time()
    times["compile_cpu_s"] = c3 - c0
    times["convert_s"] = (t1 - t0) - times["spikec_export_s"]
    times["passes_s"] = (last_pass[0] or t1) - t1
    times["quantize_s"] = t2 - (last_pass[0] or t1)
    times["emit_s"] = t3 - t2
    times["compile_s"] = t3 - t0
    peak_compile = peak_rss_bytes()
    if out_dir is not None:
        t4 = time.perf_counter()
        art.save(out_dir / f"{p.name}.intref")
        times["save_s"] = time.perf_counter() - t4
    return {**times, "nodes": len(res.quantized.nodes), "base_bytes": base, "peak_bytes": peak_compile,
            "peak_with_save_bytes": peak_rss_bytes()}


def child_main(args) -> int:
    import torch

    torch.set_num_threads(2)
    p = BY_NAME[args.point]
    ckpt = Path(args.ckpt)
    if args.child == "prep":
        r = child_prep(p, ckpt)
    elif args.child == "export":
        r = child_export(p, ckpt)
    elif args.child == "compile":
        r = child_compile(p, ckpt, Path(args.save_dir) if args.save_dir else None)
    else:  # profile
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        r = child_compile(p, ckpt)
        prof.disable()
        dump = Path(args.save_dir) / f"compile_scale_{p.name}.prof"
        prof.dump_stats(dump)
        for key in ("tottime", "cumulative"):
            print(f"\n--- top 25 by {key} ({dump}) ---")
            pstats.Stats(prof).sort_stats(key).print_stats(25)
    print(json.dumps(r))
    return 0


# ------------------------------------------------------------------------------------------------
# Parent: estimate, run, table, fit, plot
# ------------------------------------------------------------------------------------------------


def available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def estimate_peak_bytes(params: int, img: int) -> int:
    """Peak of the heaviest of the three processes, from a measured series (0.16M: 0.38 GB, 66M
    ImageNet: 2.75 GB, both the compile process): ~0.4 GB interpreter + torch, ~36 bytes a parameter
    (the weights in float32 and their float64 / int64 copies), plus the activations of the one-image
    calibration forward pass (prep process)."""
    act = 2 * T * CALIB_BATCH * 96 * img * img * 4  # the stem's first layer at full resolution, in and out
    return int(0.4e9 + 36 * params + act)


def run_child(kind: str, p: Point, ckpt: Path, save_dir: Path | None = None, echo: bool = False) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--point", p.name, "--ckpt", str(ckpt)]
    if save_dir is not None:
        cmd += ["--save-dir", str(save_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if echo:
        print(proc.stdout, end="")
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {p.name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def params_of(p: Point) -> int:
    """Parameter count without building the weights (meta device)."""
    import torch

    with torch.device("meta"):
        return n_params(p.build())


def measure(points) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="compile_scale_") as tmp:
        for p in points:
            params = params_of(p)
            est, avail = estimate_peak_bytes(params, p.img), available_bytes()
            if est > 0.8 * avail:
                print(f"skip {p.name} ({params / 1e6:.1f}M params): estimated peak {est / 1e9:.1f} GB "
                      f"> 80 % of the {avail / 1e9:.1f} GB available now", flush=True)
                continue
            load = os.getloadavg()[0]
            ckpt = Path(tmp) / f"{p.name}.pth"
            prep = run_child("prep", p, ckpt)
            exp = run_child("export", p, ckpt)
            comp = run_child("compile", p, ckpt, save_dir=Path(tmp))
            ckpt.unlink()
            row = {"name": p.name, "label": p.label, "note": p.note, "params": prep["params"], "load1": load,
                   "prepare_s": prep["prepare_s"], "prep_peak_bytes": prep["peak_bytes"], "estimate_bytes": est,
                   "torch_export_s": exp["export_s"], "torch_export_cpu_s": exp["cpu_s"], "export_how": exp["how"],
                   "warmup_s": exp["warmup_s"], "export_peak_bytes": exp["peak_bytes"], **comp}
            rows.append(row)
            print(f"{p.name:8s} {row['params'] / 1e6:6.2f}M  torch.export {row['torch_export_s']:6.2f} s  "
                  f"spikec compile {row['compile_s']:6.2f} s (export {row['spikec_export_s']:.2f}, convert "
                  f"{row['convert_s']:.2f}, passes {row['passes_s']:.2f}, quantize {row['quantize_s']:.2f}, emit "
                  f"{row['emit_s']:.2f}; save {row.get('save_s', 0):.2f})  peak {row['peak_bytes'] / 1e9:.2f} GB "
                  f"(estimate {est / 1e9:.2f})  load {load:.2f}", flush=True)
    return rows


def fit(xs, ys) -> tuple[float, float, float]:
    """Least-squares line y = a x + b and its R^2."""
    import numpy as np

    x, y = np.asarray(xs, float), np.asarray(ys, float)
    a, b = np.polyfit(x, y, 1)
    ss = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - (a * x + b)) ** 2).sum()) / ss if ss > 0 else 1.0
    return float(a), float(b), r2


def markdown(rows: list[dict], set_name: str) -> str:
    gb = 1e9
    lines = [
        f"# spikec intref compile time vs parameter count ({set_name} set)",
        "",
        f"spikingjelly 2.0.0 Spikformer, T={T}, random prepared weights, no calibration data; one run per point, "
        f"each step in a fresh process; {os.cpu_count()} cores, torch threads 2, machine shared "
        "(1-minute load average in the last column).",
        "",
        "| model | params (M) | torch.export (s) | spikec compile (s) | ratio | peak (GB) | CPU s: torch.export / "
        "spikec | spikec export / convert / passes / quantize / emit (s) | save (s) | IR nodes | first export (s) | load |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['params'] / 1e6:.2f} | {r['torch_export_s']:.2f} | {r['compile_s']:.2f} | "
            f"{r['compile_s'] / r['torch_export_s']:.1f} | {r['peak_bytes'] / gb:.2f} | "
            f"{r['torch_export_cpu_s']:.1f} / {r['compile_cpu_s']:.1f} | "
            f"{r['spikec_export_s']:.2f} / {r['convert_s']:.2f} / {r['passes_s']:.2f} / {r['quantize_s']:.2f} / "
            f"{r['emit_s']:.2f} | {r.get('save_s', float('nan')):.2f} | {r['nodes']} | {r['warmup_s']:.2f} | {r['load1']:.2f} |")
    lines.append("")
    if len(rows) >= 2:
        pm = [r["params"] / 1e6 for r in rows]
        for what, key in (("spikec compile", "compile_s"), ("torch.export", "torch_export_s"),
                          ("spikec compile, CPU time", "compile_cpu_s"), ("torch.export, CPU time", "torch_export_cpu_s")):
            a, b, r2 = fit(pm, [r[key] for r in rows])
            lines.append(f"- {what}: {a:.3f} s per M parameters + {b:.2f} s (least squares, R^2 = {r2:.3f})")
        a, b, r2 = fit(pm, [r["peak_bytes"] / gb for r in rows])
        lines.append(f"- peak memory of the compile process: {a * 1e3:.1f} MB per M parameters + {b:.2f} GB "
                     f"(R^2 = {r2:.3f})")
    lines += [
        "",
        "torch.export: the model as published, non-strict, dynamic batch.  spikec compile: trace (its own "
        "torch.export of the neuron-swapped copy, then conversion to the IR), the intref pass pipeline, "
        "quantization and emit, i.e. `spikec.compile(model, \"intref\", input_shape=...)`; writing the "
        "artifact (save) is apart.  Both timings start after a first torch.export of a one-layer module in the same "
        "process (\"first export\": lazy imports and dynamo set-up, paid once a process, not counted in either).  "
        "Peak: the compile process's peak resident set (ru_maxrss), weights included.",
        "",
    ]
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    import numpy as np

    pm = np.array([r["params"] / 1e6 for r in rows])
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax.plot(pm, [r["compile_s"] for r in rows], "o-", label="spikec compile (intref)")
    ax.plot(pm, [r["torch_export_s"] for r in rows], "s-", label="torch.export")
    ax.plot(pm, [r["compile_cpu_s"] for r in rows], "o:", color="C0", mfc="none", label="spikec compile, CPU time")
    ax.plot(pm, [r["torch_export_cpu_s"] for r in rows], "s:", color="C1", mfc="none", label="torch.export, CPU time")
    if len(rows) >= 2:
        a, b, _ = fit(pm, [r["compile_s"] for r in rows])
        xs = np.geomspace(pm.min(), pm.max(), 100)
        ax.plot(xs, a * xs + b, "--", color="gray", label=f"fit {a:.3f} s/M + {b:.2f} s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel("seconds")
    ax.set_title(f"compile time (wall; load {min(r['load1'] for r in rows):.1f}-{max(r['load1'] for r in rows):.1f})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    bx.plot(pm, [r["peak_bytes"] / 1e9 for r in rows], "o-", label="spikec compile")
    bx.plot(pm, [r["export_peak_bytes"] / 1e9 for r in rows], "s-", label="torch.export")
    bx.set_xscale("log")
    bx.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    bx.set_xlabel("parameters (M)")
    bx.set_ylabel("peak resident set (GB)")
    bx.set_title("peak memory (whole process)")
    bx.grid(True, which="both", alpha=0.3)
    bx.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def figures(rows: list[dict]) -> list[Figure]:
    """Per point compile seconds and peak memory; the least-squares lines (wall seconds, peak GB) against
    millions of parameters, as in ``markdown``."""
    out = []
    for r in rows:
        subject = f"Spikformer {r['label']}"
        out += [Figure("compile_scale", subject, COMPILE_S, r["compile_s"], params=r["params"]),
                Figure("compile_scale", subject, PEAK_GB, r["peak_bytes"] / 1e9, params=r["params"])]
    if len(rows) >= 2:
        pm = [r["params"] / 1e6 for r in rows]
        span = f"{len(rows)} points, {min(pm):.2f}-{max(pm):.1f}M params"
        a, b, _ = fit(pm, [r["compile_s"] for r in rows])
        out += [Figure("compile_scale", span, COMPILE_SLOPE, a), Figure("compile_scale", span, COMPILE_INTERCEPT, b)]
        a, b, _ = fit(pm, [r["peak_bytes"] / 1e9 for r in rows])
        out += [Figure("compile_scale", span, "peak MB per M params (fit)", a * 1e3),
                Figure("compile_scale", span, f"{PEAK_GB} at 0 params (fit)", b)]
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", choices=("quick", "full"), default=os.environ.get("SPIKEC_COMPILE_SCALE", "quick"),
                    help="quick: up to ~10M parameters; full: up to 66M (env SPIKEC_COMPILE_SCALE)")
    ap.add_argument("--points", default="", help="comma-separated point names instead of a set: " + ",".join(BY_NAME))
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"))
    ap.add_argument("--profile", metavar="NAME", help="cProfile one compile of point NAME (fresh process) and stop")
    ap.add_argument("--child", choices=("prep", "export", "compile", "profile"), help=argparse.SUPPRESS)
    ap.add_argument("--point", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--save-dir", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def profile(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    p = BY_NAME[args.profile]
    with tempfile.TemporaryDirectory(prefix="compile_scale_") as tmp:
        ckpt = Path(tmp) / f"{p.name}.pth"
        run_child("prep", p, ckpt)
        r = run_child("profile", p, ckpt, save_dir=out, echo=True)
    print(f"compile {r['compile_s']:.2f} s under cProfile, peak {r['peak_bytes'] / 1e9:.2f} GB")
    return 0


def series(args: argparse.Namespace) -> list[dict]:
    """Measure the set (or ``--points``), write OUT/compile_scale*.md / .png / .json, print; the rows."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.points:
        points = [BY_NAME[n] for n in args.points.split(",")]
        set_name = "custom"
    else:
        points = [p for p in POINTS if args.set == "full" or params_of(p) <= QUICK_MAX_PARAMS]
        set_name = args.set
    print(f"compile scale ({set_name}): {', '.join(p.name for p in points)}; load {os.getloadavg()[0]:.2f}", flush=True)
    t = time.perf_counter()
    rows = measure(points)
    if not rows:
        print("no point measured")
        return rows
    md = markdown(rows, set_name)
    stem = out / ("compile_scale_custom" if set_name == "custom" else "compile_scale")
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    stem.with_suffix(".md").write_text(md)
    plot(rows, stem.with_suffix(".png"))
    print(md)
    print(f"wrote {stem}.md, .png, .json ({time.perf_counter() - t:.0f} s)")
    return rows


def run(argv: list[str] | None = None) -> list[Figure]:
    """The series as the command line runs it (its arguments, or ``argv``), its figures returned."""
    return figures(series(parse_args(argv)))


def main() -> int:
    args = parse_args()
    if args.child:
        return child_main(args)
    if args.profile:
        return profile(args)
    return 0 if series(args) else 1

if __name__ == "__main__":
    sys.exit(main())
