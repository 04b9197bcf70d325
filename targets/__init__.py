"""Compilation targets, one package per backend.  Shipped as ``spikec.targets``.

Every backend implements :class:`~spikec.targets.base.Target`; :mod:`.base` holds the interface and
the explicit registry (``get_target("lava")``, ``register_target(MyTarget)``).  Importing this
package imports no backend.
"""

from .base import Artifact, Option, RunOutput, Target, TargetCheck, all_targets, for_artifact, names, register, unregister
from .base import get as get_target
from .base import register as register_target

__all__ = ["Artifact", "Option", "RunOutput", "Target", "TargetCheck", "all_targets", "for_artifact",
           "get_target", "names", "register", "register_target", "unregister"]
