"""verify over chunks of samples, in this process or in worker processes (spikec.verification.chunks):
the report is the same whatever the number of workers, the merge of the chunks is exact, a model
that cannot reach a worker runs in this process, and the progress bar shows only when asked."""

import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import ROOT

import spikec
from spikec.verification.chunks import join_outputs, progress_bar

CKPT = ROOT / "examples" / "checkpoints" / "spikformer_digits.pth"
MODEL = f"{ROOT / 'examples' / 'models' / 'spikformer.py'}:spikformer_digits"
BUGGY = "block.0.attn.q_lif"  # its threshold halved after compiling: unexplained teacher-forced flips


@pytest.fixture(scope="module")
def digits():
    from spikec.data import load_dataset

    x, y = load_dataset("digits")
    return x[:48], y[:48]


def _verify(x, y, **kwargs):
    return spikec.verify(CKPT, "intref", x, labels=y, factory=MODEL, input_shape=(1, 8, 8), **kwargs)


def test_workers_and_chunks_give_the_same_report(digits, monkeypatch):
    """A compile bug (a halved threshold) so that every column has something to merge: flips and
    their first positions, first divergences, error bounds (maxima over all samples), accuracy;
    and one sample beyond the input range (a warning that counts clipped values).
    2 workers on 3 chunks of 16 == 1 process on the same chunks == 1 process on one batch of 48."""
    import spikec.api  # noqa: F401  (imported before the patch: it binds the real compile_graph for good)
    import spikec.compiler

    original = spikec.compiler.compile_graph

    def compile_with_bug(*args, **kwargs):
        res = original(*args, **kwargs)
        q = res.quantized[BUGGY]
        nodes = [n.replace(vth=q.vth // 2) if n.name == BUGGY else n for n in res.quantized.nodes]
        return replace(res, quantized=res.quantized.rewrite(nodes))

    monkeypatch.setattr(spikec.compiler, "compile_graph", compile_with_bug)  # in this process: workers get the result
    x, y = digits[0].copy(), digits[1]
    x[20] *= 1.5
    pooled = _verify(x, y, workers=2, chunk=16).to_json()
    assert _verify(x, y, workers=1, chunk=16).to_json() == pooled
    assert _verify(x, y, workers=1, chunk=48).to_json() == pooled  # the merge is exact (this model's kernels batch-invariant)
    rep = json.loads(pooled)
    layers = {r["layer"]: r for r in rep["layers"]}
    assert layers[BUGGY]["unexplained_flips"] > 0 and len(layers[BUGGY]["unexplained_at"]) == 5
    assert all(r["error_bound"] is not None and r["local_agreement"] is not None for r in rep["layers"])
    assert rep["first_divergent_layer"] and set(rep["accuracy"]) == {"torch", "float IR", "integer"}
    assert len(rep["warnings"]) == 1 and "input values lie outside the compiled input range" in rep["warnings"][0]


def test_a_module_that_does_not_pickle_runs_in_this_process(digits):
    from spikec.frontend import load_checkpoint

    class Wrapped(torch.nn.Module):  # a local class: pickle refuses it
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    model = Wrapped(load_checkpoint(CKPT, factory=MODEL).module)
    x, y = digits[0][:8], digits[1][:8]
    with pytest.warns(RuntimeWarning, match="running in this process instead of 2 workers.*does not pickle"):
        pooled = spikec.verify(model, "intref", x, labels=y, input_shape=(1, 8, 8), workers=2, chunk=4)
    assert pooled.to_json() == spikec.verify(model, "intref", x, labels=y, input_shape=(1, 8, 8), chunk=4).to_json()


def test_a_module_a_worker_cannot_rebuild_runs_in_this_process(digits):
    """A model built from a file by path pickles here but not in a worker (its module is not importable there)."""
    from spikec.frontend import load_checkpoint

    model = load_checkpoint(CKPT, factory=MODEL).module
    x, y = digits[0][:4], digits[1][:4]
    with pytest.warns(RuntimeWarning, match="a worker cannot rebuild the model"):
        pooled = spikec.verify(model, "intref", x, labels=y, input_shape=(1, 8, 8), workers=2, chunk=2)
    assert pooled.to_json() == _verify(x, y, chunk=2).to_json()


def test_progress_bar_only_when_enabled():
    out = io.StringIO()
    from rich.console import Console

    with progress_bar(True, 10, "verify", console=Console(file=out, force_terminal=True)) as update:
        update(4)
        update(10)
    assert "verify" in out.getvalue()
    with progress_bar(False, 10, "verify") as update:
        update(10)  # nothing to show, nothing written


def test_join_outputs_in_each_layout():
    T, f = 3, 2
    full = np.arange(T * 5 * f).reshape(T, 5, f)  # [T, B, f]
    parts = [full[:, :2], full[:, 2:]]
    np.testing.assert_array_equal(join_outputs(parts, "split", T), full)
    np.testing.assert_array_equal(join_outputs([p.reshape(-1, f) for p in parts], "merged", T), full.reshape(-1, f))
    np.testing.assert_array_equal(join_outputs([full[0, :2], full[0, 2:]], "batch", 1), full[0])
