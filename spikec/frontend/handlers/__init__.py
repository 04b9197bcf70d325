"""The ``@handles`` table: one handler per ATen operation the frontend converts, by op family.

Importing this package imports each family module below, whose ``@handles`` decorators fill
:data:`HANDLERS`; the converter (:mod:`spikec.frontend.trace`) imports it once.
"""

from . import elementwise, linear, neurons, nonlinear, norm, passthrough, pooling, shape  # noqa: F401  (fill HANDLERS)
from .base import HANDLERS, Act, Poison, handles, op_name

__all__ = ["HANDLERS", "Act", "Poison", "handles", "op_name"]
