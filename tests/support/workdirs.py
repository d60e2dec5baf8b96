"""Work dirs for the real servers the tests start."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def service_dir(name: str) -> Iterator[Path]:
    """A work dir outside pytest's basetemp: a second pytest session on the machine
    prunes old basetemps, which must not pull the data from under a running server."""
    path = Path(tempfile.mkdtemp(prefix=f"healthwatch-{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
