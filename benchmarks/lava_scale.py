"""Lava at real sizes (make bench-lava-scale): one run, one markdown table per model size.

Sizes (random weights made to fire: benchmarks/scale_models.py, examples.models.zoo.prepare):

* ``a``: spikingjelly 2.0.0 Spikformer, embed 64, 2 blocks, 4 heads, 32x32, T=4;
* ``b``: the CIFAR Spikformer-4-384 (embed 384, 4 blocks, 12 heads, patch 4, 32x32, T=4, 9.3M params).

For each size, every heavy step in a subprocess of its own:

* compile: ``python -m spikec compile --target lava`` under ``/usr/bin/time`` (wall, peak RSS);
* the compiled network (``targets.lava.runner.run_lava``, Loihi2SimCfg fixed_pt, the samples
  streamed): Lava steps/s, wall per sample, peak memory of the whole process tree (sum of PSS:
  Lava runs one forked OS process per Lava process, sharing pages copy-on-write);
* a hand-built Lava network of the same layer sizes with the same stock processes (LIFReset with
  the compiled neurons' parameters, Dense / Sparse with the same matrices, the ConvConnection
  spikec uses for convolutions; where spikec has a custom process, a LIF of its output size, plus
  a LIF of the input size when a connection into it has another size, e.g. a convolution before a
  max pool, joined to it by a pooling-like Sparse; an identity-like Sparse for each operand that
  spikec gathers port to port into a custom process) and nothing
  of spikec's own: no delay relays, no read-out sinks, no custom processes; same input, same
  number of steps;
* the stepping ratio compiled / hand-built (steady state: time per step measured in the source
  process from its second step to its last), and CPU per Lava process kind in both networks
  (every process model's ``_spike`` phase timed with ``time.thread_time`` in its own OS process),
  which is where spikec's overhead (relays, custom processes, read-out sinks) shows.

    python benchmarks/lava_scale.py [--sizes a,b] [--samples 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from summary import COMPILE_S, LAVA_RATIO, LAVA_RATIO_GOAL, LAVA_STEPS, PEAK_GB, Figure  # noqa: E402

PY = sys.executable
MODEL = "examples.models.zoo:sj_spikformer"
SIZES = {
    "a": ("Spikformer embed 64, 2 blocks, 4 heads, 32x32, T=4",
          {"embed_dims": 64, "depths": 2, "num_heads": 4, "T": 4, "img": 32}),
    "b": ("Spikformer-4-384 CIFAR (9.3M params), 32x32, T=4",
          {"embed_dims": 384, "depths": 4, "num_heads": 12, "T": 4, "img": 32}),
}

# Lava process-model class -> kind (spikec's own additions are marked)
KINDS = {
    "PySendModelFixed": "source (RingBuffer)",
    "PyLifResetModelBitAcc": "LIF",
    "PyLifModelBitAcc": "LIF",
    "PyDenseModelBitAcc": "Dense",
    "PySparseModelBitAcc": "Sparse",
    "PyConvConnectionModel": "ConvConnection",
    "PyDelayRelayModel": "spikec: delay relays",
    "PyMemmapSinkModel": "spikec: read-out sinks",
    "PySpikeAndModel": "spikec custom: AND",
    "PyAddressedAccumulationModel": "spikec custom: addressed accumulation",
    "PyIntMaxPoolModel": "spikec custom: max pool",
    "PyResetLIFModel": "spikec custom: soft-reset LIF",
}


# ------------------------------------------------------------------------------------------------
# profiling inside Lava's process-model workers (forked: they inherit the patched base class)
# ------------------------------------------------------------------------------------------------


def install_profiler(out_dir: str) -> None:
    from spikec.compat.lava311 import ensure_lava

    ensure_lava()
    from lava.magma.core.model.py.model import PyLoihiProcessModel

    spike, stop = PyLoihiProcessModel._spike, PyLoihiProcessModel._stop
    stats: dict = {}

    def _spike(self):
        s = stats.setdefault(id(self), {"cpu": 0.0, "wall": 0.0, "n": 0, "t2": None, "tend": None})
        c, w = time.thread_time(), time.perf_counter()
        spike(self)
        s["cpu"] += time.thread_time() - c
        s["wall"] += time.perf_counter() - w
        s["n"] += 1
        if s["n"] == 2:
            s["t2"] = w
        s["tend"] = time.perf_counter()

    def _stop(self):
        s = stats.get(id(self), {})
        ru = resource.getrusage(resource.RUSAGE_SELF)
        rec = {"cls": type(self).__name__, "steps": s.get("n", 0), "cpu_spike": s.get("cpu", 0.0),
               "wall_spike": s.get("wall", 0.0), "t2": s.get("t2"), "tend": s.get("tend"),
               "cpu_process": ru.ru_utime + ru.ru_stime, "maxrss_kb": ru.ru_maxrss}
        Path(out_dir, f"{os.getpid()}-{id(self)}.json").write_text(json.dumps(rec))
        stop(self)

    PyLoihiProcessModel._spike = _spike
    PyLoihiProcessModel._stop = _stop


PHASES: dict[str, float] = defaultdict(float)


def time_lava_phases() -> None:
    """Wall time of Lava's own phases in the main process: compile (process models, builders),
    runtime initialize (channels, one forked OS process per Lava process), stop (joins them)."""
    from lava.magma.compiler.compiler import Compiler
    from lava.magma.runtime.runtime import Runtime

    def timed_method(cls, name, label):
        f = getattr(cls, name)

        def g(*a, **k):
            t = time.perf_counter()
            try:
                return f(*a, **k)
            finally:
                PHASES[label] += time.perf_counter() - t
        setattr(cls, name, g)

    timed_method(Compiler, "compile", "lava_compile")
    timed_method(Runtime, "initialize", "runtime_start")
    timed_method(Runtime, "stop", "runtime_stop")


def read_profile(out_dir: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in Path(out_dir).glob("*.json")]


# ------------------------------------------------------------------------------------------------
# the hand-built network
# ------------------------------------------------------------------------------------------------


def hand_built_run(spec, data: np.ndarray, steps: int) -> float:
    """Stock LIF / Dense / Sparse + spikec's ConvConnection of the same sizes, nothing else."""
    from spikec.compat.lava311 import ensure_lava

    ensure_lava()
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.sparse.process import Sparse

    from spikec.targets.lava.runner import connection_process

    graph, T = spec.graph, spec.T
    procs = {}
    for name, st in spec.stages.items():
        if st.kind == "source":
            procs[name] = RingBuffer(data=data)
            continue
        offset = (1 + st.depth) % T
        n = st.node
        if st.kind in ("lif", "reset_lif"):
            feats = graph.types[name].features
            bm = np.broadcast_to(np.asarray(n.bias_mant), feats).reshape(-1).copy()
            be = np.broadcast_to(np.asarray(n.bias_exp), feats).reshape(-1).copy()
            procs[name] = LIFReset(shape=(st.size,), du=n.du, dv=n.dv, vth=n.vth, bias_mant=bm, bias_exp=be,
                                   reset_interval=T, reset_offset=offset)
        else:  # a custom process in spikec's network: a LIF of the same size here
            procs[name] = LIFReset(shape=(st.size,), du=4095, dv=0, vth=1, reset_interval=T, reset_offset=offset)
    inputs_of = {}  # (stage, port) -> input process of that port's size (custom stages: a LIF of its own)
    for c in spec.connections:
        conn = connection_process(c)  # the process spikec's network builds for it
        procs[c.src].s_out.connect(conn.s_in)
        dst = procs[c.dst]
        if c.weights.shape[0] != spec.stages[c.dst].size:  # a custom stage's input of another size (e.g. before a pool)
            key = (c.dst, c.port)
            if key not in inputs_of:
                inputs_of[key] = LIFReset(shape=(c.weights.shape[0],), du=4095, dv=0, vth=1, reset_interval=T,
                                          reset_offset=(1 + spec.stages[c.dst].depth) % T)
            dst = inputs_of[key]
        conn.a_out.connect(dst.a_in)
    for (name, _), lif_in in inputs_of.items():  # input neurons -> the stage's neurons: a pooling-like Sparse
        n_in, n_out = lif_in.a_in.shape[0], spec.stages[name].size
        k = max(1, n_in // n_out)
        rows = np.repeat(np.arange(n_out), k)
        cols = (rows * k + np.tile(np.arange(k), n_out)) % n_in
        conn = Sparse(weights=sp.csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(n_out, n_in)))
        lif_in.s_out.connect(conn.s_in)
        conn.a_out.connect(procs[name].a_in)
    # operands gathered port to port into a custom stage (addressed accumulation): a stock network
    # needs a connection: an identity-like Sparse of the same sizes
    for name, st in spec.stages.items():
        for item in st.inputs:
            if isinstance(item, tuple):
                src = item[2]
                conn = Sparse(weights=sp.eye(st.size, spec.stages[src].size, dtype=np.int32, format="csr"))
                procs[src].s_out.connect(conn.s_in)
                conn.a_out.connect(procs[name].a_in)
    runner = procs[spec.source]
    t = time.perf_counter()
    try:
        runner.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
    finally:
        runner.stop()
    return time.perf_counter() - t


# ------------------------------------------------------------------------------------------------
# worker: one Lava run (compiled or hand-built) in its own process
# ------------------------------------------------------------------------------------------------


def worker(mode: str, artifact: str, xfile: str, out: str) -> None:
    prof = tempfile.mkdtemp(prefix="spikec-prof-")
    install_profiler(prof)
    time_lava_phases()
    import spikec
    from spikec.targets.lava import build_netspec
    from spikec.targets.lava.runner import _source_data, run_lava

    art = spikec.load(artifact)
    spec = build_netspec(art.graph)
    x = np.load(xfile)
    res: dict = {"mode": mode, "samples": int(len(x)), "T": spec.T, "latency": spec.latency}
    t0 = time.perf_counter()
    if mode == "compiled":
        r = run_lava(spec, x)
        res.update(steps=r.steps, build_s=r.build_seconds, run_s=r.run_seconds)
    else:
        data, _ = _source_data(spec, x)
        steps = data.shape[1] - 1
        res.update(steps=steps, run_s=hand_built_run(spec, data, steps))
    res["wall_s"] = time.perf_counter() - t0
    res["phases"] = dict(PHASES)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    res["cpu_children_s"] = ru.ru_utime + ru.ru_stime
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["cpu_self_s"] = ru.ru_utime + ru.ru_stime
    res["profile"] = read_profile(prof)
    shutil.rmtree(prof, ignore_errors=True)
    Path(out).write_text(json.dumps(res))


# ------------------------------------------------------------------------------------------------
# driver
# ------------------------------------------------------------------------------------------------


def timed(cmd: list[str], sample_tree: bool = False) -> dict:
    """Run ``cmd``; wall seconds, peak RSS of the largest process (/usr/bin/time or getrusage) and,
    with ``sample_tree``, the peak PSS sum over the process tree."""
    from treemem import Sampler

    tfile = tempfile.NamedTemporaryFile(suffix=".time", delete=False).name
    gnu_time = Path("/usr/bin/time").exists()
    full = (["/usr/bin/time", "-f", "%e %M", "-o", tfile] if gnu_time else []) + cmd
    t = time.perf_counter()
    p = subprocess.Popen(full, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(p.pid, 0.5) if sample_tree else None
    out, _ = p.communicate()
    wall = time.perf_counter() - t
    peak_tree = sampler.stop() if sampler else None
    if p.returncode:
        sys.stdout.write(out)
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    if gnu_time:
        e, m = Path(tfile).read_text().split()[-2:]
        wall, rss = float(e), int(m) * 1024
    else:  # max over every child waited so far: an upper bound
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    os.unlink(tfile)
    return {"wall_s": wall, "peak_rss": rss, "peak_tree": peak_tree, "output": out}


def steady_step_seconds(res: dict) -> float:
    """Seconds per step from the source process's 2nd step to its last (Lava compile / start excluded)."""
    src = [p for p in res["profile"] if KINDS.get(p["cls"]) == "source (RingBuffer)" and p["t2"]]
    if not src or src[0]["steps"] < 3:
        return res["run_s"] / res["steps"]
    p = src[0]
    return (p["tend"] - p["t2"]) / (p["steps"] - 1)


def per_kind(res: dict) -> dict[str, dict]:
    kinds: dict[str, dict] = defaultdict(lambda: {"n": 0, "cpu": 0.0, "cpu_process": 0.0})
    for p in res["profile"]:
        k = kinds[KINDS.get(p["cls"], p["cls"])]
        k["n"] += 1
        k["cpu"] += p["cpu_spike"]
        k["cpu_process"] += p["cpu_process"]
    return dict(kinds)


def cpu(res: dict, what: str) -> float:
    """CPU seconds of the process models' step phases (``cpu_spike``), or of the whole run (``all``:
    every OS process, the runtime service and the main process included).  Less sensitive to other
    jobs on the machine than wall time."""
    if what == "all":
        return res["cpu_children_s"] + res["cpu_self_s"]
    return sum(p[what] for p in res["profile"])


def gb(b) -> str:
    return "-" if b is None else f"{b / 2**30:.2f}"


def bench_size(key: str, samples: int, work: Path) -> dict:
    title, kwargs = SIZES[key]
    d = work / key
    d.mkdir(parents=True, exist_ok=True)
    ckpt, xfile, art = d / "model.pth", d / "x.npy", d / "net.lava"
    kw = json.dumps(kwargs)
    print(f"== ({key}) {title}: checkpoint and {samples} random images", flush=True)
    timed([PY, str(HERE / "scale_models.py"), "sj_spikformer", kw, str(ckpt), str(xfile), str(samples)])
    print(f"== ({key}) compile --target lava", flush=True)
    comp = timed([PY, "-m", "spikec", "compile", str(ckpt), "--model", MODEL, "--model-kwargs", kw,
                  "--input-shape", "3,32,32", "--target", "lava", "-o", str(art)])
    runs = {}
    for mode in ("compiled", "hand"):
        print(f"== ({key}) Lava run: {mode}", flush=True)
        out = d / f"{mode}.json"
        t = timed([PY, str(Path(__file__).resolve()), "--worker", mode, str(art), str(xfile), str(out)], sample_tree=True)
        runs[mode] = json.loads(out.read_text())
        runs[mode]["peak_tree"], runs[mode]["peak_rss"] = t["peak_tree"], t["peak_rss"]
    return {"key": key, "title": title, "kwargs": kwargs, "compile": comp, "runs": runs}


def report(results: list[dict]) -> str:
    lines = ["| size | compile s | compile peak GB | Lava processes (hand-built) | steps (N samples) "
             "| Lava compile / start / stop s | Lava steps/s | wall / sample s: streamed, steady (whole run / N) "
             "| Lava run peak GB (tree PSS) | hand-built steps/s | stepping ratio compiled / hand-built "
             "| CPU ratio: step phases / whole run |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c, h = r["runs"]["compiled"], r["runs"]["hand"]
        sc, sh = steady_step_seconds(c), steady_step_seconds(h)
        ph = c.get("phases", {})
        lines.append(f"| ({r['key']}) {r['title']} | {r['compile']['wall_s']:.1f} | {gb(r['compile']['peak_rss'])} "
                     f"| {len(c['profile'])} ({len(h['profile'])}) | {c['steps']} ({c['samples']}) "
                     f"| {ph.get('lava_compile', 0):.1f} / {ph.get('runtime_start', 0):.1f} / {ph.get('runtime_stop', 0):.1f} "
                     f"| {1 / sc:.2f} | {sc * c['T']:.1f} ({c['run_s'] / c['samples']:.1f}) | {gb(c['peak_tree'])} "
                     f"| {1 / sh:.2f} | {sc / sh:.2f} | {cpu(c, 'cpu_spike') / cpu(h, 'cpu_spike'):.2f} / "
                     f"{cpu(c, 'all') / cpu(h, 'all'):.2f} |")
    out = ["\n".join(lines)]
    for r in results:
        c, h = r["runs"]["compiled"], r["runs"]["hand"]
        kc, kh = per_kind(c), per_kind(h)
        rows = [f"\n({r['key']}) CPU per Lava process kind over {c['steps']} steps (`_spike` phase, thread CPU; "
                f"whole OS process CPU in brackets):\n",
                "| process kind | compiled: n | compiled: CPU s | hand-built: n | hand-built: CPU s |", "|---|---|---|---|---|"]
        for k in sorted(set(kc) | set(kh), key=lambda k: -kc.get(k, kh.get(k))["cpu"]):
            a, b = kc.get(k), kh.get(k)
            fa = f"{a['n']} | {a['cpu']:.1f} ({a['cpu_process']:.1f})" if a else "0 | -"
            fb = f"{b['n']} | {b['cpu']:.1f} ({b['cpu_process']:.1f})" if b else "0 | -"
            rows.append(f"| {k} | {fa} | {fb} |")
        models_c = sum(p["cpu_process"] for p in c["profile"])
        models_h = sum(p["cpu_process"] for p in h["profile"])
        rows.append(f"| runtime (main + runtime service) | 1 | {c['cpu_children_s'] + c['cpu_self_s'] - models_c:.1f} "
                    f"| 1 | {h['cpu_children_s'] + h['cpu_self_s'] - models_h:.1f} |")
        out.append("\n".join(rows))
    return "\n".join(out)


def figures(results: list[dict]) -> list[Figure]:
    """The headline figures of ``report``'s table, per size."""
    out = []
    for r in results:
        c, h = r["runs"]["compiled"], r["runs"]["hand"]
        sc, sh = steady_step_seconds(c), steady_step_seconds(h)
        subject = f"({r['key']}) {r['title']}"
        out += [Figure("lava_scale", subject, f"{COMPILE_S} (--target lava)", r["compile"]["wall_s"]),
                Figure("lava_scale", subject, f"compile {PEAK_GB}", r["compile"]["peak_rss"] / 2**30),
                Figure("lava_scale", subject, LAVA_STEPS, 1 / sc),
                Figure("lava_scale", subject, "Lava s per sample (steady)", sc * c["T"])]
        if c["peak_tree"] is not None:
            out.append(Figure("lava_scale", subject, f"Lava run {PEAK_GB} (tree PSS)", c["peak_tree"] / 2**30))
        out.append(Figure("lava_scale", subject, f"{LAVA_RATIO} (steady)", sc / sh, goal=LAVA_RATIO_GOAL))
    return out


def run(argv: list[str] | None = None) -> list[Figure]:
    """Measure and print the tables (the command line's arguments, or ``argv``); return the figures.
    A ``--worker`` call does its one Lava run and returns no figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="a,b")
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--keep", help="keep the work directory here")
    ap.add_argument("--worker", nargs=4, metavar=("MODE", "ARTIFACT", "X", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return []
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="spikec-lava-scale-"))
    results = []
    try:
        for key in args.sizes.split(","):
            results.append(bench_size(key, args.samples, work))
            (work / "results.json").write_text(json.dumps(results, default=str))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nLava at real sizes ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {args.samples} samples "
          f"streamed, Loihi2SimCfg fixed_pt)\n")
    print(report(results))
    return figures(results)


def main() -> int:
    run()
    return 0

if __name__ == "__main__":
    sys.exit(main())
