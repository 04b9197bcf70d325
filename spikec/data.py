"""The user's data: arrays from files or memory, checked against the model before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from . import ir
from .errors import ShapeError, SpikecError


def check_array(a: np.ndarray, what: str) -> np.ndarray:
    """A numeric (bool / int / float), non-empty array without NaN."""
    if a.dtype.kind not in "biuf":
        raise SpikecError(f"{what}: holds {a.dtype} values; expected numbers (float, int or bool)")
    if a.size == 0:
        raise SpikecError(f"{what}: is empty (shape {list(a.shape)})")
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise SpikecError(f"{what}: contains {int(np.isnan(a).sum())} NaN values; clean the data")
    return a


def load_array(path: str | Path, what: str) -> np.ndarray:
    """A user's .npy array (see :func:`check_array`)."""
    try:
        a = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SpikecError(f"{what} {path}: no such file") from None
    except (ValueError, OSError) as e:
        raise SpikecError(f"{what} {path}: not a readable .npy array ({e})") from None
    return check_array(a, f"{what} {path}")


def as_array(x, what: str) -> np.ndarray:
    """A numpy array from numpy / torch / nested lists, or loaded from a .npy path."""
    if isinstance(x, (str, Path)):
        return load_array(x, what)
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return check_array(np.asarray(x), what)


def check_inputs(graph: ir.Graph, x: np.ndarray, labels: Optional[np.ndarray] = None, what: str = "--input") -> None:
    """The data must fit the model before anything runs (the torch model would fail obscurely)."""
    inp = graph.inputs[0]
    want = (["B"] if inp.layout == "static" else [inp.time, "B"]) + list(inp.features)
    got = list(x.shape)
    if len(got) != len(want) or any(w != "B" and w != g for w, g in zip(want, got)):
        raise ShapeError(f"{what} has shape {got}; the model takes {want} (B = samples)")
    n = sample_count(graph, x)
    if labels is not None and labels.shape != (n,):
        raise ShapeError(f"labels have shape {list(labels.shape)}; expected one label per sample: [{n}]")


def sample_count(graph: ir.Graph, x: np.ndarray) -> int:
    return int(x.shape[0] if graph.inputs[0].layout == "static" else x.shape[1])


DIGITS_TRAIN = 1437  # scikit-learn digits 0..1436 train, 1437..1796 held out (the bundled examples' split)
DATASETS = {
    "digits": "scikit-learn's 8x8 digits, held-out split, [B, 1, 8, 8] in 0..1",
    "digits32": "the same held-out digits upsampled to 32x32 (each pixel a 4x4 block) on 3 equal channels, [B, 3, 32, 32]",
    "digits_shifted": "the 360 held-out digits at each of the 9 one-pixel shifts (dy, dx in -1..1, vacated pixels 0: "
                      "within the range of the trained examples' own random shifts), 3240 images, [B, 1, 8, 8]",
    "digits32_shifted": "digits_shifted upsampled as digits32 (shifts of one 8x8 pixel: 4 pixels), [B, 3, 32, 32]",
    "events": "synthetic event streams (spikec.synthetic_events): ten motion programs that only the order of the steps "
              "tells apart, 1000 held out, [T=8, B, 2, 16, 16] (--time-steps 8)",
}


def digits(split: str = "test", size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits (offline): ``split`` "train" (first 1437) or "test" (last 360), scaled to
    0..1.  ``size`` 8 gives [N, 1, 8, 8]; 32 gives [N, 3, 32, 32] (nearest upsampling, 3 equal channels:
    the input of the 32x32 RGB families)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    part = slice(None, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    x = (d.images[part] / 16.0).astype(np.float32)[:, None]
    if size == 32:
        x = np.repeat(np.repeat(x, 4, axis=2), 4, axis=3).repeat(3, axis=1)
    elif size != 8:
        raise SpikecError(f"digits come at 8x8 or 32x32, not {size}x{size}")
    return x, d.target[part].astype(np.int64)


SHIFTS = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # digits_shifted, in 8x8 pixels


def shifted(x, dy: int, dx: int):
    """Images ``x`` (numpy or torch, ``[..., H, W]``) moved by ``dy`` rows and ``dx`` columns, the
    vacated pixels 0 (not rolled around)."""
    out = x.clone() if hasattr(x, "clone") else x.copy()
    out[...] = 0
    H, W = x.shape[-2:]
    rows = (slice(0, H - dy), slice(dy, H)) if dy >= 0 else (slice(-dy, H), slice(0, H + dy))
    cols = (slice(0, W - dx), slice(dx, W)) if dx >= 0 else (slice(-dx, W), slice(0, W + dx))
    out[..., rows[1], cols[1]] = x[..., rows[0], cols[0]]
    return out


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """A bundled dataset's held-out split (inputs, labels); see :data:`DATASETS`."""
    if name not in DATASETS:
        raise SpikecError(f"unknown dataset {name!r}; bundled: {', '.join(DATASETS)}")
    if name == "events":
        from .synthetic_events import HELD_OUT, events

        return events("test", layout="TN", **HELD_OUT)
    size = 32 if name.startswith("digits32") else 8
    x, y = digits("test", size)
    if name.endswith("_shifted"):
        pixel = size // 8
        x = np.concatenate([shifted(x, dy * pixel, dx * pixel) for dy, dx in SHIFTS])
        y = np.tile(y, len(SHIFTS))
    return x, y
