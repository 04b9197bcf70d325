"""Writing artifacts safely: outputs are checked before any work, written to a temporary sibling
and renamed into place, so a failure never leaves a half-written artifact and nothing but an
earlier spikec artifact is ever replaced.  Files and directories get the usual permissions
(0666 / 0777 minus the umask), not the owner-only ones of ``tempfile``."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from .errors import SpikecError

SPIKEC_FILES = {"graph.json", "arrays.npz", "manifest.json"}  # all an artifact / IR directory holds


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_output(path: str | os.PathLike, directory: bool, protect: tuple = (), option: str = "-o") -> Path:
    """Refuse, before any work, an output that cannot or must not be written: a directory output
    over anything but an empty directory or an earlier spikec artifact (exactly the files spikec
    writes), a file output over a directory or over one of ``protect`` (the command's inputs), or a
    location that is not writable."""
    path = Path(path)
    if path.exists():
        if directory:
            names = {p.name for p in path.iterdir()} if path.is_dir() else None
            if names is None or not names <= SPIKEC_FILES or (names and "graph.json" not in names):
                extra = "" if names is None else f" (it holds {', '.join(sorted(names - SPIKEC_FILES)[:3])})"
                raise SpikecError(f"{option} {path}: exists and is not a spikec artifact{extra}; refusing to replace it "
                                  "(choose a new path, or remove it yourself)")
        elif path.is_dir():
            raise SpikecError(f"{option} {path}: is a directory; give a file path")
        if any(path.resolve() == Path(p).resolve() for p in protect if p):
            raise SpikecError(f"{option} {path}: is one of the command's inputs; refusing to overwrite it")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise SpikecError(f"{option} {path}: {parent} is a file, not a directory")
    _probe_writable(parent, f"{option} {path}")
    return path


def _probe_writable(directory: Path, what: str) -> None:
    """Create and remove a file in ``directory``: ``os.access`` says yes to root even on read-only
    file systems and special directories (/proc, /sys), where writing then fails."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".spikec-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise SpikecError(f"{what}: cannot write in {directory} ({e.strerror or e}); choose another location") from None


def _os_error(path: Path, e: OSError) -> SpikecError:
    return SpikecError(f"{path}: cannot be written ({e.strerror or e}); nothing was written")


def atomic_directory(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmpdir)`` and move the result to ``path`` only if it succeeds (replacing an
    earlier spikec artifact there, nothing else)."""
    path = check_output(path, directory=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as e:
        raise _os_error(path, e) from None
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _os_error(path, e) from None
    except BaseException:  # incl. KeyboardInterrupt: no partial artifact
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def atomic_file(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmpfile)`` and rename the file to ``path`` only if it succeeds."""
    path = check_output(path, directory=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise _os_error(path, e) from None
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise _os_error(path, e) from None
    except BaseException:  # incl. KeyboardInterrupt: no partial file
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
