"""Loading the checkpoint forms users have.

* **state_dict** (a dict of tensors, or a dict holding one under ``model`` / ``state_dict`` /
  ``module``) plus a model factory (``package.module:factory`` or ``path/to/file.py:factory``).
  A prefix shared by all keys (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile,
  ``model.`` / ``net.`` from training wrappers) is stripped when, and only when, that makes the
  keys those of the model.  Loaded with ``torch.load(weights_only=True)``: no code in the file runs.
* **pickled nn.Module**: unpickling runs arbitrary code, so it is only read with
  ``trust_checkpoint=True`` (CLI ``--trust-checkpoint``).
* **torch.export program** (``.pt2``): read with ``torch.export.load``.

Every failure raises :class:`~spikec.errors.CheckpointError`, one line that says what to do; that
includes any exception raised by the user's code (importing the model file, calling the factory,
unpickling a trusted model).

While user code is imported or run, the folder it comes from is put on ``sys.path`` and taken off
again afterwards (:func:`_on_sys_path`): exactly spikec's own entry, nothing the user's code added.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch
from torch import nn

from ..errors import CheckpointError

STATE_DICT_KEYS = ("model", "state_dict", "module")


@dataclass
class LoadedModel:
    """What the frontend traces: an eager module or an exported program."""

    module: Optional[nn.Module] = None
    exported: Optional[Any] = None  # torch.export.ExportedProgram
    origin: str = ""
    graph: Optional[Any] = None  # a saved spikec IR (spikec.ir.Graph): already traced


def _register_spikingjelly_ops() -> None:
    """Exported programs of spikingjelly models call its custom ops (``sj_lif``, ``sj_if``,
    ``sj_plif``, ...), which its ``_ops`` subpackages register on import (importing the neuron
    module alone does not); register every one available."""
    import importlib
    import pkgutil

    try:
        import spikingjelly._ops as ops
    except ImportError:
        return
    for info in pkgutil.iter_modules(ops.__path__):
        if info.ispkg:
            try:
                importlib.import_module(f"{ops.__name__}.{info.name}")
            except Exception:  # an op family this build cannot provide (e.g. CUDA-only)
                pass


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _cause(e: BaseException) -> str:
    """``Type: first line of the message``: an exception from user code, fit for a one-line error."""
    first = _first_line(e)
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _sys_exit(e: SystemExit, what: str) -> str:
    return (f"{what} called sys.exit({e.code!r}); does it parse command-line arguments (argparse) or "
            "run a script at that point? Put that under `if __name__ == '__main__':`")


@contextlib.contextmanager
def _on_sys_path(entry: Optional[str], first: bool) -> Iterator[None]:
    """Put ``entry`` on ``sys.path`` (at the front or the end) while the block runs (None: nothing).

    Afterwards exactly that entry is removed, once: found by identity (the ``str`` object inserted
    here, a fresh one made from a Path), not by position -- ``sys.path.pop(0)`` would remove whatever
    the user's module put first during its import -- nor by value -- ``sys.path.remove`` would take
    an equal entry the module added itself, and raise if the module removed ours.  Every other change
    the user's code made to ``sys.path`` while it ran is kept: a model file that adds its own helper
    folder at import expects it to stay there for the imports its factory or classes do later, as it
    would when run as a script; undoing that would break it.
    """
    if entry is None:
        yield
        return
    if first:
        sys.path.insert(0, entry)
    else:
        sys.path.append(entry)
    try:
        yield
    finally:
        for i, p in enumerate(sys.path):
            if p is entry:
                del sys.path[i]
                break


def _cwd_entry() -> Optional[str]:
    """The working directory, for ``sys.path``, if it is not importable already (like ``python -m``)."""
    cwd = str(Path.cwd())
    return None if cwd in sys.path or "" in sys.path else cwd


def _factory_path(spec: str) -> tuple[str, str, Optional[Path]]:
    """``spec`` split into (module part, factory name, model file or None for a module path)."""
    if ":" not in spec:
        raise CheckpointError(
            f"--model {spec!r}: expected 'package.module:factory' or 'path/to/file.py:factory'"
        )
    mod_part, _, attr = spec.rpartition(":")
    if mod_part.endswith(".py") or "/" in mod_part:
        path = Path(mod_part)
        if not path.is_file():
            raise CheckpointError(f"--model: file {path} does not exist")
        return mod_part, attr, path
    return mod_part, attr, None


@contextlib.contextmanager
def _model_code_importable(file: Optional[Path]) -> Iterator[None]:
    """The model file's folder first on ``sys.path`` (its sibling modules win, as when it is run as a
    script), and the working directory last (like ``python -m``: published code such as
    Spike-Driven Transformer's ``model/spikeformer.py`` imports packages of its repository root,
    where its training script runs); for a module path the working directory last only."""
    if file is not None:
        with _on_sys_path(str(file.parent.resolve()), first=True), _on_sys_path(_cwd_entry(), first=False):
            yield
    else:
        with _on_sys_path(_cwd_entry(), first=False):
            yield


def _resolve_factory(spec: str, mod_part: str, attr: str, file: Optional[Path]):
    """Import the module of ``spec`` (its code folder already on ``sys.path``) and get the factory."""
    from ..compat import legacy_spikingjelly

    legacy_spikingjelly.install_if_missing()
    try:
        if file is not None:
            name = f"spikec_user_model_{abs(hash(str(file.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                sp = importlib.util.spec_from_file_location(name, file)
                module = importlib.util.module_from_spec(sp)
                sys.modules[name] = module
                try:
                    sp.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
        else:
            module = importlib.import_module(mod_part)
    except ImportError as e:
        raise CheckpointError(f"--model {spec!r}: cannot import {mod_part!r}: {_first_line(e)}") from e
    except SystemExit as e:
        raise CheckpointError(f"--model {spec!r}: {_sys_exit(e, f'importing {mod_part!r}')}") from e
    except Exception as e:  # user code failing at import time (SyntaxError included)
        raise CheckpointError(f"--model {spec!r}: importing {mod_part!r} failed: {_cause(e)}") from e
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise CheckpointError(f"--model {spec!r}: {mod_part!r} has no callable {attr!r}")
    return fn


def load_factory(spec: str):
    """Resolve ``pkg.module:factory`` or ``path/to/file.py:factory`` to a callable."""
    mod_part, attr, file = _factory_path(spec)
    with _model_code_importable(file):
        return _resolve_factory(spec, mod_part, attr, file)


def build_model(factory: str, kwargs: Optional[dict] = None) -> nn.Module:
    """Call the factory of ``factory`` (see :func:`load_factory`) with ``kwargs``.  The model code's
    folder stays on ``sys.path`` during the call too (a factory may import sibling modules lazily).
    Whatever the factory raises becomes one CheckpointError line naming the factory and the cause."""
    mod_part, attr, file = _factory_path(factory)
    with _model_code_importable(file):
        fn = _resolve_factory(factory, mod_part, attr, file)
        try:
            model = fn(**(kwargs or {}))
        except SystemExit as e:
            raise CheckpointError(f"--model {factory!r}: {_sys_exit(e, 'the factory')}") from e
        except Exception as e:
            hint = (" (do --model-kwargs match the factory's parameters?)"
                    if isinstance(e, TypeError) and "argument" in str(e) else "")
            raise CheckpointError(f"--model {factory!r}: the factory raised {_cause(e)}{hint}") from e
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"--model {factory!r}: the factory returned a {type(model).__name__}, not an nn.Module")
    return model


def extract_state_dict(obj: Any, path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded checkpoint object."""
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd = obj
    elif isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                return extract_state_dict(obj[key], f"{path}[{key!r}]")
        raise CheckpointError(
            f"{path}: a dict, but neither a state_dict nor one holding a state_dict under "
            f"{'/'.join(STATE_DICT_KEYS)} (keys: {sorted(map(str, obj))[:10]})"
        )
    else:
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    return sd  # a wrapper prefix on the keys is dealt with by apply_state_dict, which knows the model's keys


def _uniform_prefix(keys) -> Optional[str]:
    """``'p.'`` if every key starts with the same first component ``p`` followed by more."""
    firsts = {k.split(".", 1)[0] if "." in k else None for k in keys}
    return f"{firsts.pop()}." if len(firsts) == 1 and None not in firsts else None


def _unwrapped(sd: dict[str, torch.Tensor], max_depth: int = 3) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """``sd`` and, one level at a time, ``sd`` with the prefix shared by all its keys removed
    (``module._orig_mod.x`` -> ``_orig_mod.x`` -> ``x``): ``[(prefix removed, state_dict)]``."""
    out, removed = [("", sd)], ""
    while len(out) <= max_depth and (p := _uniform_prefix(sd)) is not None:
        sd = {k[len(p):]: v for k, v in sd.items()}
        removed += p
        out.append((removed, sd))
    return out


def apply_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], origin: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing / unexpected keys.

    When all the checkpoint's keys share a prefix (a training wrapper's: ``module.``, ``_orig_mod.``,
    ``model.``, ``net.``, ...), the prefix is removed if, and only if, the keys then are exactly the
    model's (a model whose own keys start with ``module.`` keeps them).  If no such form fits, the
    error names the prefix and compares the form closest to the model.
    """
    own = model.state_dict()
    forms = _unwrapped(sd)
    prefix = _uniform_prefix(sd)
    foreign = prefix is not None and not all(k.startswith(prefix) for k in own)  # a wrapper's prefix
    fitting = [form for form in forms if form[1].keys() == own.keys()]
    # no form fits: report the closest, on a tie the most unwrapped one if the prefix is foreign
    removed, sd = fitting[0] if fitting else min(reversed(forms) if foreign else forms,
                                                 key=lambda form: len(form[1].keys() ^ own.keys()))
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong_shape = [
        f"{k} (checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)})"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        def lst(xs):
            return ", ".join(xs[:8]) + (f" ... (+{len(xs) - 8} more)" if len(xs) > 8 else "")

        parts = []
        if foreign:
            parts.append(f"the checkpoint's keys all start with {prefix!r} but the model's do not"
                         + (f" (compared below without {removed!r})" if removed else ""))
        if missing:
            parts.append(f"missing keys: {lst(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {lst(unexpected)}")
        if wrong_shape:
            parts.append(f"shape mismatch: {lst(wrong_shape)}")
        raise CheckpointError(
            f"{origin}: the state_dict does not fit the model built by the factory; "
            + "; ".join(parts)
            + ". Check --model and --model-kwargs match the architecture that was trained."
        )
    model.load_state_dict(sd, strict=True)


def _unimportable_class(path: Path, e: Exception) -> Optional[CheckpointError]:
    """The error for a pickle naming a module or class that cannot be imported here, or None."""
    if isinstance(e, ModuleNotFoundError) and e.name:
        where = f"module {e.name!r}, which cannot be imported here"
    elif isinstance(e, AttributeError) and str(e).startswith("Can't get attribute"):
        where = f"a class that is not there ({_first_line(e)})"
    else:
        return None
    if "spikingjelly.clock_driven" in str(e):
        fix = ("spikec's stand-in for the legacy spikingjelly.clock_driven API provides only the "
               "MultiStep LIF / IF / ParametricLIF nodes, ATan / Sigmoid, SeqToANNContainer and reset_net. "
               "To fix: install the spikingjelly version the model was saved with")
    else:
        fix = ("To fix: run spikec from the folder that holds the model code (the package the classes "
               "were defined in when it was saved), or add that folder to PYTHONPATH")
    return CheckpointError(
        f"{path}: the pickled model refers to {where}. {fix}; or save model.state_dict() instead and "
        "pass --model path/to/file.py:factory"
    )


def _looks_like_a_checkpoint(path: Path) -> bool:
    """torch.save writes a zip archive (``PK``) or, in the legacy format, a pickle (protocol >= 2
    starts with 0x80); anything else is not a checkpoint at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return True  # let torch.load report it
    return head.startswith(b"PK") or head[:1] == b"\x80"


def _torch_load(path: Path, trust: bool):
    if not _looks_like_a_checkpoint(path):
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor a pickle); "
                              "give the .pt / .pth file that torch.save wrote")
    # a pickled module's classes are found from the working directory too, like --model
    with _on_sys_path(_cwd_entry() if trust else None, first=False):
        try:
            return torch.load(path, map_location="cpu", weights_only=not trust)
        except pickle.UnpicklingError as e:
            if not trust and "weights_only" in str(e) and "GLOBAL" not in str(e).upper():
                raise CheckpointError(f"{path}: corrupt, or not a checkpoint (it does not unpickle)") from None
            if not trust and "weights_only" in str(e):
                raise CheckpointError(
                    f"{path}: holds pickled Python objects (e.g. a whole nn.Module); loading them runs "
                    "code from the file. Pass --trust-checkpoint if you trust its source, or save "
                    "model.state_dict() instead and give --model."
                ) from None
            raise CheckpointError(f"{path}: corrupt checkpoint ({_first_line(e)})") from None
        except (ModuleNotFoundError, AttributeError) as e:
            err = _unimportable_class(path, e)
            if err is not None:
                raise err from None
            if not trust:
                raise CheckpointError(f"{path}: cannot read checkpoint ({_cause(e)})") from None
            raise CheckpointError(f"{path}: unpickling the model raised {_cause(e)}") from e
        except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
            raise CheckpointError(f"{path}: cannot read checkpoint ({_cause(e)})") from None
        except SystemExit as e:
            if not trust:
                raise
            raise CheckpointError(f"{path}: {_sys_exit(e, 'code run while unpickling the model')}") from e
        except Exception as e:  # trusted: the pickled classes' own code ran and failed
            if not trust:
                raise
            raise CheckpointError(f"{path}: unpickling the model raised {_cause(e)}") from e


def load_checkpoint(
    path: Union[str, Path],
    factory: Optional[str] = None,
    model_kwargs: Optional[dict] = None,
    trust_checkpoint: bool = False,
) -> LoadedModel:
    """Load any supported checkpoint form (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, expected a checkpoint file")
    if path.suffix == ".pt2":
        _register_spikingjelly_ops()
        try:
            ep = torch.export.load(str(path))
        except Exception as e:
            raise CheckpointError(f"{path}: cannot read exported program ({type(e).__name__}: {e})") from None
        return LoadedModel(exported=ep, origin=str(path))

    if factory is not None or trust_checkpoint:  # model code (or a pickled module) may use the legacy API
        from ..compat import legacy_spikingjelly

        legacy_spikingjelly.install_if_missing()
    obj = _torch_load(path, trust_checkpoint)
    while isinstance(obj, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        obj = obj.module  # a pickled (Distributed)DataParallel wrapper: the model is inside
    if isinstance(obj, nn.Module):
        if factory is not None:
            raise CheckpointError(f"{path}: holds a whole nn.Module; do not pass --model with it")
        return LoadedModel(module=obj, origin=str(path))
    if factory is None:
        raise CheckpointError(
            f"{path}: holds a state_dict (weights only); say which architecture it belongs to with "
            "--model package.module:factory (or path/to/file.py:factory) and --input-shape"
        )
    sd = extract_state_dict(obj, str(path))
    model = build_model(factory, model_kwargs)
    apply_state_dict(model, sd, str(path))
    return LoadedModel(module=model, origin=str(path))


def parse_model_kwargs(text: Optional[str]) -> dict:
    if not text:
        return {}
    try:
        kw = json.loads(text)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"--model-kwargs is not valid JSON: {e}") from None
    if not isinstance(kw, dict):
        raise CheckpointError("--model-kwargs must be a JSON object, e.g. '{\"embed_dims\": 64}'")
    return kw
