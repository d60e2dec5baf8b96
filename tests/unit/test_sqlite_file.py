"""The embedded database's file holds customers' data: readable by its owner alone."""

from __future__ import annotations

import stat
from pathlib import Path

from shared.storage.db import create_engine, migrate


async def test_a_new_database_file_is_its_owners_alone(tmp_path: Path) -> None:
    """Under the usual umask SQLite made it world-readable (found from outside); its
    journal files take the file's mode."""
    path = tmp_path / "hw.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    modes = _modes(tmp_path, "hw.db")
    assert len(modes) >= 1 and path.stat().st_size > 0
    for file, mode in modes.items():
        assert mode & 0o077 == 0, file


async def test_a_file_there_already_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    path.touch(mode=0o640)
    path.chmod(0o640)
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        await migrate(engine)
    finally:
        await engine.dispose()
    assert _modes(tmp_path, "shared.db")[path] == 0o640


def _modes(folder: Path, name: str) -> dict[Path, int]:
    """The database file's and its journal files' permission bits."""
    return {f: stat.S_IMODE(f.stat().st_mode) for f in [folder / name, *folder.glob(f"{name}-*")]}
