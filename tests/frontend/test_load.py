"""Checkpoint loading: sys.path hygiene, one-line errors from user code, unimportable pickles,
pickles of the real legacy spikingjelly, and wrapper prefixes on state_dict keys."""

import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT
from torch import nn

from spikec.compat import legacy_spikingjelly
from spikec.errors import CheckpointError
from spikec.frontend import load_checkpoint, trace
from spikec.frontend.load import build_model
from spikec.runtime.float_interpreter import run_float

PREFIX = "t_load_"  # every module these tests create is named so; dropped from sys.modules afterwards


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch):
    """A private copy of sys.path (restored afterwards) and no test module left in sys.modules."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != ""])
    yield
    for name in [n for n in sys.modules if n.startswith(PREFIX)]:
        del sys.modules[name]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------------
# 1. sys.path: spikec's own entry is removed exactly; what the user's module did is kept
# ------------------------------------------------------------------------------------------------


def test_factory_file_keeps_the_modules_own_sys_path_entry(tmp_path):
    """The module puts its helper folder first on sys.path at import and its factory imports from it
    later; spikec used to ``pop(0)`` that entry instead of its own (ModuleNotFoundError)."""
    lib = tmp_path / "lib"
    _write(lib / f"{PREFIX}helper.py", """
        from torch import nn

        def make():
            return nn.Linear(2, 3)
    """)
    f = _write(tmp_path / "net.py", f"""
        import os
        import sys

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

        def factory():
            from {PREFIX}helper import make
            return make()
    """)
    before = list(sys.path)
    model = build_model(f"{f}:factory")
    assert isinstance(model, nn.Linear) and model.out_features == 3
    assert sys.path == [str(lib)] + before  # the module's entry kept, spikec's folder entry gone


def test_factory_package_from_cwd_removes_only_its_own_entry(tmp_path, monkeypatch):
    """`pkg.module:factory` resolved from the working directory: spikec appends the cwd and must
    remove that entry, not an equal one the module put first itself (``list.remove`` did)."""
    _write(tmp_path / f"{PREFIX}pkg" / "__init__.py", "")
    _write(tmp_path / f"{PREFIX}pkg" / "models.py", """
        import os
        import sys

        from torch import nn

        sys.path.insert(0, os.getcwd())

        def factory():
            return nn.Linear(2, 2)
    """)
    monkeypatch.chdir(tmp_path)
    before = [p for p in sys.path if p != str(tmp_path)]
    monkeypatch.setattr(sys, "path", list(before))
    build_model(f"{PREFIX}pkg.models:factory")
    assert sys.path == [str(tmp_path)] + before


def test_trusted_pickle_from_cwd_removes_only_its_own_entry(tmp_path, monkeypatch):
    """The same for the cwd entry spikec adds while unpickling a whole model."""
    src = tmp_path / "code"
    _write(src / f"{PREFIX}picklenet.py", """
        import os
        import sys

        from torch import nn

        sys.path.insert(0, os.getcwd())

        class Net(nn.Linear):
            pass
    """)
    monkeypatch.syspath_prepend(str(src))
    from t_load_picklenet import Net

    torch.save(Net(2, 2), tmp_path / "whole.pt")
    del sys.modules[f"{PREFIX}picklenet"]
    monkeypatch.chdir(src)
    before = [p for p in sys.path if p != str(src)]
    monkeypatch.setattr(sys, "path", list(before))
    loaded = load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    assert type(loaded.module).__name__ == "Net"
    assert sys.path == [str(src)] + before


# ------------------------------------------------------------------------------------------------
# 2. exceptions raised by user code become one-line CheckpointErrors
# ------------------------------------------------------------------------------------------------


def test_exception_in_the_factory_is_one_line(tmp_path):
    f = _write(tmp_path / "net.py", """
        def factory(width=4):
            raise ValueError("width must be even\\n(and more detail)")
    """)
    with pytest.raises(CheckpointError) as e:
        build_model(f"{f}:factory")
    assert _one_line(e) == f"--model '{f}:factory': the factory raised ValueError: width must be even"
    with pytest.raises(CheckpointError) as e:  # a bad keyword: says what to check
        build_model(f"{f}:factory", {"depth": 2})
    assert "the factory raised TypeError" in _one_line(e) and "--model-kwargs" in str(e.value)


def test_exception_in_the_factory_through_load_checkpoint(tmp_path):
    f = _write(tmp_path / "net.py", """
        def factory():
            return {}["missing"]
    """)
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "w.pt", factory=f"{f}:factory")
    assert _one_line(e) == f"--model '{f}:factory': the factory raised KeyError: 'missing'"


def test_exception_and_sys_exit_while_importing_the_model_file(tmp_path):
    f = _write(tmp_path / "boom.py", """
        raise RuntimeError("CUDA is required\\nsecond line")
    """)
    with pytest.raises(CheckpointError) as e:
        build_model(f"{f}:factory")
    msg = _one_line(e)
    assert f"'{f}:factory'" in msg and "RuntimeError: CUDA is required" in msg
    f = _write(tmp_path / "script.py", """
        import argparse

        argparse.ArgumentParser().parse_args(["--no-such-flag"])
    """)
    with pytest.raises(CheckpointError) as e:  # a training script parsing arguments at import
        build_model(f"{f}:factory")
    msg = _one_line(e)
    assert "sys.exit(2)" in msg and "__main__" in msg


def test_exception_while_unpickling_a_trusted_model(tmp_path, monkeypatch):
    src = tmp_path / "code"
    _write(src / f"{PREFIX}badpickle.py", """
        from torch import nn

        def _rebuild(width):
            raise TypeError("unsupported width\\nsecond line")

        class Net(nn.Module):
            def __reduce__(self):
                return (_rebuild, (4,))
    """)
    monkeypatch.syspath_prepend(str(src))
    from t_load_badpickle import Net

    torch.save(Net(), tmp_path / "whole.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    msg = _one_line(e)
    assert "whole.pt" in msg and "TypeError: unsupported width" in msg


# ------------------------------------------------------------------------------------------------
# 3. a pickle whose classes cannot be imported says how to fix that
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gone", ["module", "class"])
def test_pickle_with_unimportable_classes_says_how_to_fix_it(tmp_path, monkeypatch, gone):
    src = tmp_path / "code"
    mod = _write(src / f"{PREFIX}models.py", """
        from torch import nn

        class Spikformer(nn.Linear):
            pass
    """)
    monkeypatch.syspath_prepend(str(src))
    from t_load_models import Spikformer

    torch.save(Spikformer(2, 2), tmp_path / "whole.pt")
    del sys.modules[f"{PREFIX}models"]
    if gone == "module":
        sys.path.remove(str(src))
    else:  # the module is there, the class was renamed since
        mod.write_text("class Renamed:\n    pass\n")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    msg = _one_line(e)
    assert f"{PREFIX}models" in msg and "PYTHONPATH" in msg and "state_dict" in msg and "--model" in msg


# ------------------------------------------------------------------------------------------------
# 4. a whole model pickled with the real legacy spikingjelly (clock_driven, <= 0.0.0.0.14)
# ------------------------------------------------------------------------------------------------


def _as_real_legacy(node: nn.Module) -> nn.Module:
    """Make ``node`` (a stand-in object) look as the real legacy spikingjelly's objects did: its
    ``MemoryModule`` kept ``v``, ``v_threshold``, ``v_reset`` and ``v_seq`` in ``_memories``
    (reset values in ``_memories_rv``), served by ``__getattr__``, not as attributes."""
    d = node.__dict__
    v_reset = d.pop("v_reset")
    mem = {"v": 0.0 if v_reset is None else v_reset, "v_threshold": d.pop("v_threshold"), "v_reset": v_reset,
           "v_seq": None}
    d["_memories"], d["_memories_rv"] = mem, dict(mem)
    d["_memories"]["v"] = torch.rand(3, 4)  # a membrane left over from the last forward
    d.update(cupy_fp32_inference=False, lava_s_cale=64, lava_neuron=None)
    if isinstance(node, legacy_spikingjelly.MultiStepIFNode):
        del d["decay_input"]  # the real IFNode has none
    return node


@pytest.mark.parametrize("kind,v_reset", [("LIF", 0.0), ("LIF", None), ("IF", -0.25), ("PLIF", 0.0)])
def test_pickle_of_real_legacy_spikingjelly_neurons(tmp_path, kind, v_reset):
    legacy_spikingjelly.install_if_missing()
    cls = {"LIF": legacy_spikingjelly.MultiStepLIFNode, "IF": legacy_spikingjelly.MultiStepIFNode,
           "PLIF": legacy_spikingjelly.MultiStepParametricLIFNode}[kind]
    torch.manual_seed(0)
    node = cls(v_threshold=0.5, v_reset=v_reset, surrogate_function=legacy_spikingjelly.Sigmoid())
    model = nn.Sequential(nn.Linear(4, 4), node)
    x = torch.rand(3, 2, 4) * 2
    with torch.no_grad():
        expected = model(x)
    _as_real_legacy(node)
    # pickle the classes under the real package's names: spikingjelly.clock_driven.neuron.<cls>,
    # spikingjelly.clock_driven.surrogate.Sigmoid (the legacy default surrogate)
    renamed = [(cls, "spikingjelly.clock_driven.neuron", cls.__qualname__),
               (legacy_spikingjelly.ATan, "spikingjelly.clock_driven.surrogate", "Sigmoid")]
    saved = [(c, c.__module__, c.__qualname__) for c, _, _ in renamed]
    try:
        for c, module, qualname in renamed:
            c.__module__, c.__qualname__ = module, qualname
        torch.save(model, tmp_path / "whole.pt")
    finally:
        for c, module, qualname in saved:
            c.__module__, c.__qualname__ = module, qualname
    raw = (tmp_path / "whole.pt").read_bytes()
    assert b"spikingjelly.clock_driven.neuron" in raw and b"_memories" in raw

    loaded = load_checkpoint(tmp_path / "whole.pt", trust_checkpoint=True)
    g = trace(loaded, (4,), time_steps=3)
    (n,) = [n for n in g.nodes if n.op == "neuron"]
    assert n.v_threshold == 0.5 and n.v_reset == v_reset and n.model == ("IF" if kind == "IF" else "LIF")
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), expected, rtol=0, atol=0)
    torch.testing.assert_close(run_float(g, x).outputs[0], expected, rtol=0, atol=1e-5)
    if kind == "LIF" and v_reset is not None:  # and by the console script, in a fresh process
        exe = shutil.which("spikec", path=str(ROOT / ".venv" / "bin")) or shutil.which("spikec")
        r = subprocess.run([exe, "show", str(tmp_path / "whole.pt"), "--trust-checkpoint", "--input-shape", "4",
                            "--time-steps", "3"], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0 and "th=0.5" in r.stdout, r.stderr[-1500:]


# ------------------------------------------------------------------------------------------------
# 5. a uniform wrapper prefix on the state_dict keys, stripped only when that makes them fit
# ------------------------------------------------------------------------------------------------


def _factory_file(tmp_path):
    return _write(tmp_path / "arch.py", """
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.module = nn.Linear(4, 3)

        def mlp(hidden=3):
            return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 2))

        def wrapped():
            return Wrapped()
    """)


@pytest.mark.parametrize("prefix", ["model.", "module.", "net.", "_orig_mod.", "module._orig_mod."])
def test_state_dict_with_a_wrapper_prefix(tmp_path, prefix):
    f = _factory_file(tmp_path)
    ref = build_model(f"{f}:mlp")
    torch.save({"state_dict": {prefix + k: v for k, v in ref.state_dict().items()}}, tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt", factory=f"{f}:mlp")
    for k, v in ref.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[k], v)


def test_state_dict_prefix_is_not_stripped_when_the_model_has_it(tmp_path):
    """A model whose own keys start with ``module.``: the checkpoint's are used as they are (the
    ``module.`` prefix used to be stripped blindly), and a doubly wrapped one loses one level."""
    f = _factory_file(tmp_path)
    ref = build_model(f"{f}:wrapped")
    assert list(ref.state_dict()) == ["module.weight", "module.bias"]
    for prefix in ("", "model."):
        torch.save({prefix + k: v for k, v in ref.state_dict().items()}, tmp_path / "w.pt")
        loaded = load_checkpoint(tmp_path / "w.pt", factory=f"{f}:wrapped")
        assert torch.equal(loaded.module.module.weight, ref.module.weight)


def test_state_dict_prefix_that_does_not_help_is_named(tmp_path):
    f = _factory_file(tmp_path)
    other = build_model(f"{f}:mlp", {"hidden": 5})
    torch.save({"model." + k: v for k, v in other.state_dict().items()}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "w.pt", factory=f"{f}:mlp")
    msg = _one_line(e)
    assert "the checkpoint's keys all start with 'model.' but the model's do not" in msg
    assert "shape mismatch: 0.weight (checkpoint (5, 4) vs model (3, 4))" in msg
    torch.save({"model." + k: v for k, v in nn.Linear(1, 1).state_dict().items()}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "w.pt", factory=f"{f}:mlp")
    msg = _one_line(e)
    assert "start with 'model.'" in msg and "missing keys: 0.weight" in msg and "unexpected keys: weight" in msg



def test_model_file_imports_packages_of_the_repository_root(tmp_path, monkeypatch):
    """Spike-Driven Transformer's ``model/spikeformer.py`` does ``from module import *`` where
    ``module/`` sits at the repository root (where its training script runs): run from the root,
    ``--model model/spikeformer.py:fn`` resolves it (the working directory is importable, last)."""
    _write(tmp_path / f"{PREFIX}blocks" / "__init__.py", """
        from torch import nn

        def block():
            return nn.Linear(2, 4)
    """)
    _write(tmp_path / "model" / "net.py", f"""
        from {PREFIX}blocks import *

        def factory():
            return block()
    """)
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert build_model("model/net.py:factory").out_features == 4
    assert sys.path == before
