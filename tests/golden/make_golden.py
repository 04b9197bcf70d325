"""Write the golden per-layer integer tensors the golden tests compare against (lava-dl netx style).

    .venv/bin/python tests/golden/make_golden.py              # every family
    .venv/bin/python tests/golden/make_golden.py FAMILY ...   # only these

For each family of ``examples/models/zoo.py``, in the tiny configuration of ``CONFIGS``, the
script builds the model with prepared random weights (``zoo.build``: seed ``SEED`` unless the
family names one, batch norms calibrated on a 16-sample batch), traces it, compiles it for
``intref`` (input range [0, 2], the range of the zoo's inputs), runs the first ``SAMPLES`` inputs of
that batch through the integer executor and writes ``tests/golden/<family>/``:

- ``ir/``: the quantized graph (``spikec.ir.save``: graph.json + arrays.npz; the npz is then
  rewritten compressed, which ``np.load`` and so ``spikec.ir.load`` read unchanged: checked here);
- ``inputs.npy``: the float32 model inputs (``[B, ...]``, or ``[T, B, ...]`` for sequence input);
- ``expected.npz``: per Loihi neuron layer ``<layer>::spikes`` (uint8), ``<layer>::v`` and
  ``<layer>::u`` (int32; the state is 24-bit) for the first ``min(T, MAX_STEPS)`` time steps, shaped
  ``[steps, B, *features]``, and ``output<i>`` (the integer outputs, int64, whole);
- ``meta.json``: the configuration, the recorded steps and the neuron layers in graph order.

The golden data pins the pipeline's integer result: when a change to spikec alters it on purpose,
rerun this script for the family and say why in the commit.  Each family's folder stays under
200 KB (55-155 KB; the size and the least active layer are printed per family).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.models import zoo  # noqa: E402
from spikec import ir  # noqa: E402

SEED = 0  # weights and inputs (a family's ``seed`` overrides it)
SAMPLES = 2  # inputs recorded per family
MAX_STEPS = 4  # time steps of u / v / spikes kept per layer (all of them when T <= MAX_STEPS)
INPUT_RANGE = (0.0, 2.0)  # zoo inputs are uniform in [0, 2)
# per family: factory keywords, and optionally ``input_shape`` (overrides the zoo's per-sample
# shape) and ``factory`` ("module:callable" instead of the zoo's factory).  Smaller than the tests'
# configurations (tests/conftest.py, zoo.EXAMPLE_KWARGS) so that each folder stays small and the
# Lava runs short; every layer but neuron_variants' last one (its output, silent on every seed:
# its v / u are still pinned) fires (make() prints the lowest firing rate).  Meta-SpikeFormer is
# the zoo's class with narrower stages at 24x24 input (3x3 tokens): smaller, or with seed 0, its
# attention's head_lif stays silent and the outputs no longer depend on the input.
CONFIGS: dict[str, dict] = {
    "spikformer_digits": dict(kwargs=dict(embed_dims=8, num_heads=2)),
    "sj_spikformer": dict(kwargs=dict(embed_dims=8, num_heads=2)),
    "sj_sdt": dict(kwargs=dict(embed_dims=8, num_heads=2)),
    "meta_spikformer": dict(factory="examples.models.meta_spikformer:MetaSpikeFormer", input_shape=(3, 24, 24), seed=1,
                            kwargs=dict(embed_dim=(4, 8, 8), num_heads=2, mlp_ratio=1.0, T=2, sep_kernel=3)),
    "neuron_variants": dict(kwargs={}),
}
REGENERATE = ("the pipeline's integer result changed; if intended, regenerate with "
              "`python tests/golden/make_golden.py {family}` and say why in the commit")


def family_dir(family: str) -> Path:
    return HERE / family


def config(family: str) -> dict:
    """The family's configuration as recorded in meta.json (JSON-normalised)."""
    cfg = CONFIGS[family]
    shape = cfg.get("input_shape", zoo.input_shape_of(family))
    return json.loads(json.dumps({"family": family, "factory": cfg.get("factory", f"examples.models.zoo:{family}"),
                                  "kwargs": cfg["kwargs"], "input_shape": list(shape),
                                  "time_steps": zoo.SEQUENCE_INPUT.get(family), "seed": cfg.get("seed", SEED),
                                  "samples": SAMPLES, "input_range": list(INPUT_RANGE)}))


def build(family: str, batch: int = 16) -> tuple[torch.nn.Module, torch.Tensor]:
    """The prepared tiny model and its input batch: ``zoo.build``, with the optional overrides."""
    cfg, seed = CONFIGS[family], config(family)["seed"]
    if "input_shape" not in cfg and "factory" not in cfg:
        return zoo.build(family, seed=seed, batch=batch, **cfg["kwargs"])
    # zoo.build's steps, with another factory / input size
    if "factory" in cfg:
        module, name = cfg["factory"].split(":")
        factory = getattr(importlib.import_module(module), name)
    else:
        factory = zoo.FAMILIES[family][0]
    shape = tuple(config(family)["input_shape"])
    model = factory(**cfg["kwargs"]).eval()
    g = torch.Generator().manual_seed(seed + 1)
    T = zoo.SEQUENCE_INPUT.get(family)
    x = torch.rand(((T,) if T else ()) + (batch, *shape), generator=g) * 2.0
    zoo.prepare(model, x, seed=seed)
    return model, x


def compile_family(family: str):
    """(quantized intref graph, the first ``SAMPLES`` inputs), freshly built from the model."""
    from spikec.compiler import compile_graph
    from spikec.frontend import trace

    model, x = build(family)
    T = zoo.SEQUENCE_INPUT.get(family)
    shape = tuple(config(family)["input_shape"])
    graph = trace(model, shape, time_steps=T, name=family)
    q = compile_graph(graph, "intref", input_range=INPUT_RANGE).quantized
    x = x[:, :SAMPLES] if T else x[:SAMPLES]
    return q, x.contiguous()


def neuron_layers(graph: ir.Graph) -> list[str]:
    return [n.name for n in graph.nodes if isinstance(n, ir.LoihiNeuronNode)]


def time_steps(graph: ir.Graph) -> int:
    """T of the neuron layers (they all run for the same T)."""
    (T,) = {graph.types[name].time for name in neuron_layers(graph)}
    return T


def steps_of(graph: ir.Graph) -> int:
    return min(time_steps(graph), MAX_STEPS)


def expected_arrays(graph: ir.Graph, x: torch.Tensor) -> dict[str, np.ndarray]:
    """Run intref and collect the golden arrays (names as in expected.npz)."""
    from spikec.targets.intref.executor import run_int

    r = run_int(graph, x, record=True)
    steps = steps_of(graph)
    out: dict[str, np.ndarray] = {}
    for name in neuron_layers(graph):
        v, u = r.membranes[name]
        out[f"{name}::spikes"] = r.values[name][:steps].numpy().astype(np.uint8)
        for key, a in (("v", v), ("u", u)):
            a = a[:steps].numpy()
            assert np.abs(a).max(initial=0) < 2**31, f"{name}.{key} exceeds int32"
            out[f"{name}::{key}"] = a.astype(np.int32)
    for i, o in enumerate(r.outputs):
        out[f"output{i}"] = o.numpy().astype(np.int64)
    return out


def _compress_npz(path: Path) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _same_graph(a: ir.Graph, b: ir.Graph) -> bool:
    from spikec.ir.serialize import graph_to_dict

    (da, xa), (db, xb) = graph_to_dict(a), graph_to_dict(b)
    return da == db and xa.keys() == xb.keys() and all(np.array_equal(xa[k], xb[k]) for k in xa)


def make(family: str) -> tuple[int, str]:
    """Write ``tests/golden/<family>/``; returns its size in bytes and its least active layer."""
    graph, x = compile_family(family)
    d = family_dir(family)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    ir.save(graph, d / "ir")
    _compress_npz(d / "ir" / "arrays.npz")
    assert _same_graph(ir.load(d / "ir"), graph), "the saved graph reads back differently"
    np.save(d / "inputs.npy", x.numpy().astype(np.float32))
    arrays = expected_arrays(graph, x)
    np.savez_compressed(d / "expected.npz", **arrays)
    meta = {**config(family), "T": time_steps(graph), "steps": steps_of(graph), "layers": neuron_layers(graph),
            "outputs": sum(k.startswith("output") for k in arrays)}
    (d / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    rate, layer = min((float(arrays[f"{n}::spikes"].mean()), n) for n in meta["layers"])
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file()), f"lowest firing rate {rate:.3f} ({layer})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("families", nargs="*", metavar="FAMILY", help=f"default: all of {', '.join(CONFIGS)}")
    args = ap.parse_args(argv)
    unknown = [f for f in args.families if f not in CONFIGS]
    if unknown:
        ap.error(f"unknown family {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    for family in args.families or list(CONFIGS):
        size, activity = make(family)
        print(f"{family:20s} {size / 1024:6.1f} KB  {family_dir(family).relative_to(ROOT)}/  {activity}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
