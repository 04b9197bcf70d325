"""Make lava-nc 0.10.0 importable on Python 3.11 (no site-packages edits).

lava-nc 0.10.0 declares Python < 3.11.  On 3.11, importing ``lava.magma.compiler.var_model`` fails:
it defines ``@dataclass class ByteEncoder`` and uses an instance as a field default of other
dataclasses; since Python 3.11 a dataclass default must be hashable (a dataclass with ``eq=True``
sets ``__hash__ = None``), so the module raises "mutable default ... use default_factory".

:func:`ensure_lava` imports that one module with ``dataclasses.dataclass`` wrapped so that the
class named ``ByteEncoder`` gets ``__hash__ = object.__hash__`` before the classes that use it as a
default are created, then restores ``dataclasses.dataclass``.  Everything that compiles a Lava
network imports the patched module from ``sys.modules`` afterwards.  Call it before importing any
other ``lava`` module (``spikec.targets.lava`` does).

Lava's message infrastructure calls ``multiprocessing.set_start_method("fork")`` (unforced) when it
is first imported, which raises "context has already been set" once anything has fixed the default
start method, and merely running a ``ProcessPoolExecutor`` (``spikec verify --workers``) does.
:func:`ensure_lava` therefore clears a default that is already fixed just before that first import
(Lava then sets "fork", which Lava needs and which is the default on Linux).
"""

from __future__ import annotations

import dataclasses
import importlib
import sys

_TARGET = "lava.magma.compiler.var_model"


def _needs_patch() -> bool:
    return sys.version_info >= (3, 11)


_MESSAGING = "lava.magma.runtime.message_infrastructure.multiprocessing"


def _let_lava_set_the_start_method() -> None:
    import multiprocessing as mp

    if _MESSAGING not in sys.modules and mp.get_start_method(allow_none=True) is not None:
        mp.set_start_method(None, force=True)


def ensure_lava() -> None:
    """Import lava's var_model with the ByteEncoder fix applied (idempotent)."""
    _let_lava_set_the_start_method()
    if _TARGET in sys.modules or not _needs_patch():
        importlib.import_module(_TARGET)
        return
    original = dataclasses.dataclass

    def patched(cls=None, /, **kwargs):
        def wrap(c):
            out = original(c, **kwargs) if kwargs else original(c)
            if out.__name__ == "ByteEncoder" and out.__hash__ is None:
                out.__hash__ = object.__hash__
            return out

        return wrap if cls is None else wrap(cls)

    dataclasses.dataclass = patched
    try:
        importlib.import_module(_TARGET)
    finally:
        dataclasses.dataclass = original
