import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples.models import zoo  # noqa: E402

LONG = bool(os.environ.get("SPIKEC_LONG_TESTS"))


def readme_table(marker: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows (column -> cell text) of the README table between ``<!-- marker -->`` and
    ``<!-- /marker -->``."""
    text = (ROOT / "README.md").read_text()
    block = text.split(f"<!-- {marker} -->")[1].split(f"<!-- /{marker} -->")[0]
    lines = [ln for ln in block.strip().splitlines() if ln.startswith("|")]
    cells = lambda ln: [c.strip() for c in ln.strip().strip("|").split("|")]  # noqa: E731
    header = cells(lines[0])
    return header, [dict(zip(header, cells(ln))) for ln in lines[2:]]


def neuron_outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the eager model once from fresh state; return its output and every neuron layer's spikes."""
    from examples.models.zoo import _reset
    from spikec.frontend.neurons import neuron_spec

    spikes: dict[str, torch.Tensor] = {}
    hooks = []
    for path, mod in model.named_modules():
        if path and neuron_spec(mod, path) is not None:
            hooks.append(mod.register_forward_hook(lambda m, i, o, p=path: spikes.__setitem__(p, o.detach().clone())))
    try:
        _reset(model)
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return y, spikes


@pytest.fixture(scope="session")
def zoo_models():
    """Prepared tiny models of every family with an input batch, traced once per session."""
    from examples.models import zoo
    from spikec.frontend import trace

    out = {}
    for fam in zoo.FAMILIES:
        model, x = zoo.build(fam)
        T = zoo.SEQUENCE_INPUT.get(fam)
        out[fam] = (model, x, trace(model, zoo.input_shape_of(fam), time_steps=T, name=fam))
    return out


# families each target is verified on by the tests (the README support table must say exactly this)
LAVA_FAMILIES = ["spikformer_digits", "sj_spikformer", "sj_sdt", "meta_spikformer", "neuron_variants", "staa_snn",
                 "stformer", "spikeformer"]
INTREF_FAMILIES = ["sj_spikformer", "sj_sdt", "meta_spikformer", "neuron_variants", "spikformer_digits", "staa_snn",
                   "stformer", "spikeformer"]
ONNX_FAMILIES = list(INTREF_FAMILIES)
NIR_FAMILIES = {f: zoo.EXAMPLE_KWARGS.get(f, {})  # model kwargs per family
                for f in ("sj_spikformer", "sj_sdt", "spikformer_digits", "meta_spikformer", "neuron_variants", "stformer")}


def first_samples(x: torch.Tensor, graph, n: int = 8) -> torch.Tensor:
    """The first ``n`` samples of a model input ([B, ...] or, for sequence inputs, [T, B, ...])."""
    return x[:, :n] if graph.inputs[0].layout == "sequence" else x[:n]
