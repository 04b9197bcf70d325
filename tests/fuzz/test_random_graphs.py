"""Random-graph differential testing (issue 15, deliverable 4): small random spiking networks
(``strategies.py``) through every target.

Each case is compiled and verified for intref, onnx and nir (and Lava on a subset of tiny cases,
Lava being slow).  Every outcome is one of:

* ``pass``: the target agrees with its reference (bit for bit with intref for lava / onnx, spike for
  spike with the float IR for nir), the traced float IR agrees with the torch model, and every
  teacher-forced flip of the integer model lies within its layer's quantization error bound;
* ``refusal``: a :class:`~spikec.errors.SpikecError` whose message is one line, names one of the
  user's module paths and no spikec internals (IR node names, pass names, spikec class names);
* ``crash``: any other exception;
* ``mismatch``: the target, the traced IR or an unexplained flip disagrees;
* ``known``: not run, the case has a feature of ``strategies.KNOWN_DEFECTS`` that breaks this target.

The test fails on a crash, a mismatch or a refusal that breaks the message rules.

Environment:

* ``SPIKEC_FUZZ=N``: number of cases (default 50, derandomized: the same cases on every run);
* ``SPIKEC_FUZZ_SEED=S``: a random run from seed S (default with N > 50: hypothesis' own randomness);
* ``SPIKEC_FUZZ_LOG=path``: append one JSON line per case (spec, outcome per target, seconds);
* ``SPIKEC_FUZZ_COLLECT=1``: never fail (a campaign: read the log afterwards);
* ``SPIKEC_FUZZ_ONLY=substring``: fail only on problems whose text contains it (to shrink one class);
* ``SPIKEC_FUZZ_KNOWN=1``: also generate the features of ``strategies.KNOWN_DEFECTS``;
* ``SPIKEC_FUZZ_LAVA=k``: Lava on one case in k (default 4; 0: never).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="random-graph tests need hypothesis (pip install hypothesis)")

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import strategies  # noqa: E402

N = int(os.environ.get("SPIKEC_FUZZ", "50"))
SEED = os.environ.get("SPIKEC_FUZZ_SEED")
LOG = os.environ.get("SPIKEC_FUZZ_LOG")
COLLECT = bool(os.environ.get("SPIKEC_FUZZ_COLLECT"))
ONLY = os.environ.get("SPIKEC_FUZZ_ONLY")
LAVA_EVERY = int(os.environ.get("SPIKEC_FUZZ_LAVA", "4"))

TARGETS = ("intref", "onnx", "nir", "lava")


# --------------------------------------------------------------------------------------------
# the message rules of a refusal

def _internal_words() -> tuple[set[str], set[str]]:
    """spikec's pass names and class names: a user never sees these in an error message."""
    import spikec.ir as ir
    from spikec.passes.pipelines import PASSES

    classes = {n for n in dir(ir) if isinstance(getattr(ir, n), type) and n[:1].isupper()}
    user_classes = {"LIFNode", "IFNode", "ParametricLIFNode", "MultiStepLIFNode", "MultiStepIFNode",
                    "MultiStepParametricLIFNode"}
    return set(PASSES), {c for c in classes - user_classes if len(c) > 3 and c not in ("Kind", "Graph", "Value")}


_GENERIC_NODE = re.compile(r"\b(add|sub|mul|matmul|scale|reshape|permute|conv|linear|neuron|reduce|sum|mean|slice|pad|"
                           r"synapse|synapses|shift|and|repeat|repeat_time|max_pool|avg_pool|maxpool|avgpool|batchnorm|bn|"
                           r"quantize_input|dequantize|addressed_accumulation|transpose|flatten|view|clone|input|output)_\d+\b")

# an IR node qualified by its module ("blocks.1:scale", "attn:matmul_2") and NIR node names ("n3_pool_or")
_QUALIFIED_NODE = re.compile(r"(?<![\w/])[\w.]+:[a-z_]+\d*\b")
_NIR_NODE = re.compile(r"\bn\d+_\w+")


def message_problems(msg: str, model, spec) -> list[str]:
    """What is wrong with the refusal message ``msg`` (empty: a good one)."""
    problems = []
    if "\n" in msg.strip():
        problems.append("message is not one line")
    paths = [p for p, _ in model.named_modules() if p]
    if not any(re.search(rf"(?<![\w.]){re.escape(p)}(?![\w])", msg) for p in paths):
        problems.append("message names none of the model's module paths")
    passes, classes = _internal_words()
    for p in passes:
        if p in msg:
            problems.append(f"message names spikec pass {p!r}")
    for c in classes:
        if re.search(rf"\b{c}\b", msg):
            problems.append(f"message names spikec class {c!r}")
    if re.search(r"\brun \w+ first\b", msg):
        problems.append("message asks the user to run a compiler pass")
    for pat in (_GENERIC_NODE, _QUALIFIED_NODE, _NIR_NODE):
        m = pat.search(msg)
        if m:
            problems.append(f"message names IR node {m.group(0)!r}")
    # IR node names that are not module paths, quoted or called a node
    try:
        import spikec

        g = spikec.trace(model, input_shape=spec.in_shape, time_steps=None if spec.static else spec.T)
        names = {n.name for n in g.nodes} - set(paths) - {"input", "output"}
    except Exception:  # noqa: BLE001 - the trace itself refused: no node names to look for
        names = set()
    for nm in sorted(names):
        pat = rf"(['\"`]{re.escape(nm)}['\"`]|\bnode {re.escape(nm)}\b|\b{re.escape(nm)} node\b)"
        if ":" in nm or re.search(r"_\d+$", nm):  # unmistakably a node name: anywhere
            pat = rf"(?<![\w.:]){re.escape(nm)}(?![\w:])"
        if re.search(pat, msg):
            problems.append(f"message names IR node {nm!r}")
    return problems


# --------------------------------------------------------------------------------------------
# one target, one case

def run_target(case: strategies.Case, target: str) -> dict:
    """Outcome of ``spikec.verify(case, target)``: {"kind": pass|refusal|crash|mismatch, "detail": ...}."""
    import spikec
    from spikec.errors import SpikecError
    from spikec.verification import VerifyError

    t0 = time.time()
    try:
        rep = spikec.verify(case.model, target, case.x, input_shape=case.input_shape, time_steps=case.time_steps,
                            input_range=case.input_range, calib=case.calib)
    except SpikecError as e:
        msg = str(e)
        bad = message_problems(msg, case.model, case.spec)
        stage = e.report.failure.split(":")[0] if isinstance(e, VerifyError) and e.report.failure else "trace"
        return {"kind": "refusal", "stage": stage, "detail": msg, "bad_message": bad, "type": type(e).__name__,
                "seconds": time.time() - t0}
    except Exception as e:  # noqa: BLE001 - any other exception is what this test looks for
        tb = traceback.extract_tb(e.__traceback__)
        where = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in tb if "/spikec/" in f.filename
                 or "/passes/" in f.filename or "/targets/" in f.filename][-3:]
        return {"kind": "crash", "detail": f"{type(e).__name__}: {e}"[:500], "where": where, "seconds": time.time() - t0}
    problems = []
    if not rep.exact:
        bad = {k: v for k, v in (rep.check or {}).get("layers", {}).items() if v != 1.0}
        problems.append(f"{target} != {rep.check.get('reference')}: layers {bad}, outputs equal "
                        f"{rep.check.get('outputs_equal')}")
    for r in rep.layers:
        if r.torch_vs_ir is not None and r.torch_vs_ir < 1.0:
            problems.append(f"traced IR != torch in {r.source}: {r.torch_vs_ir:.4%}")
        if r.unexplained_flips:
            clipped = case.data == "beyond"  # inputs beyond input_range clip in the integer model
            if not clipped:
                problems.append(f"{r.unexplained_flips} unexplained flips in {r.source} at {r.unexplained_at[:2]}")
    notes = [f"passes flips in {r.source}: {r.passes:.4%}" for r in rep.layers if r.passes is not None and r.passes < 1.0]
    return {"kind": "mismatch" if problems else "pass", "detail": "; ".join(problems), "notes": notes,
            "seconds": time.time() - t0}


def run_case(case: strategies.Case) -> dict[str, dict]:
    out: dict[str, dict] = {}
    known = strategies.skipped_targets(case.spec)
    for target in TARGETS:
        if target == "lava" and not case.lava:
            continue
        if target in known:  # a listed known defect breaks this target (strategies.KNOWN_DEFECTS)
            out[target] = {"kind": "known", "detail": known[target], "seconds": 0.0}
            continue
        prev = next((o for o in out.values() if o["kind"] == "refusal" and o["stage"] == "trace"), None)
        # a refusal while tracing is the same for every target: no need to trace again
        out[target] = dict(prev, reused=True) if prev else run_target(case, target)
    return out


def failures(outcome: dict[str, dict]) -> list[str]:
    out = []
    for target, o in outcome.items():
        if o["kind"] in ("crash", "mismatch"):
            out.append(f"{target}: {o['kind']}: {o['detail']}")
        elif o["kind"] == "refusal" and o["bad_message"]:
            out.append(f"{target}: bad refusal ({'; '.join(o['bad_message'])}): {o['detail']}")
    return out


def _log(case: strategies.Case, outcome: dict, seconds: float) -> None:
    if not LOG:
        return
    with open(LOG, "a") as f:
        f.write(json.dumps({"spec": repr(case.spec), "data": case.data, "range": case.input_range,
                            "calib": case.calib is not None, "lava": case.lava, "outcome": outcome,
                            "seconds": seconds}, default=str) + "\n")


# --------------------------------------------------------------------------------------------
# the test

_settings = settings(max_examples=N, deadline=None, derandomize=SEED is None and N <= 50, database=None,
                     suppress_health_check=list(HealthCheck), print_blob=True)


def _maybe_seed(f):
    return seed(int(SEED))(f) if SEED is not None else f


@_maybe_seed
@_settings
@given(case=strategies.cases(lava_every=max(LAVA_EVERY, 1)))
def test_random_graph(case):
    if LAVA_EVERY == 0:
        case.lava = False
    t0 = time.time()
    outcome = run_case(case)
    _log(case, outcome, time.time() - t0)
    bad = failures(outcome)
    if ONLY is not None:
        bad = [b for b in bad if ONLY in b]
    if bad and not COLLECT:
        raise AssertionError(f"{case.spec!r}\ninput: {case.data} in {case.input_range}, calib: {case.calib is not None}\n"
                             + "\n".join(bad))
