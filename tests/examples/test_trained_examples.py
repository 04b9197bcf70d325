"""The README's table of trained examples, kept true: every example of ``examples/train.py`` has a
committed checkpoint (<= 2 MB) and a row, and its held-out float and integer accuracies and top-1
agreement are what the row states (digits: the 360 held-out images at 9 shifts, 3240), and the
integer accuracy is within 0.5 points of the float one (issue 13's bar) for every example."""

from __future__ import annotations

import re

import pytest
from conftest import readme_table

from examples.train import EXAMPLES, ROOT, accuracies, table_row
from spikec.cli import main as spikec_cli

HEADER, ROWS = readme_table("trained-table")
MAX_GAP = 0.005  # |float - integer| accuracy within 0.5 points (issue 13)
MIN_AGREEMENT = 0.92  # float and integer predict the same class (today's lowest: QKFormer, 92.07 %)


def _name(row: dict) -> str:
    return row["example"].strip("`")


def test_every_example_has_a_row_and_a_small_checkpoint():
    assert [_name(r) for r in ROWS] == list(EXAMPLES)
    for name, ex in EXAMPLES.items():
        ckpt = ex.checkpoint(name)
        assert ckpt.is_file(), f"{ckpt} missing: python examples/train.py {name}"
        assert ckpt.stat().st_size <= 2 * 1024 * 1024, f"{ckpt} is over 2 MB"


@pytest.mark.parametrize("row", ROWS, ids=_name)
def test_row_states_the_measured_accuracies(row):
    name = _name(row)
    measured = accuracies(name)
    assert row == dict(zip(HEADER, (c.strip() for c in table_row(name, measured).strip("|").split("|")))), \
        f"README row of {name} is stale: python examples/train.py table"
    acc_float, acc_int, agreement, _ = measured
    assert abs(acc_float - acc_int) <= MAX_GAP + 1e-9, f"{name}: integer {acc_int:.2%} vs float {acc_float:.2%}"
    assert agreement >= MIN_AGREEMENT, f"{name}: top-1 agreement {agreement:.2%}"


def test_verify_prints_float_and_integer_accuracy(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's commands run from the repository root
    name = "spikformer_digits"
    ex = EXAMPLES[name]
    code = spikec_cli(["verify", *ex.spikec_args(name), "--target", "intref", "--limit", "40"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"accuracy torch: \d+\.\d+%", out) and re.search(r"accuracy integer: \d+\.\d+%", out), out


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_teacher_forced_agreement_and_no_unexplained_flip(name):
    """The README's claim: every layer's teacher-forced agreement at least 97.7 % (measured on 200
    samples; 97 % asserted on the first 64) and no unexplained flip."""
    import spikec
    from spikec.data import load_dataset

    ex = EXAMPLES[name]
    x, y = load_dataset(ex.dataset)
    x = x[:, :64] if ex.time_steps else x[:64]
    rep = spikec.verify(str(ex.checkpoint(name)), "intref", x, factory=f"examples.models.zoo:{ex.factory}",
                        model_kwargs=ex.kwargs, input_shape=ex.input_shape, time_steps=ex.time_steps)
    assert rep.flips_explained, rep.lines()
    low = min(rep.layers, key=lambda r: r.local_agreement)
    assert low.local_agreement >= 0.97, (low.layer, low.local_agreement)
