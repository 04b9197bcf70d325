"""Loading the checkpoint forms users have.

* **state_dict** (a dict of tensors, or a dict holding one under ``model`` / ``state_dict`` /
  ``module``; a DataParallel ``module.`` prefix is stripped) plus a model factory
  (``package.module:factory`` or ``path/to/file.py:factory``).  Loaded with
  ``torch.load(weights_only=True)``: no code in the file runs.
* **pickled nn.Module**: unpickling runs arbitrary code, so it is only read with
  ``trust_checkpoint=True`` (CLI ``--trust-checkpoint``).
* **torch.export program** (``.pt2``): read with ``torch.export.load``.

Every failure raises :class:`~spikec.errors.CheckpointError` with a message that says what to do.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

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


def load_factory(spec: str):
    """Resolve ``pkg.module:factory`` or ``path/to/file.py:factory`` to a callable."""
    if ":" not in spec:
        raise CheckpointError(
            f"--model {spec!r}: expected 'package.module:factory' or 'path/to/file.py:factory'"
        )
    mod_part, _, attr = spec.rpartition(":")
    from ..compat import legacy_spikingjelly

    legacy_spikingjelly.install_if_missing()
    try:
        if mod_part.endswith(".py") or "/" in mod_part:
            path = Path(mod_part)
            if not path.is_file():
                raise CheckpointError(f"--model: file {path} does not exist")
            name = f"spikec_user_model_{abs(hash(str(path.resolve())))}"
            module = sys.modules.get(name)
            if module is None:
                sp = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(sp)
                sys.modules[name] = module
                sys.path.insert(0, str(path.parent.resolve()))
                try:
                    sp.loader.exec_module(module)
                except BaseException:
                    sys.modules.pop(name, None)
                    raise
                finally:
                    sys.path.pop(0)
        else:  # like `python -m`, resolve packages from the working directory too
            cwd = str(Path.cwd())
            added = cwd not in sys.path and "" not in sys.path
            if added:
                sys.path.append(cwd)
            try:
                module = importlib.import_module(mod_part)
            finally:
                if added:
                    sys.path.remove(cwd)
    except CheckpointError:
        raise
    except ImportError as e:
        raise CheckpointError(f"--model {spec!r}: cannot import {mod_part!r}: {e}") from e
    except Exception as e:  # user code failing at import time
        raise CheckpointError(f"--model {spec!r}: importing {mod_part!r} failed: {type(e).__name__}: {e}") from e
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise CheckpointError(f"--model {spec!r}: {mod_part!r} has no callable {attr!r}")
    return fn


def build_model(factory: str, kwargs: Optional[dict] = None) -> nn.Module:
    fn = load_factory(factory)
    try:
        model = fn(**(kwargs or {}))
    except TypeError as e:
        raise CheckpointError(f"--model {factory!r}: calling the factory failed: {e}") from e
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
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def apply_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], origin: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing missing / unexpected keys."""
    own = model.state_dict()
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


def _torch_load(path: Path, trust: bool):
    cwd = str(Path.cwd())
    added = trust and cwd not in sys.path and "" not in sys.path  # a pickled module's classes, like --model
    if added:
        sys.path.append(cwd)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as e:
        if not trust and "weights_only" in str(e):
            raise CheckpointError(
                f"{path}: holds pickled Python objects (e.g. a whole nn.Module); loading them runs "
                "code from the file. Pass --trust-checkpoint if you trust its source, or save "
                "model.state_dict() instead and give --model."
            ) from None
        raise CheckpointError(f"{path}: corrupt checkpoint ({e})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError,
            ModuleNotFoundError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    finally:
        if added:
            sys.path.remove(cwd)


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
