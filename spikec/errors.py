"""Error types.  Every error spikec raises on bad input is a :class:`SpikecError`.

The CLI prints a SpikecError as one line (``error: ...``) and exits with code 2; the message must say
what is wrong, where in the model (module path), and what the user can do about it.
"""


class SpikecError(Exception):
    """Base class of all user-facing errors."""


class CheckpointError(SpikecError):
    """A checkpoint file is missing, corrupt, of an unknown form, or does not fit the model."""


class UnsupportedError(SpikecError):
    """The model contains a module or operation spikec cannot compile."""


class ShapeError(SpikecError):
    """An input or tensor has a shape other than the one expected."""


class IRError(SpikecError):
    """The IR graph is malformed (shape, kind, reference or cycle errors)."""
