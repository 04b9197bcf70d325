"""Refusing non-finite parameters where they enter the IR.

A NaN or an infinity in a weight, a bias, a batch norm's running statistics or a neuron's threshold,
reset, time constant or leak rate has no meaning on any target (the float semantics propagate it into
every membrane it reaches; fixed point has no code for it) and means the checkpoint is corrupt or
training diverged.  The converter (:meth:`spikec.frontend.trace._Converter.emit`) checks every IR
node's parameter fields here as the node is made, while the module path of the parameter is known,
so the refusal names the module and the parameter as the user wrote them.

Padding values are not parameters and are not checked: a −∞ constant pad in front of a max pool is
meaningful.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from ..errors import UnsupportedError

CORRUPT = "the checkpoint is corrupt or training diverged"

# IR field -> (the user's name for it, what a non-finite value there usually means); the order is the
# order of the checks (a PLIF's tau is 1 / leak_rate: its leak rate is named first)
PARAMETER_FIELDS: dict[str, tuple[str, str]] = {
    "weight": ("weight", CORRUPT),
    "bias": ("bias", CORRUPT),
    "mean": ("running_mean", CORRUPT),
    "var": ("running_var", CORRUPT),
    "eps": ("eps", CORRUPT),
    "v_threshold": ("v_threshold", CORRUPT),
    "v_reset": ("v_reset", CORRUPT),
    "leak_rate": ("leak rate sigmoid(w)", CORRUPT),
    "tau": ("tau", CORRUPT),
    "v_init": ("initial membrane", CORRUPT),
    "factor": ("constant factor", "the forward multiplies or divides by a NaN or infinite constant"),
}


def _name_of(x: float) -> str:
    return "NaN" if np.isnan(x) else ("+Inf" if x > 0 else "-Inf")


def nonfinite(value: Any) -> Optional[str]:
    """What is not finite in ``value`` (a number or an array) as a predicate, e.g. ``"has 1
    non-finite value (NaN at [0, 0])"`` or ``"is NaN"``; None if it is finite (or not a number)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number, np.ndarray)):
        return None
    a = np.asarray(value)
    if not np.issubdtype(a.dtype, np.floating):
        return None
    bad = ~np.isfinite(a)
    if not bad.any():
        return None
    if a.ndim == 0:
        return f"is {_name_of(float(a))}"
    count = int(bad.sum())
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    where = "[" + ", ".join(map(str, first)) + "]"
    plural = "value" if count == 1 else "values"
    lead = "" if count == 1 else "first: "
    return f"has {count} non-finite {plural} ({lead}{_name_of(float(a[first]))} at {where})"


def refuse_nonfinite(where: str, attrs: Mapping[str, Any]) -> None:
    """Raise :class:`UnsupportedError` naming ``where`` (the module) if a parameter field of
    ``attrs`` (an IR node's keyword arguments, :data:`PARAMETER_FIELDS`) is not finite."""
    for field, (user_name, cause) in PARAMETER_FIELDS.items():
        what = nonfinite(attrs.get(field))
        if what is None:
            continue
        raise UnsupportedError(f"{where}: {user_name} {what}; {cause}")


def refuse_nonfinite_graph(graph, origin: str) -> None:
    """The same check for a graph that did not come through the converter (a saved IR, an
    ``ir.Graph`` built in Python): every node's parameter fields, named by the node's module."""
    for n in graph.nodes:
        where = f"{origin}: module '{n.source}'" if n.source else f"{origin}: node {n.name}"
        refuse_nonfinite(where, {f: getattr(n, f) for f in PARAMETER_FIELDS if hasattr(n, f)})
