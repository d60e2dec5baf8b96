"""Every file the services read at run time ships in the package: an installed copy
(the container image's ``pip install .``) lacked the Chinese catalogs, so every page
and notice was English there."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[2]


def test_every_data_file_of_the_packages_is_in_their_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns: dict[str, list[str]] = config["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(
        ["git", "ls-files", "services", "shared"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    data = [path for path in tracked if not path.endswith(".py")]
    assert any(path.endswith(".po") for path in data)  # the catalogs are among them
    left_out = [
        path
        for path in data
        if not any(
            _ships(path.partition("/")[2], pattern)
            for pattern in patterns.get(path.partition("/")[0], [])
        )
    ]
    assert left_out == [], "add these to [tool.setuptools.package-data] in pyproject.toml"


def _ships(path: str, pattern: str) -> bool:
    """Whether setuptools' package-data ``pattern`` takes ``path``: its ``*`` stays
    within one folder (``fnmatch``'s crosses them, so a nested file passed unshipped)."""
    parts, wanted = PurePosixPath(path).parts, PurePosixPath(pattern).parts
    return len(parts) == len(wanted) and PurePosixPath(path).match(pattern)


def test_the_matcher_keeps_a_star_within_one_folder() -> None:
    assert _ships("dashboard/static/x.css", "dashboard/static/*")
    assert not _ships("dashboard/static/img/x.png", "dashboard/static/*")
