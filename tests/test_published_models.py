"""The README's "published models" table, kept true: each row names the spikec example that
re-creates the published file's code patterns (never the upstream code), and every target marked
"yes" compiles it and verifies bit-exact against intref on random inputs."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from conftest import readme_table

import spikec


def published_rows() -> list[dict]:
    return readme_table("published-table")[1]


ROWS = published_rows()
TARGETS = ("intref", "lava", "onnx")


def _example(spec: str):
    """``module:factory`` of examples/models -> a prepared model and inputs."""
    module, _, name = spec.strip("`").partition(":")
    if module == "zoo":
        from examples.models import zoo

        model, x = zoo.build(name, batch=2)
        return model, x.numpy(), zoo.input_shape_of(name)
    from examples.models import published_patterns as pp

    torch.manual_seed(0)
    model = pp.randomize_bn(getattr(importlib.import_module(f"examples.models.{module}"), name)())
    shape = getattr(model, "sample_shape", (3, 16, 16))
    return model, torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)).numpy(), shape


def test_table_covers_the_seed_repositories():
    repos = {r["repository"] for r in ROWS}
    assert repos == {"ZK-Zhou/spikformer", "BICLab/Spike-Driven-Transformer", "zhouchenlin2096/QKFormer",
                     "BICLab/Spike-Driven-Transformer-V2", "Loydian/Spikeformer"}
    for r in ROWS:
        assert all(r[t] in ("yes", "no") for t in TARGETS)


@pytest.mark.parametrize("row", ROWS, ids=[r["repository"] for r in ROWS])
def test_row_holds_for_its_re_created_pattern(row):
    model, x, shape = _example(row["re-created in"])
    for target in TARGETS:
        if row[target] != "yes":
            continue
        rep = spikec.verify(model, target, x, input_shape=shape, input_range=(0, 2))
        assert rep.exact, f"{row['repository']}: {target} differs from intref"
        assert all(r.torch_vs_ir == 1.0 for r in rep.layers if r.torch_vs_ir is not None)
    assert np.isfinite(x).all()
