"""The report directory: checked before any work, written atomically.

:func:`spikec.outputs.check_output` refuses any existing directory that is not a spikec artifact; a
report directory is not one (it holds a report, not a model), so an earlier *report* is recognised
here (only the files a report holds, and a report.json of format ``spikec-report``) and replaced;
everything else goes through :mod:`spikec.outputs` (empty directories, new paths, refusals).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from spikec.outputs import atomic_directory, check_output

from .plots import PLOTS

FORMAT = "spikec-report"  # report.json's "format": what marks a report directory
VERSION = 1
REPORT_FILES = {"report.json", "report.md", *PLOTS}


def is_report_dir(path: Path) -> bool:
    """Whether ``path`` is a directory an earlier ``spikec report`` wrote (and nothing else)."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    if "report.json" not in names or not names <= REPORT_FILES:
        return False
    try:
        return json.loads((path / "report.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_report_dir(path, protect: tuple = (), option: str = "-o") -> Path:
    """Refuse, before any work, a report directory that must not be written (see the module docstring)."""
    path = Path(path)
    if is_report_dir(path):
        return path
    return check_output(path, directory=True, protect=protect, option=option)


def write_report_dir(path, write: Callable[[Path], None], protect: tuple = ()) -> Path:
    """``write(tmpdir)``, then the directory moved to ``path`` (replacing an earlier report only)."""
    path = check_report_dir(path, protect)
    if not is_report_dir(path):
        return atomic_directory(path, write)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old = path.parent / f"{tmp.name}.old"
    try:
        write(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)
        os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists() and not path.exists():
            os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path
