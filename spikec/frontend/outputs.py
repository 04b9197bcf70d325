"""Which of a model's outputs spikec compiles.

A forward may return a tensor, or a tuple / list / dict of them with other things mixed in
(Spike-Driven Transformer returns ``(logits, hook)`` with ``hook=None``).  torch.export and
``torch.utils._pytree`` flatten such a structure into the same leaves in the same order; spikec
keeps the tensor leaves (skipping the others, with a note) or, with ``output=N`` / a name (CLI
``--model-output``), just one of them: the N-th tensor output, or the one whose dict key or path is
the name.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch
import torch.utils._pytree as pytree

from ..errors import ShapeError

OutputChoice = Optional[Union[int, str]]


def leaf_paths(spec) -> list[str]:
    """Readable paths (``[0]``, ``['logits']``) of the leaves of a pytree spec."""
    tree = pytree.tree_unflatten(list(range(spec.num_leaves)), spec)
    flat, _ = pytree.tree_flatten_with_path(tree)
    return [pytree.keystr(path) or "output" for path, _ in flat]


def parse_choice(text: OutputChoice) -> OutputChoice:
    """``"1"`` -> 1 (an index); other text stays a name."""
    if isinstance(text, str) and text.lstrip("-").isdigit():
        return int(text)
    return text


def choose(paths: Sequence[str], is_tensor: Sequence[bool], which: OutputChoice) -> tuple[list[int], list[str]]:
    """Indices of the leaves to keep, and notes on what was skipped."""
    tensors = [i for i, t in enumerate(is_tensor) if t]
    skipped = [paths[i] for i, t in enumerate(is_tensor) if not t]
    notes = [f"model output {', '.join(skipped)} is not a tensor (e.g. None): skipped"] if skipped else []
    described = ", ".join(f"{k}: {paths[i]}" for k, i in enumerate(tensors))
    if not tensors:
        raise ShapeError("the model returns no tensor to compile")
    which = parse_choice(which)
    if which is None:
        return tensors, notes
    if isinstance(which, int):
        if not -len(tensors) <= which < len(tensors):
            raise ShapeError(f"--model-output {which}: the model has {len(tensors)} tensor outputs ({described})")
        keep = tensors[which]
    else:
        named = [i for i in tensors if paths[i] == which or paths[i].endswith(f"[{which!r}]")]
        if len(named) != 1:
            raise ShapeError(f"--model-output {which!r}: no single tensor output of that name; tensor outputs: {described}")
        keep = named[0]
    dropped = [paths[i] for i in tensors if i != keep]
    if dropped:
        notes.append(f"compiling model output {paths[keep]} only (--model-output); not compiled: {', '.join(dropped)}")
    return [keep], notes


def select_eager(y: Any, which: OutputChoice = None) -> list[torch.Tensor]:
    """The tensors the compiled graph outputs, taken from an eager forward's result ``y``."""
    leaves, spec = pytree.tree_flatten(y)
    keep, _ = choose(leaf_paths(spec), [isinstance(v, torch.Tensor) for v in leaves], which)
    return [leaves[i] for i in keep]
